"""The evaluation protocol: how a split becomes batches of encoded network inputs, reproducibly.

Training's evaluation (:func:`toolchain.train.evaluate.evaluate`), the simulators' inputs
(:func:`toolchain.sim.inputs.network_inputs`) and the export's before/after comparison all draw
their inputs here, so a rate-coded sample gets the same spikes everywhere: the split in order, in
batches of :data:`EVAL_BATCH` samples, each encoded by :func:`encode_batch` with one
``torch.Generator`` seeded with the evaluation seed (0 unless stated) for the whole split.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from toolchain.config import EncodingConfig
from toolchain.data.base import ArraySplit, as_float
from toolchain.data.encoding import encode

#: the evaluation's batch size: rate spikes are drawn batch by batch, so it fixes each sample's spikes
EVAL_BATCH = 256


def batches(
    split: ArraySplit, batch_size: int, order: np.ndarray | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` float32/int64 tensors of ``batch_size`` samples, in ``order`` if given."""
    indices = np.arange(len(split)) if order is None else order
    for start in range(0, len(indices), batch_size):
        yield load_batch(split, indices[start : start + batch_size])


def load_batch(split: ArraySplit, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``indices`` of ``split`` as ``(x, y)`` float32/int64 tensors (empty if ``indices`` is)."""
    x = torch.from_numpy(as_float(np.asarray(split.x[indices])))
    y = torch.from_numpy(np.asarray(split.y[indices], dtype=np.int64))
    return x, y


def encode_batch(
    x: torch.Tensor, encoding: EncodingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A float batch ``[B, ...]`` as the network's time-major input ``[T, B, ...]``."""
    return encode(encoding.scheme, x, encoding.time_steps, generator=generator)


def evaluation_inputs(
    split: ArraySplit, encoding: EncodingConfig, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split's encoded evaluation batches ``([T, B, ...] input, labels)``, as every evaluation
    of the toolchain draws them (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    for x, y in batches(split, EVAL_BATCH):
        yield encode_batch(x, encoding, generator), y


__all__ = ["EVAL_BATCH", "batches", "encode_batch", "evaluation_inputs", "load_batch"]
