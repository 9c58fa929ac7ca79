"""A trained spiking network onto Loihi's integer registers: the deployment graph and what changed.

:func:`quantize_model` walks a :class:`~toolchain.snn.models.SpikingNetwork`'s blocks in order and
builds the :class:`toolchain.ir.Network` Loihi would run:

- dense and conv blocks: eval-mode batch norm folded into the weights and a per-channel bias
  (:meth:`~toolchain.snn.blocks.SynapticBlock.folded_weight_bias`), the weights put on Loihi's 8-bit
  grid by :func:`toolchain.snn.loihi.weights_to_int` (a weight off the grid's range is refused,
  naming the layer; nothing is clipped), the neuron parameters by
  :func:`toolchain.snn.loihi.neuron_registers`, the bias as per-neuron ``bias_mant`` with one
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
from toolchain.snn.blocks import FlattenBlock, PoolBlock, SynapticBlock
from toolchain.snn.dynamics import ACTIVATION_SHIFT, DECAY_UNITY, STATE_LIMIT, STATE_SCALE
from toolchain.snn.loihi import (
    INPUT_SHIFT,
    WEIGHT_SCALE,
    CubaRegisters,
    RoundingReport,
    neuron_registers,
    readout_registers,
    weights_to_int,
)
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.numerics import GRADED_ENCODINGS

#: the bias exponent of every exported neuron: lava-dl's netx sets ``bias_exp = 6`` for every
#: neuron (``lava/lib/dl/netx/hdf5.py:158``), i.e. a bias on the ``1/64`` grid of the synaptic input
BIAS_EXP = 6
#: the largest power of two by which a float layer is scaled (see :func:`quantize_model`)
MAX_SCALE_EXP = 12
#: the smallest: a layer whose folded weights overflow the grid may be scaled down this far
MIN_SCALE_EXP = -4


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
    weights' rounding shrinks ``2^k`` times; see :func:`_scale_exponent`). Fixed-point layers are
    never scaled: they export as they are.

    ``classes`` (the dataset's class names, default ``"0"``, ``"1"``, ...) and ``source`` (where the
    model came from, e.g. its run folder) go into the graph's ``metadata``. Raises
    :class:`~toolchain.errors.QuantizationError` or
    :class:`~toolchain.errors.UnsupportedDynamicsError` naming the layer for anything Loihi cannot
    hold; nothing is clipped.
    """
    if recipe.ttfs.enabled:  # its network is not a CUBA SNN (toolchain.train.ttfs)
        from toolchain.train.ttfs import refusal_message

        raise UnsupportedDynamicsError(refusal_message(recipe, "Loihi quantization"))
    scheme = recipe.encoding.scheme
    encoding = input_encoding(scheme)
    delay_steps = recipe.neuron.synapse_delay
    numeric = recipe.neuron.numeric
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


def bias_registers(bias: np.ndarray, layer: str) -> tuple[np.ndarray, int, float]:
    """A float bias (units of the voltage, per neuron) as 13-bit mantissas and their exponent.

    Loihi adds ``bias_mant << bias_exp`` to the voltage every step, in state units (a voltage of
    1.0 is ``2^12``). The exponent is :data:`BIAS_EXP` (6): lava-dl's netx gives every neuron that
    exponent, so the mantissas ``round(bias * 2^12 / 2^6) = round(bias * 64)`` (the ``1/64`` grid of
    the synaptic input) load in netx as they are. Returns ``(bias_mant, bias_exp, max_abs_error)``,
    the error in float units (at most ``1/128``); raises
    :class:`~toolchain.errors.QuantizationError` naming ``layer`` when a mantissa does not fit the
    signed 13-bit register (``|bias| > 4095 / 64``).
    """
    if not np.isfinite(bias).all():
        raise QuantizationError(f"layer {layer!r}: the folded bias contains NaN or infinite values")
    scaled = np.asarray(bias, dtype=np.float64) * STATE_SCALE
    mant = np.round(scaled / 2.0**BIAS_EXP)
    if mant.size == 0 or (mant.min() >= ir.BIAS_MANT_MIN and mant.max() <= ir.BIAS_MANT_MAX):
        error = float(np.abs(mant * 2.0**BIAS_EXP - scaled).max(initial=0.0)) / STATE_SCALE
        return mant.astype(np.int64), BIAS_EXP, error
    largest = ir.BIAS_MANT_MAX * 2**BIAS_EXP / STATE_SCALE
    raise QuantizationError(
        f"layer {layer!r}: the folded batch-norm bias spans [{bias.min():.4f}, {bias.max():.4f}], "
        f"beyond Loihi's bias register (13-bit mantissa, bias_exp = {BIAS_EXP} as netx uses it: "
        f"|bias| <= {largest:.2f})"
    )


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
    weight, bias = block.folded_weight_bias()
    weight = weight.detach().to(torch.float64)
    channel_bias = None if bias is None else bias.detach().to(torch.float64).numpy()
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
    fixed = population.registers is not None
    steps = recipe.encoding.time_steps
    scale_exp = _scale_exponent(weight, per_neuron, population, name, steps) if scale and not fixed else 0
    factor = 2.0**scale_exp
    registers, neuron_report, changed = _registers(population, recipe, name, factor)
    w_int = weights_to_int(weight * factor, name)
    notes: list[str] = []
    if not fixed and _may_overflow(w_int, population, steps):  # fixed point wraps alike
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
    if channel_bias is not None and per_neuron is not None:
        bias_mant, bias_exp, bias_error = bias_registers(per_neuron * factor, name)
        bias_report = BiasQuantization(
            float(channel_bias.min()), float(channel_bias.max()), bias_exp, bias_error / factor
        )
        if block.delay_steps != recipe.neuron.synapse_delay and np.any(bias_mant != 0):
            notes.append(
                f"layer {name!r}: Loihi adds the bias to the voltage from step 0; the trained model's "
                f"current (batch-norm bias included) is delayed {recipe.neuron.synapse_delay} step(s), "
                "so it starts later"
            )
    neurons = ir.CubaNeurons(
        i_decay=registers.i_decay,
        v_decay=registers.v_decay,
        vth_mant=registers.vth_mant,
        bias_mant=bias_mant,
        bias_exp=bias_exp,
    )
    w_np = w_int.numpy()
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
    report = LayerQuantization(
        name=name,
        kind=block.kind,
        weight_shape=tuple(weight.shape),
        weight_exp=weight_exp,
        scale_exp=scale_exp,
        weight_min=float(weight.min()),
        weight_max=float(weight.max()),
        weight_max_abs_error=float(error.max()),
        weight_rms_error=math.sqrt(float((error**2).mean())),
        batch_norm_folded=block.norm is not None,
        bias=bias_report,
        registers=registers,
        neuron=tuple(neuron_report),
        neuron_changed_by_export=changed,
    )
    return layer, report, notes


def _registers(
    population: CubaLIF, recipe: Recipe, name: str, factor: float = 1.0
) -> tuple[CubaRegisters, list[RoundingReport], bool]:
    """The population's registers (threshold scaled by ``factor``), the rounding onto them (in the
    model's units), and whether the export changes them.

    A fixed-point population already computes with its registers: the rounding from the recipe's
    values happened before training, and the export changes nothing.
    """
    if not population.spiking:  # a potential readout: its own decays, a threshold no voltage reaches
        regs = population.registers or readout_registers(population.current_decay, population.voltage_decay)
        report = [
            RoundingReport("current_decay", population.current_decay, regs.current_decay),
            RoundingReport("voltage_decay", population.voltage_decay, regs.voltage_decay),
        ]
        return regs, report, population.registers is None and any(item.abs_error > 0 for item in report)
    if population.registers is not None:
        regs = population.registers
        asked = recipe.neuron
        report = [
            RoundingReport("current_decay", asked.current_decay, regs.current_decay),
            RoundingReport("voltage_decay", asked.voltage_decay, regs.voltage_decay),
            RoundingReport("threshold", asked.threshold, regs.threshold),
        ]
        return regs, report, False
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


def _scale_exponent(
    weight: torch.Tensor, bias: np.ndarray | None, population: CubaLIF, name: str, steps: int
) -> int:
    """The largest ``k`` in ``[MIN_SCALE_EXP, MAX_SCALE_EXP]`` at which the layer scaled by 2^k fits.

    Scaling a layer's weights, bias and threshold by the same positive factor leaves its spikes
    unchanged (the CUBA dynamics are linear in ``u``, ``v``, input, bias and threshold, and the
    reset is to zero), so the float model is the same; on Loihi's fixed grid the weights' relative
    rounding error shrinks by ``2^k``. ``k`` is the largest at which every weight stays on the
    8-bit grid, the threshold in its 17-bit register, the bias in its registers, and the current
    cannot wrap even if every input fires with the largest weight sum of any neuron
    (``sum |w_int| << 6 / current_decay < 2^23``; for a potential readout, which never fires, the
    voltage summed over the ``steps`` cannot saturate, :func:`_may_overflow`). A negative ``k`` (the
    layer scaled down) only
    when the layer does not fit as it is, e.g. batch norm folded into weights beyond the grid's
    ``[-4, 3.97]``; 0 when nothing fits (the export then refuses the layer, naming it).
    """

    def fitted(k: int) -> torch.Tensor | None:
        """The integer weights at scale ``2^k``, or None if a register cannot hold the layer."""
        factor = 2.0**k
        try:
            if population.spiking:
                neuron_registers(
                    population.current_decay, population.voltage_decay, population.threshold * factor
                )
            w_int = weights_to_int(weight * factor, name)
            if bias is not None:
                bias_registers(bias * factor, name)
        except QuantizationError:
            return None
        return w_int

    for k in range(MAX_SCALE_EXP, 0, -1):
        w_int = fitted(k)
        if w_int is not None and not _may_overflow(w_int, population, steps):
            return k
    if fitted(0) is not None:
        return 0
    for k in range(-1, MIN_SCALE_EXP - 1, -1):  # the layer does not fit as it is: scale it down
        if fitted(k) is not None:
            return k
    return 0


def _may_overflow(w_int: torch.Tensor, population: CubaLIF, steps: int) -> bool:
    """Whether a 24-bit state register could leave its range: the current of a spiking population
    (:func:`_current_may_wrap`), or the voltage of a potential readout, which integrates every step's
    input: ``steps * sum |w_int| << 6 / current_decay >= 2^23``."""
    if population.spiking:
        return _current_may_wrap(w_int, population.current_decay)
    fan_in_sum = float(w_int.abs().flatten(1).sum(dim=1).max())
    return steps * fan_in_sum * 2**ACTIVATION_SHIFT / max(population.current_decay, 1e-12) >= STATE_LIMIT


def _current_may_wrap(w_int: torch.Tensor, current_decay: float) -> bool:
    """Whether the 24-bit current could wrap: the neuron with the largest ``sum |w_int|``, every
    input firing (a graded payload is at most 255/256 of a spike), accumulated over a current that
    keeps ``1 - current_decay`` per step: ``sum |w_int| << 6 / current_decay >= 2^23``."""
    fan_in_sum = float(w_int.abs().flatten(1).sum(dim=1).max())
    return fan_in_sum * 2**ACTIVATION_SHIFT / max(current_decay, 1e-12) >= STATE_LIMIT


def _padding(padding: Any, name: str) -> tuple[int, ...]:
    if isinstance(padding, str):  # pragma: no cover - the planner always gives integers
        raise QuantizationError(f"layer {name!r}: padding {padding!r} must be given in pixels")
    return tuple(int(p) for p in padding)


__all__ = [
    "BIAS_EXP",
    "BiasQuantization",
    "LayerQuantization",
    "QuantizationReport",
    "bias_registers",
    "input_encoding",
    "quantize_model",
]
