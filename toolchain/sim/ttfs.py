"""The event-driven time-to-first-spike (TTFS) SNN of a trained surrogate DNN.

:func:`simulate_ttfs` runs a :class:`~toolchain.snn.ttfs_model.TTFSNetwork` (eval mode) as the
spiking network it stands for, after Park & Yoon (2021):

- **at most one spike per neuron**. A neuron fires at the first step ``k`` of its firing window at
  which its potential ``V`` reaches the threshold ``theta(k) = exp((t_d - k) / tau)`` of its
  layer's kernel (:func:`toolchain.snn.ttfs.kernel_value`), which decays within the window; then
  it is done. ``V`` below the last threshold (``x_T``) means no spike.
- **layer-pipelined windows** of ``W = T_w + 1`` steps (the spike times ``0 .. T_w`` of the kernel):
  the input neurons (with ``[ttfs].encode_input``) fire during window 0; layer ``l`` integrates
  during the window in which layer ``l - 1`` fires and fires during the next one; the output layer
  integrates during the last window and is read out (its potentials are the logits; it never
  fires). A network with ``L`` firing stages (the input and the hidden layers) takes
  ``(L + 1) * W`` steps. (The authors used 8-step windows and an 8-step offset with the same
  clip; here the offset is ``W`` so that a spike at ``t = T_w`` arrives before the next layer's
  first firing step.)
- **integration**: a spike at step ``k`` of a presynaptic neuron adds ``w * exp((t_d' - k) / tau')``
  to each postsynaptic potential (the presynaptic kernel's value, the decoded activation), events
  processed step by step, only at steps that carry spikes. Batch norm is folded into the weights
  and a per-neuron bias (:meth:`~toolchain.snn.blocks.SynapticBlock.folded_weight_bias`), which
  is the potential's initial value. Pooling and flatten pass events on linearly (sum/avg pooling
  folded into the next synapse).

Mathematically the first crossing is ``ceil(t_d - tau * ln V)``, the surrogate DNN's inference
encoding; in floating point the two can differ when that value lies within rounding of a whole
step, and the per-step sums of the potential differ from the surrogate's single product by
rounding. :func:`agreement` measures both (``docs/ttfs.md`` states the measured figures).

Activity (:class:`toolchain.activity.Activity`, source ``"ttfs"``) per synaptic layer, per sample:
``spikes_per_sample`` (the layer's spikes), ``synops_per_sample`` (each input event times the
non-zero weights it reaches through pooling and the synapse), ``input_events_per_sample``;
``active_updates_per_sample`` counts a neuron's steps in its integration window where it received
input or held a non-zero potential, plus its firing-window steps up to and including its spike
(all ``W`` if it never fires with a non-zero potential); ``idle = neurons * time_steps - active``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.loihi_numbers import WEIGHT_MAX
from toolchain.snn.blocks import FlattenBlock, PoolBlock, SynapticBlock, shape_input
from toolchain.snn.sum_pool import window_sums
from toolchain.snn.ttfs import kernel_value
from toolchain.snn.ttfs_model import TemporalKernel, TTFSNetwork

SOURCE = "ttfs"


@dataclass
class TTFSSimulation:
    """What :func:`simulate_ttfs` returns.

    ``logits`` ``[B, classes]`` (the output potentials), ``predictions`` ``[B]`` (first maximum),
    ``activity`` (per sample), ``spike_times``: by stage name (``input`` and each hidden layer) the
    step of each neuron's spike within its firing window, ``[B, *shape]`` ``int16``, with
    ``window_steps`` (= ``T_w + 1``) meaning no spike; ``max_spikes_per_neuron`` the most spikes
    any neuron emitted in any sample (counted from the events, not assumed).
    """

    logits: np.ndarray
    predictions: np.ndarray
    activity: Activity
    spike_times: dict[str, np.ndarray]
    window_steps: int
    max_spikes_per_neuron: int
    input_spikes_per_sample: float


@dataclass
class _Counts:
    spikes: float = 0.0
    synops: float = 0.0
    events: float = 0.0
    active: float = 0.0


@dataclass
class _Stage:
    """One synaptic layer with the structural blocks before it, ready to run."""

    block: SynapticBlock
    structural: list[PoolBlock | FlattenBlock]
    weight: torch.Tensor
    bias: torch.Tensor | None
    kernel: TemporalKernel | None  # None for the output layer
    fanout: torch.Tensor  # [prod(in_shape of the first structural block or synapse)]
    synapses: int
    fan_in: int
    fan_out: int
    counts: _Counts = field(default_factory=_Counts)

    @property
    def neurons(self) -> int:
        return math.prod(self.block.out_shape)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """Events ``[B, *in_shape]`` (payloads) -> synaptic input ``[B, *out_shape]`` (no bias)."""
        h = x.unsqueeze(0)
        for block in self.structural:
            h = block(h)
        return _synapse(self.block, h[0], self.weight)


@torch.no_grad()
def simulate_ttfs(
    model: TTFSNetwork,
    inputs: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    network_name: str = "ttfs",
) -> TTFSSimulation:
    """Run the TTFS SNN of ``model`` on ``inputs`` (float samples ``[B, *input_shape]``, as the
    surrogate DNN reads them)."""
    model.eval()
    x_all = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    dtype = next(model.parameters()).dtype
    x_all = x_all.to(dtype)
    window = model.config.time_window + 1
    stages = _prepare(model, dtype)
    stage_count = (1 if model.input_kernel is not None else 0) + (len(stages) - 1)
    time_steps = (stage_count + 1) * window
    logits_parts: list[torch.Tensor] = []
    times_parts: dict[str, list[np.ndarray]] = {}
    max_spikes = 0
    input_spikes = 0.0
    for start in range(0, x_all.shape[0], batch_size):
        x = shape_input(x_all[start : start + batch_size], model.input_shape, time_major=False)
        graded: torch.Tensor | None = None
        times: torch.Tensor | None = None
        kernel: TemporalKernel | None = model.input_kernel
        if kernel is not None:
            times, most = _fire(x, kernel, window)
            max_spikes = max(max_spikes, most)
            input_spikes += float((times < window).sum())
            times_parts.setdefault("input", []).append(times.to(torch.int16).numpy())
        else:
            graded = x
        for stage in stages:
            potential = _integrate(stage, graded, times, kernel, window)
            if stage.kernel is None:
                logits_parts.append(potential)
                break
            times, most = _fire(potential, stage.kernel, window)
            max_spikes = max(max_spikes, most)
            fired = times < window
            stage.counts.spikes += float(fired.sum())
            nonzero = potential != 0
            firing_active = torch.where(fired, times + 1, torch.where(nonzero, window, 0))
            stage.counts.active += float(firing_active.sum())
            times_parts.setdefault(stage.block.name, []).append(times.to(torch.int16).numpy())
            graded, kernel = None, stage.kernel
    samples = int(x_all.shape[0])
    logits = torch.cat(logits_parts).numpy() if logits_parts else np.zeros((0, model.num_classes))
    activity = _activity(model, stages, samples, time_steps, network_name, window, input_spikes)
    return TTFSSimulation(
        logits=logits,
        predictions=logits.argmax(axis=1) if len(logits) else np.zeros(0, dtype=np.int64),
        activity=activity,
        spike_times={name: np.concatenate(parts) for name, parts in times_parts.items()},
        window_steps=window,
        max_spikes_per_neuron=max_spikes,
        input_spikes_per_sample=input_spikes / max(samples, 1),
    )


def _fire(potential: torch.Tensor, kernel: TemporalKernel, window: int) -> tuple[torch.Tensor, int]:
    """Spike steps of ``potential`` against the decaying threshold; ``window`` = no spike.

    Returns the steps and the most spikes one neuron emitted (counted from the step-by-step events).
    """
    times = torch.full(potential.shape, window, dtype=torch.int64)
    fired = torch.zeros(potential.shape, dtype=torch.bool)
    spike_count = torch.zeros(potential.shape, dtype=torch.int16)
    tau, t_d = kernel.tau.detach(), kernel.t_d.detach()
    for k in range(window):
        threshold = kernel_value(torch.tensor(float(k), dtype=potential.dtype), tau, t_d)
        now = ~fired & (potential >= threshold)
        times[now] = k
        spike_count += now.to(torch.int16)
        fired |= now
    return times, int(spike_count.max()) if spike_count.numel() else 0


def _integrate(
    stage: _Stage,
    graded: torch.Tensor | None,
    times: torch.Tensor | None,
    kernel: TemporalKernel | None,
    window: int,
) -> torch.Tensor:
    """The potentials at the end of ``stage``'s integration window, counting its activity."""
    batch = (graded if graded is not None else times).shape[0]  # type: ignore[union-attr]
    potential = torch.zeros(batch, *stage.block.out_shape, dtype=stage.weight.dtype)
    if stage.bias is not None:
        potential += stage.bias.reshape(-1, *([1] * (len(stage.block.out_shape) - 1)))
    counts = stage.counts
    if graded is not None:  # analog input (no input kernel): one graded event per non-zero value
        active_input = graded != 0
        counts.events += float(active_input.sum())
        counts.synops += float((active_input.reshape(batch, -1).to(stage.fanout.dtype) @ stage.fanout).sum())
        current = stage.linear(graded)
        counts.active += float(((current != 0) | (potential != 0)).sum())
        potential += current
        counts.active += float((potential != 0).sum()) * (window - 1)
        return potential
    assert times is not None and kernel is not None
    tau, t_d = kernel.tau.detach(), kernel.t_d.detach()
    for k in range(window):
        events = times == k
        held = potential != 0
        if not bool(events.any()):
            counts.active += float(held.sum())
            continue
        counts.events += float(events.sum())
        counts.synops += float((events.reshape(batch, -1).to(stage.fanout.dtype) @ stage.fanout).sum())
        value = kernel_value(torch.tensor(float(k), dtype=potential.dtype), tau, t_d)
        current = stage.linear(events.to(potential.dtype) * value)
        counts.active += float(((current != 0) | held).sum())
        potential += current
    return potential


def _synapse(block: SynapticBlock, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    spec = block.spec
    if spec.kind == "dense":
        return functional.linear(x.reshape(x.shape[0], -1), weight)
    conv = functional.conv2d if spec.spatial_dims == 2 else functional.conv1d
    return conv(x, weight, stride=spec.stride, padding=spec.padding)


def _prepare(model: TTFSNetwork, dtype: torch.dtype) -> list[_Stage]:
    stages: list[_Stage] = []
    structural: list[PoolBlock | FlattenBlock] = []
    for block in model.blocks:
        if isinstance(block, (PoolBlock, FlattenBlock)):
            structural.append(block)
            continue
        assert isinstance(block, SynapticBlock)
        weight, bias = block.folded_weight_bias()
        kernel = block.neuron if isinstance(block.neuron, TemporalKernel) else None
        in_shape = structural[0].in_shape if structural else block.in_shape
        fanout, fan_in = _reach(block, structural, weight, in_shape)
        stages.append(
            _Stage(
                block=block,
                structural=structural,
                weight=weight.to(dtype),
                bias=None if bias is None else bias.to(dtype),
                kernel=kernel,
                fanout=fanout,
                synapses=int(fanout.sum()),
                fan_in=fan_in,
                fan_out=int(fanout.max()),
            )
        )
        structural = []
    return stages


def _reach(
    block: SynapticBlock,
    structural: list[PoolBlock | FlattenBlock],
    weight: torch.Tensor,
    in_shape: tuple[int, ...],
) -> tuple[torch.Tensor, int]:
    """Per input position, the non-zero weights it reaches (through pooling and the synapse), and
    the most non-zero weights into one neuron: the vector-Jacobian and Jacobian-vector products of
    the 0/1 connectivity with ones."""
    mask = (weight != 0).to(torch.float64)

    def connectivity(z: torch.Tensor) -> torch.Tensor:
        h = z.unsqueeze(0)
        for step in structural:
            h = _sum_pool(h, step) if isinstance(step, PoolBlock) else step(h)
        return _synapse(block, h[0], mask)

    ones = torch.ones(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        out = connectivity(ones)
        (fanout,) = torch.autograd.grad(out.sum(), ones)
    return fanout.reshape(-1).detach(), int(out.max())


def _sum_pool(h: torch.Tensor, block: PoolBlock) -> torch.Tensor:
    """Sum pooling with ones (connectivity of either pooling mode) on ``[1, B, C, *spatial]``."""
    return window_sums(h[0], block.pool.kernel_size, block.pool.dims).unsqueeze(0)


def _activity(
    model: TTFSNetwork,
    stages: list[_Stage],
    samples: int,
    time_steps: int,
    name: str,
    window: int,
    input_spikes: float,
) -> Activity:
    n = max(samples, 1)
    layers = []
    for index, stage in enumerate(stages):
        c = stage.counts
        static = LayerCounts(
            name=stage.block.name,
            kind=stage.block.kind,
            neurons=stage.neurons,
            synapses=stage.synapses,
            fan_in=stage.fan_in,
            fan_out=stage.fan_out,
            spikes_per_sample=0.0,
            synops_per_sample=0.0,
            active_updates_per_sample=0.0,
            idle_updates_per_sample=0.0,
            input_events_per_sample=0.0,
            graded_input=index == 0 and model.input_kernel is None,
        )
        layers.append(
            LayerCounts.from_totals(
                static,
                spikes=c.spikes,
                synops=c.synops,
                active=c.active,
                events=c.events,
                samples=n,
                time_steps=time_steps,
            )
        )
    kernels = {
        key: {"tau": float(k.tau.detach()), "t_d": float(k.t_d.detach())}
        for key, k in model.kernels().items()
    }
    metadata: dict[str, Any] = {
        "coding": "ttfs",
        "schedule": "layer-pipelined windows",
        "time_window": model.config.time_window,
        "window_steps": window,
        "kernels": kernels,
        "input_neurons": math.prod(model.input_shape) if model.input_kernel is not None else 0,
        "input_spikes_per_sample": input_spikes / n,
        "readout": "output potentials at the end of the last window (the output layer never fires)",
    }
    return Activity(
        network=name,
        source=SOURCE,
        samples=samples,
        time_steps=time_steps,
        layers=tuple(layers),
        metadata=metadata,
    )


#: what :func:`placement_network` and an energy estimate from the TTFS activity assume
ENERGY_ASSUMPTIONS: tuple[str, ...] = (
    "TTFS: the network is placed as its topology (layer sizes, non-zero weights: the graph of "
    "placement_network, whose neuron registers are placeholders); its neurons are not Loihi's CUBA "
    "neurons (a threshold decaying within each window, one spike per neuron), which a chip with "
    "programmable neurons (Loihi 2 microcode, SpiNNaker's ARM cores) would run; each update and "
    "synaptic operation is priced as the target's CUBA ones.",
    "TTFS: the time steps are the layer-pipelined windows, (firing stages + 1) x (T_w + 1); a spike "
    "carries no payload (its time is the value).",
)


def placement_network(model: TTFSNetwork, name: str, time_steps: int) -> ir.Network:
    """The topology of ``model`` as an :class:`~toolchain.ir.Network`, for placement and energy only.

    Layers, shapes, pooling and the pattern of non-zero (batch-norm-folded) weights are the
    model's; the integer weights are the folded weights scaled to Loihi's 8-bit grid with no
    non-zero weight rounded to zero, and the neurons are placeholder CUBA registers
    (``metadata["topology_only"] = True``): the graph is **not** the TTFS network's dynamics and
    must not be simulated or exported as such. ``time_steps``: the TTFS activity's.
    """
    model.eval()
    placeholder = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=1)
    graded = model.input_kernel is None
    layers: list[ir.Layer] = []
    first = True
    for block in model.blocks:
        if isinstance(block, PoolBlock):
            layers.append(ir.Pool(block.name, block.spec.mode, block.spec.kernel_size, block.in_shape))  # type: ignore[arg-type]
            continue
        if isinstance(block, FlattenBlock):
            layers.append(ir.Flatten(block.name, block.in_shape))
            continue
        assert isinstance(block, SynapticBlock)
        weight, _ = block.folded_weight_bias()
        w = weight.detach().to(torch.float64).numpy()
        scale = float(np.abs(w).max()) / WEIGHT_MAX if np.abs(w).max() > 0 else 1.0
        w_int = np.where(w != 0, np.sign(w) * np.maximum(1, np.round(np.abs(w) / scale)), 0).astype(np.int64)
        exp = -8 if graded and first else 0
        if block.kind == "dense":
            layers.append(ir.Dense(block.name, w_int, placeholder, weight_exp=exp))
        else:
            dims = block.spec.spatial_dims
            layers.append(
                ir.Conv(
                    block.name,
                    w_int,
                    placeholder,
                    in_shape=block.in_shape,
                    stride=(block.spec.stride,) * dims,
                    padding=(block.spec.padding,) * dims,
                    weight_exp=exp,
                )
            )
        first = False
    return ir.Network(
        name=name,
        input_shape=model.input_shape,
        input_encoding="graded" if graded else "spikes",
        time_steps=time_steps,
        layers=tuple(layers),
        synapse_delay_steps=0,
        metadata={
            "coding": "ttfs",
            "topology_only": True,
            "note": "placement/energy graph of a TTFS network: neuron registers are placeholders",
        },
    )


@dataclass(frozen=True)
class Agreement:
    """How the event-driven SNN matched the surrogate DNN on the same samples.

    ``neurons``: neuron-samples compared (every firing stage); ``spike_mismatches``: those whose
    spike (or its absence) or spike step differs; ``prediction_agreement``: fraction of samples
    with the same class; ``max_abs_logit_difference``: largest difference of the logits.
    """

    samples: int
    neurons: int
    spike_mismatches: int
    prediction_agreement: float
    max_abs_logit_difference: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def agreement(
    model: TTFSNetwork, inputs: np.ndarray | torch.Tensor, sim: TTFSSimulation, batch_size: int = 256
) -> Agreement:
    """Compare ``sim`` (from :func:`simulate_ttfs` on ``inputs``) with the surrogate DNN in eval mode."""
    model.eval()
    x_all = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    x_all = x_all.to(next(model.parameters()).dtype)
    window = sim.window_steps
    mismatches = neurons = 0
    logits: list[np.ndarray] = []
    for start in range(0, x_all.shape[0], batch_size):
        stop = start + batch_size
        out = model.run(x_all[start:stop])
        logits.append(out.logits.numpy())
        for name, kernel in model.kernels().items():
            assert kernel.last_times is not None
            t = kernel.last_times[0]
            steps = torch.where(t <= window - 1, t, torch.full_like(t, window)).to(torch.int64)
            simulated = torch.from_numpy(sim.spike_times[name][start:stop].astype(np.int64)).reshape(
                steps.shape
            )
            mismatches += int((steps != simulated).sum())
            neurons += steps.numel()
    surrogate = np.concatenate(logits) if logits else np.zeros_like(sim.logits)
    samples = int(x_all.shape[0])
    same = float((surrogate.argmax(axis=1) == sim.predictions).mean()) if samples else 1.0
    diff = float(np.abs(surrogate - sim.logits).max()) if samples else 0.0
    return Agreement(samples, neurons, mismatches, same, diff)


__all__ = [
    "ENERGY_ASSUMPTIONS",
    "SOURCE",
    "Agreement",
    "TTFSSimulation",
    "agreement",
    "placement_network",
    "simulate_ttfs",
]
