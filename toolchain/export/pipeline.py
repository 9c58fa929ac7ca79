"""``toolchain export``'s job: quantize a loaded run, write one format, measure what quantizing cost.

:func:`export_run` quantizes the run's model (:func:`toolchain.export.quantize.quantize_model`),
writes the file with the format's own writer (netx and NIR hold the quantized graph; ONNX holds the
float torch model, the SNN unrolled over its time steps or the ANN twin, so it is not quantized) and,
for netx and NIR, compares the test accuracy before (the torch model, evaluated as
:func:`toolchain.train.evaluate.evaluate` does) and after (the quantized graph in the reference
simulator, :func:`toolchain.sim.reference.simulate`) on the same test samples, and how often the two
predict the same class. :func:`format_report` is the text the command prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolchain import ir
from toolchain.data import ArraySplit
from toolchain.data.batches import EVAL_BATCH, evaluation_inputs
from toolchain.errors import QuantizationError, ToolchainError
from toolchain.export.quantize import QuantizationReport, quantize_model
from toolchain.export.run_loader import LoadedRun
from toolchain.formats.detect import FORMATS
from toolchain.io import check_writable_dir

ONNX_MODELS: tuple[str, ...] = ("snn", "ann")


@dataclass(frozen=True)
class AccuracyComparison:
    """Test accuracy and spikes per sample of the torch model (before) and the quantized graph
    (after) on the same samples; ``agreement``: the fraction of samples both give the same class."""

    samples: int
    before: float
    spikes_per_sample_before: float
    after: float
    spikes_per_sample_after: float
    agreement: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "before": self.before,
            "after": self.after,
            "spikes_per_sample_before": self.spikes_per_sample_before,
            "spikes_per_sample_after": self.spikes_per_sample_after,
            "agreement": self.agreement,
        }


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` did: the file written, the quantization report and the accuracies."""

    run_dir: Path
    format: str
    out: Path
    network: ir.Network | None
    report: QuantizationReport | None
    accuracy: AccuracyComparison | None
    onnx_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "format": self.format,
            "onnx_model": self.onnx_model,
            "out": str(self.out),
            "quantization": None if self.report is None else self.report.to_dict(),
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
        }


def check_export_arguments(fmt: str, out: Path, onnx_model: str, samples: int | None) -> None:
    """Refuse an unknown format, a bad sample count or an unwritable output before any work."""
    if fmt not in FORMATS:
        raise ToolchainError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if onnx_model not in ONNX_MODELS:
        raise ToolchainError(f"--onnx-model {onnx_model!r}: expected one of {', '.join(ONNX_MODELS)}")
    if samples is not None and samples < 1:
        raise ToolchainError(f"--samples {samples}: expected a positive number of test samples")
    if out.is_dir():
        raise ToolchainError(f"{out}: --out is a folder; give the file to write")
    check_writable_dir(out.parent if str(out.parent) else Path("."))


def export_run(
    run: LoadedRun,
    fmt: str,
    out: str | Path,
    *,
    onnx_model: str = "snn",
    evaluate: bool = True,
    samples: int | None = None,
    scale_layers: bool = True,
) -> ExportResult:
    """Quantize ``run`` (netx, NIR), write ``out`` in format ``fmt`` and measure the accuracies.

    ``samples`` limits the evaluation to the first ``samples`` test samples; ``evaluate=False``
    skips it; ``scale_layers`` as in :func:`~toolchain.export.quantize.quantize_model`. Raises
    :class:`~toolchain.errors.ToolchainError` subclasses naming the layer, file or option for
    anything that cannot be exported.
    """
    out = Path(out)
    check_export_arguments(fmt, out, onnx_model, samples)
    if fmt == "onnx":
        _write_onnx(run, onnx_model, out)
        return ExportResult(run.run_dir, fmt, out, None, None, None, onnx_model)
    network, report = quantize_run(run, scale_layers=scale_layers)
    write_graph(network, fmt, out)
    accuracy = compare_accuracy(run, network, samples) if evaluate else None
    return ExportResult(run.run_dir, fmt, out, network, report, accuracy)


def quantize_run(run: LoadedRun, *, scale_layers: bool = True) -> tuple[ir.Network, QuantizationReport]:
    """``run``'s model on Loihi's registers (:func:`~toolchain.export.quantize.quantize_model`), with
    the run's class names and folder as the graph's provenance: what ``toolchain export`` and
    ``toolchain run`` both write."""
    return quantize_model(
        run.model,
        run.recipe,
        classes=run.dataset.classes,
        source=str(run.run_dir.resolve()),
        scale_layers=scale_layers,
    )


def write_graph(network: ir.Network, fmt: str, out: str | Path) -> Path:
    """Write the deployment graph as ``fmt`` (``netx`` or ``nir``), atomically; returns the path."""
    return _writer(fmt)(network, Path(out))


def compare_accuracy(run: LoadedRun, network: ir.Network, samples: int | None = None) -> AccuracyComparison:
    """Accuracy of the torch model and of ``network`` in the reference simulator, same test samples,
    and how often the two predict the same class."""
    from toolchain.sim.reference import simulate

    split = run.dataset.test
    if samples is not None:
        split = split.subset(slice(0, min(samples, len(split))))
    torch_predictions, torch_spikes = torch_model_predictions(run, split)
    result = simulate(network, simulator_inputs(run, network, split), batch_size=EVAL_BATCH)
    labels = np.asarray(split.y)
    predictions = np.asarray(result.predictions)
    n = max(len(split), 1)
    return AccuracyComparison(
        samples=len(split),
        before=float((torch_predictions == labels).sum()) / n,
        spikes_per_sample_before=torch_spikes,
        after=float((predictions == labels).sum()) / n,
        spikes_per_sample_after=result.activity.spikes_per_sample,
        agreement=float((predictions == torch_predictions).sum()) / n,
    )


def torch_model_predictions(run: LoadedRun, split: ArraySplit) -> tuple[np.ndarray, float]:
    """The torch model's predicted classes on ``split`` and its spikes per sample (all layers).

    Computed as :func:`toolchain.train.evaluate.evaluate` does (eval mode, batches of
    :data:`EVAL_BATCH`, rate spikes drawn from seed 0), keeping each sample's prediction.
    """
    model = run.model.eval()
    predictions: list[np.ndarray] = []
    spikes = 0.0
    with torch.no_grad():
        for x, _ in evaluation_inputs(split, run.recipe.encoding):
            out = model(x)
            predictions.append(out.logits.argmax(dim=1).numpy())
            spikes += sum(float(counts.sum()) for counts in out.spike_counts_per_sample().values())
    joined = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    return joined, spikes / max(len(split), 1)


def simulator_inputs(run: LoadedRun, network: ir.Network, split: ArraySplit) -> np.ndarray:
    """The test samples as the simulator takes them: analog ``[B, *shape]`` in [0, 1] for graded
    input, else the encoded 0/1 spikes ``[T, B, *shape]`` (rate spikes drawn as the evaluation
    draws them, by :func:`toolchain.sim.inputs.network_inputs`: seed 0, batches of
    :data:`EVAL_BATCH`, so both see the same spikes)."""
    from toolchain.sim.inputs import InputRangeError, network_inputs

    try:
        return network_inputs(network, split, run.recipe.encoding).inputs
    except InputRangeError as exc:
        raise QuantizationError(
            f"the test samples of {run.recipe.data.dataset!r} span [{exc.low:g}, {exc.high:g}]: "
            "Loihi's 8-bit graded input (round(x * 255)) needs values in [0, 1], so the quantized "
            "network cannot be evaluated on them (pass --no-eval to skip the evaluation)"
        ) from None


def ann_twin(run: LoadedRun) -> torch.nn.Module:
    """The run's ANN twin with the SNN's trained weights (in fixed point: the on-grid weights)."""
    from toolchain.snn.ann import build_ann
    from toolchain.snn.blocks import SynapticBlock

    ann = build_ann(run.recipe.model, run.dataset.sample_shape, run.dataset.num_classes)
    state = {
        key.replace(".parametrizations.weight.original", ".weight"): value
        for key, value in run.model.state_dict().items()
    }
    for index, block in enumerate(run.model.blocks):
        if isinstance(block, SynapticBlock):
            state[f"blocks.{index}.synapse.module.weight"] = block.weight.detach()
    ann.load_state_dict(state)
    return ann.eval()


def _writer(fmt: str) -> Any:
    if fmt == "netx":
        from toolchain.formats.netx import write_netx

        return write_netx
    from toolchain.formats.nir import write_nir

    return write_nir


def _write_onnx(run: LoadedRun, onnx_model: str, out: Path) -> None:
    from toolchain.export.onnx import export_ann_onnx, export_snn_onnx

    if onnx_model == "ann":
        export_ann_onnx(ann_twin(run), out)
    else:
        export_snn_onnx(run.model, run.recipe.encoding.time_steps, out)


def format_report(result: ExportResult) -> str:
    """The text ``toolchain export`` prints: the per-layer quantization table and the accuracies."""
    lines: list[str] = []
    report = result.report
    if report is None:
        lines.append(
            f"onnx: the float torch model ({result.onnx_model}), not quantized "
            "(Loihi quantization applies to netx and nir)"
        )
    else:
        lines += quantization_table(report)
    accuracy = result.accuracy
    if accuracy is not None:
        lines.append(
            f"accuracy on {accuracy.samples} test samples: before {accuracy.before:.4f} "
            f"(torch model, {accuracy.spikes_per_sample_before:.1f} spikes/sample)"
        )
        lines.append(
            f"  after {accuracy.after:.4f} (quantized, reference simulator, "
            f"{accuracy.spikes_per_sample_after:.1f} spikes/sample), change "
            f"{accuracy.after - accuracy.before:+.4f}; "
            f"the same prediction as the torch model on {accuracy.agreement:.1%} of the samples"
        )
    lines.append(f"wrote {result.out}")
    return "\n".join(lines)


def quantization_table(report: QuantizationReport) -> list[str]:
    """The per-layer quantization table and what made the export inexact, as printed lines."""
    header = (
        "layer",
        "kind",
        "weights",
        "exp",
        "scale",
        "float range",
        "max |err|",
        "rms err",
        "bias exp / err",
        "regs",
    )
    rows = [header]
    for layer in report.layers:
        bias = "-" if layer.bias is None else f"{layer.bias.bias_exp} / {layer.bias.max_abs_error:.2e}"
        regs = layer.registers
        rows.append(
            (
                layer.name,
                layer.kind,
                "x".join(str(size) for size in layer.weight_shape),
                str(layer.weight_exp),
                f"2^{layer.scale_exp}",
                f"[{layer.weight_min:.4f}, {layer.weight_max:.4f}]",
                f"{layer.weight_max_abs_error:.2e}",
                f"{layer.weight_rms_error:.2e}",
                bias,
                f"iDecay={regs.i_decay} vDecay={regs.v_decay} vThMant={regs.vth_mant}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"quantization: {report.numeric} model -> Loihi registers, input {report.input_encoding}; "
        "each layer's weights, bias and threshold scaled by 'scale' (spikes unchanged), then "
        "w_int = 2 * round(w * scale * 32); errors |w_int / (64 * scale) - w| in the model's units"
    ]
    lines += [
        ("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]
    changed = {
        (item.name, item.requested, item.quantized)
        for layer in report.layers
        for item in layer.neuron
        if item.abs_error > 0
    }
    for name, requested, quantized in sorted(changed):
        when = "in training" if report.numeric == "fixed_point" else "by the export"
        lines.append(
            f"  {name}: {requested:g} -> {quantized:.10g} "
            f"(rounded {when}, error {abs(quantized - requested):.2e})"
        )
    if report.exact:
        lines.append("exact: yes (the quantized network computes exactly what the trained model computes)")
    else:
        lines.append("exact: no")
        lines += [f"  - {reason}" for reason in report.inexact]
    return lines


__all__ = [
    "FORMATS",
    "ONNX_MODELS",
    "AccuracyComparison",
    "ExportResult",
    "ann_twin",
    "check_export_arguments",
    "compare_accuracy",
    "export_run",
    "format_report",
    "quantization_table",
    "quantize_run",
    "simulator_inputs",
    "torch_model_predictions",
    "write_graph",
]
