"""A trained spiking network onto Loihi's integer registers: the deployment graph and what changed.

:func:`quantize_model` walks a :class:`~toolchain.snn.models.SpikingNetwork`'s blocks in order and
builds the :class:`toolchain.ir.Network` Loihi would run:

- dense and conv blocks: eval-mode batch norm folded into the weights and a per-channel bias
  (:meth:`~toolchain.snn.blocks.SynapticBlock.folded_weight_bias`), the weights put on Loihi's 8-bit
  grid by :func:`toolchain.snn.loihi.weights_to_int` (a weight off the grid's range is refused,
  naming the layer; nothing is clipped), the neuron parameters by
  :func:`toolchain.loihi_numbers.neuron_registers`, the bias as per-neuron ``bias_mant`` with one
  ``bias_exp`` per layer (:func:`bias_registers`); a float layer is first scaled (weights, bias
  and threshold together, which leaves its spikes unchanged) by the largest power of two that
  still fits every register, so that small weights keep their precision on the fixed grid;
- pool and flatten blocks: :class:`toolchain.ir.Pool` / :class:`toolchain.ir.Flatten` as they are
  (lowering pooling into a convolution is the netx writer's job);
- the input: ``direct`` encoding (an analog sample every step) becomes 8-bit graded spikes
  (``input_encoding = "graded"``, the first synaptic layer's ``weight_exp = -8``); ``rate``,
  ``latency`` and ``spikes`` encodings already produce 0/1 spikes (``"spikes"``).

Every rounding is measured and returned as a :class:`QuantizationReport`. A model trained with
``neuron.numeric = "fixed_point"`` already computes on these registers: its export changes nothing
(the report says ``exact``, every error 0). What Loihi cannot hold is refused with the layer's name:
a reset other than ``zero``, a bias into a neuron whose current decays (see :func:`bias_registers`),
a weight or bias beyond its register.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from toolchain import ir
from toolchain.config import Recipe
from toolchain.errors import QuantizationError, UnsupportedDynamicsError
from toolchain.loihi_numbers import (
    DECAY_UNITY,
    INPUT_SHIFT,
    WEIGHT_SCALE,
    CubaRegisters,
    Population,
    RoundingReport,
    bias_registers,
    neuron_registers,
    readout_registers,
)
from toolchain.snn.blocks import FlattenBlock, PoolBlock, SynapticBlock
from toolchain.snn.loihi import may_overflow, scale_exponent, weights_to_int
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.numerics import GRADED_ENCODINGS


def input_encoding(scheme: str) -> ir.InputEncoding:
    """The deployment graph's input for a recipe's ``[encoding].scheme``.

    ``direct`` repeats the analog sample every step: 8-bit graded spikes on Loihi (as in
    fixed-point training, :data:`toolchain.snn.numerics.GRADED_ENCODINGS`). ``rate``, ``latency``
    and ``spikes`` produce 0/1 spikes (:mod:`toolchain.data.encoding`).
    """
    if scheme in GRADED_ENCODINGS:
        return "graded"
    if scheme in ("rate", "latency", "spikes"):
        return "spikes"
    raise QuantizationError(f"[encoding].scheme = {scheme!r}: no Loihi input for this encoding")


@dataclass(frozen=True)
class BiasQuantization:
    """A layer's folded batch-norm bias (float units of the voltage) and its 13-bit registers."""

    float_min: float
    float_max: float
    bias_exp: int
    max_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "float_min": self.float_min,
            "float_max": self.float_max,
            "bias_exp": self.bias_exp,
            "max_abs_error": self.max_abs_error,
        }


@dataclass(frozen=True)
class LayerQuantization:
    """What quantizing one synaptic layer changed.

    ``weight_min``/``weight_max``: the float weights (batch norm folded in) before quantizing;
    ``scale_exp``: the layer's weights, bias and threshold were scaled by ``2^scale_exp`` (which
    leaves its spikes unchanged) before rounding; ``weight_max_abs_error``/``weight_rms_error``:
    ``|w_int / (64 * 2^scale_exp) - w|`` over all weights, in the model's units; ``bias``: the same
    for the bias; ``neuron``: the rounding of the neuron parameters onto their registers (the
    threshold in the model's units); ``neuron_changed_by_export``: False when the model already
    computed with those registers (fixed-point training) or when rounding changed nothing.
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    weight_exp: int
    scale_exp: int
    weight_min: float
    weight_max: float
    weight_max_abs_error: float
    weight_rms_error: float
    batch_norm_folded: bool
    bias: BiasQuantization | None
    registers: CubaRegisters
    neuron: tuple[RoundingReport, ...]
    neuron_changed_by_export: bool

    @property
    def exact(self) -> bool:
        """Whether the export left this layer's weights, bias and neuron registers unchanged."""
        bias_exact = self.bias is None or self.bias.max_abs_error == 0.0
        return self.weight_max_abs_error == 0.0 and bias_exact and not self.neuron_changed_by_export

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "weight_shape": list(self.weight_shape),
            "weight_exp": self.weight_exp,
            "scale_exp": self.scale_exp,
            "weight_min": self.weight_min,
            "weight_max": self.weight_max,
            "weight_max_abs_error": self.weight_max_abs_error,
            "weight_rms_error": self.weight_rms_error,
            "batch_norm_folded": self.batch_norm_folded,
            "bias": None if self.bias is None else self.bias.to_dict(),
            "registers": {
                "iDecay": self.registers.i_decay,
                "vDecay": self.registers.v_decay,
                "vThMant": self.registers.vth_mant,
            },
            "neuron": [report.to_dict() for report in self.neuron],
            "neuron_changed_by_export": self.neuron_changed_by_export,
            "exact": self.exact,
        }


@dataclass(frozen=True)
class QuantizationReport:
    """Everything :func:`quantize_model` changed, per layer, and why the export is or is not exact.

    ``inexact`` lists the reasons the quantized network may compute differently from the trained
    model (empty: the export is exact, spike for spike); the per-layer figures measure the roundings.
    """

    numeric: str
    input_encoding: str
    layers: tuple[LayerQuantization, ...]
    inexact: tuple[str, ...] = field(default=())

    @property
    def exact(self) -> bool:
        return not self.inexact

    @property
    def max_weight_error(self) -> float:
        """The largest ``|w_int / 64 - w|`` over every layer (float units)."""
        return max((layer.weight_max_abs_error for layer in self.layers), default=0.0)

    @property
    def max_bias_error(self) -> float:
        """The largest bias rounding over every layer (float units of the voltage)."""
        return max((layer.bias.max_abs_error for layer in self.layers if layer.bias), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "input_encoding": self.input_encoding,
            "exact": self.exact,
            "inexact": list(self.inexact),
            "max_weight_error": self.max_weight_error,
            "max_bias_error": self.max_bias_error,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def quantize_model(
    model: SpikingNetwork,
    recipe: Recipe,
    *,
    classes: Sequence[str] | None = None,
    source: str = "",
    scale_layers: bool = True,
) -> tuple[ir.Network, QuantizationReport]:
    """The deployment graph of a trained ``model`` built from ``recipe``, and what quantizing changed.

    ``scale_layers``: scale each float layer's weights, bias and threshold by the largest power of
    two ``2^k`` that still fits Loihi's registers (spikes are unchanged by such a scaling, the
    weights' rounding shrinks ``2^k`` times; see :func:`toolchain.snn.loihi.scale_exponent`).
    Fixed-point layers export as they computed in training: without batch norm unscaled, with batch
    norm folded and scaled as :meth:`~toolchain.snn.blocks.SynapticBlock.loihi_layer` computed them.

    ``classes`` (the dataset's class names, default ``"0"``, ``"1"``, ...) and ``source`` (where the
    model came from, e.g. its run folder) go into the graph's ``metadata``. Raises
    :class:`~toolchain.errors.QuantizationError` or
    :class:`~toolchain.errors.UnsupportedDynamicsError` naming the layer for anything Loihi cannot
    hold; nothing is clipped.
    """
    if recipe.ttfs.enabled:  # its network is not a CUBA SNN (toolchain.train.ttfs)
        from toolchain.snn.trained import refusal_message

        raise UnsupportedDynamicsError(refusal_message(recipe, "Loihi quantization"))
    scheme = recipe.encoding.scheme
    encoding = input_encoding(scheme)
    delay_steps = recipe.neuron.synapse_delay
    numeric = recipe.trained_numeric
    layers: list[ir.Layer] = []
    reports: list[LayerQuantization] = []
    inexact: list[str] = []
    first_synaptic = True
    for block in model.blocks:
        if isinstance(block, SynapticBlock):
            weight_exp = -INPUT_SHIFT if first_synaptic and encoding == "graded" else 0
            layer, report, notes = _synaptic_layer(block, recipe, weight_exp, scale_layers)
            layers.append(layer)
            reports.append(report)
            inexact += notes
            first_synaptic = False
        elif isinstance(block, PoolBlock):
            layers.append(ir.Pool(block.name, block.pool.mode, block.pool.kernel_size, block.in_shape))
        elif isinstance(block, FlattenBlock):
            layers.append(ir.Flatten(block.name, block.in_shape))
        else:
            raise QuantizationError(
                f"layer {block.name!r}: a {block.kind!r} layer has no Loihi equivalent "
                "(supported: dense, conv, pool, flatten)"
            )
    if numeric != "fixed_point":
        inexact.insert(
            0,
            "float model: post-training quantization, Loihi's integer arithmetic (decays truncated "
            "toward zero, synaptic input on the 1/64 grid"
            + (", input as round(x * 255) / 256" if encoding == "graded" else "")
            + ") replaces float arithmetic",
        )
    inexact += [
        f"layer {report.name!r}: quantization changed its weights, bias or neuron registers"
        for report in reports
        if not report.exact and numeric == "fixed_point"
    ]
    metadata = {
        "recipe": recipe.name,
        "numeric": numeric,
        "encoding": {"scheme": scheme, "time_steps": recipe.encoding.time_steps},
        "dataset": recipe.data.dataset,
        "classes": list(classes) if classes is not None else [str(i) for i in range(model.num_classes)],
        "source": source,
    }
    if len(metadata["classes"]) != model.num_classes:
        raise QuantizationError(
            f"{len(metadata['classes'])} class names for a network with {model.num_classes} outputs"
        )
    network = ir.Network(
        name=recipe.name,
        input_shape=tuple(model.input_shape),
        input_encoding=encoding,
        time_steps=recipe.encoding.time_steps,
        layers=tuple(layers),
        synapse_delay_steps=delay_steps,
        metadata=metadata,
        readout=recipe.model.readout,  # type: ignore[arg-type]
    )
    return network, QuantizationReport(numeric, encoding, tuple(reports), tuple(inexact))


def _synaptic_layer(
    block: SynapticBlock, recipe: Recipe, weight_exp: int, scale: bool
) -> tuple[ir.SynapticLayer, LayerQuantization, list[str]]:
    name = block.name
    population = block.neuron
    if not isinstance(population, CubaLIF):
        raise UnsupportedDynamicsError(
            f"layer {name!r}: {type(population).__name__} neurons have no Loihi equivalent (CUBA-LIF only)"
        )
    if population.reset != "zero":
        raise UnsupportedDynamicsError(
            f"layer {name!r}: [neuron].reset = {population.reset!r} has no Loihi equivalent "
            "(its CUBA neuron resets the voltage to zero)"
        )
    if block.input_delay_steps != recipe.neuron.synapse_delay:
        raise QuantizationError(
            f"layer {name!r}: the model delays its input {block.input_delay_steps} steps, the recipe's "
            f"[neuron].synapse_delay says {recipe.neuron.synapse_delay}"
        )
    steps = recipe.encoding.time_steps
    fixed = population.registers is not None
    folded_in_training = fixed and block.folded_fixed_point
    if folded_in_training:  # fixed-point training computed with the folded, scaled layer: export it
        with torch.no_grad():
            loihi = block.loihi_layer(steps)
        factor = 2.0**loihi.scale_exp
        weight = loihi.weight.detach().to(torch.float64).cpu() / factor
        bias = None if loihi.bias is None else loihi.bias.detach() / factor
    else:
        weight, bias = block.folded_weight_bias()
        weight = weight.detach().to(torch.float64).cpu()
    channel_bias = None if bias is None else bias.detach().to(torch.float64).cpu().numpy()
    if channel_bias is not None and population.current_decay != 1.0 and np.any(channel_bias != 0):
        raise UnsupportedDynamicsError(
            f"layer {name!r}: the batch-norm bias enters the synaptic current, which decays "
            f"(current_decay = {population.current_decay:g}, iDecay = "
            f"{round(population.current_decay * DECAY_UNITY)}); Loihi adds a bias to the voltage, which "
            "equals a current bias only when current_decay = 1 (iDecay = 4096): train with "
            "current_decay = 1 or without batch norm"
        )
    per_neuron = None
    if channel_bias is not None:
        spatial = len(block.out_shape) - 1
        per_neuron = np.broadcast_to(channel_bias.reshape(-1, *([1] * spatial)), block.out_shape).copy()
    if folded_in_training:
        scale_exp = loihi.scale_exp
        registers, changed = loihi.registers, False
        neuron_report = _rounding(population, recipe, registers, 2.0**scale_exp)
    else:
        scale = scale and not fixed
        scale_exp = scale_exponent(weight, per_neuron, Population.of(population), name, steps) if scale else 0
        registers, neuron_report, changed = _registers(population, recipe, name, 2.0**scale_exp)
    rounded = round_layer(
        name,
        block.kind,
        weight,
        per_neuron,
        Population.of(population),
        steps,
        scale_exp,
        registers,
        neuron_report,
        changed=changed,
        weight_exp=weight_exp,
        batch_norm_folded=block.norm is not None,
        wrap_note=not fixed,  # fixed point wraps alike
    )
    w_int, neurons, report, notes = rounded.weight, rounded.neurons, rounded.report, list(rounded.notes)
    biased = neurons.bias_mant is not None and bool(np.any(neurons.bias_mant != 0))
    if biased and block.delay_steps != recipe.neuron.synapse_delay:
        notes.append(
            f"layer {name!r}: Loihi adds the bias to the voltage from step 0; the trained model's "
            f"current (batch-norm bias included) is delayed {recipe.neuron.synapse_delay} step(s), "
            "so it starts later"
        )
    w_np = w_int
    if block.kind == "dense":
        layer: ir.SynapticLayer = ir.Dense(name, w_np, neurons, weight_exp=weight_exp)
    else:
        conv = block.synapse.module
        layer = ir.Conv(
            name,
            w_np,
            neurons,
            in_shape=block.in_shape,
            stride=tuple(conv.stride),
            padding=tuple(_padding(conv.padding, name)),
            groups=conv.groups,
            weight_exp=weight_exp,
        )
    if tuple(layer.out_shape) != tuple(block.out_shape):  # pragma: no cover - a planning bug
        raise QuantizationError(f"layer {name!r}: output {layer.out_shape}, the model's {block.out_shape}")
    return layer, report, notes


@dataclass(frozen=True)
class RoundedLayer:
    """One synaptic layer on Loihi's registers: integer ``weight`` (the layer's float weights scaled
    by ``2^scale_exp`` on the 8-bit grid), its :class:`~toolchain.ir.CubaNeurons`, what rounding
    changed (``report``) and why the layer may compute differently (``notes``)."""

    weight: np.ndarray
    neurons: ir.CubaNeurons
    report: LayerQuantization
    notes: tuple[str, ...]


def round_layer(
    name: str,
    kind: str,
    weight: torch.Tensor,
    per_neuron_bias: np.ndarray | None,
    population: Population,
    steps: int,
    scale_exp: int,
    registers: CubaRegisters,
    neuron_report: Sequence[RoundingReport],
    *,
    changed: bool,
    weight_exp: int = 0,
    batch_norm_folded: bool = False,
    wrap_note: bool = True,
) -> RoundedLayer:
    """A float layer (``weight`` in the model's units, ``per_neuron_bias`` in voltage units shaped
    like the layer's output) at the scale ``2^scale_exp`` onto Loihi's weight and bias registers,
    with the neuron ``registers`` chosen for it, and every rounding measured.

    One rule for a trained run (:func:`quantize_model`) and a foreign float graph
    (:func:`toolchain.export.nir_quantize.quantize_nir_graph`). ``wrap_note`` adds a note when the
    24-bit current (or a potential readout's voltage) could wrap. Raises
    :class:`~toolchain.errors.QuantizationError` naming the layer for a weight or bias beyond its
    register.
    """
    factor = 2.0**scale_exp
    w_int = weights_to_int(weight * factor, name)
    notes: list[str] = []
    if wrap_note and may_overflow(w_int, population, steps):
        largest = int(w_int.abs().flatten(1).sum(dim=1).max())
        notes.append(
            f"layer {name!r}: its 24-bit current could wrap if every input fired at once "
            f"(largest sum |w_int| = {largest}, limit 2^23 >> 6)"
            if population.spiking
            else f"layer {name!r}: its 24-bit voltage (the potential readout) could saturate if every input "
            f"fired at every one of the {steps} steps (largest sum |w_int| = {largest}, limit 2^23 >> 6 "
            "over the steps)"
        )
    error = (w_int.to(torch.float64) / (WEIGHT_SCALE * factor) - weight).abs()
    bias_mant: np.ndarray | None = None
    bias_exp = 0
    bias_report: BiasQuantization | None = None
    if per_neuron_bias is not None:
        bias_mant, bias_exp, bias_error = bias_registers(per_neuron_bias * factor, name)
        bias_report = BiasQuantization(
            float(per_neuron_bias.min()), float(per_neuron_bias.max()), bias_exp, bias_error / factor
        )
    neurons = ir.CubaNeurons(
        i_decay=registers.i_decay,
        v_decay=registers.v_decay,
        vth_mant=registers.vth_mant,
        bias_mant=bias_mant,
        bias_exp=bias_exp,
    )
    report = LayerQuantization(
        name=name,
        kind=kind,
        weight_shape=tuple(weight.shape),
        weight_exp=weight_exp,
        scale_exp=scale_exp,
        weight_min=float(weight.min()),
        weight_max=float(weight.max()),
        weight_max_abs_error=float(error.max()),
        weight_rms_error=math.sqrt(float((error**2).mean())),
        batch_norm_folded=batch_norm_folded,
        bias=bias_report,
        registers=registers,
        neuron=tuple(neuron_report),
        neuron_changed_by_export=changed,
    )
    return RoundedLayer(w_int.numpy(), neurons, report, tuple(notes))


def float_registers(
    population: Population, name: str, factor: float = 1.0
) -> tuple[CubaRegisters, list[RoundingReport], bool]:
    """The registers nearest to a float population's parameters (its threshold scaled by
    ``factor``, the layer's scale), the rounding onto them in the population's own units, and
    whether rounding changed anything. A population that never fires (a potential readout) keeps
    its decays and a threshold no voltage reaches."""
    if not population.spiking:
        regs = readout_registers(population.current_decay, population.voltage_decay)
        report = [
            RoundingReport("current_decay", population.current_decay, regs.current_decay),
            RoundingReport("voltage_decay", population.voltage_decay, regs.voltage_decay),
        ]
        return regs, report, any(item.abs_error > 0 for item in report)
    try:
        regs, _ = neuron_registers(
            population.current_decay, population.voltage_decay, population.threshold * factor
        )
    except QuantizationError as exc:
        raise QuantizationError(f"layer {name!r}: {exc}") from None
    report = [
        RoundingReport("current_decay", population.current_decay, regs.current_decay),
        RoundingReport("voltage_decay", population.voltage_decay, regs.voltage_decay),
        RoundingReport("threshold", population.threshold, regs.threshold / factor),
    ]
    return regs, report, any(item.abs_error > 0 for item in report)


def _rounding(
    population: CubaLIF, recipe: Recipe, regs: CubaRegisters, factor: float = 1.0
) -> list[RoundingReport]:
    """What the registers ``regs`` a model computes with hold against the float parameters: a
    potential readout's own decays, or the recipe's decays and threshold (the registers' threshold
    divided by ``factor``, the layer's scale, back in the model's units)."""
    if not population.spiking:
        return [
            RoundingReport("current_decay", population.current_decay, regs.current_decay),
            RoundingReport("voltage_decay", population.voltage_decay, regs.voltage_decay),
        ]
    asked = recipe.neuron
    return [
        RoundingReport("current_decay", asked.current_decay, regs.current_decay),
        RoundingReport("voltage_decay", asked.voltage_decay, regs.voltage_decay),
        RoundingReport("threshold", asked.threshold, regs.threshold / factor),
    ]


def _registers(
    population: CubaLIF, recipe: Recipe, name: str, factor: float = 1.0
) -> tuple[CubaRegisters, list[RoundingReport], bool]:
    """The population's registers (threshold scaled by ``factor``), the rounding onto them (in the
    model's units), and whether the export changes them.

    A fixed-point population already computes with its registers: the rounding from the recipe's
    values happened before training, and the export changes nothing.
    """
    if population.registers is not None:  # fixed point: the registers it computed with
        return population.registers, _rounding(population, recipe, population.registers), False
    return float_registers(Population.of(population), name, factor)


def _padding(padding: Any, name: str) -> tuple[int, ...]:
    if isinstance(padding, str):  # pragma: no cover - the planner always gives integers
        raise QuantizationError(f"layer {name!r}: padding {padding!r} must be given in pixels")
    return tuple(int(p) for p in padding)


__all__ = [
    "BiasQuantization",
    "LayerQuantization",
    "QuantizationReport",
    "RoundedLayer",
    "float_registers",
    "input_encoding",
    "quantize_model",
    "round_layer",
]
