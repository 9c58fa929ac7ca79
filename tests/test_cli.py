"""The CLI through its real entry points (the ``toolchain`` console script and ``python -m toolchain``)."""

import json
from pathlib import Path

import pytest
from cli_runner import toolchain

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["train", "export", "simulate", "energy", "run", "inspect", "targets"]


@pytest.mark.parametrize("module", [False, True])
def test_help_lists_every_subcommand(module):
    result = toolchain("--help", module=module)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_has_help(command):
    result = toolchain(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: toolchain" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing/recipe.toml"], "missing/recipe.toml: recipe not found"),
        (["run", "missing/recipe.toml"], "missing/recipe.toml: recipe not found"),
        (["run", "models/digits-demo", "--lava-samples", "-1"], "--lava-samples -1: expected 0 or more"),
        (
            ["export", "missing-run", "--format", "netx", "--out", "x.net"],
            "missing-run: run folder does not exist",
        ),
        (["export", "models", "--format", "bogus", "--out", "x.net"], "--format 'bogus': expected one of"),
        (["simulate", "missing.net"], "missing.net: no such file"),
        (["simulate", "README.md"], "README.md: not an HDF5 file"),
        (["simulate", "missing.net", "--backend", "bogus"], "argument --backend: invalid choice: 'bogus'"),
        (["simulate", "missing.net", "--samples", "0"], "argument --samples: expected a positive integer"),
        (["energy", "missing.net"], "missing.net: no such file or run folder"),
        (["energy", "missing.net", "--target", "bogus"], "unknown target 'bogus'"),
        (["inspect", "missing.onnx"], "missing.onnx: no such file"),
        (["inspect", "README.md"], "README.md: unknown format"),
        (["targets", "--bogus"], "unrecognized arguments: --bogus"),
        (["sweep", "missing/recipe.toml", "--grid", "train.seed=0,1", "--out", "sweep"], "recipe not found"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_every_command_answers_bad_arguments_with_one_line(args, message, tmp_path):
    result = toolchain(*args, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_recipe_gives_the_named_error(tmp_path):
    recipe = tmp_path / "bad" / "recipe.toml"
    recipe.parent.mkdir()
    recipe.write_text("[neuron]\nvoltage_decay = 2.0\n")
    result = toolchain("train", str(recipe), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"toolchain: error: {recipe}: [neuron].voltage_decay: expected a number in [0, 1], got 2.0"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no/such/recipe.toml"], "recipe not found"),
        (["train", "models/digits-demo", "--epochs", "0"], "[train].epochs: expected a number in [1, inf)"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message):
    result = toolchain(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_option_values_are_rejected_by_the_parser():
    result = toolchain("train", "models/digits-demo", "--device", "tpu")
    assert result.returncode == 2
    assert "invalid choice: 'tpu'" in result.stderr


def test_train_writes_the_run_folder_and_json(tmp_path):
    out = tmp_path / "run"
    report = tmp_path / "result.json"
    result = toolchain(
        "train",
        "models/digits-demo",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--json",
        str(report),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"model.pt", "recipe.toml", "metrics.json", "checkpoint.pt"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_accuracy"] > 0.5  # two epochs on digits already beat chance (0.1) by far
    assert [layer["name"] for layer in metrics["layers"]] == ["dense1", "output"]
    assert metrics["layers"][0]["neurons"] == 128
    assert metrics["spikes_per_sample"] == pytest.approx(
        sum(x["spikes_per_sample"] for x in metrics["layers"])
    )
    assert len(metrics["epochs"]) == 2
    assert json.loads(report.read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert "test accuracy" in result.stdout


def test_an_error_line_is_capped_and_the_whole_text_is_available(monkeypatch):
    from toolchain.cli import ERROR_LINE_LIMIT, error_line
    from toolchain.errors import ToolchainError

    huge = ToolchainError("values " + ", ".join(str(i) for i in range(200_000)))
    line = error_line(huge)
    assert len(line) < ERROR_LINE_LIMIT + 200 and "\n" not in line
    assert "more characters; TOOLCHAIN_FULL_ERRORS=1 prints them" in line
    monkeypatch.setenv("TOOLCHAIN_FULL_ERRORS", "1")
    assert error_line(huge).endswith("199999")
    assert error_line(ToolchainError("a\nb")) == "toolchain: error: a b"
