"""Reports of one or several energy estimates: Markdown, HTML, PNG plots and JSON.

:func:`write_report` writes into ``out_dir``:

- ``report.md`` and ``report.html``: a comparison table of every run (with each profile's error
  band), then per run the per-layer table (counts, joules by component, cores), the energy by term
  (a term the profile has no cost for reads "not included"), the placement, the NeuroBench-style
  workload metrics, the ANN twin on each conventional baseline, the assumptions and the citations
  of every constant;
- ``energy_per_layer.png`` (stacked synaptic / neuron / routing per layer, one panel per run),
  ``spikes_per_layer.png`` (one bar per run and layer) and ``snn_vs_ann.png`` (the SNN on its target
  against the ANN twin on each baseline, log scale);
- ``report.json``: ``{"estimates": [EnergyEstimate.to_dict(), ...]}``.

Several runs (e.g. the baseline and the sparse model of one recipe) share one report: the tables
and plots put them side by side.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from toolchain.energy.model import TERMS, EnergyEstimate
from toolchain.errors import ToolchainError
from toolchain.io import atomic_write, check_writable_dir, write_json, write_text

PLOTS = ("energy_per_layer.png", "spikes_per_layer.png", "snn_vs_ann.png")
_COMPONENT_COLOURS = {"synaptic": "#4C72B0", "neuron": "#DD8452", "routing": "#55A868"}


def format_j(value: float) -> str:
    """Joules with an SI prefix (``12.3 µJ``)."""
    return _si(value, "J")


def format_s(value: float) -> str:
    return _si(value, "s")


def _si(value: float, unit: str) -> str:
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_count(value: float) -> str:
    """A count with an SI prefix from ten thousand on (``33.3 k``, ``2.1 M``), else up to 4 digits."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= factor:
            divisor = 1e3 if prefix == "k" else factor
            return f"{value / divisor:.3g} {prefix}"
    return f"{value:.4g}"


def format_ratio(value: float) -> str:
    """A ratio: ``3.15``, or ``1/24.6 k`` below 0.01 (no exponent notation)."""
    if value == 0 or value >= 0.01:
        return f"{value:.3g}"
    return f"1/{format_count(1 / value)}"


def format_constant(key: str, value: float) -> str:
    """A profile constant in its unit with an SI prefix (``26.5 µJ`` for ``overhead.step_pj``)."""
    if key.endswith("_pj"):
        return format_j(value * 1e-12)
    if key.endswith("_ns"):
        return format_s(value * 1e-9)
    if key.endswith("_mw"):
        return _si(value * 1e-3, "W")
    return format_count(value)


def format_component(estimate: EnergyEstimate, component: str) -> str:
    """A component's energy, or ``not included`` for a term the estimate was not asked for."""
    if component in estimate.options and not estimate.options[component]:
        return "not included"
    return format_j(estimate.breakdown_j[component])


def _accuracy(estimate: EnergyEstimate) -> str:
    return "not given" if estimate.accuracy is None else f"{estimate.accuracy:.4f}"


#: under the comparison with conventional hardware, in the report and beside its plot
ANN_CAVEAT = (
    "Not a like-for-like comparison: the conventional figures are per-operation energies of whole "
    "processors (memory traffic included), the SNN's are the chip's per-operation costs"
)


#: the report's text files
REPORT_FILES: tuple[str, ...] = ("report.md", "report.html", "report.json")
#: what ``toolchain run`` writes beside the report (removed with a previous report)
OTHER_REPORT_FILES: tuple[str, ...] = ("energy.json",)


def write_report(estimates: Sequence[EnergyEstimate], out_dir: str | Path) -> dict[str, Path]:
    """Write the report files of ``estimates`` into ``out_dir``, replacing those of an earlier report
    there (a folder holds one report); returns name -> path."""
    if not estimates:
        raise ToolchainError("write_report: no estimates to report")
    out = check_writable_dir(out_dir)
    for name in (*PLOTS, *REPORT_FILES, *OTHER_REPORT_FILES):  # one report per folder: no stale file
        (out / name).unlink(missing_ok=True)
    labels = [e.label for e in estimates]
    if len(set(labels)) != len(labels):
        estimates = [_relabel(e, f"{e.label} ({i + 1})") for i, e in enumerate(estimates)]
    paths = {name: out / name for name in PLOTS}
    _plot_energy(estimates, paths["energy_per_layer.png"])
    _plot_spikes(estimates, paths["spikes_per_layer.png"])
    _plot_twin(estimates, paths["snn_vs_ann.png"])
    sections = _sections(estimates)
    paths["report.md"] = write_text(out / "report.md", _markdown(sections))
    images = {name: paths[name].read_bytes() for name in PLOTS}
    paths["report.html"] = write_text(out / "report.html", _html(sections, images))
    paths["report.json"] = write_json(out / "report.json", {"estimates": [e.to_dict() for e in estimates]})
    return paths


def _relabel(estimate: EnergyEstimate, label: str) -> EnergyEstimate:
    from dataclasses import replace

    return replace(estimate, label=label)


# --- content, shared by Markdown and HTML ---------------------------------------------------------

Table = tuple[list[str], list[list[str]]]


def _sections(estimates: Sequence[EnergyEstimate]) -> list[tuple[str, list[object]]]:
    """``[(heading, [paragraph str | Table | ("img", file, alt) ...])]``."""
    summary_header = [
        "run",
        "target",
        "activity",
        "energy / inference",
        "synaptic",
        "neuron",
        "routing",
        "static",
        "overhead",
        "energy / time step",
        "latency / inference",
        "spikes / inference",
        "accuracy",
        "cores",
    ]
    summary_rows = [
        [
            e.label,
            e.target.name + ("" if e.target.verified else " (unverified)"),
            f"{e.activity_source}, {e.samples} samples",
            format_j(e.energy_per_inference_j),
            *(format_component(e, c) for c in ("synaptic", "neuron", "routing", "static", "overhead")),
            format_j(e.energy_per_step_j),
            format_s(e.latency_per_inference_s),
            f"{sum(layer.spikes for layer in e.layers):.1f}",
            _accuracy(e),
            str(e.placement.cores),
        ]
        for e in estimates
    ]
    bands = {e.target.name: _error_band(e) for e in estimates}
    sections: list[tuple[str, list[object]]] = [
        (
            "Summary",
            [
                "Energy and latency of one inference, from measured activity, and the accuracy "
                "measured with the same activity. Static power and the per-time-step overhead "
                "(management cores, I/O, synchronisation) are not included unless the estimate was "
                "asked for them (--static, --overhead); the energy is then the chip's dynamic energy "
                "of the network's operations, a lower bound of what a board draws.",
                (summary_header, summary_rows),
                "Error band of each profile (how far its estimates may be from the chip, and on what "
                "evidence):",
                ("list", [f"{name}: {band}" for name, band in bands.items()]),
                ("img", "energy_per_layer.png", "energy per layer by component"),
                ("img", "spikes_per_layer.png", "spikes per layer"),
                ("img", "snn_vs_ann.png", "SNN on its target against the ANN twin on each baseline"),
                f"{ANN_CAVEAT}; the SNN's static power and overhead only where the summary includes them.",
            ],
        )
    ]
    if len(estimates) > 1:
        base = estimates[0]
        base_spikes = max(sum(layer.spikes for layer in base.layers), 1e-300)
        rows = [
            [
                e.label,
                format_j(e.energy_per_inference_j),
                f"{e.energy_per_inference_j / base.energy_per_inference_j:.3f}",
                f"{sum(layer.spikes for layer in e.layers) / base_spikes:.3f}",
                f"{e.workload.activation_sparsity:.4f}",
            ]
            for e in estimates
        ]
        sections.append(
            (
                "Comparison",
                [
                    f"Relative to the first run ({base.label}).",
                    (
                        ["run", "energy / inference", "energy ratio", "spike ratio", "activation sparsity"],
                        rows,
                    ),
                ],
            )
        )
    for e in estimates:
        layer_rows = [
            [
                layer.name,
                layer.kind,
                str(layer.neurons),
                f"{layer.cores} x {layer.neurons_per_core}",
                f"{layer.spikes:.1f}",
                format_count(layer.synops),
                format_count(layer.active_updates),
                format_count(layer.idle_updates),
                format_count(layer.messages),
                format_count(layer.east_west_hops + layer.north_south_hops),
                format_j(layer.synaptic_j),
                format_j(layer.neuron_j),
                format_j(layer.routing_j),
                format_j(layer.total_j),
            ]
            for layer in e.layers
        ]
        w = e.workload
        workload_rows = [
            ["activation sparsity", f"{w.activation_sparsity:.4f}"],
            ["effective synaptic ops: ACs (spike input)", format_count(w.effective_acs)],
            ["effective synaptic ops: MACs (graded input)", format_count(w.effective_macs)],
            ["dense ops (all connections, every step)", format_count(w.dense_ops)],
            ["connection sparsity", f"{w.connection_sparsity:.4f}"],
            ["footprint", f"{w.footprint_bytes} bytes"],
            ["parameters", str(w.parameters)],
        ]
        twin_rows = [
            [
                b.target,
                format_count(b.macs),
                format_j(b.mac_pj * 1e-12),
                format_j(b.ann_twin_j),
                "" if b.snn_ops_j is None else format_j(b.snn_ops_j),
                format_ratio(b.ann_twin_j / e.energy_per_inference_j),
            ]
            for b in e.baselines
        ]
        term_rows = [
            [
                term.name,
                term.component,
                term.counted,
                format_count(term.count),
                _term_cost(e, term.name),
                _term_energy(term.energy_j, term.count),
            ]
            for term in e.terms
        ]
        p = e.placement
        cited = [
            [key, format_constant(key, value), e.target.sources[key] + _derived(e, key)]
            for key, value in e.target.values.items()
        ]
        cited += [[f"{b.target}: mac_pj", format_constant("mac_pj", b.mac_pj), b.source] for b in e.baselines]
        sections.append(
            (
                f"{e.label} on {e.target.name}",
                [
                    f"Network `{e.network}`, {e.time_steps} time steps, activity from {e.activity_source} "
                    f"({e.samples} samples), accuracy {_accuracy(e)}. Target: {e.target.title}"
                    + ("" if e.target.verified else " — **unverified profile**")
                    + f". Placement: {p.cores} cores, {p.tiles} tiles, {p.chips} chip(s). "
                    f"Error band of the profile: {_error_band(e)}",
                    (
                        [
                            "layer",
                            "kind",
                            "neurons",
                            "cores x neurons",
                            "spikes",
                            "synops",
                            "active updates",
                            "idle updates",
                            "messages",
                            "hops",
                            "synaptic",
                            "neuron",
                            "routing",
                            "total",
                        ],
                        layer_rows,
                    ),
                    "Energy by term (per inference; a term the profile gives no cost for is not included):",
                    (["term", "component", "counted", "count", "cost", "energy"], term_rows),
                    "Workload metrics (NeuroBench definitions, per inference):",
                    (["metric", "value"], workload_rows),
                    "The ANN twin (same layers, one dense pass) on each conventional baseline, and the SNN's "
                    "own effective operations priced on it:",
                    (
                        ["baseline", "MACs", "energy / MAC", "ANN twin", "SNN ops", "ANN twin / SNN here"],
                        twin_rows,
                    ),
                    f"{ANN_CAVEAT} (of its dynamic energy only, unless the summary includes static "
                    "power and overhead); the column 'SNN ops' prices the SNN's own operations on the "
                    "same processor, the like-for-like figure.",
                    "Assumptions:",
                    ("list", list(e.assumptions)),
                    "Constants and their sources:",
                    (["key", "value", "source"], cited),
                ],
            )
        )
    return sections


def _error_band(estimate: EnergyEstimate) -> str:
    return estimate.target.error_band or "not stated by the profile"


def _term_energy(energy_j: float | None, count: float) -> str:
    if energy_j is None:
        return "not included"
    if energy_j == 0:
        return "none (no event counted)" if count == 0 else "none (priced at 0)"
    return format_j(energy_j)


def _term_cost(estimate: EnergyEstimate, name: str) -> str:
    """The profile's cost(s) of one term (``81 pJ / 52 pJ``), or ``not given``."""
    keys = next((term.keys for term in TERMS if term.name == name), ())
    values = estimate.target.values
    given = [format_constant(key, values[key]) for key in keys if key in values]
    return " / ".join(given) if given else "not given"


def _derived(estimate: EnergyEstimate, key: str) -> str:
    how = estimate.target.derived.get(key)
    return f" (derived: {how})" if how else ""


def _markdown(sections: list[tuple[str, list[object]]]) -> str:
    lines = ["# Energy report", ""]
    for heading, items in sections:
        lines += [f"## {heading}", ""]
        for item in items:
            if isinstance(item, str):
                lines += [item, ""]
            elif item[0] == "img":
                lines += [f"![{item[2]}]({item[1]})", ""]
            elif item[0] == "list":
                lines += [f"- {text}" for text in item[1]] + [""]
            else:
                header, rows = item
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
                lines.append("")
    return "\n".join(lines)


def _html(sections: list[tuple[str, list[object]]], images: dict[str, bytes]) -> str:
    """The report as one self-contained HTML page: the plots embedded as ``data:`` URIs."""
    import base64

    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Energy report</title>',
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        ".table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:90%}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}"
        "img{max-width:100%;margin:1em 0}</style></head><body>",
        "<h1>Energy report</h1>",
    ]
    for heading, items in sections:
        parts.append(f"<h2>{esc(heading)}</h2>")
        for item in items:
            if isinstance(item, str):
                parts.append(f"<p>{esc(item).replace('**', '')}</p>")
            elif item[0] == "img":
                data = base64.b64encode(images[item[1]]).decode("ascii")
                parts.append(f'<img src="data:image/png;base64,{data}" alt="{esc(item[2])}">')
            elif item[0] == "list":
                parts.append("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in item[1]) + "</ul>")
            else:
                header, rows = item
                parts.append(
                    '<div class="table"><table><thead><tr>'
                    + "".join(f"<th>{esc(h)}</th>" for h in header)
                    + "</tr></thead>"
                )
                parts.append(
                    "<tbody>"
                    + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                    + "</tbody></table></div>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- plots ----------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _plot_energy(estimates: Sequence[EnergyEstimate], path: Path) -> None:
    plt = _pyplot()
    n = len(estimates)
    fig, axes = plt.subplots(1, n, figsize=(max(5.0, 4.0 * n), 3.8), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], estimates, strict=True):
        names = [layer.name for layer in e.layers]
        bottom = [0.0] * len(names)
        for component, colour in _COMPONENT_COLOURS.items():
            values = [getattr(layer, f"{component}_j") * 1e6 for layer in e.layers]
            ax.bar(names, values, bottom=bottom, color=colour, label=component)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(f"{e.label}\non {e.target.name}", fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    axes[0][0].set_ylabel("energy per inference (µJ)")
    axes[0][-1].legend(fontsize=8)
    _save(fig, path)


def _plot_spikes(estimates: Sequence[EnergyEstimate], path: Path) -> None:
    plt = _pyplot()
    names: list[str] = []
    for e in estimates:
        names += [layer.name for layer in e.layers if layer.name not in names]
    width = 0.8 / len(estimates)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 2), 3.8))
    for i, e in enumerate(estimates):
        spikes = {layer.name: layer.spikes for layer in e.layers}
        xs = [k + (i - (len(estimates) - 1) / 2) * width for k in range(len(names))]
        ax.bar(xs, [spikes.get(name, 0.0) for name in names], width=width, label=e.label)
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
    ax.set_ylabel("spikes per inference")
    ax.legend(fontsize=8)
    _save(fig, path)


def _plot_twin(estimates: Sequence[EnergyEstimate], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 * len(estimates) + 3), 4.0))
    bars: dict[str, list[float]] = {}
    for e in estimates:
        bars.setdefault("SNN on its target", []).append(e.energy_per_inference_j)
        for b in e.baselines:
            bars.setdefault(f"ANN twin, {b.target}", []).append(b.ann_twin_j)
    width = 0.8 / max(1, len(bars))
    for i, (name, values) in enumerate(bars.items()):
        xs = [k + (i - (len(bars) - 1) / 2) * width for k in range(len(estimates))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks(range(len(estimates)), [f"{e.label}\n({e.target.name})" for e in estimates], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title(
        "SNN: the chip's per-operation energy; ANN twin: whole processors (not like for like)", fontsize=8
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def dumps(estimates: Sequence[EnergyEstimate]) -> str:
    """The JSON of ``--json``: one estimate as an object, several as ``{"estimates": [...]}``."""
    if len(estimates) == 1:
        return json.dumps(estimates[0].to_dict(), indent=2)
    return json.dumps({"estimates": [e.to_dict() for e in estimates]}, indent=2)


__all__ = [
    "ANN_CAVEAT",
    "PLOTS",
    "dumps",
    "format_component",
    "format_constant",
    "format_count",
    "format_j",
    "format_ratio",
    "format_s",
    "write_report",
]
