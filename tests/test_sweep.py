"""``toolchain sweep``: planning, the table's statistics by hand, and a small sweep through the CLI."""

import csv
import json
import math
from pathlib import Path

import pytest
from cli_runner import toolchain

from toolchain.train.sweep import (
    Configuration,
    RunOutcome,
    SweepError,
    parse_grid,
    parse_seeds,
    plan_configurations,
    split_values,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]


def test_values_split_at_top_level_commas_only():
    assert split_values("1,2.5,[64, 64],'a,b',\"c\"") == ["1", "2.5", "[64, 64]", "'a,b'", '"c"']
    assert parse_grid(["distill.alpha=0.3,0.7", "model.hidden=[32],[64, 64]"]) == [
        ("distill.alpha", ["0.3", "0.7"]),
        ("model.hidden", ["[32]", "[64, 64]"]),
    ]
    for bad in ["distill.alpha", "=1,2", "distill.alpha=", "distill.alpha=1,,2"]:
        with pytest.raises(SweepError, match="expected KEY=V1,V2"):
            parse_grid([bad])


def test_configurations_are_variants_times_the_grid():
    configs = plan_configurations(
        [["base"], ["kd", "distill.teacher=ann"]], parse_grid(["distill.alpha=0.3,0.7"])
    )
    assert [(c.label, c.assignments) for c in configs] == [
        ("base, alpha=0.3", ["distill.alpha=0.3"]),
        ("base, alpha=0.7", ["distill.alpha=0.7"]),
        ("kd, alpha=0.3", ["distill.teacher=ann", "distill.alpha=0.3"]),
        ("kd, alpha=0.7", ["distill.teacher=ann", "distill.alpha=0.7"]),
    ]
    assert configs[2].slug == "kd_alpha=0.3"
    assert [c.label for c in plan_configurations([], [])] == ["base"]
    with pytest.raises(SweepError, match="labels must differ"):
        plan_configurations([["a"], ["a", "train.epochs=2"]], [])
    assert parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(SweepError, match="--seeds"):
        parse_seeds("0,x")


def test_summary_statistics_by_hand():
    configs = [Configuration("base", []), Configuration("sparse", ["x=1"]), Configuration("worse", ["x=2"])]
    outcomes = [
        RunOutcome("base", 0, "r", "c", 0.90, 100.0),
        RunOutcome("base", 1, "r", "c", 0.92, 120.0),
        RunOutcome("sparse", 0, "r", "c", 0.89, 80.0),
        RunOutcome("sparse", 1, "r", "c", 0.91, 70.0),
        RunOutcome("worse", 0, "r", "c", 0.80, 90.0),
        RunOutcome("worse", 1, "r", "c", error="boom"),  # failed runs are left out
    ]
    rows = summarize(configs, outcomes, Path("models/x"))
    base, sparse, worse = rows
    assert base.accuracy_mean == pytest.approx(0.91)
    assert base.accuracy_std == pytest.approx(math.sqrt(2 * 0.01**2))  # ddof = 1
    assert base.spikes_std == pytest.approx(math.sqrt(2 * 10.0**2))
    assert sparse.activity_change_pct == pytest.approx(100 * (75 / 110 - 1))
    assert sparse.accuracy_change_points == pytest.approx(-1.0)
    assert worse.seeds == [0] and worse.accuracy_std == 0.0
    # sparse: fewer spikes; base: higher accuracy; worse: beaten by sparse on both
    assert [r.pareto for r in rows] == [True, True, False]
    assert sparse.command == "toolchain train models/x --seed S --set x=1  (S = 0, 1)"
    with pytest.raises(SweepError, match="--baseline 'nope'"):
        summarize(configs, outcomes, Path("models/x"), baseline="nope")


def test_a_sweep_through_the_cli(tmp_path):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "models/digits-demo",
        "--variant",
        "baseline",
        "--variant",
        "l1",
        "regularization.activation=l1",
        "regularization.activation_weight=0.3",
        "--seeds",
        "0,1",
        "--jobs",
        "2",
        "--set",
        "train.epochs=2",
        "--out",
        str(out),
    ]
    result = toolchain(*args)
    assert result.returncode == 0, result.stderr
    for name in ("runs.csv", "summary.csv", "summary.md", "sweep.json", "pareto.png"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["configuration"] for r in rows] == ["baseline", "l1"]
    assert float(rows[1]["spikes_mean"]) < float(rows[0]["spikes_mean"])
    # every run's figures are its run folder's metrics.json
    sweep = json.loads((out / "sweep.json").read_text())
    for run in sweep["runs"]:
        metrics = json.loads((Path(run["run_dir"]) / "metrics.json").read_text())
        assert run["test_accuracy"] == metrics["test_accuracy"]
        assert run["spikes_per_sample"] == metrics["spikes_per_sample"]
    assert "| l1 | 2 |" in (out / "summary.md").read_text()
    assert "--set regularization.activation=l1" in rows[1]["command"]

    again = toolchain(*args)  # every run folder is reused
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("(reused)") == 4


def test_sweep_errors_are_one_line(tmp_path):
    result = toolchain("sweep", "models/digits-demo", "--grid", "distill.alpha=2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "toolchain: error: configuration 'alpha=2': recipe 'digits-demo' with overrides: "
        "[distill].alpha: expected a number in [0, 1], got 2.0"
    ]
    result = toolchain("sweep", "models/digits-demo", "--grid", "distill.alpha", "--out", str(tmp_path))
    assert result.returncode == 2 and "expected KEY=V1,V2" in result.stderr
