"""``toolchain export`` through its real entry points: the console script (a subprocess) for the
main paths, ``toolchain.cli.main`` in-process for the rest; on tiny digits runs trained once."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import toolchain

from toolchain.cli import main
from toolchain.config import ModelConfig, NeuronConfig, Recipe
from toolchain.data import ArraySplit, Dataset
from toolchain.errors import QuantizationError, ToolchainError
from toolchain.export.pipeline import ann_twin, simulator_inputs
from toolchain.export.quantize import quantize_model
from toolchain.export.run_loader import LoadedRun, RunError, load_run
from toolchain.snn.blocks import SynapticBlock
from toolchain.snn.models import build_model
from toolchain.snn.numerics import apply_numerics

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``toolchain.cli.main`` in this process (no interpreter start-up), captured like a subprocess."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def _train(out: Path, *extra: str) -> Path:
    result = toolchain(
        "train", "models/digits-demo", "--epochs", "1", "--out", str(out), "--no-progress", *extra
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def float_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("export") / "float")


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "fixed"
    args = ["train", "models/digits-demo", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "neuron.numeric=fixed_point"]) == 0  # in-process: no start-up
    return out


def test_netx_export_of_a_float_run_reports_quantization_and_accuracy(float_run, tmp_path):
    out, report = tmp_path / "digits.net", tmp_path / "export.json"
    args = ["--format", "netx", "--out", str(out), "--samples", "100", "--json", str(report)]
    result = toolchain("export", str(float_run), *args)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("quantization: float model -> Loihi registers, input graded")
    assert lines[1].split()[:8] == ["layer", "kind", "weights", "exp", "scale", "float", "range", "max"]
    assert lines[2].split()[:4] == ["dense1", "dense", "128x64", "-8"]
    assert lines[3].split()[:4] == ["output", "dense", "10x128", "0"]
    assert "voltage_decay: 0.1 -> 0.1000976562 (rounded by the export" in result.stdout
    assert "exact: no" in lines
    assert "accuracy on 100 test samples: before " in result.stdout
    assert "quantized, reference simulator" in result.stdout
    assert "the same prediction as the torch model on " in result.stdout
    assert lines[-1] == f"wrote {out}"
    data = json.loads(report.read_text())
    assert data["format"] == "netx" and data["out"] == str(out) and data["run_dir"] == str(float_run)
    quantization = data["quantization"]
    assert quantization["numeric"] == "float" and quantization["exact"] is False
    assert [layer["name"] for layer in quantization["layers"]] == ["dense1", "output"]
    for layer in quantization["layers"]:
        half_step = 1 / 64 / 2 ** layer["scale_exp"]  # half the grid step 2/64, scaled
        assert 0 < layer["weight_max_abs_error"] <= half_step + 1e-9
        assert 0 < layer["weight_rms_error"] < layer["weight_max_abs_error"]
        assert layer["weight_min"] < 0 < layer["weight_max"]
    accuracy = data["accuracy"]
    assert accuracy["samples"] == 100 and 0 <= accuracy["before"] <= 1
    assert 0 <= accuracy["after"] <= 1 and 0.5 < accuracy["agreement"] <= 1


def test_a_fixed_point_run_exports_exactly_with_the_same_accuracy(fixed_run, tmp_path, capsys):
    report = tmp_path / "fixed.json"
    result = in_process(
        capsys,
        "export",
        str(fixed_run),
        "--format",
        "netx",
        "--out",
        str(tmp_path / "f.net"),
        "--json",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "exact: yes (the quantized network computes exactly what the trained model computes)" in result.stdout
    )
    assert "rounded in training" in result.stdout
    data = json.loads(report.read_text())
    assert data["quantization"]["exact"] is True and data["quantization"]["max_weight_error"] == 0.0
    accuracy = data["accuracy"]
    assert accuracy["samples"] == 450
    # the reference simulator reproduces the trained model exactly, sample by sample
    assert accuracy["after"] == accuracy["before"] and accuracy["agreement"] == 1.0
    assert accuracy["spikes_per_sample_after"] == pytest.approx(
        accuracy["spikes_per_sample_before"], abs=1e-9
    )


def test_nir_export_without_evaluation_or_layer_scale(float_run, tmp_path, capsys):
    out, report = tmp_path / "digits.nir", tmp_path / "nir.json"
    args = ["--format", "nir", "--out", str(out), "--no-eval", "--json", str(report)]
    result = in_process(capsys, "export", str(float_run), *args, "--no-layer-scale")
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert "accuracy" not in result.stdout
    data = json.loads(report.read_text())
    assert data["accuracy"] is None and data["quantization"]["layers"][0]["name"] == "dense1"
    assert [layer["scale_exp"] for layer in data["quantization"]["layers"]] == [0, 0]
    for layer in data["quantization"]["layers"]:
        assert layer["registers"]["vThMant"] == 64


@pytest.mark.parametrize("onnx_model", ["snn", "ann"])
def test_onnx_export_writes_the_float_model(float_run, tmp_path, onnx_model, capsys):
    out = tmp_path / f"{onnx_model}.onnx"
    result = in_process(
        capsys, "export", str(float_run), "--format", "onnx", "--onnx-model", onnx_model, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.stat().st_size > 0
    assert f"onnx: the float torch model ({onnx_model}), not quantized" in result.stdout


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("toolchain: error: ")
    return lines[0]


def test_a_missing_run_is_one_line_from_the_console_script(tmp_path):
    missing = tmp_path / "nowhere"
    line = _one_line_error(
        toolchain("export", str(missing), "--format", "netx", "--out", str(tmp_path / "x"))
    )
    assert line == (
        f"toolchain: error: {missing}: run folder does not exist "
        "(expected the --out folder of `toolchain train`)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "hdf5", "--out", "{tmp}/x"], "--format 'hdf5': expected one of netx, nir, onnx"),
        (
            ["--format", "netx", "--out", "{tmp}/a-file/x.net"],
            "{tmp}/a-file: output folder is not writable (File exists)",
        ),
        (["--format", "netx", "--out", "{tmp}"], "{tmp}: --out is a folder; give the file to write"),
        (
            ["--format", "netx", "--out", "{tmp}/x", "--samples", "0"],
            "--samples 0: expected a positive number of test samples",
        ),
        (
            ["--format", "onnx", "--onnx-model", "cnn", "--out", "{tmp}/x"],
            "--onnx-model 'cnn': expected one of snn, ann",
        ),
    ],
)
def test_bad_options_are_one_line(float_run, tmp_path, capsys, args, message):
    (tmp_path / "a-file").write_text("")
    result = in_process(capsys, "export", str(float_run), *(a.format(tmp=tmp_path) for a in args))
    assert _one_line_error(result) == f"toolchain: error: {message.format(tmp=tmp_path)}"
    assert not (tmp_path / "x").exists()


def test_incomplete_or_broken_run_folders_are_named(float_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=r"empty: not a run folder: recipe.toml is missing"):
        load_run(empty)
    broken = tmp_path / "broken"
    shutil.copytree(float_run, broken)
    (broken / "model.pt").write_bytes(b"not a model")
    with pytest.raises(RunError, match=r"broken/model.pt: changed since the run finished"):
        load_run(broken)  # the run's manifest names other weights
    (broken / "run.json").unlink()  # a folder of an older toolchain: the weights themselves are refused
    with pytest.raises(RunError, match=r"broken/model.pt: not a model of recipe 'digits-demo'"):
        load_run(broken)
    (broken / "model.pt").unlink()
    line = _one_line_error(
        in_process(capsys, "export", str(broken), "--format", "netx", "--out", str(tmp_path / "x"))
    )
    assert line.endswith(
        "not a run folder: model.pt is missing (`toolchain train --out " + f"{broken}` writes it)"
    )
    assert issubclass(RunError, ToolchainError)


def test_the_accuracy_before_is_the_evaluations(float_run):
    from toolchain.export.pipeline import torch_model_predictions
    from toolchain.train.evaluate import evaluate

    run = load_run(float_run)
    split = run.dataset.test.subset(slice(0, 300))
    predictions, spikes = torch_model_predictions(run, split)
    reference = evaluate(run.model, split, run.recipe.encoding)
    assert float((predictions == split.y).mean()) == pytest.approx(reference.accuracy, abs=1e-12)
    assert spikes == pytest.approx(reference.spikes_per_sample, rel=1e-9)


def test_load_run_gives_recipe_dataset_and_model(float_run):
    run = load_run(float_run)
    assert run.recipe.name == "digits-demo" and run.dataset.name == "digits"
    assert run.model.layer_names == ["dense1", "output"] and not run.model.training
    assert len(run.dataset.test) == 450


def _loaded(numeric: str, x_test: np.ndarray) -> LoadedRun:
    recipe = Recipe(
        name="tiny",
        neuron=NeuronConfig(numeric=numeric),
        model=ModelConfig(architecture="mlp", hidden=[4]),
    )
    model = build_model(recipe.model, recipe.neuron, (3,), 2)
    apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    split = ArraySplit(x_test.astype(np.float32), np.zeros(len(x_test), np.int64))
    dataset = Dataset("tiny", split, split, ("a", "b"), (3,))
    return LoadedRun(Path("tiny"), recipe, dataset, model.eval())


def test_graded_evaluation_refuses_samples_outside_the_unit_range():
    run = _loaded("float", np.array([[0.0, 0.5, 300.0], [-2.0, 0.0, 1.0]]))
    network, _ = quantize_model(run.model, run.recipe)
    with pytest.raises(QuantizationError) as info:
        simulator_inputs(run, network, run.dataset.test)
    assert str(info.value) == (
        "the test samples of 'digits' span [-2, 300]: Loihi's 8-bit graded input (round(x * 255)) needs "
        "values in [0, 1], so the quantized network cannot be evaluated on them (pass --no-eval to skip "
        "the evaluation)"
    )
    inside = _loaded("float", np.array([[0.0, 0.5, 1.0]]))
    np.testing.assert_array_equal(simulator_inputs(inside, network, inside.dataset.test), [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize("numeric", ["float", "fixed_point"])
def test_the_ann_twin_carries_the_trained_weights(numeric):
    run = _loaded(numeric, np.zeros((1, 3)))
    ann = ann_twin(run)
    ann_blocks = [block for block in ann.blocks if isinstance(block, SynapticBlock)]
    for snn_block, ann_block in zip(run.model.synaptic_blocks(), ann_blocks, strict=True):
        assert torch.equal(ann_block.weight.detach().double(), snn_block.weight.detach().double())
