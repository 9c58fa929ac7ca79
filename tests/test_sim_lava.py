"""The Lava backend: netx files in Lava agree spike for spike with the reference simulator and torch."""

import importlib.util

import numpy as np
import pytest
import torch

from toolchain.config import parse_recipe
from toolchain.data.encoding import encode
from toolchain.export.quantize import quantize_model
from toolchain.formats.netx import read_netx, write_netx
from toolchain.sim.compare import compare, simulate_torch
from toolchain.sim.reference import simulate
from toolchain.snn.models import build_model
from toolchain.snn.numerics import apply_numerics

pytestmark = [
    pytest.mark.lava,
    pytest.mark.skipif(
        importlib.util.find_spec("lava") is None, reason="lava-nc is not installed (make install)"
    ),
]


def _network(table, shape, classes, scale):
    recipe = parse_recipe({"name": "t", **table})
    model = build_model(recipe.model, recipe.neuron, shape, classes)
    apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    torch.manual_seed(0)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            block.synapse.module.parametrizations.weight.original.normal_(0.05, scale).clamp_(-3.9, 3.9)
    network, _ = quantize_model(model.eval(), recipe)
    return recipe, network


def _inputs(recipe, network, samples, shape):
    x = torch.rand(samples, *shape, generator=torch.Generator().manual_seed(1))
    if network.input_encoding == "graded":
        return x.numpy()
    return encode(
        recipe.encoding.scheme, x, recipe.encoding.time_steps, torch.Generator().manual_seed(2)
    ).numpy()


def _agree(tmp_path, table, shape, classes, scale, samples):
    from toolchain.sim.lava_backend import simulate_lava

    recipe, network = _network(table, shape, classes, scale)
    path = write_netx(network, tmp_path / "net.net")
    lowered = read_netx(path)
    inputs = _inputs(recipe, network, samples, shape)
    reference = simulate(lowered, inputs, record_spikes=True)
    lava = simulate_lava(path, inputs, record_spikes=True)
    comparison = compare(reference, {"lava": lava, "torch": simulate_torch(lowered, inputs)})
    assert comparison.mismatched_spikes == 0, comparison.to_dict()
    np.testing.assert_array_equal(lava.counts, reference.counts)
    assert lava.activity.source == "lava"
    for name, spikes in reference.spikes.items():  # every layer active, none saturated
        assert 0.01 < spikes.mean() < 0.95, name
        assert lava.activity.layer(name).spikes_per_sample == reference.activity.layer(name).spikes_per_sample
    timing = lava.metadata["lava_timing"]
    assert timing["startup_s"] > 0 and timing["per_step_s"] > 0
    assert len(timing["run_s_per_sample"]) == lava.samples
    assert sum(timing["run_s_per_sample"]) == pytest.approx(timing["run_s"])
    return lowered


def test_mlp_with_graded_input_agrees_with_lava(tmp_path):
    table = {
        "encoding": {"scheme": "direct", "time_steps": 12},
        "model": {"architecture": "mlp", "hidden": [24]},
        "neuron": {"numeric": "fixed_point", "current_decay": 0.5, "voltage_decay": 0.1},
    }
    lowered = _agree(tmp_path, table, (20,), 5, 1.0, samples=3)
    assert lowered.synaptic_layers()[0].weight_exp == -8


def test_conv_net_with_lowered_sum_pooling_agrees_with_lava(tmp_path):
    table = {
        "encoding": {"scheme": "rate", "time_steps": 8},
        "model": {
            "architecture": "vgg",
            "channels": [4, 6],
            "pool_after": [1],
            "pool": "sum",
            "hidden": [12],
        },
        "neuron": {"numeric": "fixed_point"},
    }
    lowered = _agree(tmp_path, table, (2, 8, 8), 4, 0.5, samples=2)
    assert [layer.kind for layer in lowered.layers] == ["conv", "conv", "flatten", "dense", "dense"]
    assert lowered.layers[1].stride == (2, 2)  # pool1 folded into conv2


@pytest.mark.parametrize(
    ("architecture", "shape"), [("vgg", (2, 6, 6)), ("conv1d", (3, 12))], ids=["conv2d", "conv1d"]
)
def test_graded_input_into_a_conv_layer_agrees_with_lava(tmp_path, architecture, shape):
    """8-bit graded input into a first conv layer (weight_exp -8): Lava's Conv applies the exponent
    through toolchain.lava_compat's fix; without it the sums would be 256 times too large."""
    table = {
        "encoding": {"scheme": "direct", "time_steps": 6},
        "model": {"architecture": architecture, "channels": [4], "pool_after": [], "hidden": [6]},
        "neuron": {"numeric": "fixed_point", "voltage_decay": 0.2},
    }
    lowered = _agree(tmp_path, table, shape, 3, 0.6, samples=3)
    assert lowered.input_encoding == "graded" and lowered.layers[0].weight_exp == -8


def test_lava_conv_applies_its_weight_exponent():
    """The compat fix alone: Lava's fixed-point Conv shifts its sums by weight_exp (a floor)."""
    from toolchain import lava_compat

    lava_compat.import_lava()
    from lava.proc.conv import models

    assert models._lava_compat_conv_weight_shift(np.array([-300, 300, 255]), np.array([-8])).tolist() == [
        -2,
        1,
        0,
    ]


def _descendants(pid: int) -> set[int]:
    """The pids of every living process below ``pid`` (read from /proc)."""
    import os

    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:

    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            continue
    return alive


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killing_a_lava_simulation_leaves_no_lava_process(tmp_path, signal_name):
    """Lava forks an actor process per Lava process; killing the command kills them all."""
    import os
    import signal
    import subprocess
    import sys
    import time

    table = {
        "encoding": {"scheme": "direct", "time_steps": 5},
        "model": {"architecture": "mlp", "hidden": [16]},
        "neuron": {"numeric": "fixed_point"},
    }
    _, network = _network(table, (8,), 3, 0.5)
    path = write_netx(network, tmp_path / "net.net")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((500, 8)).astype(np.float32))
    command = [sys.executable, "-m", "toolchain", "simulate", str(path), "--backend", "lava"]
    command += ["--input", str(tmp_path / "x.npy")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < 3 and proc.poll() is None and time.monotonic() < deadline:
        seen |= _descendants(proc.pid)  # Lava's actors (a runtime per sample: they come and go)
        time.sleep(0.05)
    assert proc.poll() is None and len(seen) >= 3, proc.stderr.read() if proc.poll() is not None else seen
    seen |= _descendants(proc.pid)
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=60)
    if signal_name == "SIGTERM":  # stopped as Ctrl-C stops it: a line and exit code 130
        assert proc.returncode == 130, err
        assert "interrupted" in err
    deadline = time.monotonic() + 10
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(seen), f"Lava processes left running after {signal_name}: {sorted(_alive(seen))}"
