"""The Lava backend: netx files in Lava agree spike for spike with the reference simulator and torch."""

import importlib.util

import numpy as np
import pytest
import torch

from toolchain.config import parse_recipe
from toolchain.data.encoding import encode
from toolchain.export.netx import read_netx, write_netx
from toolchain.export.quantize import quantize_model
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
