"""A float NIR graph onto Loihi's registers: what ``toolchain convert`` does to another library's model.

:func:`~toolchain.formats.nir.reader.from_nir_graph` reads a graph only when every value already lies
on Loihi's grid (a graph this toolchain wrote); a model trained in snnTorch, SpikingJelly, Norse or
sinabs never does. :func:`quantize_nir_graph` reads such a graph as its library means it
(:func:`~toolchain.formats.nir.convention.nir_to_cuba` with the library's ``convention`` and ``dt``)
and rounds it onto the registers by the exporter's own rule
(:func:`toolchain.export.quantize.round_layer`), layer by layer:

- the neuron node's input scale (``dt/tau_syn * w_in * dt/tau_mem * r``) is folded into the weights
  (per output neuron of a dense layer, per output channel of a convolution);
- a synaptic bias (``Affine``, a convolution's ``bias``) enters the current every step: Loihi adds a
  bias to the voltage, the same only when the current does not carry over (``current_decay = 1``:
  ``LIF``, ``IF``); with a decaying current it is refused. ``v_leak`` is the voltage bias;
- decays and thresholds must be one value per layer (Loihi's CUBA layer shares its registers);
- each layer is scaled by the largest power of two that still fits every register
  (:func:`toolchain.snn.loihi.scale_exponent`; spikes are unchanged by such a scaling) unless
  ``scale_layers=False``, then weights go onto the 8-bit grid, the bias onto 13 bits, the decays
  onto 1/4096 and the threshold onto 1/64, every rounding measured in the
  :class:`~toolchain.export.quantize.QuantizationReport`.

NIR's edges are instantaneous: a foreign graph runs with ``synapse_delay_steps = 0`` (as
:func:`~toolchain.export.nir_torch.nir_to_torch` runs it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from toolchain import ir
from toolchain.errors import QuantizationError
from toolchain.export.quantize import LayerQuantization, QuantizationReport, float_registers, round_layer
from toolchain.formats.nir.convention import (
    CONVENTION_DT,
    CONVENTIONS,
    NirError,
    float_array,
    nir_to_cuba,
    scalar,
)
from toolchain.formats.nir.reader import (
    MAX_TIME_STEPS,
    PLACEHOLDER_NEURONS,
    _layer_name,
    _refuse_ttfs,
    conv_geometry,
    walk,
)
from toolchain.formats.nir.writer import is_toolchain_graph
from toolchain.loihi_numbers import INPUT_SHIFT, Population
from toolchain.snn.loihi import scale_exponent

#: relative spread within which a layer's per-neuron decays or thresholds count as one value
UNIFORM_RTOL = 1e-6


@dataclass(frozen=True)
class ConvertedGraph:
    """A float NIR graph on Loihi's registers: the ``network``, what rounding changed (``report``),
    the time step its neurons were read with (``dt``, seconds; steps for sinabs) and ``notes`` on
    what was assumed (a default ``dt``)."""

    network: ir.Network
    report: QuantizationReport
    dt: float
    notes: tuple[str, ...]


def quantize_nir_graph(
    graph: nir.NIRGraph,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding = "spikes",
    dt: float | None = None,
    convention: str = "nir",
    scale_layers: bool = True,
    name: str = "nir",
) -> ConvertedGraph:
    """``graph`` (any float NIR chain :func:`~toolchain.formats.nir.reader.walk` accepts) quantized
    onto Loihi's registers; see the module docstring.

    ``time_steps`` defaults to the graph's metadata (a foreign graph states none: the error names
    ``--time-steps``); ``dt`` to the graph's ``metadata.dt``, else the convention's
    (:data:`~toolchain.formats.nir.convention.CONVENTION_DT`, with a note). ``input_encoding``:
    ``"spikes"`` (0/1, every library's NIR input) or ``"graded"`` (values in [0, 1] sent as 8-bit
    payloads into the first layer). Raises :class:`NirError` or
    :class:`~toolchain.errors.QuantizationError` naming the node for what Loihi cannot hold.
    """
    _refuse_ttfs(graph)
    if convention not in CONVENTIONS:
        raise NirError(f"convention = {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    if input_encoding not in ir.INPUT_ENCODINGS:
        raise NirError(
            f"input_encoding = {input_encoding!r}: expected one of {', '.join(ir.INPUT_ENCODINGS)}"
        )
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    notes: list[str] = []
    if dt is None and "dt" not in meta:
        dt = CONVENTION_DT[convention]
        if convention != "sinabs":
            notes.append(
                f"the graph states no time step (no dt in its metadata): its neurons are read with "
                f"dt = {dt:g} s ({convention} convention); give --dt SECONDS if it was exported with another"
            )
    step_s = scalar(dt if dt is not None else meta.get("dt"), "dt", float)
    if not (step_s > 0 and math.isfinite(step_s)):
        raise NirError(f"dt = {step_s}: expected a positive, finite time step in seconds")
    steps = time_steps if time_steps is not None else meta.get("time_steps")
    if steps is None:
        raise NirError("the graph states no time steps (no time_steps in its metadata): give --time-steps N")
    steps = scalar(steps, "time_steps", int)
    if not 1 <= steps <= MAX_TIME_STEPS:
        raise NirError(f"time_steps = {steps}: expected 1 ... {MAX_TIME_STEPS}")
    delay = scalar(meta.get("synapse_delay_steps", 0), "metadata.synapse_delay_steps", int)
    if not is_toolchain_graph(meta):
        delay = 0  # NIR's edges are instantaneous
    reports: list[LayerQuantization] = []
    inexact: list[str] = [
        "float graph: post-training quantization, Loihi's integer arithmetic (decays truncated toward "
        "zero, synaptic input on the 1/64 grid"
        + (", input as round(x * 255) / 256" if input_encoding == "graded" else "")
        + ") replaces float arithmetic"
    ]

    def rounded_layer(
        key: str, node: Any, neuron_key: str, neuron: Any, in_shape: tuple[int, ...], first: bool
    ) -> ir.SynapticLayer:
        weight_exp = -INPUT_SHIFT if first and input_encoding == "graded" else 0
        layer, report, layer_notes = _quantize_layer(
            key, node, neuron_key, neuron, in_shape, weight_exp, step_s, convention, steps, scale_layers
        )
        reports.append(report)
        inexact.extend(layer_notes)
        return layer

    layers, input_shape = walk(graph, rounded_layer)
    network = ir.Network(
        name=name,
        input_shape=input_shape,
        input_encoding=input_encoding,
        time_steps=steps,
        layers=tuple(layers),
        synapse_delay_steps=delay,
        metadata={
            "source": f"NIR graph {name!r} quantized by toolchain convert",
            "numeric": "float",
            "nir": {"dt": step_s, "convention": convention},
        },
        readout=ir.implied_readout(layers),
    )
    report = QuantizationReport("float", input_encoding, tuple(reports), tuple(inexact))
    return ConvertedGraph(network, report, step_s, tuple(notes))


def _quantize_layer(
    key: str,
    node: Any,
    neuron_key: str,
    neuron: Any,
    in_shape: tuple[int, ...],
    weight_exp: int,
    dt: float,
    convention: str,
    steps: int,
    scale_layers: bool,
) -> tuple[ir.SynapticLayer, LayerQuantization, tuple[str, ...]]:
    """One weight node and its neuron node as a rounded synaptic layer."""
    name = _layer_name(node, key)
    weight = float_array(getattr(node, "weight", None), f"node {key!r}: weight")
    geometry = conv_geometry(key, node, weight.shape, in_shape)
    dense = geometry is None
    # the layer with placeholder registers: its output shape, checked by the IR
    probe_weight = np.zeros(weight.shape, np.int64)
    probe: ir.SynapticLayer = (
        ir.Dense(name, probe_weight, PLACEHOLDER_NEURONS)
        if geometry is None
        else ir.Conv(name, probe_weight, PLACEHOLDER_NEURONS, **geometry)
    )
    out_shape = probe.out_shape
    params = nir_to_cuba(neuron, dt, f"node {neuron_key!r}", convention)
    if math.prod(params.shape) not in (1, math.prod(out_shape)):
        raise NirError(f"node {neuron_key!r}: {params.shape} neurons, the layer before gives {out_shape}")

    def per_neuron(values: np.ndarray) -> np.ndarray:
        flat = np.broadcast_to(values, params.shape).reshape(-1).astype(np.float64)
        return np.broadcast_to(flat, (math.prod(out_shape),)).copy()

    current_decay = _uniform(per_neuron(params.current_decay), neuron_key, "current decay")
    voltage_decay = _uniform(per_neuron(params.voltage_decay), neuron_key, "voltage decay")
    threshold = _uniform(per_neuron(params.threshold), neuron_key, "threshold")
    spiking = math.isfinite(threshold)
    # the input scale folded into the weights: per output neuron (dense) or channel (conv)
    scale = per_neuron(params.input_scale).reshape(out_shape)
    if dense:
        row_scale = scale
    else:
        per_channel = scale.reshape(out_shape[0], -1)
        row_scale = per_channel[:, 0]
        if np.any(np.abs(per_channel - row_scale[:, None]) > UNIFORM_RTOL * np.abs(scale).max()):
            raise NirError(
                f"node {neuron_key!r}: the input scale differs within an output channel; a convolution "
                "shares its weights over the channel's positions"
            )
    weight = weight * row_scale.reshape(-1, *([1] * (weight.ndim - 1)))
    bias = per_neuron(params.bias).reshape(out_shape)
    synaptic_bias = getattr(node, "bias", None)
    if synaptic_bias is not None:
        b = float_array(synaptic_bias, f"node {key!r}: bias")
        if np.any(b != 0):
            if abs(current_decay - 1.0) > UNIFORM_RTOL:
                raise QuantizationError(
                    f"node {key!r}: a synaptic bias enters the current, which decays (current decay "
                    f"{current_decay:.4g} per step, node {neuron_key!r}); Loihi adds a bias to the "
                    "voltage, the same only when the current does not carry over (LIF, IF neurons): "
                    "train this layer without a bias (e.g. torch.nn.Linear(..., bias=False))"
                )
            if dense:
                b = np.broadcast_to(b, out_shape)
            else:
                b = np.broadcast_to(b.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)
            bias = bias + b * scale
    population = Population(current_decay, voltage_decay, threshold, spiking)  # inf: an integrator
    weight_t = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float64))
    bias_or_none = bias if np.any(bias != 0) else None
    scale_exp = scale_exponent(weight_t, bias_or_none, population, name, steps) if scale_layers else 0
    registers, neuron_report, changed = float_registers(population, name, 2.0**scale_exp)
    rounded = round_layer(
        name,
        "dense" if dense else "conv",
        weight_t,
        bias_or_none,
        population,
        steps,
        scale_exp,
        registers,
        neuron_report,
        changed=changed,
        weight_exp=weight_exp,
    )
    if dense:
        layer: ir.SynapticLayer = ir.Dense(name, rounded.weight, rounded.neurons, weight_exp=weight_exp)
    else:
        layer = ir.Conv(name, rounded.weight, rounded.neurons, weight_exp=weight_exp, **geometry)
    return layer, rounded.report, rounded.notes


def _uniform(values: np.ndarray, key: str, what: str) -> float:
    """The one value of a layer's per-neuron ``values`` (infinite thresholds allowed), else refuse."""
    first = float(values[0])
    if math.isinf(first):
        if np.all(values == first):
            return first
    elif np.all(np.abs(values - first) <= UNIFORM_RTOL * max(abs(first), 1e-12)):
        return first
    raise NirError(
        f"node {key!r}: the {what} differs between neurons ({float(values.min()):.6g} ... "
        f"{float(values.max()):.6g}); a Loihi CUBA layer holds one value for all its neurons"
    )


__all__ = ["ConvertedGraph", "quantize_nir_graph"]
