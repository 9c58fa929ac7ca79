"""The distillation/regularization ablation, trained and deployed: one table from a recipe to Loihi.

For one recipe (``models/gsc-paper``, ``models/gsc-conv1d``, ``models/cifar10-paper`` ...) this
script trains every configuration of the ablation (baseline, KD, activation regularization, logits
regularization, KD + each) for every seed with ``toolchain sweep``, then deploys every run:

1. ``toolchain export RUN --format netx`` (Loihi quantization; accuracy before, the float model, and
   after, the reference simulator, on the whole test split);
2. ``toolchain simulate FILE --compare --samples N`` (Lava against the reference simulator, spike for
   spike and output potential for potential, on the first N test samples);
3. ``toolchain energy FILE --activity ... --report DIR`` (energy per inference on the recipe's target
   from the whole test split's activity).

It writes ``OUT/deployed.csv`` (one row per run) and ``OUT/deployed.md`` (per configuration: mean ±
standard deviation over the seeds of float and deployed accuracy, spikes per sample, energy; Δ against
the baseline with Welch's t-test p-values; Lava mismatches; the machine that trained each row).
Every step is skipped when its output exists and is newer than the run's weights, so a killed run
resumes where it stopped and a second machine can finish what the first began (``--machine`` labels
the rows a machine trains). Usage, from the repository root::

    .venv/bin/python benchmarks/paper_setting.py models/gsc-paper --data-dir DATA --out runs/paper/gsc-paper
    .venv/bin/python benchmarks/paper_setting.py models/gsc-paper --data-dir DATA \\
        --out runs/paper/gsc-paper --seeds 0,1,2 --jobs 2 --lava-samples 20 --act-weight 0.1,0.3,0.5

``--only-deploy`` skips training (deploys the finished runs); ``--set KEY=VALUE`` goes to every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def variants(
    act_weights: list[float], logits_weights: list[float], temperature: float, alpha: float
) -> list[list[str]]:
    """The ablation's configurations as ``toolchain sweep --variant`` arguments: the baseline, KD,
    each activation and each logits weight alone and with KD."""
    tau = f"KD-tau{temperature:g}"
    kd = ["distill.teacher=ann", f"distill.temperature={temperature}", f"distill.alpha={alpha}"]
    regs = [
        (
            f"act-l1-w{w:g}",
            f"act-w{w:g}",
            ["regularization.activation=l1", f"regularization.activation_weight={w}"],
        )
        for w in act_weights
    ] + [(f"logits-l{w:g}", f"logits-l{w:g}", [f"regularization.logits_weight={w}"]) for w in logits_weights]
    alone = [[label, *sets] for label, _, sets in regs]
    with_kd = [[f"{tau}+{short}", *kd, *sets] for _, short, sets in regs]
    return [["baseline"], [tau, *kd], *alone, *with_kd]


def toolchain(*args: str, log: Path | None = None) -> None:
    """Run ``python -m toolchain ARGS``; its output goes to ``log`` (appended) and a failure stops us."""
    command = [sys.executable, "-m", "toolchain", *args]
    print("+ toolchain " + " ".join(args), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as sink:
        result = subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"failed ({result.returncode}): toolchain {' '.join(args)}" + (f"; see {log}" if log else "")
        )


def fresh(path: Path, source: Path) -> bool:
    """Whether ``path`` exists and is newer than ``source`` (the run's weights)."""
    return path.is_file() and path.stat().st_mtime >= source.stat().st_mtime


def machine_label() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - the project's venv has torch
        pass
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


def deploy(run: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export, simulate (reference on the whole test split, Lava on the first samples) and price one run."""
    weights = run / "model.pt"
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    net = out / "model.net"
    if not fresh(out / "export.json", weights):
        toolchain(
            "export",
            str(run),
            "--format",
            "netx",
            "--out",
            str(net),
            *data,
            "--json",
            str(out / "export.json"),
            log=log,
        )
    full = out / "reference.json"
    if not fresh(full, weights):
        toolchain("simulate", str(net), *data, "--json", str(full), log=log)
    lava = out / "lava.json"
    if args.lava_samples and not fresh(lava, weights):
        toolchain(
            "simulate",
            str(net),
            *data,
            "--compare",
            "--samples",
            str(args.lava_samples),
            "--json",
            str(lava),
            log=log,
        )
    energy = out / "energy.json"
    if not fresh(energy, weights):
        toolchain(
            "energy",
            str(net),
            "--activity",
            str(full),
            "--report",
            str(out / "energy"),
            "--json",
            str(energy),
            log=log,
        )
    metrics = json.loads((run / "metrics.json").read_text())
    exported = json.loads((out / "export.json").read_text())
    reference = json.loads(full.read_text())
    row: dict[str, Any] = {
        "run": run.name,
        "float_accuracy": metrics["test_accuracy"],
        "float_spikes_per_sample": metrics["spikes_per_sample"],
        "deployed_accuracy": reference["accuracy"],
        "deployed_spikes_per_sample": reference["spikes_per_sample"],
        "test_samples": reference["samples"],
        "export_accuracy_before": _get(exported, "accuracy", "before"),
        "energy_per_inference_j": _energy(json.loads(energy.read_text())),
    }
    if lava.is_file():
        comparison = json.loads(lava.read_text()).get("comparison", {})
        row["lava_samples"] = comparison.get("samples", {}).get("lava", 0)
        row["lava_mismatched_spikes"] = comparison.get("mismatched_spikes")
        row["lava_mismatched_potentials"] = sum(comparison.get("mismatched_potentials", {}).values())
    return row


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _energy(data: dict[str, Any]) -> float | None:
    estimates = data.get("estimates") if isinstance(data, dict) else None
    first = estimates[0] if isinstance(estimates, list) and estimates else data
    for key in ("energy_per_inference_j", "total_j"):
        if isinstance(first, dict) and key in first:
            return float(first[key])
    return None


def summarize(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Per configuration: mean and standard deviation over the seeds, Δ against the baseline, p-values."""
    from scipy import stats

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["configuration"], []).append(row)
    base = groups.get(baseline, [])
    summary = []
    for name, group in groups.items():
        entry: dict[str, Any] = {
            "configuration": name,
            "seeds": len(group),
            "machine": sorted({r["machine"] for r in group}),
        }
        for key in (
            "float_accuracy",
            "deployed_accuracy",
            "deployed_spikes_per_sample",
            "energy_per_inference_j",
        ):
            values = [r[key] for r in group if r.get(key) is not None]
            entry[key] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
                if values
                else None
            )
            reference = [r[key] for r in base if r.get(key) is not None]
            if values and reference and name != baseline and len(values) > 1 and len(reference) > 1:
                entry[f"p_{key}"] = float(stats.ttest_ind(values, reference, equal_var=False).pvalue)
        if base and entry["deployed_spikes_per_sample"]:
            mean_base = statistics.fmean(r["deployed_spikes_per_sample"] for r in base)
            entry["delta_activity"] = entry["deployed_spikes_per_sample"][0] / mean_base - 1
            entry["delta_accuracy_points"] = 100 * (
                entry["deployed_accuracy"][0] - statistics.fmean(r["deployed_accuracy"] for r in base)
            )
        entry["deploy_loss_points"] = 100 * max(r["float_accuracy"] - r["deployed_accuracy"] for r in group)
        entry["lava_mismatches"] = sum(
            (r.get("lava_mismatched_spikes") or 0) + (r.get("lava_mismatched_potentials") or 0) for r in group
        )
        entry["lava_samples"] = sum(r.get("lava_samples") or 0 for r in group)
        summary.append(entry)
    return summary


def markdown(summary: list[dict[str, Any]], title: str) -> str:
    def pm(value: Any, digits: int, scale: float = 1.0) -> str:
        if value is None:
            return "–"
        return f"{value[0] * scale:.{digits}f} ± {value[1] * scale:.{digits}f}"

    def p(value: Any) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:.3f}"

    lines = [
        f"## {title}",
        "",
        "| configuration | seeds | float accuracy | deployed accuracy (Loihi fixed point) | "
        "worst deploy loss (points) | spikes / sample | Δ activity | p | Δ accuracy (points) | p | "
        "energy / inference (µJ) | Lava (samples, mismatches) | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        lines.append(
            f"| {e['configuration']} | {e['seeds']} | {pm(e['float_accuracy'], 4)} | "
            f"{pm(e['deployed_accuracy'], 4)} | "
            f"{e['deploy_loss_points']:+.2f} | {pm(e['deployed_spikes_per_sample'], 1)} | "
            f"{e.get('delta_activity', 0.0) * 100:+.2f}% | {p(e.get('p_deployed_spikes_per_sample'))} | "
            f"{e.get('delta_accuracy_points', 0.0):+.2f} | {p(e.get('p_deployed_accuracy'))} | "
            f"{pm(e['energy_per_inference_j'], 2, 1e6)} | {e['lava_samples']}, {e['lava_mismatches']} | "
            f"{', '.join(e['machine'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--lava-samples", type=int, default=20, help="Lava's samples per run (0: none)")
    parser.add_argument("--act-weight", type=_floats, default=[0.01], help="L1 weights, comma-separated")
    parser.add_argument(
        "--logits-weight", type=_floats, default=[0.01], help="logits weights, comma-separated"
    )
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--machine", default=None, help="label of the machine training here (default: detected)"
    )
    parser.add_argument("--only-deploy", action="store_true", help="deploy the finished runs, train nothing")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = variants(args.act_weight, args.logits_weight, args.temperature, args.alpha)
    sweep_dir = args.out / "sweep"
    if not args.only_deploy:
        command = [
            "sweep",
            str(args.recipe),
            "--out",
            str(sweep_dir),
            "--seeds",
            args.seeds,
            "--jobs",
            str(args.jobs),
        ]
        for variant in configs:
            command += ["--variant", *variant]
        for item in args.set:
            command += ["--set", item]
        if args.data_dir:
            command += ["--data-dir", str(args.data_dir)]
        machines = _machines(args.out)
        before = {p.name for p in (sweep_dir / "runs").glob("*") if (p / "metrics.json").is_file()}
        toolchain(*command, log=args.out / "sweep.log")
        label = args.machine or machine_label()
        for run in (sweep_dir / "runs").glob("*"):
            if (run / "metrics.json").is_file() and run.name not in before:
                machines[run.name] = label
        (args.out / "machines.json").write_text(json.dumps(machines, indent=1, sort_keys=True))
    machines = _machines(args.out)
    names = {_slug(variant[0]): variant[0] for variant in configs}  # run folders hold the sweep's slugs
    rows = []
    for run in sorted((sweep_dir / "runs").glob("*")):
        if not (run / "model.pt").is_file():
            continue
        slug, _, seed = run.name.rpartition("-seed")
        if slug not in names:
            continue
        configuration = names[slug]
        row = deploy(run, args.out / "deploy" / run.name, args)
        row.update(configuration=configuration, seed=int(seed), machine=machines.get(run.name, "unrecorded"))
        rows.append(row)
    if not rows:
        raise SystemExit(f"no finished runs in {sweep_dir / 'runs'}")
    with open(args.out / "deployed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    order = {variant[0]: index for index, variant in enumerate(configs)}
    rows.sort(key=lambda row: (order[row["configuration"]], row["seed"]))
    summary = summarize(rows, configs[0][0])
    text = markdown(summary, args.title or f"{args.recipe} (seeds {args.seeds})")
    (args.out / "deployed.md").write_text(text)
    (args.out / "deployed.json").write_text(json.dumps(summary, indent=1))
    print(text)
    return 0


def _floats(text: str) -> list[float]:
    return [float(item) for item in text.split(",") if item.strip()]


def _slug(label: str) -> str:
    """The run-folder name ``toolchain sweep`` gives a configuration label."""
    from toolchain.train.sweep import Configuration

    return Configuration(label, []).slug


def _machines(out: Path) -> dict[str, str]:
    path = out / "machines.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
