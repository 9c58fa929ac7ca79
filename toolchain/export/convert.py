"""Another library's float NIR model as a Loihi file: quantize, write, and measure what changed.

:func:`convert_nir` is ``toolchain convert``: it reads a NIR graph (snnTorch, SpikingJelly, Norse,
sinabs, or any float chain), quantizes it onto Loihi's registers
(:func:`toolchain.export.nir_quantize.quantize_nir_graph`), writes it as netx or NIR, and, given
inputs, runs the float graph (:func:`toolchain.export.nir_torch.nir_to_torch`) and the
quantized network (:func:`toolchain.sim.reference.simulate`) on them and counts where their output
spikes differ (:class:`ConversionCheck`).

Two things change a foreign graph's dynamics, and each is measured on its own:

- **quantization**: the float graph against the quantized network, both with the synapse delay of
  the written file;
- **the synapse delay**: NIR's edges are instantaneous, Lava's ``Dense`` delays by one step, so a
  netx file runs every layer one step later (an ``L``-layer network's output starts ``L`` steps
  later and the last ``L`` input steps never reach it). For netx the float graph is run both ways
  and the difference reported; a NIR file keeps the graph's delay of 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolchain import ir
from toolchain.errors import ToolchainError
from toolchain.export.nir_quantize import ConvertedGraph, quantize_nir_graph
from toolchain.export.nir_torch import nir_to_torch
from toolchain.export.quantize import QuantizationReport
from toolchain.formats.nir import load_graph

#: the formats ``convert`` writes, and the synapse delay each one's runtime applies
CONVERT_FORMATS: dict[str, int | None] = {"netx": 1, "nir": None}


@dataclass(frozen=True)
class SpikeAgreement:
    """Two runs of one network's output layer on the same ``samples``: positions ``(t, sample,
    neuron)`` where the spikes differ, the fraction of samples with the same prediction (first
    maximum of the spike counts) and each run's accuracy (``None`` without labels)."""

    samples: int
    positions: int
    mismatched_spikes: int
    prediction_agreement: float
    accuracy_a: float | None
    accuracy_b: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The agreement in words, as ``toolchain convert`` prints it."""
        share = self.mismatched_spikes / max(self.positions, 1)
        text = (
            f"{self.mismatched_spikes} of {self.positions} output spike positions differ ({share:.2%}); "
            f"same prediction on {self.prediction_agreement:.1%} of the samples"
        )
        if self.accuracy_a is not None:
            text += f"; accuracy {self.accuracy_a:.4f} -> {self.accuracy_b:.4f}"
        return text


@dataclass(frozen=True)
class ConversionCheck:
    """What converting changed on the user's inputs: ``quantization`` (float graph ``a`` against the
    quantized network ``b``, both with the written file's synapse delay) and, where the file's
    runtime delays its synapses (netx), ``delay`` (the float graph with NIR's instantaneous edges
    ``a`` against the same graph with the file's delay ``b``)."""

    synapse_delay_steps: int
    quantization: SpikeAgreement
    delay: SpikeAgreement | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "synapse_delay_steps": self.synapse_delay_steps,
            "quantization": self.quantization.to_dict(),
            "delay": None if self.delay is None else self.delay.to_dict(),
        }


@dataclass(frozen=True)
class Conversion:
    """The result of :func:`convert_nir`: the written ``network``, the quantization ``report``, the
    time step used (``dt``), ``notes`` on what was assumed, where it was written (``out``) and the
    ``check`` on the inputs (``None`` when none were given, or ``unchecked`` says why not)."""

    network: ir.Network
    report: QuantizationReport
    dt: float
    notes: tuple[str, ...]
    out: Path
    check: ConversionCheck | None = None
    unchecked: str | None = None


def convert_nir(
    path: str | Path,
    out: str | Path,
    *,
    to: str = "netx",
    time_steps: int | None = None,
    dt: float | None = None,
    convention: str = "nir",
    input_encoding: ir.InputEncoding = "spikes",
    scale_layers: bool = True,
    inputs: str | Path | None = None,
    labels: str | Path | None = None,
    samples: int | None = None,
) -> Conversion:
    """Quantize the float NIR graph in ``path``, write it to ``out`` as ``to`` (``netx`` or ``nir``)
    and, given ``inputs`` (a ``.npy`` in the layout of :mod:`toolchain.sim.input_file`, optionally
    ``labels`` and the first ``samples`` only), check it against the float graph. Nothing is written
    when the graph or the inputs are refused. Errors name the file."""
    if to not in CONVERT_FORMATS:
        raise ToolchainError(f"--to {to!r}: expected one of {', '.join(CONVERT_FORMATS)}")
    path = Path(path)
    graph = load_graph(path)
    try:
        converted = quantize_nir_graph(
            graph,
            time_steps=time_steps,
            input_encoding=input_encoding,
            dt=dt,
            convention=convention,
            scale_layers=scale_layers,
            name=path.stem,
        )
    except ToolchainError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    network = converted_network(converted, to)
    file_inputs = None
    if inputs is not None:
        from toolchain.sim.input_file import read_input_file

        file_inputs = read_input_file(
            inputs, network, labels=labels, samples=samples, steps_from="--time-steps"
        )
    written = _write(network, Path(out), to, converted.dt)
    conversion = Conversion(network, converted.report, converted.dt, converted.notes, written)
    if file_inputs is None:
        return conversion
    try:
        check = check_conversion(graph, converted, network, file_inputs, convention)
    except ToolchainError as exc:  # e.g. a potential readout, which nir_to_torch does not run
        return dataclasses.replace(conversion, unchecked=str(exc))
    return dataclasses.replace(conversion, check=check)


def converted_network(converted: ConvertedGraph, to: str) -> ir.Network:
    """The quantized network with the synapse delay of format ``to``'s runtime (netx: Lava's 1)."""
    delay = CONVERT_FORMATS[to]
    if delay is None or converted.network.synapse_delay_steps == delay:
        return converted.network
    return dataclasses.replace(converted.network, synapse_delay_steps=delay)


def check_conversion(
    graph: Any, converted: ConvertedGraph, network: ir.Network, inputs: Any, convention: str
) -> ConversionCheck:
    """Float graph against the quantized ``network`` on ``inputs`` (see :class:`ConversionCheck`)."""
    from toolchain.sim.reference import simulate

    x = inputs.torch_input(network).to(torch.float32)
    labels = inputs.labels
    delay = network.synapse_delay_steps
    float_same_delay = _float_spikes(graph, converted.dt, convention, delay, x)
    fixed = simulate(network, inputs.inputs, record_spikes=True)
    output = network.synaptic_layers()[-1].name
    assert fixed.spikes is not None
    fixed_spikes = fixed.spikes[output].reshape(network.time_steps, fixed.samples, -1)
    quantization = _agreement(float_same_delay, fixed_spikes, labels)
    delay_check = None
    if delay != converted.network.synapse_delay_steps:
        float_graph_delay = _float_spikes(
            graph, converted.dt, convention, converted.network.synapse_delay_steps, x
        )
        delay_check = _agreement(float_graph_delay, float_same_delay, labels)
    return ConversionCheck(delay, quantization, delay_check)


def _float_spikes(graph: Any, dt: float, convention: str, delay: int, x: torch.Tensor) -> np.ndarray:
    model = nir_to_torch(graph, dt=dt, convention=convention, synapse_delay_steps=delay)
    parts = []
    with torch.no_grad():
        for first in range(0, x.shape[1], 256):
            spikes = model(x[:, first : first + 256])
            parts.append(spikes.reshape(spikes.shape[0], spikes.shape[1], -1).to(torch.uint8).numpy())
    return np.concatenate(parts, axis=1)


def _agreement(a: np.ndarray, b: np.ndarray, labels: np.ndarray | None) -> SpikeAgreement:
    if a.shape != b.shape:  # pragma: no cover - both come from one network and one input
        raise ToolchainError(f"output spikes of shapes {a.shape} and {b.shape} cannot be compared")
    predictions_a = a.sum(axis=0).argmax(axis=1)
    predictions_b = b.sum(axis=0).argmax(axis=1)
    samples = int(a.shape[1])

    def accuracy(predictions: np.ndarray) -> float | None:
        return None if labels is None else float((predictions == labels[:samples]).mean())

    return SpikeAgreement(
        samples=samples,
        positions=int(a.size),
        mismatched_spikes=int((a != b).sum()),
        prediction_agreement=float((predictions_a == predictions_b).mean()) if samples else 1.0,
        accuracy_a=accuracy(predictions_a),
        accuracy_b=accuracy(predictions_b),
    )


def _write(network: ir.Network, out: Path, to: str, dt: float) -> Path:
    if to == "netx":
        from toolchain.formats.netx import write_netx

        return write_netx(network, out)
    from toolchain.formats.nir import write_nir

    return write_nir(network, out, dt)


def format_conversion(conversion: Conversion) -> str:
    """The text ``toolchain convert`` prints: the quantization table and the check."""
    from toolchain.export.pipeline import quantization_table

    lines = quantization_table(conversion.report)
    check = conversion.check
    if check is not None:
        lines.append(
            f"float graph vs quantized network on {check.quantization.samples} samples (synapse delay "
            f"{check.synapse_delay_steps} step(s) in both): {check.quantization.describe()}"
        )
        if check.delay is not None:
            lines.append(
                "Lava's one-step synapse delay (NIR's edges have none), float graph: "
                f"{check.delay.describe()} (more time steps, --time-steps, leave the last layers time "
                "to respond)"
            )
    elif conversion.unchecked is not None:
        lines.append(f"not checked against the float graph: {conversion.unchecked}")
    else:
        lines.append(
            "not checked against the float graph: give --input FILE.npy (and --labels) to measure it"
        )
    lines.append(f"wrote {conversion.out}")
    return "\n".join(lines)


__all__ = [
    "CONVERT_FORMATS",
    "Conversion",
    "ConversionCheck",
    "SpikeAgreement",
    "check_conversion",
    "convert_nir",
    "converted_network",
    "format_conversion",
]
