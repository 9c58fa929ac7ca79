"""Sweeps: train a recipe under several settings and seeds, tabulate accuracy against spiking activity.

A sweep is a list of **configurations** (the rows of its table), each trained once per seed by
``toolchain train`` in its own process (``jobs`` at a time), each run in its own folder
``OUT/runs/<configuration>-seed<S>``. A configuration is a *variant* (a label and ``--set``
assignments) combined with one point of the *grid* (the Cartesian product of ``key=v1,v2,...``
lists). :func:`summarize` gives per configuration the mean and standard deviation (``ddof = 1``,
over the seeds) of test accuracy and spikes per test sample and their change against the baseline
configuration; :func:`write_outputs` writes ``runs.csv``, ``summary.csv``, ``summary.md``,
``sweep.json`` and ``pareto.png``.

A run folder that holds a finished run (:mod:`toolchain.run_folder`: its manifest's files intact) of
the same resolved ``recipe.toml`` is reused; an unfinished one resumes from its last checkpoint, so an
interrupted sweep continues where it stopped; a folder of another recipe fails that run in one line.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain.config import dump_recipe, load_recipe, parse_assignments, with_overrides
from toolchain.errors import RecipeError, ToolchainError
from toolchain.io import atomic_write, write_json, write_text
from toolchain.run_folder import METRICS_FILE, RECIPE_FILE, RunFolder


class SweepError(ToolchainError):
    """A sweep cannot be planned (a bad grid or variant) or a run of it failed."""


@dataclass
class Configuration:
    """One row of the sweep: a ``label`` and the ``--set`` assignments (``KEY=VALUE`` text) it trains."""

    label: str
    assignments: list[str]

    @property
    def slug(self) -> str:
        """The label as a folder name."""
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label).strip("_") or "base"


@dataclass
class SweepRun:
    """One training run: a configuration with one seed."""

    config: Configuration
    seed: int
    run_dir: Path


@dataclass
class RunOutcome:
    """What one run gave (``error`` is set and the figures are NaN when it failed)."""

    label: str
    seed: int
    run_dir: str
    command: str
    test_accuracy: float = math.nan
    spikes_per_sample: float = math.nan
    layers: dict[str, float] = field(default_factory=dict)
    teacher_test_accuracy: float | None = None
    seconds: float = 0.0
    reused: bool = False
    error: str | None = None


@dataclass
class SummaryRow:
    """One configuration's figures over its seeds; ``*_std`` is the sample standard deviation."""

    label: str
    assignments: list[str]
    seeds: list[int]
    accuracy_mean: float
    accuracy_std: float
    spikes_mean: float
    spikes_std: float
    activity_change_pct: float
    accuracy_change_points: float
    pareto: bool
    command: str


def split_values(text: str) -> list[str]:
    """``"1,2,[3, 4],'a,b'"`` -> ``["1", "2", "[3, 4]", "'a,b'"]``: commas outside brackets and quotes."""
    values: list[str] = []
    depth, quote, current = 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["distill.alpha=0.3,0.7"]`` -> ``[("distill.alpha", ["0.3", "0.7"])]``."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        values = split_values(text) if sep else []
        if not key.strip() or not values or any(not v for v in values):
            raise SweepError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid distill.alpha=0.3,0.7")
        grid.append((key.strip(), values))
    return grid


def plan_configurations(
    variants: Sequence[Sequence[str]], grid: Sequence[tuple[str, list[str]]]
) -> list[Configuration]:
    """Every variant (``[label, KEY=VALUE, ...]``; none: one unnamed) times every grid point."""
    bases = [(v[0], list(v[1:])) for v in variants] if variants else [("", [])]
    labels = [label for label, _ in bases]
    if len(set(labels)) != len(labels):
        raise SweepError(f"--variant labels must differ, got {labels}")
    keys = [key for key, _ in grid]
    configs = []
    for label, sets in bases:
        for point in itertools.product(*(values for _, values in grid)):
            assigned = [f"{key}={value}" for key, value in zip(keys, point, strict=True)]
            name = ", ".join(
                x
                for x in [label, *(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, point, strict=True))]
                if x
            )
            configs.append(Configuration(name or "base", [*sets, *assigned]))
    return configs


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SweepError(f"--seeds {text!r}: expected integers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: expected distinct integers, e.g. 0,1,2")
    return seeds


def resolved_recipe_text(recipe_path: Path, seed: int, assignments: Sequence[str]) -> str:
    """The ``recipe.toml`` that ``toolchain train RECIPE --seed S --set ...`` writes (validates it)."""
    recipe = with_overrides(
        load_recipe(recipe_path), **{"train.seed": seed, **parse_assignments(list(assignments))}
    )
    return dump_recipe(recipe)


def _finished_as(run_dir: Path, recipe_text: str) -> bool:
    """Whether ``run_dir`` holds a finished run (its manifest's files intact) of ``recipe_text``."""
    folder = RunFolder(run_dir)
    try:
        folder.check_finished()
    except ToolchainError:
        return False
    return folder.file(RECIPE_FILE).read_text(encoding="utf-8") == recipe_text


def train_command(recipe: Path, run: SweepRun, data_dir: Path | None, extra: Sequence[str] = ()) -> list[str]:
    """The ``toolchain train`` arguments of ``run`` (after ``toolchain``)."""
    args = ["train", str(recipe), "--out", str(run.run_dir), "--seed", str(run.seed), "--no-progress"]
    args.append("--resume")  # a killed run continues; a folder of another recipe is refused
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    for assignment in [*extra, *run.config.assignments]:
        args += ["--set", assignment]
    return args


def run_sweep(
    recipe: Path,
    configs: Sequence[Configuration],
    seeds: Sequence[int],
    out: Path,
    *,
    jobs: int = 1,
    data_dir: Path | None = None,
    extra: Sequence[str] = (),
    log: Callable[[str], None] = lambda _: None,
) -> list[RunOutcome]:
    """Train every configuration with every seed (``jobs`` processes at a time); failed runs are
    returned with their ``error``. Every run's recipe is validated before the first one starts."""
    runs = [SweepRun(c, s, out / "runs" / f"{c.slug}-seed{s}") for c in configs for s in seeds]
    if len({r.run_dir for r in runs}) != len(runs):
        raise SweepError(
            "two configurations of the sweep have the same folder name; give the variants other labels"
        )
    expected = {}
    for run in runs:
        try:
            expected[run.run_dir] = resolved_recipe_text(recipe, run.seed, [*extra, *run.config.assignments])
        except RecipeError as exc:
            raise SweepError(f"configuration {run.config.label!r}: {exc}") from None
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = 0
    log(
        f"sweep: {len(configs)} configurations x {len(seeds)} seeds = {len(runs)} runs, "
        f"{max(1, jobs)} at a time, in {out}"
    )

    began = time.perf_counter()

    def one(run: SweepRun) -> RunOutcome:
        nonlocal done
        args = train_command(recipe, run, data_dir, extra)
        outcome = RunOutcome(run.config.label, run.seed, str(run.run_dir), "toolchain " + shlex.join(args))
        metrics_path = run.run_dir / METRICS_FILE
        start = time.perf_counter()
        if not _finished_as(run.run_dir, expected[run.run_dir]):
            run.run_dir.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "toolchain", *args], env=env, capture_output=True, text=True
            )
            write_text(run.run_dir / "train.log", proc.stderr)
            if proc.returncode != 0:
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                outcome.error = lines[-1] if lines else f"exit code {proc.returncode}"
        else:
            outcome.reused = True
        outcome.seconds = time.perf_counter() - start
        if outcome.error is None:
            _read_metrics(metrics_path, outcome)
        done += 1
        state = (
            "failed: " + outcome.error
            if outcome.error
            else (f"accuracy {outcome.test_accuracy:.4f}, {outcome.spikes_per_sample:.1f} spikes/sample")
        )
        log(
            f"[{done}/{len(runs)}] {run.config.label} seed {run.seed}: {state}"
            + (" (reused)" if outcome.reused else f" ({outcome.seconds:.0f} s)")
            + _eta(time.perf_counter() - began, done, len(runs))
        )
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, runs))


def _eta(elapsed_s: float, done: int, total: int) -> str:
    """``, about N min left`` from the pace so far (nothing when all is done)."""
    if done >= total or done == 0:
        return ""
    left_s = elapsed_s / done * (total - done)
    return f", about {left_s / 60:.0f} min left" if left_s >= 60 else f", about {left_s:.0f} s left"


def _read_metrics(path: Path, outcome: RunOutcome) -> None:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        outcome.test_accuracy = float(metrics["test_accuracy"])
        outcome.spikes_per_sample = float(metrics["spikes_per_sample"])
        outcome.layers = {layer["name"]: float(layer["spikes_per_sample"]) for layer in metrics["layers"]}
        teacher = metrics.get("teacher")
        outcome.teacher_test_accuracy = float(teacher["test_accuracy"]) if teacher else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        outcome.error = f"{path}: unreadable metrics ({type(exc).__name__}: {exc})"


def summarize(
    configs: Sequence[Configuration],
    outcomes: Sequence[RunOutcome],
    recipe: Path,
    baseline: str | None = None,
    extra: Sequence[str] = (),
    data_dir: Path | None = None,
) -> list[SummaryRow]:
    """Mean ± std per configuration over its successful seeds; changes against ``baseline`` (a
    label; default the first configuration); ``pareto`` marks the configurations no other beats
    on both mean accuracy (higher) and mean spikes (lower)."""
    labels = [c.label for c in configs]
    base = baseline if baseline is not None else labels[0]
    if base not in labels:
        raise SweepError(f"--baseline {base!r}: no configuration of that label; the sweep has {labels}")
    rows = []
    for config in configs:
        good = [o for o in outcomes if o.label == config.label and o.error is None]
        acc = [o.test_accuracy for o in good]
        spk = [o.spikes_per_sample for o in good]
        seeds = [o.seed for o in good]
        command = _row_command(recipe, config, seeds, extra, data_dir)
        rows.append(
            SummaryRow(
                config.label,
                config.assignments,
                seeds,
                _mean(acc),
                _std(acc),
                _mean(spk),
                _std(spk),
                math.nan,
                math.nan,
                False,
                command,
            )
        )
    reference = rows[labels.index(base)]
    for row in rows:
        row.activity_change_pct = 100.0 * (row.spikes_mean / reference.spikes_mean - 1.0)
        row.accuracy_change_points = 100.0 * (row.accuracy_mean - reference.accuracy_mean)
    for row in rows:
        row.pareto = not math.isnan(row.accuracy_mean) and not any(
            other is not row
            and other.accuracy_mean >= row.accuracy_mean
            and other.spikes_mean <= row.spikes_mean
            and (other.accuracy_mean > row.accuracy_mean or other.spikes_mean < row.spikes_mean)
            for other in rows
        )
    return rows


def write_outputs(
    out: Path,
    rows: Sequence[SummaryRow],
    outcomes: Sequence[RunOutcome],
    *,
    command: str,
    baseline: str,
    title: str,
) -> dict[str, Path]:
    """``runs.csv``, ``summary.csv``, ``summary.md``, ``sweep.json`` and ``pareto.png`` in ``out``."""
    paths = {
        name: out / name for name in ("runs.csv", "summary.csv", "summary.md", "sweep.json", "pareto.png")
    }
    write_text(
        paths["runs.csv"],
        _csv(
            [
                "configuration",
                "seed",
                "test_accuracy",
                "spikes_per_sample",
                "teacher_test_accuracy",
                "seconds",
                "reused",
                "error",
                "run_dir",
                "command",
            ],
            [
                [
                    o.label,
                    o.seed,
                    o.test_accuracy,
                    o.spikes_per_sample,
                    o.teacher_test_accuracy,
                    f"{o.seconds:.1f}",
                    o.reused,
                    o.error or "",
                    o.run_dir,
                    o.command,
                ]
                for o in outcomes
            ],
        ),
    )
    write_text(
        paths["summary.csv"],
        _csv(
            [
                "configuration",
                "seeds",
                "accuracy_mean",
                "accuracy_std",
                "spikes_mean",
                "spikes_std",
                "activity_change_pct",
                "accuracy_change_points",
                "pareto",
                "command",
            ],
            [
                [
                    r.label,
                    " ".join(map(str, r.seeds)),
                    r.accuracy_mean,
                    r.accuracy_std,
                    r.spikes_mean,
                    r.spikes_std,
                    r.activity_change_pct,
                    r.accuracy_change_points,
                    r.pareto,
                    r.command,
                ]
                for r in rows
            ],
        ),
    )
    write_text(paths["summary.md"], markdown_table(rows, command=command, baseline=baseline))
    write_json(
        paths["sweep.json"],
        {
            "command": command,
            "baseline": baseline,
            "rows": [asdict(r) for r in rows],
            "runs": [asdict(o) for o in outcomes],
        },
    )
    plot_pareto(rows, outcomes, paths["pareto.png"], title=title)
    return paths


def markdown_table(rows: Sequence[SummaryRow], *, command: str, baseline: str) -> str:
    """The summary as a Markdown table (std over the seeds, changes against ``baseline``)."""
    lines = [
        f"Sweep: `{command}`",
        "",
        f"Mean ± sample standard deviation over the seeds; changes against `{baseline}`. "
        "Pareto: no other row has both higher accuracy and fewer spikes.",
        "",
        "| configuration | seeds | test accuracy | spikes / sample | Δ activity "
        "| Δ accuracy (points) | Pareto | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {len(r.seeds)} | {r.accuracy_mean:.4f} ± {r.accuracy_std:.4f} | "
            f"{r.spikes_mean:.1f} ± {r.spikes_std:.1f} | {r.activity_change_pct:+.2f}% | "
            f"{r.accuracy_change_points:+.2f} | {'yes' if r.pareto else ''} | `{r.command}` |"
        )
    return "\n".join(lines) + "\n"


def plot_pareto(
    rows: Sequence[SummaryRow], outcomes: Sequence[RunOutcome], path: Path, *, title: str
) -> Path:
    """Accuracy against spikes per sample: each run (small), each configuration's mean ± std, the front."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    palette = plt.get_cmap("tab20" if len(rows) > 10 else "tab10")
    markers = "osD^vP*Xhp<>"
    for i, row in enumerate(rows):
        color = palette(i % palette.N)
        runs = [o for o in outcomes if o.label == row.label and o.error is None]
        ax.scatter(
            [o.spikes_per_sample for o in runs],
            [100 * o.test_accuracy for o in runs],
            s=12,
            alpha=0.35,
            color=color,
            marker=markers[i % len(markers)],
        )
        ax.errorbar(
            row.spikes_mean,
            100 * row.accuracy_mean,
            xerr=row.spikes_std,
            yerr=100 * row.accuracy_std,
            fmt=markers[i % len(markers)],
            markersize=7 if row.pareto else 5,
            markeredgecolor="black" if row.pareto else color,
            color=color,
            capsize=3,
            label=row.label + (" (Pareto)" if row.pareto else ""),
        )
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.spikes_mean)
    if len(front) > 1:
        ax.plot(
            [r.spikes_mean for r in front],
            [100 * r.accuracy_mean for r in front],
            "k--",
            lw=0.8,
            label="Pareto front",
        )
    ax.set_xlabel("spikes per test sample (all layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path


def _row_command(
    recipe: Path, config: Configuration, seeds: Sequence[int], extra: Sequence[str], data_dir: Path | None
) -> str:
    seed_text = "S" if len(seeds) != 1 else str(seeds[0])
    args = ["toolchain", "train", str(recipe), "--seed", seed_text]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    for assignment in [*extra, *config.assignments]:
        args += ["--set", assignment]
    text = shlex.join(args)
    return text + (f"  (S = {', '.join(map(str, seeds))})" if len(seeds) != 1 else "")


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0 if values else math.nan
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


__all__ = [
    "Configuration",
    "RunOutcome",
    "SummaryRow",
    "SweepError",
    "markdown_table",
    "parse_grid",
    "parse_seeds",
    "plan_configurations",
    "plot_pareto",
    "run_sweep",
    "summarize",
    "write_outputs",
]
