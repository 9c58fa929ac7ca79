"""``toolchain simulate`` through the real entry point: JSON report, --compare, and one-line errors."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from cli_runner import toolchain

from toolchain.config import parse_recipe
from toolchain.data import load_dataset
from toolchain.export.quantize import quantize_model
from toolchain.formats.netx import read_netx, write_netx
from toolchain.sim.inputs import network_inputs
from toolchain.sim.reference import simulate
from toolchain.snn.models import build_model
from toolchain.snn.numerics import apply_numerics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_netx(tmp_path_factory):
    """A random fixed-point 64-32-10 MLP for the digits dataset (rate input, 8 steps) as netx."""
    recipe = parse_recipe(
        {
            "name": "cli-digits",
            "encoding": {"scheme": "rate", "time_steps": 8},
            "model": {"architecture": "mlp", "hidden": [32]},
            "neuron": {"numeric": "fixed_point", "threshold": 0.5},
        }
    )
    model = build_model(recipe.model, recipe.neuron, (64,), 10)
    apply_numerics(model, recipe.neuron, "rate")
    torch.manual_seed(0)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            block.synapse.module.parametrizations.weight.original.normal_(0.1, 0.6).clamp_(-3.9, 3.9)
    network, _ = quantize_model(model.eval(), recipe)
    return write_netx(network, tmp_path_factory.mktemp("netx") / "digits.net")


def test_reference_backend_json(digits_netx, tmp_path):
    out = tmp_path / "sim.json"
    result = toolchain("simulate", str(digits_netx), "--samples", "40", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["backend"] == "reference" and report["samples"] == 40
    assert [layer["name"] for layer in report["layers"]] == ["dense1", "output"]
    for key in ("spikes_per_sample", "synops_per_sample"):
        assert all(layer[key] > 0 for layer in report["layers"])
    assert report["sample_steps_per_second"] > 0
    assert report["activity"]["source"] == "reference" and report["activity"]["samples"] == 40
    # the figures are those of the simulator on the same (rate-encoded, seed 0) inputs
    network = read_netx(digits_netx)
    inputs = network_inputs(network, load_dataset("digits").test, samples=40)
    expected = simulate(network, inputs.inputs)
    assert report["accuracy"] == expected.accuracy(inputs.labels)
    assert report["spikes_per_sample"] == expected.activity.spikes_per_sample
    assert "accuracy" in result.stdout and "dense1" in result.stdout


@pytest.mark.lava
@pytest.mark.skipif(
    importlib.util.find_spec("lava") is None, reason="lava-nc is not installed (make install)"
)
def test_lava_backend_with_compare(digits_netx, tmp_path):
    out = tmp_path / "lava.json"
    result = toolchain(
        "simulate", str(digits_netx), "--backend", "lava", "--compare", "--samples", "2", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["backend"] == "lava" and report["samples"] == 2
    assert report["mismatched_spikes"] == 0
    assert report["comparison"]["samples"] == {"reference": 2, "torch": 2, "lava": 2}
    assert report["activity"]["source"] == "lava"
    assert {"startup_s", "per_step_s", "per_sample_s"} <= set(report["timing"])
    assert "agree spike for spike" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "0"], "argument --samples: expected a positive integer, got 0"),
        (["--backend", "loihi"], "argument --backend: invalid choice: 'loihi'"),
    ],
)
def test_argument_errors_exit_2_with_one_line(digits_netx, args, message):
    result = toolchain("simulate", str(digits_netx), *args)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_file_errors_exit_2_with_one_line(tmp_path):
    missing = tmp_path / "missing.net"
    result = toolchain("simulate", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"toolchain: error: {missing}: no such file (expected a netx or NIR file from `toolchain export`)"
    ]
    text = tmp_path / "notes.net"
    text.write_text("not a network\n")
    result = toolchain("simulate", str(text))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"toolchain: error: {text}: not an HDF5 file")


def test_lava_progress_says_the_time_left_and_warns_of_a_long_run():
    import io

    from toolchain.sim import lava_backend

    clock = iter([0.0, 10.0, 20.0, 30.0])
    out = io.StringIO()
    progress = lava_backend.LavaProgress(30, stream=out, tty=False, clock=lambda: next(clock))  # t = 0
    progress(1)  # 10 s per sample: 300 s for the run, more than LONG_LAVA_RUN_S
    progress(2)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "warning: Lava will take about 5 min for 30 samples (10.0 s each); "
        "ask for fewer samples to finish sooner"
    )
    assert lines[1] == "lava: 1/30 samples, 10.00 s each, about 5 min left"
    assert len(lines) == 2  # the next line after 10% of the samples or 30 s
    progress(30)
    assert out.getvalue().splitlines()[-1] == "lava: 30/30 samples, 1.00 s each, 30 s in all"
