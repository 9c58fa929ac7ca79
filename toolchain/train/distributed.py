"""Data-parallel training across processes: the process group, sharding and agreed failures.

``torchrun --nproc_per_node N -m toolchain train RECIPE`` starts N processes with ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`init_from_env` reads them and joins the process group (gloo on CPU, nccl on CUDA, where
``LOCAL_RANK`` picks the GPU). Without them it returns ``None`` and training is the plain
single-process loop.

Sharding (:func:`shard`, :func:`global_batches`) is strided: with ``W`` ranks and ``b`` samples per
rank and step, each step takes the next global batch of ``b * W`` samples of the epoch's shuffled
order (the same permutation on every rank) and rank ``r`` takes its samples ``r, r + W, ...``. The
shards of a step are disjoint and cover the global batch, so DDP's gradient average equals the
gradient of the whole global batch when each rank's loss is scaled to its share (see
:mod:`toolchain.train.trainer`): W ranks with batch ``b`` train like one process with batch
``b * W``.

A rank that fails must not leave the others waiting forever in a collective. Every phase that can
fail on one rank only (a training step's forward pass, loading a checkpoint, writing the run folder,
the evaluation) ends with :func:`reduce_or_fail`, one all-reduce that carries a failure flag per
rank next to the values: when any rank failed, the failing rank re-raises its own error and every
other rank raises :class:`PeerFailedError`, so all of them stop together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from toolchain.errors import ToolchainError

#: the variables ``torchrun`` sets for every worker; all of them, or none, must be present
ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

T = TypeVar("T")


class DistributedError(ToolchainError):
    """The distributed environment is incomplete or unusable (bad ``RANK``, missing GPU, ...)."""


class PeerFailedError(DistributedError):
    """Another rank failed; this rank stops too. The failing rank prints its own error."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the process group.

    ``device`` is where this rank computes (``cuda:LOCAL_RANK`` with nccl, the CPU with gloo) and
    where the tensors of collectives live.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


def init_from_env(device: str = "cpu", environ: Mapping[str, str] | None = None) -> DistributedContext | None:
    """Join the process group ``torchrun`` describes in the environment, or ``None`` without one.

    ``device`` is the recipe's ``[train].device`` (``cpu``, ``cuda`` or ``auto``): ``cpu`` uses the
    gloo backend, ``cuda`` uses nccl on GPU ``LOCAL_RANK``, ``auto`` picks ``cuda`` when a GPU is
    present. ``environ`` replaces ``os.environ`` for the three variables (torch itself reads
    ``MASTER_ADDR`` and ``MASTER_PORT`` from ``os.environ``). Raises :class:`DistributedError` when
    the variables are incomplete or invalid, or the process group cannot be joined.
    """
    env = os.environ if environ is None else environ
    present = [name for name in ENV_VARS if name in env]
    if not present:
        return None
    missing = [name for name in ENV_VARS if name not in env]
    if missing:
        raise DistributedError(
            f"distributed training needs {', '.join(ENV_VARS)} in the environment (torchrun sets them); "
            f"{', '.join(missing)} missing"
        )
    size, rank, local_rank = (_int_var(env, name) for name in ENV_VARS)
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise DistributedError(
            f"inconsistent distributed environment: RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={size}"
        )
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda: no CUDA device is available on this machine")
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); start at most one process per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        backend, where = "nccl", torch.device("cuda", local_rank)
    else:
        backend, where = "gloo", torch.device("cpu")
    if not dist.is_available():  # pragma: no cover - every official torch build has it
        raise DistributedError("this torch build has no torch.distributed")
    if dist.is_initialized():  # joined already (by the caller): use that group
        backend = str(dist.get_backend())
    else:
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=size)
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"cannot join the {backend} process group ({exc})") from None
    return DistributedContext(rank, size, local_rank, backend, where)


#: how long a rank waits at the exit barrier for the others before leaving anyway
EXIT_BARRIER_S = 60


def cleanup(ctx: DistributedContext | None) -> None:
    """Wait for every rank, then leave the process group (``destroy_process_group``).

    The exit barrier keeps a rank from tearing its process group down while a peer still talks to
    it (rank 0 writes the run folder after the others are done); under load a gloo rank that left
    early was seen to abort at exit ("terminate called without an active exception"). A peer that
    died does not hold the others: the barrier gives up after :data:`EXIT_BARRIER_S` seconds.
    """
    if ctx is None or not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_S))
        else:
            dist.barrier()
    except Exception:  # a peer failed or left: leave anyway, its error is reported by the caller
        pass
    dist.destroy_process_group()


def is_main(ctx: DistributedContext | None) -> bool:
    """True on rank 0 and in a single-process run: the process that writes files and prints."""
    return ctx is None or ctx.is_main


def world_size(ctx: DistributedContext | None) -> int:
    """The number of ranks (1 without a process group)."""
    return 1 if ctx is None else ctx.world_size


def shard(order: np.ndarray, ctx: DistributedContext | None) -> np.ndarray:
    """This rank's part of ``order``: elements ``rank, rank + W, ...`` (all of it without DDP).

    The shards of the ranks are disjoint and together cover ``order``; their lengths differ by at
    most one.
    """
    if ctx is None:
        return order
    return order[ctx.rank :: ctx.world_size]


def global_batches(
    order: np.ndarray, batch_size: int, ctx: DistributedContext | None
) -> Iterator[tuple[np.ndarray, int]]:
    """``(this rank's indices, global batch size)`` for each step through ``order``.

    ``batch_size`` is per rank: each step covers the next ``batch_size * W`` elements of ``order``
    and this rank takes its :func:`shard` of them. Every rank sees the same number of steps, even
    when the last global batch is too short to give every rank a sample (its part is then empty).
    """
    step = batch_size * world_size(ctx)
    for start in range(0, len(order), step):
        chunk = order[start : start + step]
        yield shard(chunk, ctx), len(chunk)


def all_reduce_sum(values: Sequence[float], ctx: DistributedContext | None) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (``values`` itself without DDP).

    Summed in float64, so counts stay exact up to 2**53.
    """
    if ctx is None:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def reduce_or_fail(
    values: Sequence[float], ctx: DistributedContext | None, error: BaseException | None, where: str
) -> list[float]:
    """:func:`all_reduce_sum` of ``values`` that also tells every rank whether any rank failed.

    ``error`` is what this rank raised in the phase that ends here (``None`` if it succeeded). If
    any rank failed, the failing ranks re-raise their own error and the others raise
    :class:`PeerFailedError` naming the failed ranks and ``where`` (``"at epoch 3"``). Without
    DDP, ``error`` is re-raised and ``values`` returned unchanged.
    """
    if ctx is None:
        if error is not None:
            raise error
        return [float(v) for v in values]
    flags = [0.0] * ctx.world_size
    if error is not None:
        flags[ctx.rank] = 1.0
    reduced = all_reduce_sum([*values, *flags], ctx)
    if error is not None:
        raise error
    failed = [rank for rank, flag in enumerate(reduced[len(values) :]) if flag > 0]
    if failed:
        ranks = ", ".join(str(rank) for rank in failed)
        raise PeerFailedError(
            f"rank {ranks} failed {where} (see its own error); all {ctx.world_size} ranks stopped"
        )
    return reduced[: len(values)]


@contextmanager
def agreed(ctx: DistributedContext | None, where: str) -> Iterator[None]:
    """Run a block that may fail on some ranks only; every rank leaves it failed or none does.

    Collectives must not be called inside the block (a failed rank would skip them). Without DDP
    this is a no-op.
    """
    if ctx is None:
        yield
        return
    error: Exception | None = None
    try:
        yield
    except Exception as exc:  # re-raised by reduce_or_fail, after the other ranks are told
        error = exc
    reduce_or_fail([], ctx, error, where)


def broadcast_object(obj: T, ctx: DistributedContext | None) -> T:
    """Rank 0's ``obj`` on every rank (pickled; for small, trusted objects such as a checkpoint)."""
    if ctx is None:
        return obj
    box: list[object] = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device)
    return box[0]  # type: ignore[return-value]


def broadcast_buffers(module: torch.nn.Module, ctx: DistributedContext | None) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) into ``module`` on every rank.

    DDP here does not sync buffers in the forward pass, so each rank's running statistics follow
    its own batches; rank 0's are the ones saved, and every rank must evaluate with them.
    """
    if ctx is None:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def barrier(ctx: DistributedContext | None) -> None:
    """Wait until every rank gets here (nothing without DDP)."""
    if ctx is not None:
        dist.barrier()


def rank_seed(seed: int, *parts: int) -> int:
    """A deterministic 63-bit seed derived from ``seed`` and ``parts`` (an epoch, a rank, ...)."""
    value = seed
    for part in parts:
        value = (value * 1_000_003 + part + 0x9E3779B97F4A7C15) % (1 << 63)
    return value


def _int_var(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise DistributedError(f"{name}={env[name]!r}: expected an integer") from None


__all__ = [
    "DistributedContext",
    "DistributedError",
    "PeerFailedError",
    "agreed",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "cleanup",
    "global_batches",
    "init_from_env",
    "is_main",
    "rank_seed",
    "reduce_or_fail",
    "shard",
    "world_size",
]
