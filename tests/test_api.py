"""The Python API (``toolchain.api``, re-exported lazily by ``toolchain``): docs/api.md's worked
example, executed as written, and each wrapper's arguments, results and one-line errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import toolchain
import toolchain.api as api
from toolchain import ir
from toolchain.errors import ToolchainError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"
HAS_LAVA = importlib.util.find_spec("lava") is not None


def worked_example() -> str:
    """The first ``python`` code block under docs/api.md's "## Worked example"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Worked example\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert blocks, "docs/api.md: no python block under '## Worked example'"
    return blocks[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Any]:
    """The worked example run in a fresh folder holding ``models/digits-demo``; its variables, and
    ``base``: that folder."""
    base = tmp_path_factory.mktemp("api")
    shutil.copytree(ROOT / "models" / "digits-demo", base / "models" / "digits-demo")
    namespace: dict[str, Any] = {"__name__": "api_example"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        exec(compile(worked_example(), str(DOC), "exec"), namespace)
    namespace["base"] = base
    return namespace


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


def assert_same_network(a: ir.Network, b: ir.Network) -> None:
    """Every field equal, numpy arrays element for element (and of the same dtype); a neuron's
    ``bias_exp`` only where it has a bias (the NIR reader gives 0 to one without)."""

    def same(x: Any, y: Any, where: str) -> None:
        assert type(x) is type(y), where
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), where
        elif dataclasses.is_dataclass(x):
            for f in dataclasses.fields(x):
                if isinstance(x, ir.CubaNeurons) and f.name == "bias_exp" and x.bias_mant is None:
                    continue
                same(getattr(x, f.name), getattr(y, f.name), f"{where}.{f.name}")
        elif isinstance(x, tuple | list):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                same(u, v, f"{where}[{i}]")
        else:
            assert x == y, where

    same(a, b, "network")


# ----------------------------------------------------------------------------------------------
# the worked example


def test_worked_example_runs_as_documented(example):
    out = example["base"] / example["out"]
    for name in ("model.pt", "recipe.toml", "metrics.json", "model.net", "raster.png", "activity.png"):
        assert (out / name).is_file(), name
    assert (out / "raster.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result, batch = example["result"], example["batch"]
    assert result.samples == batch.samples == 50
    assert result.accuracy(batch.labels) > 0.5
    assert example["comparison"].agree
    assert example["comparison"].samples == {"reference": 50, "torch": 50}
    energy = example["energy"]
    assert energy.energy_per_inference_j > 0 and energy.latency_per_inference_s > 0
    assert energy.target.name == "loihi"


# ----------------------------------------------------------------------------------------------
# the package


def test_import_toolchain_does_not_import_torch():
    code = (
        "import sys, toolchain\n"
        "assert 'torch' not in sys.modules and 'toolchain.api' not in sys.modules, 'import toolchain'\n"
        "from toolchain import read, simulate, plot_raster, ToolchainError\n"
        "assert 'torch' not in sys.modules, 'looking up the API names'\n"
        "assert 'matplotlib' not in sys.modules\n"
        "print(toolchain.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == toolchain.__version__


def test_top_level_names_are_the_api():
    for name in toolchain.API:
        assert getattr(toolchain, name) is getattr(api, name), name
        assert getattr(api, name).__doc__, name
        assert name in dir(toolchain) and name in toolchain.__all__
    assert toolchain.ToolchainError is ToolchainError
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        toolchain.nonexistent  # noqa: B018
    importlib.import_module("toolchain.train")  # the training package keeps its name: the trainer is `fit`
    assert toolchain.train.__name__ == "toolchain.train"
    assert toolchain.fit is api.fit


# ----------------------------------------------------------------------------------------------
# recipes, data, runs, quantization


def test_load_recipe_with_overrides_and_errors(tmp_path):
    recipe = api.load_recipe(ROOT / "models" / "digits-demo", {"train.epochs": 3, "model.hidden": [16]})
    assert recipe.train.epochs == 3 and recipe.model.hidden == [16]
    with pytest.raises(ToolchainError) as excinfo:
        api.load_recipe(ROOT / "models" / "digits-demo", {"train.epochs": -1})
    assert "epochs" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.load_recipe(tmp_path / "missing")
    assert "recipe not found" in one_line_error(excinfo)


def test_load_dataset_by_name_or_recipe():
    recipe = api.load_recipe(ROOT / "models" / "digits-demo")
    by_recipe = api.load_dataset(recipe)
    assert len(by_recipe.test) == 450  # the recipe's test_fraction 0.25 of 1797
    assert api.load_dataset("digits").num_classes == 10
    with pytest.raises(ToolchainError) as excinfo:
        api.load_dataset("imagenet")
    assert "unknown dataset 'imagenet'" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.load_dataset(3)  # type: ignore[arg-type]
    one_line_error(excinfo)


def test_quantize_a_run_folder_a_run_and_a_model(example, monkeypatch):
    out = example["base"] / example["out"]
    run = api.load_run(out)
    from_run, report = api.quantize(run)
    from_path, _ = api.quantize(out)
    assert_same_network(from_run, from_path)
    assert not report.exact and report.inexact  # a float model: post-training quantization
    from_model, _ = api.quantize(run.model, run.recipe, classes=run.dataset.classes)
    assert [layer.weight.tolist() for layer in from_model.synaptic_layers()] == [
        layer.weight.tolist() for layer in from_run.synaptic_layers()
    ]
    assert from_model.metadata["source"] == ""
    monkeypatch.chdir(example["base"])  # where the example trained (its run folder is relative)
    from_result, _ = api.quantize(example["trained"])  # the recipe from its run folder
    assert from_result.metadata["source"] == from_run.metadata["source"] == str(out.resolve())
    with pytest.raises(ToolchainError) as excinfo:
        api.quantize(run.model)
    assert "needs the recipe" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.quantize(run, run.recipe)
    one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.quantize(example["network"])  # type: ignore[arg-type]
    assert "expected a run folder" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.quantize(out / "missing")
    assert "run folder does not exist" in one_line_error(excinfo)


# ----------------------------------------------------------------------------------------------
# files


@pytest.mark.parametrize("name", ["model.net", "model.h5", "model.nir"])
def test_write_then_read_gives_an_equal_network(example, tmp_path, name):
    network = example["network"]
    path = api.write(network, tmp_path / name)
    assert path == tmp_path / name
    assert_same_network(api.read(path), network)


def test_write_by_format_and_its_errors(example, tmp_path):
    network = example["network"]
    assert_same_network(api.read(api.write(network, tmp_path / "model.bin", format="nir")), network)
    for args, kwargs, expected in [
        ((tmp_path / "model.txt",), {}, "cannot tell the format"),
        ((tmp_path / "model.onnx",), {}, "ONNX holds the float torch model"),
        ((tmp_path / "model.net",), {"format": "onnx"}, "ONNX holds the float torch model"),
        ((tmp_path / "model.x",), {"format": "lava"}, "expected 'netx' or 'nir'"),
        ((tmp_path / "model.net",), {"dt": 1e-3}, "dt applies to NIR files"),
        ((tmp_path,), {"format": "netx"}, "is a folder"),
    ]:
        with pytest.raises(ToolchainError) as excinfo:
            api.write(network, *args, **kwargs)
        assert expected in one_line_error(excinfo), (args, kwargs)
    with pytest.raises(ToolchainError) as excinfo:
        api.write("not a network", tmp_path / "model.net")  # type: ignore[arg-type]
    assert "expected an ir.Network" in one_line_error(excinfo)


def test_read_settings_and_errors(example, tmp_path):
    path = example["base"] / example["path"]
    longer = api.read(path, time_steps=12)
    assert longer.time_steps == 12
    assert longer.metadata["encoding"]["time_steps"] == 12  # so the dataset is encoded for 12 steps
    nir = api.write(example["network"], tmp_path / "model.nir", dt=1e-3)
    assert api.read(nir).time_steps == example["network"].time_steps
    for kwargs, expected in [
        ({"time_steps": 0}, "time_steps"),
        ({"input_encoding": "rate"}, "input_encoding"),
        ({"dt": -1.0}, "dt"),
        ({"dt": 1e-3}, "--dt applies to NIR files only"),
        ({"input_encoding": "spikes"}, "contradicts"),
    ]:
        with pytest.raises(ToolchainError) as excinfo:
            api.read(path, **kwargs)
        assert expected in one_line_error(excinfo), kwargs
    with pytest.raises(ToolchainError) as excinfo:
        api.read(tmp_path / "missing.net")
    assert "no such file" in one_line_error(excinfo)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(ToolchainError) as excinfo:
        api.read(onnx)
    assert "ONNX" in one_line_error(excinfo)


# ----------------------------------------------------------------------------------------------
# simulation


def test_simulate_arrays_files_and_backends(example, tmp_path):
    network, batch, result = example["network"], example["batch"], example["result"]
    assert np.array_equal(result.metadata["labels"], batch.labels)
    again = api.simulate(network, batch.inputs[:10], record_spikes=False)
    assert again.spikes is None and "labels" not in again.metadata
    np.testing.assert_array_equal(again.counts, result.counts[:10])
    from_file = api.simulate(example["base"] / example["path"], samples=10)  # the test split, from the path
    np.testing.assert_array_equal(from_file.counts, result.counts[:10])
    assert np.array_equal(from_file.metadata["labels"], batch.labels[:10])
    torch_result = api.simulate(network, batch, backend="torch", samples=10)
    np.testing.assert_array_equal(torch_result.counts, result.counts[:10])
    np.save(tmp_path / "x.npy", batch.inputs[:4])
    np.save(tmp_path / "y.npy", batch.labels[:4])
    own = api.load_inputs(network, tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert own.samples == 4 and np.array_equal(own.labels, batch.labels[:4])
    np.testing.assert_array_equal(api.simulate(network, tmp_path / "x.npy").counts, result.counts[:4])


def test_load_inputs_from_a_dataset_and_its_errors(example):
    network = example["network"]
    dataset = api.load_dataset(api.load_recipe(ROOT / "models" / "digits-demo"))
    inputs = api.load_inputs(network, dataset, samples=50)
    np.testing.assert_array_equal(inputs.inputs, example["batch"].inputs)
    assert api.load_inputs(network, dataset.test, samples=5).samples == 5
    anonymous = dataclasses.replace(network, metadata={})
    with pytest.raises(ToolchainError) as excinfo:
        api.load_inputs(anonymous)
    assert "names no dataset" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.load_inputs(network, samples=0)
    assert "samples" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.load_inputs(network, labels="y.npy")
    one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.load_inputs(network, 42)  # type: ignore[arg-type]
    one_line_error(excinfo)


def test_simulate_errors(example):
    network, batch = example["network"], example["batch"]
    for kwargs, expected in [
        ({"backend": "loihi"}, "expected one of reference, lava, torch"),
        ({"samples": 0}, "samples"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ToolchainError) as excinfo:
            api.simulate(network, batch, **kwargs)
        assert expected in one_line_error(excinfo), kwargs
    with pytest.raises(ToolchainError) as excinfo:
        api.simulate(network, batch.inputs * 2)  # graded input beyond [0, 1]
    assert "[0, 1]" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.simulate(network, batch.inputs[:, :10])  # not the input shape
    assert "input_shape" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.simulate(3.5)  # type: ignore[arg-type]
    one_line_error(excinfo)
    wide = dataclasses.replace(network, time_steps=2**20)
    with pytest.raises(ToolchainError) as excinfo:
        api.simulate(wide, batch)
    assert "record_spikes=False" in one_line_error(excinfo)


def test_compare_reuses_the_reference_and_checks_its_arguments(example):
    network, batch, result = example["network"], example["batch"], example["result"]
    fresh = api.compare(network, batch, samples=20)
    assert fresh.agree and fresh.samples == {"reference": 20, "torch": 20}
    assert set(fresh.accuracy) == {"reference", "torch"}
    for kwargs, expected in [
        ({"backends": ["reference"]}, "expected one or more of 'torch', 'lava'"),
        ({"backends": []}, "expected one or more"),
        ({"backends": "lavaa"}, "['lavaa']"),
        ({"reference": result, "samples": 10}, "the reference result holds 50 samples"),
        ({"lava_samples": 0}, "lava_samples"),
    ]:
        with pytest.raises(ToolchainError) as excinfo:
            api.compare(network, batch, **kwargs)
        assert expected in one_line_error(excinfo), kwargs
    silent = api.simulate(network, batch, record_spikes=False)
    with pytest.raises(ToolchainError) as excinfo:
        api.compare(network, batch, reference=silent)
    assert "record_spikes=True" in one_line_error(excinfo)


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed (make install)")
def test_lava_backend_on_a_file_and_on_a_network(example):
    network, batch, result = example["network"], example["batch"], example["result"]
    lava = api.simulate(example["base"] / example["path"], batch, backend="lava", samples=2)
    assert lava.activity.source == "lava"
    np.testing.assert_array_equal(lava.counts, result.counts[:2])
    both = api.compare(network, batch, backends=["torch", "lava"], reference=result, lava_samples=2)
    assert both.agree and both.samples == {"reference": 50, "torch": 50, "lava": 2}


# ----------------------------------------------------------------------------------------------
# energy


def test_estimate_energy_from_results_activity_and_simulation(example, tmp_path):
    network, result, energy = example["network"], example["result"], example["energy"]
    from_activity = api.estimate_energy(network, result.activity, "loihi")
    assert from_activity.energy_per_inference_j == energy.energy_per_inference_j
    measured = api.estimate_energy(network, samples=50)  # simulates the first 50 test samples itself
    assert measured.energy_per_inference_j == pytest.approx(energy.energy_per_inference_j)
    assert measured.samples == 50
    import json

    (tmp_path / "sim.json").write_text(json.dumps({"activity": result.activity.to_dict()}))
    from_json = api.estimate_energy(example["base"] / example["path"], tmp_path / "sim.json", "loihi2")
    assert from_json.target.name == "loihi2"
    with pytest.raises(ToolchainError) as excinfo:
        api.estimate_energy(network, result, "no-such-chip")
    assert "unknown target 'no-such-chip'" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.estimate_energy(network, result, "cpu")
    assert "conventional baseline" in one_line_error(excinfo)
    torch_result = api.simulate(network, example["batch"], backend="torch", samples=5)
    with pytest.raises(ToolchainError) as excinfo:
        api.estimate_energy(network, torch_result)
    assert "no per-layer counts" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.estimate_energy(network, result, order="random")
    one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.estimate_energy(network, 3)  # type: ignore[arg-type]
    one_line_error(excinfo)


# ----------------------------------------------------------------------------------------------
# plots


def test_plot_raster(example):
    from matplotlib.figure import Figure

    result, network = example["result"], example["network"]
    hidden = network.synaptic_layers()[0].name
    fig = api.plot_raster(result, hidden, sample=3)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    offsets = ax.collections[0].get_offsets()
    spikes = result.spikes[hidden][:, 3].reshape(network.time_steps, -1)
    assert len(offsets) == int(spikes.sum())
    assert hidden in ax.get_title() and "sample 3" in ax.get_title()
    assert "output" in api.plot_raster(result).axes[0].get_title()  # the output layer by default
    own = Figure()
    axes = own.subplots(1, 2)
    assert api.plot_raster(result, ax=axes[1], title="mine") is own
    assert axes[1].get_title() == "mine"
    for args, expected in [((hidden, 50), "sample 50"), (("nope",), "no spikes of layer 'nope'")]:
        with pytest.raises(ToolchainError) as excinfo:
            api.plot_raster(result, *args)
        assert expected in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.plot_raster(dataclasses.replace(result, spikes=None))
    assert "record_spikes=True" in one_line_error(excinfo)


def test_plot_activity(example):
    from matplotlib.figure import Figure

    result = example["result"]
    fig = api.plot_activity(result)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    bars = [patch.get_height() for patch in ax.patches]
    assert bars == pytest.approx([layer.spikes_per_sample for layer in result.activity.layers])
    grouped = api.plot_activity({"a": result, "b": result.activity}, per_neuron=True)
    per_neuron = [layer.spikes_per_sample / layer.neurons for layer in result.activity.layers]
    assert [p.get_height() for p in grouped.axes[0].patches] == pytest.approx(per_neuron * 2)
    assert grouped.axes[0].get_legend() is not None
    torch_result = api.simulate(example["network"], example["batch"], backend="torch", samples=5)
    with pytest.raises(ToolchainError) as excinfo:
        api.plot_activity({"torch": torch_result})
    assert "no per-layer activity" in one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.plot_activity({})
    one_line_error(excinfo)
    with pytest.raises(ToolchainError) as excinfo:
        api.plot_activity("result")  # type: ignore[arg-type]
    one_line_error(excinfo)
