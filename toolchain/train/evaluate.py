"""Accuracy and spiking activity of a model on a data split, by the evaluation protocol of
:mod:`toolchain.data.batches` (whose ``batches``, ``load_batch`` and ``encode_batch`` it re-exports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from toolchain.config import EncodingConfig
from toolchain.data import ArraySplit
from toolchain.data.batches import EVAL_BATCH, batches, encode_batch
from toolchain.snn.models import SpikingNetwork
from toolchain.train.distributed import DistributedContext, rank_seed, reduce_or_fail, shard


@dataclass
class LayerActivity:
    """Spikes of one layer, averaged over the evaluated samples."""

    name: str
    neurons: int
    spikes_per_sample: float


@dataclass
class Evaluation:
    """Test-set figures: accuracy in [0, 1] and spikes per sample (all layers and per layer)."""

    samples: int
    accuracy: float
    spikes_per_sample: float
    layers: list[LayerActivity]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@torch.no_grad()
def evaluate(
    model: SpikingNetwork,
    split: ArraySplit,
    encoding: EncodingConfig,
    batch_size: int = EVAL_BATCH,
    device: torch.device | str = "cpu",
    seed: int = 0,
    distributed: DistributedContext | None = None,
) -> Evaluation:
    """Accuracy and spikes per sample of ``model`` on ``split`` (rate encoding drawn from ``seed``).

    Under DDP (``distributed``) each rank evaluates its :func:`~toolchain.train.distributed.shard`
    of the split (samples ``rank, rank + W, ...``) and the counts are all-reduced, so every rank
    returns the figures of the whole split. Rank 0 draws rate-encoded spikes from ``seed`` as a
    single process does; rank ``r > 0`` from a seed derived from ``seed`` and ``r``.
    """
    model.eval()
    rank = 0 if distributed is None else distributed.rank
    generator = torch.Generator().manual_seed(seed if rank == 0 else rank_seed(seed, rank))
    names = list(model.layer_names)
    correct = 0
    totals = {name: 0.0 for name in names}
    error: Exception | None = None
    try:
        for x, y in batches(split, batch_size, shard(np.arange(len(split)), distributed)):
            out = model(encode_batch(x, encoding, generator).to(device))
            correct += int((out.logits.argmax(dim=1).cpu() == y).sum())
            for name, counts in out.spike_counts_per_sample().items():
                totals[name] += float(counts.sum())
    except Exception as exc:  # re-raised by reduce_or_fail once the other ranks know
        error = exc
    reduced = reduce_or_fail([correct, *totals.values()], distributed, error, "in the evaluation")
    correct_total, spike_totals = reduced[0], dict(zip(names, reduced[1:], strict=True))
    n = max(len(split), 1)
    layers = [
        LayerActivity(name, size, spike_totals[name] / n)
        for name, size in zip(names, model.layer_sizes, strict=True)
    ]
    return Evaluation(
        samples=len(split),
        accuracy=int(correct_total) / n,
        spikes_per_sample=sum(layer.spikes_per_sample for layer in layers),
        layers=layers,
    )
