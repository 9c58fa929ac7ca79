"""Agreement of backends: the fixed-point torch model, the reference simulator and Lava, spike for spike.

:func:`torch_model` rebuilds the toolchain's own fixed-point model from a deployment graph: a
:class:`~toolchain.snn.models.SpikingNetwork` (the same blocks training uses) in ``fixed_point``
mode (:func:`toolchain.snn.numerics.apply_numerics`), each population given its layer's registers
and each synapse the graph's integer weights (``w_int / 64``). It is rebuilt from the file rather
than taken from the run folder on purpose: the comparison then checks the file itself (a run's
model may differ from what was exported, e.g. a float model or unfolded batch norm). What the torch
model cannot compute exactly is refused, naming the layer: a neuron bias (its populations have
none), a weight exponent other than graded input's -8 on the first layer, grouped or non-square
convolutions.

:func:`mismatched_spikes` counts, per layer, the positions ``(t, sample, neuron)`` where two
backends' spikes differ: a spike moved in time or to another neuron counts twice (one missing,
one extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from toolchain import ir
from toolchain.config import NeuronConfig
from toolchain.errors import SimulationError
from toolchain.loihi_numbers import INPUT_SHIFT, STATE_SCALE, WEIGHT_SCALE, CubaRegisters
from toolchain.sim.reference import SimulationResult, check_inputs
from toolchain.snn.architectures import LayerSpec
from toolchain.snn.blocks import SynapticBlock
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.numerics import apply_numerics

#: samples the torch model steps at once
TORCH_BATCH = 256


def _square(values: tuple[int, ...], what: str, layer: str) -> int:
    if len(set(values)) != 1:
        raise SimulationError(
            f"layer {layer!r}: {what} {values} differs per axis; the torch model needs one value"
        )
    return int(values[0])


def _spec(layer: ir.Layer) -> LayerSpec:
    if isinstance(layer, ir.Dense):
        return LayerSpec(layer.name, "dense", layer.in_shape, layer.out_shape)
    if isinstance(layer, ir.Conv):
        if layer.groups != 1:
            raise SimulationError(
                f"layer {layer.name!r}: groups = {layer.groups}; the torch model has no grouped conv"
            )
        return LayerSpec(
            layer.name,
            "conv",
            layer.in_shape,
            layer.out_shape,
            kernel_size=_square(layer.kernel_size, "kernel", layer.name),
            stride=_square(layer.stride, "stride", layer.name),
            padding=_square(layer.padding, "padding", layer.name),
        )
    if isinstance(layer, ir.Pool):
        return LayerSpec(
            layer.name,
            "pool",
            layer.in_shape,
            layer.out_shape,
            kernel_size=layer.kernel_size,
            stride=layer.kernel_size,
            mode=layer.mode,
        )
    return LayerSpec(layer.name, "flatten", layer.in_shape, layer.out_shape)


def torch_model(network: ir.Network) -> SpikingNetwork:
    """The fixed-point torch model of ``network`` (see the module docstring); eval mode, float64."""
    synaptic = network.synaptic_layers()
    if network.input_layer is not None:
        raise SimulationError(
            f"network {network.name!r}: the torch model has no input layer of neurons (lava-dl's Input block)"
        )
    if not isinstance(network.layers[-1], ir.Dense):
        raise SimulationError(f"network {network.name!r}: the torch model needs a dense output layer")
    if network.synapse_delay_steps > 1:
        raise SimulationError(
            f"network {network.name!r}: synapse_delay_steps = {network.synapse_delay_steps}; "
            "the torch model delays by 0 or 1 step"
        )
    graded = network.input_encoding == "graded"
    for index, layer in enumerate(synaptic):
        expected = -INPUT_SHIFT if graded and index == 0 else 0
        if layer.weight_exp != expected:
            raise SimulationError(
                f"layer {layer.name!r}: weight_exp = {layer.weight_exp}; the torch model's weights live on "
                f"the 1/64 grid (exponent {expected} here)"
            )
        if layer.neurons.bias_mant is not None and layer.neurons.bias_mant.any():
            raise SimulationError(
                f"layer {layer.name!r}: has a neuron bias; the torch model's neurons have none"
            )
    first = synaptic[0].neurons
    neuron = NeuronConfig(
        numeric="fixed_point",
        current_decay=first.current_decay,
        voltage_decay=first.voltage_decay,
        threshold=first.threshold,
        synapse_delay=network.synapse_delay_steps,
    )
    model = SpikingNetwork([_spec(layer) for layer in network.layers], neuron, network.readout)
    apply_numerics(model, neuron, "direct" if graded else "spikes")
    blocks = {block.name: block for block in model.synaptic_blocks()}
    with torch.no_grad():
        for layer in synaptic:
            block: SynapticBlock = blocks[layer.name]
            population = block.neuron
            assert isinstance(population, CubaLIF)
            n = layer.neurons
            population.use_fixed_point(CubaRegisters(n.i_decay, n.v_decay, n.vth_mant))
            original = block.synapse.module.parametrizations.weight.original
            original.copy_(torch.from_numpy(layer.weight.astype(np.float64) / WEIGHT_SCALE))
    return model.eval()


def simulate_torch(
    network: ir.Network, inputs: np.ndarray, *, record_spikes: bool = True
) -> SimulationResult:
    """The fixed-point torch model of ``network`` on simulator ``inputs`` (counts, spikes; no activity)."""
    check_inputs(network, inputs)  # the same validation as the other backends
    model = torch_model(network)
    graded = network.input_encoding == "graded"
    x_all = torch.from_numpy(np.asarray(inputs, dtype=np.float64))
    samples = int(x_all.shape[0] if graded else x_all.shape[1])
    counts, potentials = [], []
    spikes: dict[str, list[np.ndarray]] = {name: [] for name in model.layer_names}
    with torch.no_grad():
        for first in range(0, samples, TORCH_BATCH):
            if graded:
                x = x_all[first : first + TORCH_BATCH].reshape(-1, *network.input_shape)
                x = x.unsqueeze(0).expand(network.time_steps, *x.shape)
            else:
                x = x_all[:, first : first + TORCH_BATCH].reshape(
                    network.time_steps, -1, *network.input_shape
                )
            out = model(x)
            if out.potentials is None:
                counts.append(out.logits.to(torch.int64).numpy())
            else:  # a potential readout: Lava's integer voltages (the model holds them / 2^12)
                volts = torch.round(out.potentials * STATE_SCALE).to(torch.int64)
                potentials.append(volts.numpy())
                counts.append(np.zeros((volts.shape[1], network.num_classes), np.int64))
                if record_spikes:  # the readout never fires (the graph guarantees it): record its zeros
                    spikes[network.layers[-1].name].append(np.zeros(tuple(volts.shape), np.uint8))
            if record_spikes:
                for name, s in out.spikes.items():
                    spikes[name].append(s.to(torch.uint8).numpy())
    from toolchain.activity import Activity

    activity = Activity(network.name, "torch_fixed_point", samples, network.time_steps, ())
    recorded = {name: parts for name, parts in spikes.items() if parts} if record_spikes else None
    return SimulationResult.from_batches(
        counts,
        network.num_classes,
        activity,
        recorded,
        potentials=potentials or None,
        readout_kind=network.readout,
    )


def mismatched_spikes(
    reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], samples: int | None = None
) -> dict[str, int]:
    """Per layer present in both, the number of ``(t, sample, neuron)`` where the spikes differ.

    ``samples`` limits the comparison to the first samples (axis 1) of both.
    """
    result: dict[str, int] = {}
    for name, ref in reference.items():
        if name not in other:
            continue
        a, b = ref, other[name]
        if samples is not None:
            a, b = a[:, :samples], b[:, :samples]
        if a.shape != b.shape:
            raise SimulationError(f"layer {name!r}: spikes shaped {a.shape} and {b.shape} cannot be compared")
        result[name] = int(np.count_nonzero(a != b))
    return result


@dataclass(frozen=True)
class Comparison:
    """Spike mismatches of each backend against the reference simulator, per layer, on ``samples`` each."""

    layers: tuple[str, ...]
    mismatches: dict[str, dict[str, int]] = field(default_factory=dict)  # backend -> layer -> count
    samples: dict[str, int] = field(default_factory=dict)  # backend -> samples compared
    accuracy: dict[str, float] = field(default_factory=dict)  # backend -> accuracy on its samples
    #: backend -> output potentials ``(t, sample, class)`` that differ (a potential readout only)
    potential_mismatches: dict[str, int] = field(default_factory=dict)

    @property
    def mismatched_spikes(self) -> int:
        return sum(sum(per_layer.values()) for per_layer in self.mismatches.values())

    @property
    def mismatched_potentials(self) -> int:
        return sum(self.potential_mismatches.values())

    @property
    def agree(self) -> bool:
        return self.mismatched_spikes == 0 and self.mismatched_potentials == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mismatched_spikes": self.mismatched_spikes,
            "mismatched_potentials": dict(self.potential_mismatches),
            "agree": self.agree,
            "samples": dict(self.samples),
            "accuracy": dict(self.accuracy),
            "layers": [
                {
                    "name": name,
                    **{
                        f"mismatched_{backend}": per[name]
                        for backend, per in self.mismatches.items()
                        if name in per
                    },
                }
                for name in self.layers
            ],
        }


def compare(
    reference: SimulationResult,
    others: Mapping[str, SimulationResult],
    labels: np.ndarray | None = None,
) -> Comparison:
    """Compare each of ``others`` (backend name -> result with spikes) against ``reference``.

    Each backend is compared on the samples it ran (the first ones of the reference's). Every layer
    the reference recorded must be recorded by the others too.
    """
    if reference.spikes is None:
        raise SimulationError("the reference result holds no spikes (simulate with record_spikes=True)")
    layers = tuple(reference.spikes)
    mismatches: dict[str, dict[str, int]] = {}
    potential_mismatches: dict[str, int] = {}
    samples: dict[str, int] = {"reference": reference.samples}
    accuracy: dict[str, float] = {}
    if labels is not None:
        accuracy["reference"] = reference.accuracy(labels[: reference.samples])
    for name, result in others.items():
        if result.spikes is None:
            raise SimulationError(f"backend {name!r} recorded no spikes")
        missing = [layer for layer in layers if layer not in result.spikes]
        if missing:
            raise SimulationError(f"backend {name!r} recorded no spikes for layers {missing}")
        mismatches[name] = mismatched_spikes(reference.spikes, result.spikes, result.samples)
        if reference.readout == "potential":
            potential_mismatches[name] = mismatched_potentials(reference, result, name)
        samples[name] = result.samples
        if labels is not None:
            accuracy[name] = result.accuracy(labels[: result.samples])
    return Comparison(layers, mismatches, samples, accuracy, potential_mismatches)


def mismatched_potentials(reference: SimulationResult, other: SimulationResult, backend: str) -> int:
    """The output potentials ``(t, sample, class)`` where ``other`` differs from ``reference``, on the
    samples ``other`` ran; refuses a result without potentials."""
    if reference.potentials is None or other.potentials is None:
        raise SimulationError(f"backend {backend!r} recorded no output potentials for a potential readout")
    a, b = reference.potentials[:, : other.samples], other.potentials
    if a.shape != b.shape:
        raise SimulationError(f"output potentials shaped {a.shape} and {b.shape} cannot be compared")
    return int(np.count_nonzero(a != b))


__all__ = [
    "TORCH_BATCH",
    "Comparison",
    "compare",
    "mismatched_potentials",
    "mismatched_spikes",
    "simulate_torch",
    "torch_model",
]
