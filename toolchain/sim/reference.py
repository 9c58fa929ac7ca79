"""The reference simulator: a deployment graph (:class:`toolchain.ir.Network`) run bit-accurately.

:func:`simulate` executes the integer semantics of :mod:`toolchain.ir` (Lava's ``Dense``/``Conv``
-> ``LIF`` under ``Loihi2SimCfg(select_tag="fixed_pt")``) on a batch of samples at once, with torch
tensors on the CPU. Every neuron step is :func:`toolchain.snn.dynamics.cuba_step_fixed_` (the
same fixed-point step in float64, in place, while every ``|a_in| < 2^18``) or else
:func:`toolchain.snn.dynamics.cuba_subthreshold_fixed` followed by
:func:`toolchain.snn.dynamics.spike_and_reset_fixed`; nothing here re-states the equations. What
this module adds is the schedule and the synapses:

- layers run one after the other over the whole time window (the network has no recurrence, so the
  ``T`` synaptic sums of a layer are one matrix product or convolution of ``[T * B, ...]``);
- weights are applied as torch ``conv`` or, for dense layers,
  :func:`toolchain.snn.event_synapses.dense_synapse` (event-driven where the input is mostly zeros,
  a matrix product otherwise) on integer-valued float tensors: float32 when
  the largest possible sum of a neuron (``max |input| * sum_j |w_ij|``) is below ``2**24``, where
  every partial sum is an exactly representable integer, float64 (exact below ``2**53``) otherwise;
- 2-D convolutions run in channels-last memory order (faster in oneDNN), their neurons too;
- a convolution that is the fold of a sum pool into a smaller convolution (what netx files hold
  for pooling, :func:`toolchain.formats.lower.factor_pooling` finds it) runs as that pool and
  that convolution: the same integer sums with a fraction of the multiply-adds; its events and
  synaptic operations are counted on the folded layer, as deployed;
- sum pooling is :func:`toolchain.snn.sum_pool.window_sums`;
- the weight exponent is an arithmetic shift (a floor) of the integer sum; ``avg`` pooling divides
  the next layer's sum by the window size with an exact floor division (the IR's
  ``shift(w_int @ s_prev, weight_exp)`` with a rational ``s_prev``), ``sum`` pooling is an integer sum;
- graded input is the 8-bit payload ``round(x * 255)`` of :func:`toolchain.snn.loihi.graded_input`;
  the first synaptic layer's ``weight_exp = -8`` brings it back to the weights' scale;
- every synapse delays by ``network.synapse_delay_steps``.

It records what :class:`toolchain.activity.LayerCounts` defines, per synaptic layer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.errors import SimulationError
from toolchain.formats.lower import factor_pooling
from toolchain.heap import keep_freed_memory
from toolchain.loihi_numbers import INPUT_PAYLOAD_MAX, INPUT_SHIFT, current_may_wrap
from toolchain.snn.compiled import parallel_rows
from toolchain.snn.dynamics import (
    FAST_INPUT_LIMIT,
    CubaState,
    compiled_cuba_fixed_steps,
    cuba_step_fixed_,
    cuba_subthreshold_fixed,
    effective_bias,
    fast_bias,
    fast_input,
    spike_and_reset_fixed,
)
from toolchain.snn.event_synapses import compiled_kernels, dense_synapse
from toolchain.snn.loihi import graded_input
from toolchain.snn.sum_pool import window_sums

#: float32 holds every integer below this exactly (and so every partial sum below it)
FLOAT32_EXACT = 2**24
#: largest number of elements of one layer's ``[T, B, ...]`` tensor a chunk of the batch may hold:
#: 8 MiB in float32, 16 MiB in float64, below glibc's largest dynamic mmap threshold (32 MiB, where
#: :func:`~toolchain.heap.keep_freed_memory` puts it), so a chunk's freed tensors are reused from
#: the heap by the next chunk's instead of being mapped anew and faulted in page by page
#: (``benchmarks/sim_speed.py``)
CHUNK_ELEMENTS = 2**21
#: neurons (samples x neurons of a layer) stepped together by the float64 path: one step's
#: tensors (8 bytes each) then stay in the core's cache
NEURON_SLICE_ELEMENTS = 2**14


@dataclass(frozen=True)
class SimulationTiming:
    """Where a simulation's time went: ``startup_s`` (preparing weights; Lava: compile and start its
    processes), ``run_s`` (stepping the network), for ``samples`` inferences of ``time_steps``."""

    startup_s: float
    run_s: float
    samples: int
    time_steps: int

    @property
    def sample_steps(self) -> int:
        return self.samples * self.time_steps

    @property
    def sample_steps_per_second(self) -> float:
        """Simulated sample-steps per second of stepping (start-up excluded)."""
        return self.sample_steps / self.run_s if self.run_s > 0 else math.inf

    @property
    def per_step_s(self) -> float:
        return self.run_s / self.sample_steps if self.sample_steps else 0.0

    @property
    def per_sample_s(self) -> float:
        """Wall time per sample, start-up included."""
        return (self.startup_s + self.run_s) / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "startup_s": self.startup_s,
            "run_s": self.run_s,
            "per_step_s": self.per_step_s,
            "per_sample_s": self.per_sample_s,
            "sample_steps_per_second": self.sample_steps_per_second,
        }


@dataclass(frozen=True)
class SimulationResult:
    """What a backend returns for ``B`` samples.

    ``counts`` ``[B, classes]``: the output layer's spikes summed over the time steps;
    ``potentials`` ``[T, B, classes]`` (``int64``, Lava's units): the output layer's voltage after
    each step, when the backend records it (always for a ``potential`` readout);
    ``scores`` ``[B, classes]``: what the network's ``readout`` ranks (the counts, or the final
    potentials); ``predictions`` ``[B]``: their argmax (first maximum); ``activity``: per-layer counts;
    ``spikes``: every synaptic layer's spikes ``[T, B, *shape]`` (``uint8``) by layer name when
    recorded, else ``None`` (a backend may record only some layers).
    """

    counts: np.ndarray
    predictions: np.ndarray
    activity: Activity
    spikes: dict[str, np.ndarray] | None = None
    timing: SimulationTiming | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    potentials: np.ndarray | None = None
    readout: str = "spike_count"

    @property
    def samples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def scores(self) -> np.ndarray:
        """The readout's scores ``[B, classes]``: spike counts, or the voltage after the last step."""
        return scores(self.readout, self.counts, self.potentials)

    def accuracy(self, labels: np.ndarray | Sequence[int]) -> float:
        """The fraction of predictions equal to ``labels``."""
        labels = np.asarray(labels)
        if labels.shape != self.predictions.shape:
            raise SimulationError(f"{labels.shape[0]} labels for {self.samples} simulated samples")
        return float((self.predictions == labels).mean()) if self.samples else 0.0

    @classmethod
    def from_batches(
        cls,
        counts: Sequence[np.ndarray],
        classes: int,
        activity: Activity,
        spikes: dict[str, list[np.ndarray]] | None = None,
        timing: SimulationTiming | None = None,
        potentials: Sequence[np.ndarray] | None = None,
        readout_kind: str = "spike_count",
    ) -> SimulationResult:
        """The result of a run in batches: ``counts`` ``[b, classes]``, each layer's ``spikes`` and the
        output ``potentials`` ``[T, b, ...]`` batch by batch, joined along the samples (one part is
        taken as it is), with their :func:`readout`."""
        joined = np.concatenate(counts) if len(counts) else np.zeros((0, classes), np.int64)
        joined_v = None
        if potentials is not None and len(potentials):
            joined_v = np.concatenate(potentials, axis=1)
        return cls(
            counts=joined,
            predictions=readout(scores(readout_kind, joined, joined_v)),
            potentials=joined_v,
            readout=readout_kind,
            activity=activity,
            spikes=None if spikes is None else {name: _join(parts) for name, parts in spikes.items()},
            timing=timing,
        )


def _join(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Batches ``[T, b, ...]`` joined along the samples; a single one as it is (no copy)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


#: the most bytes a recording of every layer's spikes (``record_spikes=True``, one byte each) may take
SPIKE_RECORD_LIMIT_BYTES = 2**31


def check_spike_record(network: ir.Network, samples: int, fewer: str, where: str = "") -> None:
    """Refuse recording every layer's spikes of ``samples`` samples when it would take more than
    :data:`SPIKE_RECORD_LIMIT_BYTES`; the error (prefixed with ``where``) says how many fit and how to
    ask for fewer (``fewer``, e.g. ``"--samples"``)."""
    neurons = sum(math.prod(layer.out_shape) for layer in network.synaptic_layers())
    if network.input_layer is not None:
        neurons += math.prod(network.input_shape)
    per_sample = network.time_steps * neurons
    if per_sample * samples > SPIKE_RECORD_LIMIT_BYTES:
        most = max(1, SPIKE_RECORD_LIMIT_BYTES // per_sample)
        raise SimulationError(
            f"{where}recording every layer's spikes of {samples} samples takes "
            f"{per_sample * samples / 1e9:.1f} GB: simulate at most {most} samples at a time ({fewer})"
        )


def readout(counts: np.ndarray) -> np.ndarray:
    """The predicted class of each row of scores ``[B, classes]`` (spike counts or final
    potentials): the first maximum."""
    return np.argmax(counts, axis=1)


def scores(readout_kind: str, counts: np.ndarray, potentials: np.ndarray | None) -> np.ndarray:
    """What a network's readout ranks: the spike ``counts`` ``[B, classes]`` (``spike_count``), or the
    output voltage after the last step, ``potentials[-1]`` flattened to ``[B, classes]`` (``potential``)."""
    if readout_kind == "spike_count":
        return counts
    if potentials is None:
        raise SimulationError("a potential readout needs the output layer's potentials, none were recorded")
    if potentials.shape[0] == 0:
        return np.zeros_like(counts)
    return potentials[-1].reshape(potentials.shape[1], -1)


# ----------------------------------------------------------------------------------------------
# preparation: one plan per synaptic layer


@dataclass
class _Synapse:
    """A synaptic layer ready to run: weights as a float tensor, neuron registers as tensors."""

    layer: ir.SynapticLayer  # as deployed: its shapes, neurons and synapses are what is counted
    weight: torch.Tensor  # the weight of ``applied``
    fanout: torch.Tensor  # [prod(in_shape)] float64: non-zero weights each input reaches
    synapses: int
    fan_in: int
    fan_out: int
    denominator: int  # product of the avg-pool windows before this layer (1: none)
    bias_mant: torch.Tensor | int
    binary_input: bool  # the input is 0/1 spikes (not graded payloads, not pooled sums)
    applied: ir.SynapticLayer  # the layer whose weight runs: ``layer``, or the conv after a pool
    pool_kernel: int = 1  # the sum pool that runs before ``applied`` (1: none)

    @property
    def neurons(self) -> int:
        return math.prod(self.layer.out_shape)

    def synaptic_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer sum ``w_int @ x`` for ``x`` ``[N, *in_shape]`` (integer valued), in
        the weights' float dtype."""
        x = x.to(self.weight.dtype)
        layer = self.applied
        if isinstance(layer, ir.Dense):
            return dense_synapse(x.reshape(x.shape[0], -1), self.weight)
        dims = self.weight.dim() - 2
        x = _conv_layout(x)
        if self.pool_kernel > 1:
            x = window_sums(x, self.pool_kernel, dims)
        conv = functional.conv2d if dims == 2 else functional.conv1d
        return conv(x, self.weight, stride=layer.stride, padding=layer.padding, groups=layer.groups)

    def synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        """``a_in = shift(w_int @ x)`` for ``x`` ``[N, *in_shape]``: integer values in the sum's
        float dtype where that is exact (no avg-pool denominator and ``weight_exp <= 0``: a
        power-of-two scaling and a floor, which round nothing), else ``int64``."""
        total = self.synaptic_sum(x)
        exp = self.layer.weight_exp
        if self.denominator == 1 and exp <= 0:
            return total if exp == 0 else total.mul_(2.0**exp).floor_()
        return self.shift(total.to(torch.int64))

    def events_and_synops(self, x: torch.Tensor, per_input: torch.Tensor | None = None) -> tuple[int, float]:
        """Input events (non-zero values) of ``x`` ``[N, *in_shape]`` and synaptic operations: each
        event times the non-zero weights it reaches. The events per input position are summed over
        ``N`` first (0/1 spikes in float32, exact for ``N < 2^24``; else booleans in int64), then
        weighted by the fan-out in float64; ``per_input`` (``[*in_shape]``) gives those sums when
        they are known (the previous layer's spike counts)."""
        if per_input is None:
            events = x if self.binary_input and x.shape[0] < FLOAT32_EXACT else x != 0
            per_input = events.sum(dim=0)
        per_input = per_input.reshape(-1).to(torch.float64)
        return int(per_input.sum()), float((per_input * self.fanout).sum())

    def shift(self, total: torch.Tensor) -> torch.Tensor:
        """``floor(total * 2**weight_exp / denominator)`` on ``int64``: the synaptic input ``a_in``."""
        exp = self.layer.weight_exp
        if self.denominator == 1 and exp == 0:
            return total
        if self.denominator == 1:
            return total << exp if exp >= 0 else total >> -exp
        numerator = total << max(exp, 0)
        return torch.div(numerator, self.denominator << max(-exp, 0), rounding_mode="floor")


def _prepare(network: ir.Network) -> list[ir.Pool | ir.Flatten | _Synapse]:
    """The network's layers with each synaptic layer turned into a :class:`_Synapse`."""
    steps: list[ir.Pool | ir.Flatten | _Synapse] = []
    max_input = INPUT_PAYLOAD_MAX if network.graded_payloads else 1
    denominator = 1
    for layer in network.layers:
        if isinstance(layer, ir.Flatten):
            steps.append(layer)
            continue
        if isinstance(layer, ir.Pool):
            window = layer.kernel_size ** (len(layer.in_shape) - 1)
            max_input *= window
            if layer.mode == "avg":
                denominator *= window
            steps.append(layer)
            continue
        steps.append(_synapse(layer, max_input, denominator, binary=max_input == 1))
        max_input, denominator = 1, 1
    return steps


def _synapse(layer: ir.SynapticLayer, max_input: int, denominator: int, *, binary: bool) -> _Synapse:
    weight_int = torch.from_numpy(np.ascontiguousarray(layer.weight, dtype=np.int64))
    row_abs = weight_int.abs().reshape(weight_int.shape[0], -1).sum(dim=1)
    bound = int(row_abs.max()) * max_input
    dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
    mask = (weight_int != 0).to(torch.float64)
    if isinstance(layer, ir.Dense):
        fanout = mask.sum(dim=0)
        fan_in = int(mask.sum(dim=1).max())
    else:
        fanout, fan_in = _conv_reach(layer, mask)
    neurons = layer.neurons
    bias = 0 if neurons.bias_mant is None else torch.from_numpy(neurons.bias_mant.astype(np.int64))
    fanout = fanout.reshape(-1)
    # a folded pool: the pool's sums times the smaller weight, whose partial sums stay within the
    # folded layer's bound above (each pooled value is a sum of k^d inputs, each weight one of k^d)
    factored = factor_pooling(layer) if isinstance(layer, ir.Conv) else None
    pool_kernel, applied = factored if factored is not None else (1, layer)
    if factored is not None:
        weight_int = torch.from_numpy(np.ascontiguousarray(applied.weight, dtype=np.int64))
    # per-row sums of the synops product are at most in_features * max fan-out: float32 is exact below 2^24
    return _Synapse(
        layer=layer,
        applied=applied,
        pool_kernel=pool_kernel,
        weight=_conv_layout(weight_int.to(dtype)),
        fanout=fanout.to(torch.float64),
        synapses=int(fanout.sum(dtype=torch.float64)),
        fan_in=fan_in,
        fan_out=int(fanout.max()),
        denominator=denominator,
        bias_mant=bias,
        binary_input=binary,
    )


def _conv_layout(x: torch.Tensor) -> torch.Tensor:
    """A 2-D convolution's operand (``[N, C, H, W]``) in channels-last memory order, where oneDNN's
    convolution is about twice as fast on one core (the same values: the sums are exact)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _conv_reach(layer: ir.Conv, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per input position, the non-zero weights that reach an output (borders and stride included),
    and the most non-zero weights into one output neuron."""
    two_d = mask.dim() == 4
    conv = functional.conv2d if two_d else functional.conv1d
    transpose = functional.conv_transpose2d if two_d else functional.conv_transpose1d
    out_shape = layer.out_shape
    extra = tuple(
        size - ((out - 1) * s - 2 * p + k)
        for size, out, s, p, k in zip(
            layer.in_shape[1:], out_shape[1:], layer.stride, layer.padding, layer.kernel_size, strict=True
        )
    )
    ones_out = torch.ones(1, *out_shape, dtype=torch.float64)
    fanout = transpose(
        ones_out, mask, stride=layer.stride, padding=layer.padding, output_padding=extra, groups=layer.groups
    )[0]
    ones_in = torch.ones(1, *layer.in_shape, dtype=torch.float64)
    fan_in = conv(ones_in, mask, stride=layer.stride, padding=layer.padding, groups=layer.groups)
    return fanout, int(fan_in.max())


# ----------------------------------------------------------------------------------------------
# inputs


def check_inputs(network: ir.Network, inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``inputs`` as the simulator takes them, validated; raises :class:`SimulationError`.

    Graded networks take float ``[B, *input_shape]`` in [0, 1] and return the ``int64`` payloads
    ``round(x * 255)``; spiking networks take 0/1 ``[T, B, *input_shape]`` and return them as
    ``uint8``. A sample may also come flat (or flat networks take shaped samples) when the number
    of elements matches.
    """
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    lead = 1 if network.input_encoding == "graded" else 2
    expected = (
        "[B, *input_shape] in [0, 1]" if lead == 1 else f"0/1 [T={network.time_steps}, B, *input_shape]"
    )
    got = tuple(x.shape[lead:])
    shape = network.input_shape
    if x.dim() < lead + 1 or (
        got != shape and not ((len(got) == 1 or len(shape) == 1) and math.prod(got) == math.prod(shape))
    ):
        raise SimulationError(
            f"network {network.name!r}: {'graded' if lead == 1 else 'spike'} inputs must be {expected} with "
            f"input_shape {shape}, got shape {tuple(x.shape)}"
        )
    x = x.reshape(*x.shape[:lead], *shape)
    if lead == 2 and x.shape[0] != network.time_steps:
        raise SimulationError(
            f"network {network.name!r}: spike inputs have {x.shape[0]} time steps, "
            f"the network runs {network.time_steps}"
        )
    if lead == 1:
        if not torch.is_floating_point(x):
            raise SimulationError(
                f"network {network.name!r}: graded inputs must be floats in [0, 1], got {x.dtype}"
            )
        x = x.to(torch.float64)
        if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
            raise SimulationError(
                f"network {network.name!r}: graded inputs must lie in [0, 1], "
                f"got values in [{float(x.min()):g}, {float(x.max()):g}]"
            )
        return torch.round(graded_input(x) * 2**INPUT_SHIFT).to(torch.int64)
    if x.numel() and not _zeros_and_ones(x):
        raise SimulationError(f"network {network.name!r}: spike inputs must be 0 or 1")
    return x.to(torch.uint8)


def _zeros_and_ones(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` (not empty) is 0 or 1: integers by their range (no temporary
    the size of ``x``), other dtypes value by value."""
    if x.dtype == torch.bool:
        return True
    if not (torch.is_floating_point(x) or torch.is_complex(x)):
        low, high = torch.aminmax(x)
        return int(low) >= 0 and int(high) <= 1
    return bool(((x == 0) | (x == 1)).all())


# ----------------------------------------------------------------------------------------------
# the simulation


class _ReusedBuffer:
    """One float32 buffer that every chunk's tensor of one kind reuses (a synaptic layer's spikes):
    taken afresh each chunk, its memory would be paged in anew by the compiled neuron loop, one
    step's row at a time, at microseconds a page on a virtual machine (``benchmarks/sim_speed.py``
    reports the minor page faults per sample-step)."""

    def __init__(self) -> None:
        self._flat = torch.empty(0, dtype=torch.float32)

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous ``float32`` view of ``shape`` on the buffer (grown where it is smaller; its
        values are whatever the last use left)."""
        size = math.prod(shape)
        if self._flat.numel() < size:
            self._flat = torch.empty(size, dtype=torch.float32)
        return self._flat[:size].view(shape)


@dataclass
class _Totals:
    spikes: int = 0
    synops: float = 0.0
    active: int = 0
    events: int = 0


def simulate(
    network: ir.Network,
    inputs: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    record_spikes: bool = False,
) -> SimulationResult:
    """Run ``network`` on ``inputs`` bit-accurately; see the module docstring for the semantics.

    ``inputs``: for ``input_encoding == "graded"`` a float array ``[B, *input_shape]`` in [0, 1]
    (the same analog sample at every step); for ``"spikes"`` a 0/1 array ``[T, B, *input_shape]``.
    ``batch_size`` samples are stepped together (fewer when a layer's ``[T, B, ...]`` tensors would
    exceed :data:`CHUNK_ELEMENTS`). ``record_spikes`` keeps every synaptic layer's spikes.
    Raises glibc's malloc thresholds once per process (:func:`toolchain.heap.keep_freed_memory`),
    so that a chunk reuses the memory the chunks before it freed instead of paging in more.
    """
    if batch_size < 1:
        raise SimulationError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    keep_freed_memory()
    x_all = check_inputs(network, inputs)
    plan = _prepare(network)
    synapses = [step for step in plan if isinstance(step, _Synapse)]
    steps = network.time_steps
    graded = network.input_encoding == "graded"
    samples = int(x_all.shape[0] if graded else x_all.shape[1])
    widest = max(math.prod(layer.out_shape) for layer in network.layers)
    widest = max(widest, math.prod(network.input_shape))
    chunk = max(1, min(batch_size, CHUNK_ELEMENTS // (steps * widest)))
    # the first call in a process compiles or loads the kernels: start-up time, not stepping
    compiled_cuba_fixed_steps()
    if any(isinstance(layer, ir.Dense) for layer in network.layers):
        compiled_kernels()
    startup_s = time.perf_counter() - start

    totals = [_Totals() for _ in synapses]
    counts: list[np.ndarray] = []
    potentials: list[np.ndarray] = []
    input_layer = network.input_layer
    input_totals = _Totals()
    # every layer's spikes ``[T, B, *shape]``, written chunk by chunk (one pass: the cast to
    # bytes and, after a 2-D convolution, the return from channels-last order)
    shapes = {s.layer.name: s.layer.out_shape for s in synapses} if record_spikes else {}
    if record_spikes and input_layer is not None:
        shapes = {input_layer.name: network.input_shape, **shapes}
    recorded = {
        name: torch.empty((steps, samples, *shape), dtype=torch.uint8) for name, shape in shapes.items()
    }
    spike_buffers = [_ReusedBuffer() for _ in synapses]
    with torch.no_grad():
        for first in range(0, samples, chunk):
            x = x_all[first : first + chunk] if graded else x_all[:, first : first + chunk]
            if input_layer is not None:  # the input neurons' spikes are the network's input
                x = _input_neurons(input_layer, x, steps, graded, input_totals)
                if record_spikes:
                    recorded[input_layer.name][:, first : first + chunk] = x
            spikes, voltages = _run_batch(network, plan, x, network.graded_payloads, totals, spike_buffers)
            potentials.append(voltages.to(torch.int64).reshape(steps, voltages.shape[1], -1).numpy())
            counts.append(
                spikes[-1].reshape(steps, spikes[-1].shape[1], -1).sum(dim=0).to(torch.int64).numpy()
            )
            if record_spikes:
                for synapse, layer_spikes in zip(synapses, spikes, strict=True):
                    recorded[synapse.layer.name][:, first : first + chunk] = layer_spikes
    run_s = time.perf_counter() - start - startup_s

    return SimulationResult.from_batches(
        counts,
        network.num_classes,
        _activity(network, synapses, totals, samples, "reference", input_totals),
        {name: [spikes.numpy()] for name, spikes in recorded.items()} if record_spikes else None,
        SimulationTiming(startup_s, run_s, samples, steps),
        potentials,
        network.readout,
    )


def _run_batch(
    network: ir.Network,
    plan: list[ir.Pool | ir.Flatten | _Synapse],
    x: torch.Tensor,
    graded: bool,
    totals: list[_Totals],
    spike_buffers: Sequence[_ReusedBuffer],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every synaptic layer's spikes ``[T, b, *shape]`` (0/1 ``float32``, in that layer's
    ``spike_buffers`` entry: valid until the next chunk) for one chunk of samples, and the output
    layer's voltage after each step ``[T, b, *shape]`` (``float64`` integers).

    Values between layers stay in ``float32`` (0/1 spikes, their pooled sums, 8-bit payloads: all
    exact) so that the next matrix product needs no conversion.
    """
    steps = network.time_steps
    # ``h``: the layer input; ``[b, ...]`` when constant over time (graded input), else ``[T, b, ...]``
    h, constant = x.to(torch.float32), graded
    # the events of ``h`` per position summed over time and samples, when known (spikes of a layer)
    per_input: torch.Tensor | None = None
    out: list[torch.Tensor] = []
    index = 0
    last = sum(isinstance(step, _Synapse) for step in plan) - 1
    voltages: torch.Tensor | None = None
    for step in plan:
        if isinstance(step, ir.Flatten):
            h = h.reshape(*h.shape[: 1 if constant else 2], -1)
            per_input = None if per_input is None else per_input.reshape(-1)
            continue
        if isinstance(step, ir.Pool):
            h, per_input = _sum_pool(h, step.kernel_size, 1 if constant else 2), None
            continue
        lead = h.shape[: 1 if constant else 2]
        flat_in = h.reshape(-1, *h.shape[len(lead) :])
        repeat = steps if constant else 1
        events, synops = step.events_and_synops(flat_in, per_input)
        totals[index].events += events * repeat
        totals[index].synops += synops * repeat
        a_in = step.synaptic_input(flat_in)
        a_in = a_in.reshape(*lead, *a_in.shape[1:])
        spikes, active, per_neuron, voltages = _neurons(
            step,
            a_in,
            steps,
            network.synapse_delay_steps,
            constant,
            record_v=index == last,
            out=spike_buffers[index],
        )
        per_input = per_neuron.sum(dim=0)
        totals[index].spikes += int(per_input.sum())
        totals[index].active += active
        index += 1
        out.append(spikes)
        h, constant = spikes, False
    assert voltages is not None
    return out, voltages


def _input_neurons(
    layer: ir.InputNeurons, x: torch.Tensor, steps: int, graded: bool, totals: _Totals
) -> torch.Tensor:
    """The spikes ``[T, b, *input_shape]`` (0/1 ``float32``) of the network's input neurons for a
    chunk of checked inputs ``x`` (graded payloads ``[b, ...]`` or spikes ``[T, b, ...]``): their
    current is :meth:`~toolchain.ir.InputNeurons.current` of the input, with no delay. Adds their
    spikes, active updates and non-zero input currents (``events``) to ``totals``."""
    a_in = torch.from_numpy(layer.current(x.numpy(), graded))
    spikes, active, per_neuron, _ = _neurons_ordered(layer.neurons, 0, a_in, steps, 0, graded)
    totals.spikes += int(per_neuron.sum())
    totals.active += active
    totals.events += int((a_in != 0).sum()) * (steps if graded else 1)
    return spikes


def _sum_pool(h: torch.Tensor, k: int, lead: int) -> torch.Tensor:
    """Sums over non-overlapping windows of ``k`` (remainder dropped) of ``h`` ``[*lead, C, *spatial]``
    (:func:`~toolchain.snn.sum_pool.window_sums`, which keeps channels-last memory order; exact:
    0/1 spikes or small integers in float32)."""
    shape = h.shape
    pooled = window_sums(h.reshape(-1, *shape[lead:]), k, len(shape) - lead - 1)
    return pooled.reshape(*shape[:lead], *pooled.shape[1:])


def _neurons(
    step: _Synapse,
    a_in: torch.Tensor,
    steps: int,
    delay: int,
    constant: bool,
    *,
    record_v: bool = False,
    out: _ReusedBuffer | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]:
    """Step the layer's CUBA neurons for ``steps``; their spikes ``[T, b, *shape]`` and active updates.

    ``a_in`` is the synaptic input of every step ``[T, b, *shape]`` (or ``[b, *shape]``, the same
    at every step, when ``constant``), integer valued (float or ``int64``), delivered ``delay``
    steps later: zero input before. While every ``|a_in|`` is below
    :data:`~toolchain.snn.dynamics.FAST_INPUT_LIMIT` the neurons run
    :func:`~toolchain.snn.dynamics.cuba_step_fixed_` (float64, in place, the same values), in
    slices of at most :data:`NEURON_SLICE_ELEMENTS` so that one step's tensors stay in the cache;
    otherwise the ``int64`` functions. A convolution's output in channels-last order is stepped in
    that order (a permuted view, the bias permuted alike) and its spikes come back in it. Also
    returns each neuron's spike count ``[b, *shape]`` (float64) and, with ``record_v``, the voltage
    after each step ``[T, b, *shape]`` (float64 integers; else ``None``). The spikes are written to
    ``out`` where given (a view of it: valid until its next use), else to a new tensor.
    """
    lead = 1 if constant else 2
    bias_mant = step.bias_mant
    channels_last = (
        a_in.dim() == lead + 3 and not a_in.is_contiguous() and a_in.movedim(lead, -1).is_contiguous()
    )
    if channels_last:
        a_in = a_in.movedim(lead, -1)
        if isinstance(bias_mant, torch.Tensor):
            bias_mant = bias_mant.movedim(0, -1)
    spikes, active, counts, voltages = _neurons_ordered(
        step.layer.neurons, bias_mant, a_in, steps, delay, constant, record_v, out
    )
    if channels_last:
        voltages = None if voltages is None else voltages.movedim(-1, 2)
        return spikes.movedim(-1, 2), active, counts.movedim(-1, 1), voltages
    return spikes, active, counts, voltages


def _neurons_ordered(
    neurons: ir.CubaNeurons,
    bias_mant: torch.Tensor | int,
    a_in: torch.Tensor,
    steps: int,
    delay: int,
    constant: bool,
    record_v: bool = False,
    out: _ReusedBuffer | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]:
    """:func:`_neurons` on ``a_in`` whose last dimensions are the neurons in memory order: the
    compiled :func:`~toolchain.snn.dynamics.cuba_fixed_steps` where numba is installed, else the
    tensor functions (float64 in place while the input allows, else ``int64``)."""
    shape = a_in.shape if constant else a_in.shape[1:]
    spikes = torch.empty((steps, *shape), dtype=torch.float32) if out is None else out.take((steps, *shape))
    voltages = torch.empty((steps, *shape), dtype=torch.float64) if record_v else None
    kernel = compiled_cuba_fixed_steps()
    if kernel is not None and spikes.numel():
        counts = torch.zeros(shape, dtype=torch.float64)
        per_sample = math.prod(shape[1:])  # the neurons of one sample, in memory order
        bias = (
            np.zeros(per_sample, dtype=np.int64)
            if neurons.bias_mant is None
            else torch.broadcast_to(effective_bias(bias_mant, neurons.bias_exp), shape[1:])
            .contiguous()
            .reshape(-1)
            .numpy()
        )
        arrays = (
            a_in.contiguous().reshape(1 if constant else a_in.shape[0], -1).numpy(),
            constant, delay, neurons.du_lava, neurons.v_decay, neurons.vth_mant, bias,
            spikes.view(steps, -1).numpy(), counts.view(-1).numpy(),
            np.zeros((1, 1)) if voltages is None else voltages.view(steps, -1).numpy(),
            voltages is not None,
        )  # fmt: skip
        active_by_range: dict[int, int] = {}

        def step_range(start: int, stop: int) -> None:
            active_by_range[start] = int(kernel(*arrays, start, stop))

        parallel_rows(counts.numel(), step_range)  # disjoint ranges of neurons, claimed by the threads
        return spikes, sum(active_by_range.values()), counts, voltages
    low, high = torch.aminmax(a_in) if a_in.numel() else (torch.zeros(()), torch.zeros(()))
    max_abs = int(max(-float(low), float(high)))
    if max_abs >= FAST_INPUT_LIMIT:
        active = _neurons_int64(
            neurons, bias_mant, a_in.to(torch.int64), steps, delay, constant, spikes, voltages
        )
        return spikes, active, spikes.sum(dim=0, dtype=torch.float64), voltages
    bias = None if neurons.bias_mant is None else fast_bias(bias_mant, neurons.bias_exp)
    wrap = current_may_wrap(max_abs, neurons.du_lava)
    batch = shape[0]
    width = max(1, min(batch, NEURON_SLICE_ELEMENTS // max(1, math.prod(shape[1:]))))
    active = 0
    counts = torch.zeros(shape, dtype=torch.float64)
    for first in range(0, batch, width):
        part = slice(first, first + width)
        x = fast_input(a_in[part]) if constant else a_in[:, part]
        active += _neurons_fast(
            neurons, x, bias, steps, delay, constant, wrap, spikes[:, part], counts[part],
            None if voltages is None else voltages[:, part],
        )  # fmt: skip
    return spikes, active, counts, voltages


def _neurons_fast(
    neurons: ir.CubaNeurons,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    steps: int,
    delay: int,
    constant: bool,
    wrap: bool,
    spikes: torch.Tensor,
    counts: torch.Tensor,
    voltages: torch.Tensor | None = None,
) -> int:
    """:func:`_neurons` on one slice of the batch with :func:`~toolchain.snn.dynamics.cuba_step_fixed_`;
    writes the slice's ``spikes`` and each neuron's spike ``counts``, returns its active updates.
    ``x``: the slice's :func:`~toolchain.snn.dynamics.fast_input` when ``constant``, else its
    ``a_in`` ``[T, w, ...]``, converted one step at a time (while that step's tensors are in the
    cache), as the spikes are.

    An update is active iff ``u*u + v*v + x*x`` is non-zero before it (integers: a square is 0 or
    at least 1, the sum below 2^50), so ``min(that, 1)`` summed over the steps counts them.
    """
    shape = x.shape if constant else x.shape[1:]
    u = torch.zeros(shape, dtype=torch.float64)
    v = torch.zeros_like(u)
    zero = torch.zeros_like(u)
    scratch = torch.empty_like(u)
    active = torch.zeros_like(u)
    spiked = torch.empty_like(u)
    for t in range(steps):
        source = t - delay
        x_t = zero if source < 0 else (x if constant else fast_input(x[source]))
        torch.mul(u, u, out=scratch).addcmul_(v, v)
        if source >= 0:
            scratch.addcmul_(x_t, x_t)
        active.add_(scratch.clamp_(max=1.0))
        cuba_step_fixed_(
            u, v, x_t, neurons.du_lava, neurons.v_decay, neurons.vth_mant, bias,
            spikes_out=spiked, scratch=scratch, wrap=wrap,
        )  # fmt: skip
        counts.add_(spiked)
        spikes[t].copy_(spiked)
        if voltages is not None:
            voltages[t].copy_(v)
    return int(active.sum(dtype=torch.float64))


def _neurons_int64(
    neurons: ir.CubaNeurons,
    bias_mant: torch.Tensor | int,
    a_in: torch.Tensor,
    steps: int,
    delay: int,
    constant: bool,
    spikes: torch.Tensor,
    voltages: torch.Tensor | None = None,
) -> int:
    """:func:`_neurons` with the ``int64`` functions of :mod:`toolchain.snn.dynamics` (any input)."""
    du, dv, vth = neurons.du_lava, neurons.v_decay, neurons.vth_mant
    shape = a_in.shape if constant else a_in.shape[1:]
    zero = torch.zeros(shape, dtype=torch.int64)
    state = CubaState(zero, zero)
    active = torch.zeros(shape, dtype=torch.int64)
    for t in range(steps):
        source = t - delay
        x_t = zero if source < 0 else (a_in if constant else a_in[source])
        # active: non-zero input or state before the update (``x | u | v != 0`` on integers)
        active += torch.bitwise_or(state.u, state.v).bitwise_or_(x_t).ne_(0)
        state = cuba_subthreshold_fixed(state, x_t, du, dv, bias_mant, neurons.bias_exp)
        spiked, state = spike_and_reset_fixed(state, vth)
        spikes[t] = spiked
        if voltages is not None:
            voltages[t] = state.v
    return int(active.sum())


def _static_counts(network: ir.Network, synapses: list[_Synapse]) -> list[LayerCounts]:
    """Each synaptic layer's static counts (neurons, synapses, fan-in/out), no activity yet."""
    graded = network.input_encoding == "graded"
    return [
        LayerCounts(
            name=step.layer.name,
            kind=step.layer.kind,
            neurons=step.neurons,
            synapses=step.synapses,
            fan_in=step.fan_in,
            fan_out=step.fan_out,
            spikes_per_sample=0.0,
            synops_per_sample=0.0,
            active_updates_per_sample=0.0,
            idle_updates_per_sample=0.0,
            input_events_per_sample=0.0,
            graded_input=index == 0 and graded,
        )
        for index, step in enumerate(synapses)
    ]


def _activity(
    network: ir.Network,
    synapses: list[_Synapse],
    totals: list[_Totals],
    samples: int,
    source: str,
    input_totals: _Totals | None = None,
) -> Activity:
    layers = [
        LayerCounts.from_totals(
            static,
            spikes=total.spikes,
            synops=total.synops,
            active=total.active,
            events=total.events,
            samples=samples,
            time_steps=network.time_steps,
        )
        for static, total in zip(_static_counts(network, synapses), totals, strict=True)
    ]
    return Activity(
        network=network.name,
        source=source,
        samples=samples,
        time_steps=network.time_steps,
        layers=tuple(layers),
        metadata={"synapse_delay_steps": network.synapse_delay_steps},
        input_neurons=_input_counts(network, input_totals or _Totals(), samples),
    )


def _input_counts(network: ir.Network, totals: _Totals, samples: int) -> LayerCounts | None:
    """The input neurons' counts (no synapses: the sample is written into their current)."""
    if network.input_layer is None:
        return None
    static = LayerCounts(
        name=network.input_layer.name,
        kind="input",
        neurons=math.prod(network.input_shape),
        synapses=0,
        fan_in=0,
        fan_out=0,
        spikes_per_sample=0.0,
        synops_per_sample=0.0,
        active_updates_per_sample=0.0,
        idle_updates_per_sample=0.0,
        input_events_per_sample=0.0,
        graded_input=network.input_encoding == "graded",
    )
    return LayerCounts.from_totals(
        static,
        spikes=totals.spikes,
        synops=0.0,
        active=totals.active,
        events=totals.events,
        samples=samples,
        time_steps=network.time_steps,
    )


def layer_counts_template(network: ir.Network) -> list[LayerCounts]:
    """Each synaptic layer's static counts (neurons, synapses, fan-in/out) with zero activity.

    For backends that measure only spikes (Lava): they fill in what they measured.
    """
    return _static_counts(network, [s for s in _prepare(network) if isinstance(s, _Synapse)])


__all__ = [
    "CHUNK_ELEMENTS",
    "FLOAT32_EXACT",
    "SimulationResult",
    "SimulationTiming",
    "check_inputs",
    "layer_counts_template",
    "readout",
    "simulate",
]
