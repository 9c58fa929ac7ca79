"""A dataset split and a recipe's encoding as the inputs of a deployed network, reproducibly.

Every backend (the reference simulator, Lava, the fixed-point torch model) must see the same spikes.
:func:`network_inputs` draws them the way the training evaluation does
(:mod:`toolchain.data.batches`, the one evaluation protocol): batches of :data:`EVAL_BATCH`
samples in order, each encoded with one ``torch.Generator`` seeded with ``seed`` (0) for the whole
split, so a rate-coded test set gets the same spikes here as in ``metrics.json``'s evaluation.
Graded networks (``direct`` encoding) take the analog samples themselves, ``[B, *input_shape]`` in
[0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toolchain import ir
from toolchain.config import EncodingConfig
from toolchain.data.base import ArraySplit, as_float
from toolchain.data.batches import EVAL_BATCH, evaluation_inputs
from toolchain.errors import SimulationError


class InputRangeError(SimulationError):
    """Graded samples outside [0, 1]: ``low`` and ``high`` are the span measured."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        super().__init__(
            f"samples span [{low:g}, {high:g}]: graded 8-bit input (round(x * 255)) needs [0, 1]"
        )


@dataclass(frozen=True)
class NetworkInputs:
    """``inputs`` as :func:`toolchain.sim.reference.simulate` takes them, ``labels`` ``[B]``, and the
    ``encoding`` they were made with."""

    inputs: np.ndarray
    labels: np.ndarray
    encoding: EncodingConfig

    @property
    def samples(self) -> int:
        return len(self.labels)

    def torch_input(self, network: ir.Network) -> torch.Tensor:
        """The same inputs as a time-major float64 ``[T, B, *input_shape]`` for a torch model."""
        x = torch.from_numpy(np.asarray(self.inputs, dtype=np.float64))
        if network.input_encoding == "graded":
            return x.unsqueeze(0).expand(network.time_steps, *x.shape)
        return x


def first_samples(network: ir.Network, x: Any, samples: int) -> Any:
    """The first ``samples`` samples of simulator inputs ``x`` (the sample axis is 0 for graded
    input ``[B, ...]``, 1 for spikes ``[T, B, ...]``)."""
    return x[:samples] if network.input_encoding == "graded" or x.ndim < 2 else x[:, :samples]


def encoding_of(network: ir.Network, source: str = "network") -> EncodingConfig:
    """The ``[encoding]`` recorded in ``network.metadata`` (``{"scheme": ..., "time_steps": ...}``).

    Raises :class:`SimulationError` naming ``source`` (the file) when it is missing or disagrees
    with the network (time steps, graded vs spike input).
    """
    meta: Any = network.metadata.get("encoding")
    if not isinstance(meta, dict) or "scheme" not in meta:
        raise SimulationError(
            f"{source}: metadata has no 'encoding' {{'scheme': ..., 'time_steps': ...}}; "
            "cannot tell how to encode the dataset"
        )
    scheme = str(meta["scheme"])
    steps = int(meta.get("time_steps", network.time_steps))
    if steps != network.time_steps:
        raise SimulationError(
            f"{source}: metadata encoding.time_steps = {steps}, the network runs {network.time_steps} steps"
        )
    graded = scheme == "direct"
    if graded != (network.input_encoding == "graded"):
        raise SimulationError(
            f"{source}: encoding {scheme!r} does not fit the network's {network.input_encoding!r} input"
        )
    try:
        return EncodingConfig(scheme=scheme, time_steps=steps)
    except Exception as exc:  # the schema's own validation
        raise SimulationError(f"{source}: metadata encoding {meta!r} is invalid ({exc})") from None


def network_inputs(
    network: ir.Network,
    split: ArraySplit,
    encoding: EncodingConfig | None = None,
    *,
    samples: int | None = None,
    seed: int = 0,
) -> NetworkInputs:
    """The first ``samples`` (all by default) of ``split`` as ``network``'s inputs (see the module docstring).

    Raises :class:`SimulationError` when the samples do not fit the network's input, and its
    :class:`InputRangeError` when they lie outside [0, 1] for graded input.
    """
    encoding = encoding or encoding_of(network)
    count = len(split) if samples is None else min(samples, len(split))
    if count < 1:
        raise SimulationError("no samples to simulate")
    part = split.subset(slice(0, count))
    labels = np.asarray(part.y, dtype=np.int64)
    shape = network.input_shape
    if network.input_encoding == "graded":
        x = as_float(np.asarray(part.x))
        if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
            raise SimulationError(f"samples of shape {x.shape[1:]} do not fit the network's input {shape}")
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise InputRangeError(float(x.min()), float(x.max()))
        return NetworkInputs(x.reshape(count, *shape), labels, encoding)
    # whole evaluation batches are drawn, then cut: the first samples get the spikes the evaluation gives them
    drawn = split.subset(slice(0, min(len(split), -(-count // EVAL_BATCH) * EVAL_BATCH)))
    chunks = [x.numpy().astype(np.uint8) for x, _ in evaluation_inputs(drawn, encoding, seed)]
    spikes = np.concatenate(chunks, axis=1)[:, :count]
    if int(np.prod(spikes.shape[2:])) != int(np.prod(shape)):
        raise SimulationError(f"encoded samples {spikes.shape[2:]} do not fit the network's input {shape}")
    return NetworkInputs(spikes.reshape(spikes.shape[0], count, *shape), labels, encoding)


__all__ = ["EVAL_BATCH", "InputRangeError", "NetworkInputs", "encoding_of", "first_samples", "network_inputs"]
