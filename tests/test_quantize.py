"""Quantization for Loihi: hand-computed values, batch-norm folding, refusals, fixed-point exactness,
spike-for-spike equivalence of a fixed-point model and its deployment graph, and every recipe."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from toolchain import ir
from toolchain.config import EncodingConfig, ModelConfig, NeuronConfig, Recipe, load_recipe
from toolchain.data import dataset_shape
from toolchain.data.encoding import encode
from toolchain.errors import QuantizationError, UnsupportedDynamicsError
from toolchain.export.quantize import input_encoding, quantize_model
from toolchain.loihi_numbers import bias_registers
from toolchain.sim.reference import simulate
from toolchain.snn.dynamics import CubaState, cuba_step_fixed
from toolchain.snn.models import build_model
from toolchain.snn.numerics import apply_numerics

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(path.parent.name for path in (ROOT / "models").glob("*/recipe.toml"))


def _recipe(scheme="rate", steps=4, neuron=None, model=None) -> Recipe:
    return Recipe(
        name="test",
        encoding=EncodingConfig(scheme=scheme, time_steps=steps),
        neuron=neuron or NeuronConfig(),
        model=model or ModelConfig(architecture="mlp", hidden=[]),
    )


def _single_dense(weight, recipe: Recipe):
    """A 3 -> 2 network (just the output layer) with the given float weights."""
    model = build_model(recipe.model, recipe.neuron, (3,), 2)
    with torch.no_grad():
        model.block("output").synapse.weight.copy_(torch.tensor(weight))
    return model.eval()


# --- hand-computed values -------------------------------------------------------------------


def test_a_dense_layer_quantizes_to_the_hand_computed_integers():
    recipe = _recipe()
    model = _single_dense([[0.5, -0.26, 1.0], [3.96, -4.0, 0.01]], recipe)
    network, report = quantize_model(model, recipe)
    (layer,) = network.layers
    # w * 32 = [16, -8.32, 32], [126.72, -128, 0.32] -> rounded, times 2
    np.testing.assert_array_equal(layer.weight, [[32, -16, 64], [254, -256, 0]])
    assert layer.weight.dtype == np.int64
    assert layer.weight_exp == 0  # rate-coded input is 0/1 spikes
    assert report.layers[0].scale_exp == 0  # a weight at the grid's edge: no room to scale
    assert network.input_encoding == "spikes"
    assert (layer.neurons.i_decay, layer.neurons.v_decay, layer.neurons.vth_mant) == (4096, 410, 64)
    assert layer.neurons.bias_mant is None
    (stats,) = report.layers
    errors = np.array([0.0, 0.01, 0.0, 0.00875, 0.0, 0.01])
    assert stats.weight_min == pytest.approx(-4.0)
    assert stats.weight_max == pytest.approx(3.96)
    assert stats.weight_max_abs_error == pytest.approx(0.01, abs=1e-6)
    assert stats.weight_rms_error == pytest.approx(math.sqrt((errors**2).mean()), abs=1e-6)
    voltage = {item.name: item for item in stats.neuron}["voltage_decay"]
    assert (voltage.requested, voltage.quantized) == (0.1, 410 / 4096)
    assert stats.neuron_changed_by_export
    assert not report.exact
    assert "float model: post-training quantization" in report.inexact[0]


def test_a_layer_of_small_weights_is_scaled_by_the_largest_power_of_two_that_fits():
    recipe = _recipe()
    model = _single_dense([[0.01, -0.02, 0.03], [0.0, 0.0, 0.005]], recipe)
    network, report = quantize_model(model, recipe)
    (layer,), (stats,) = network.layers, report.layers
    # 0.03 * 2^8 = 7.68 overflows, 0.03 * 2^7 = 3.84 fits: w_int = 2 * round(w * 128 * 32)
    assert stats.scale_exp == 7
    np.testing.assert_array_equal(layer.weight, [[82, -164, 246], [0, 0, 40]])
    assert layer.neurons.vth_mant == 64 * 128  # the threshold scaled with the weights
    threshold = {item.name: item for item in stats.neuron}["threshold"]
    assert (threshold.requested, threshold.quantized, threshold.abs_error) == (1.0, 1.0, 0.0)
    assert stats.weight_max_abs_error == pytest.approx(0.005 - 40 / 8192, abs=1e-9)
    unscaled, unscaled_report = quantize_model(model, recipe, scale_layers=False)
    np.testing.assert_array_equal(unscaled.layers[0].weight, [[0, -2, 2], [0, 0, 0]])
    assert unscaled_report.layers[0].weight_max_abs_error == pytest.approx(2 / 64 - 0.02, abs=1e-6)


def test_the_scale_keeps_the_current_from_wrapping():
    recipe = _recipe()
    model = build_model(recipe.model, recipe.neuron, (4096,), 2)
    with torch.no_grad():
        model.block("output").synapse.weight.fill_(0.001)
    _, report = quantize_model(model.eval(), recipe)
    # the weights alone would allow 2^11 (0.001 * 2048 = 2.05); at 2^9 each is 32 and 4096 of them
    # sum to 2^17, which << 6 reaches 2^23, the current's limit; 2^8 stays below
    assert report.layers[0].scale_exp == 8
    assert not any("could wrap" in reason for reason in report.inexact)
    with torch.no_grad():
        model.block("output").synapse.weight.fill_(0.5)  # 4096 x 32: wraps if all fire, even unscaled
    _, report = quantize_model(model.eval(), recipe)
    assert report.layers[0].scale_exp == 0
    assert (
        "layer 'output': its 24-bit current could wrap if every input fired at once "
        "(largest sum |w_int| = 131072, limit 2^23 >> 6)"
    ) in report.inexact


def test_a_float_model_on_a_fine_grid_exports_exactly_once_scaled():
    """With no voltage decay, no current memory and spike input the float model computes exactly,
    so its graph must spike identically; unscaled, its small weights would round away."""
    neuron = NeuronConfig(current_decay=1.0, voltage_decay=0.0, threshold=0.5)
    recipe = _recipe("rate", steps=24, neuron=neuron, model=ModelConfig(architecture="mlp", hidden=[6]))
    model = build_model(recipe.model, neuron, (5,), 3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            block.synapse.weight.copy_(torch.randint(-20, 60, block.weight.shape, generator=generator) / 512)
    model.eval()
    network, report = quantize_model(model, recipe)
    assert [layer.scale_exp for layer in report.layers] == [5, 5]
    assert report.max_weight_error == 0.0
    x = torch.rand(8, 5, generator=generator)
    spikes = encode("rate", x, 24, generator=generator)
    with torch.no_grad():
        expected = model(spikes).spikes
    got = _step_ir(network, spikes.long())
    for name, layer_spikes in expected.items():
        assert layer_spikes.sum() > 0
        assert torch.equal(got[name].to(layer_spikes.dtype), layer_spikes), name
    unscaled, _ = quantize_model(model, recipe, scale_layers=False)
    assert not all(torch.equal(_step_ir(unscaled, spikes.long())[n].float(), s) for n, s in expected.items())


def test_report_to_dict_holds_every_figure():
    recipe = _recipe()
    _, report = quantize_model(_single_dense([[0.5, -0.26, 1.0], [3.96, -4.0, 0.01]], recipe), recipe)
    data = report.to_dict()
    assert data["numeric"] == "float" and data["input_encoding"] == "spikes" and data["exact"] is False
    assert data["max_weight_error"] == pytest.approx(0.01, abs=1e-6)
    (layer,) = data["layers"]
    assert layer["name"] == "output" and layer["weight_shape"] == [2, 3]
    assert layer["registers"] == {"iDecay": 4096, "vDecay": 410, "vThMant": 64}
    assert [item["name"] for item in layer["neuron"]] == ["current_decay", "voltage_decay", "threshold"]
    assert layer["bias"] is None


def test_graded_input_sets_the_first_layer_exponent_only():
    recipe = _recipe("direct", model=ModelConfig(architecture="mlp", hidden=[4]))
    model = build_model(recipe.model, recipe.neuron, (3,), 2).eval()
    network, _ = quantize_model(model, recipe)
    assert network.input_encoding == "graded"
    assert [layer.weight_exp for layer in network.synaptic_layers()] == [-8, 0]
    assert [input_encoding(s) for s in ("direct", "rate", "latency", "spikes")] == [
        "graded",
        "spikes",
        "spikes",
        "spikes",
    ]


def test_metadata_and_network_fields():
    recipe = _recipe("latency", steps=5, neuron=NeuronConfig(synapse_delay=0))
    model = _single_dense([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]], recipe)
    network, _ = quantize_model(model, recipe, classes=["a", "b"], source="runs/x")
    assert network.name == "test" and network.time_steps == 5 and network.synapse_delay_steps == 0
    assert network.input_shape == (3,)
    assert network.metadata == {
        "recipe": "test",
        "numeric": "float",
        "encoding": {"scheme": "latency", "time_steps": 5},
        "dataset": "digits",
        "classes": ["a", "b"],
        "source": "runs/x",
    }
    assert quantize_model(model, recipe)[0].metadata["classes"] == ["0", "1"]
    with pytest.raises(QuantizationError, match="3 class names for a network with 2 outputs"):
        quantize_model(model, recipe, classes=["a", "b", "c"])


# --- batch norm -----------------------------------------------------------------------------


def _with_batch_norm(weight, gamma, beta, mean, var, neuron=None):
    recipe = _recipe(neuron=neuron, model=ModelConfig(architecture="mlp", hidden=[], batch_norm=True))
    model = _single_dense(weight, recipe)
    norm = model.block("output").norm.module
    norm.eps = 0.0
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(gamma))
        norm.bias.copy_(torch.tensor(beta))
        norm.running_mean.copy_(torch.tensor(mean))
        norm.running_var.copy_(torch.tensor(var))
    return model, recipe


def test_batch_norm_folds_exactly_into_weights_and_bias():
    # scale = gamma / sqrt(var) = [0.5, 3]; bias = beta - mean * scale = [0, -2.5]
    weight = [[0.5, -1.0, 2.0], [1.0, 0.25, -0.125]]
    model, recipe = _with_batch_norm(weight, [1.0, 3.0], [0.5, -1.0], [1.0, 0.5], [4.0, 1.0])
    network, report = quantize_model(model, recipe)
    (layer,) = network.layers
    np.testing.assert_array_equal(layer.weight, [[16, -32, 64], [192, 48, -24]])
    # -2.5 V = -10240 state units = -160 << 6 (netx's bias exponent)
    assert layer.neurons.bias_exp == 6
    np.testing.assert_array_equal(layer.neurons.bias_mant, [0, -160])
    np.testing.assert_array_equal(layer.neurons.bias_float(), [0.0, -2.5])
    (stats,) = report.layers
    assert stats.batch_norm_folded and stats.weight_max_abs_error == 0.0
    assert stats.bias.bias_exp == 6 and stats.bias.max_abs_error == 0.0
    assert (stats.bias.float_min, stats.bias.float_max) == (-2.5, 0.0)
    # the folded layer computes what the batch-normalized one does
    x = torch.rand(1, 5, 3)
    folded = x @ torch.from_numpy(ir.weight_float(layer)).float().T + torch.tensor([0.0, -2.5])
    block = model.block("output")
    torch.testing.assert_close(block.norm(block.synapse(x)), folded)


def test_a_bias_under_a_synapse_delay_starts_at_step_zero_in_the_model_too():
    """The block delays the synaptic sum before batch norm (its shift acts from step 0, as Loihi's
    bias does), so the export has no bias-onset difference to report."""
    model, recipe = _with_batch_norm(
        [[0.5, 0, 0], [0, 0.5, 0]], [1.0, 1.0], [0.25, 0.0], [0.0, 0.0], [1.0, 1.0]
    )
    block = model.block("output")
    assert block.delay_steps == recipe.neuron.synapse_delay == 1 and block.neuron.delay_steps == 0
    with torch.no_grad():
        current = block.current(torch.zeros(3, 1, 3))
    assert current[0, 0].tolist() == pytest.approx([0.25, 0.0], abs=1e-6)  # the shift, at step 0
    _, report = quantize_model(model, recipe)
    assert not any("from step 0" in reason for reason in report.inexact)


def test_bias_registers_use_netxs_exponent():
    mant, exp, error = bias_registers(np.array([0.5, -0.25, 63.98]), "x")
    assert (mant.tolist(), exp, error) == ([32, -16, 4095], 6, pytest.approx(4095 / 64 - 63.98))
    mant, exp, error = bias_registers(np.array([0.01]), "x")  # 0.64 / 64 -> 1 / 64
    assert (mant.tolist(), exp) == ([1], 6) and error == pytest.approx(1 / 64 - 0.01)
    with pytest.raises(
        QuantizationError, match=r"layer 'x': the folded batch-norm bias spans \[-64.0100, 0.0000\]"
    ):
        bias_registers(np.array([-64.01, 0.0]), "x")


# --- refusals -------------------------------------------------------------------------------


def test_an_overflowing_weight_is_refused_naming_the_layer():
    """Refused when the layer may not be rescaled (--no-layer-scale); by default it is scaled down
    by a power of two (spikes unchanged, the rounding reported) and fits."""
    recipe = _recipe()
    for bad in (4.0, 3.99):  # 3.99 * 64 rounds to 256 on the even grid
        model = _single_dense([[0.5, -0.5, bad], [0.0, 0.0, 0.0]], recipe)
        assert quantize_model(model, recipe)[1].layers[0].scale_exp == -1
        with pytest.raises(QuantizationError) as info:
            quantize_model(model, recipe, scale_layers=False)
        assert str(info.value) == (
            f"layer 'output': weights span [-0.5000, {bad:.4f}], beyond Loihi's 8-bit grid [-4.0, 3.96875] "
            "(weight x 64 must be an even integer in [-256, 254]); "
            "scale the layer or train in fixed-point mode"
        )


def test_batch_norm_that_scales_weights_off_the_grid_scales_the_layer_down_or_is_refused():
    model, recipe = _with_batch_norm(
        [[1.0, 0, 0], [0, 1.0, 0]], [8.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]
    )
    # folded weights 8 and 1: 8 * 2^-1 = 4 is still off the grid, 8 * 2^-2 = 2 fits
    network, report = quantize_model(model, recipe)
    (layer,), (stats,) = network.layers, report.layers
    assert stats.scale_exp == -2
    np.testing.assert_array_equal(layer.weight, [[128, 0, 0], [0, 16, 0]])
    assert layer.neurons.vth_mant == 16  # the threshold 1.0 scaled with the weights: 64 / 4
    with pytest.raises(QuantizationError, match=r"layer 'output': weights span \[0.0000, 8.0000\]"):
        quantize_model(model, recipe, scale_layers=False)


def test_a_bias_beyond_its_registers_is_refused():
    model, recipe = _with_batch_norm(
        [[0.5, 0, 0], [0, 0.5, 0]], [1.0, 1.0], [200.0, 0.0], [0.0, 0.0], [1.0, 1.0]
    )
    assert quantize_model(model, recipe)[1].layers[0].scale_exp == -2  # 200 / 4 = 50 fits
    with pytest.raises(QuantizationError) as info:
        quantize_model(model, recipe, scale_layers=False)
    assert str(info.value) == (
        "layer 'output': the folded batch-norm bias spans [0.0000, 200.0000], beyond Loihi's bias "
        "register (13-bit mantissa, bias_exp = 6 as netx uses it: |bias| <= 63.98)"
    )


def test_a_bias_into_a_decaying_current_is_refused():
    neuron = NeuronConfig(current_decay=0.5)
    model, recipe = _with_batch_norm(
        [[0.5, 0, 0], [0, 0.5, 0]], [1.0, 1.0], [0.25, 0.0], [0.0, 0.0], [1.0, 1.0], neuron=neuron
    )
    with pytest.raises(UnsupportedDynamicsError) as info:
        quantize_model(model, recipe)
    assert str(info.value) == (
        "layer 'output': the batch-norm bias enters the synaptic current, which decays (current_decay = 0.5, "
        "iDecay = 2048); Loihi adds a bias to the voltage, which equals a current bias only when "
        "current_decay = 1 (iDecay = 4096): train with current_decay = 1 or without batch norm"
    )


def test_a_subtractive_reset_is_refused():
    recipe = _recipe(neuron=NeuronConfig(reset="subtract"))
    with pytest.raises(
        UnsupportedDynamicsError, match=r"layer 'output': \[neuron\].reset = 'subtract' has no Loihi"
    ):
        quantize_model(_single_dense([[0.5, 0, 0], [0, 0, 0]], recipe), recipe)


def test_a_threshold_beyond_its_register_names_the_layer():
    recipe = _recipe(neuron=NeuronConfig(threshold=3000.0))
    model = _single_dense([[0.5, 0, 0], [0, 0, 0]], recipe)
    assert quantize_model(model, recipe)[1].layers[0].scale_exp == -1  # 1500 x 64 fits 17 bits
    with pytest.raises(
        QuantizationError, match=r"layer 'output': vThMant \(threshold x 64\) = 192000 is outside"
    ):
        quantize_model(model, recipe, scale_layers=False)


def test_nan_weights_are_refused():
    recipe = _recipe()
    with pytest.raises(QuantizationError, match=r"layer 'output': weights contain NaN"):
        quantize_model(_single_dense([[float("nan"), 0, 0], [0, 0, 0]], recipe), recipe)


# --- fixed point: exact ---------------------------------------------------------------------

FIXED = NeuronConfig(numeric="fixed_point", current_decay=0.5, voltage_decay=0.2, threshold=0.75)

ARCHITECTURES = {
    "mlp-direct": (ModelConfig(architecture="mlp", hidden=[12, 8]), (10,), "direct", 1),
    "mlp-rate-no-delay": (ModelConfig(architecture="mlp", hidden=[12]), (10,), "rate", 0),
    "conv1d": (
        ModelConfig(
            architecture="conv1d", channels=[4, 4], kernel_size=3, stride=2, pool_after=[], hidden=[6]
        ),
        (3, 11),
        "direct",
        1,
    ),
    "vgg-sum-pool": (
        ModelConfig(
            architecture="vgg", channels=[4, 6], kernel_size=3, pool_after=[1], pool="sum", hidden=[]
        ),
        (2, 8, 8),
        "direct",
        1,
    ),
    "vgg-avg-pool-rate": (
        ModelConfig(
            architecture="vgg", channels=[4, 6], kernel_size=3, pool_after=[1], pool="avg", hidden=[]
        ),
        (2, 8, 8),
        "rate",
        1,
    ),
}


def _fixed_point_model(name, seed=0):
    model_cfg, shape, scheme, delay = ARCHITECTURES[name]
    neuron = NeuronConfig(**{**FIXED.__dict__, "synapse_delay": delay})
    recipe = _recipe(scheme, steps=16, neuron=neuron, model=model_cfg)
    torch.manual_seed(seed)
    model = build_model(model_cfg, neuron, shape, 3)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            block.synapse.weight.normal_(0.15, 0.6)
    apply_numerics(model, neuron, scheme)
    return model.eval(), recipe


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_fixed_point_model_exports_exactly(name):
    model, recipe = _fixed_point_model(name)
    network, report = quantize_model(model, recipe)
    assert report.exact, report.inexact
    assert report.max_weight_error == 0.0 and report.max_bias_error == 0.0
    assert all(layer.exact and not layer.neuron_changed_by_export for layer in report.layers)
    assert all(layer.scale_exp == 0 for layer in report.layers)  # fixed point is never rescaled
    for block, layer in zip(model.synaptic_blocks(), network.synaptic_layers(), strict=True):
        assert torch.equal(torch.from_numpy(layer.weight).double() / 64, block.weight.detach())
        regs = block.neuron.registers
        assert (layer.neurons.i_decay, layer.neurons.v_decay, layer.neurons.vth_mant) == (
            regs.i_decay,
            regs.v_decay,
            regs.vth_mant,
        )
    assert report.to_dict()["exact"] is True and report.to_dict()["max_weight_error"] == 0.0


def _folded_fixed_point_model(readout: str = "potential", seed: int = 0):
    """A graded-input conv1d net with batch norm everywhere, fixed point, non-trivial norms (folded
    weights beyond the 8-bit grid in the first layer, biases off every grid)."""
    neuron = NeuronConfig(numeric="fixed_point", threshold=2.0, voltage_decay=0.5, current_decay=1.0)
    model_cfg = ModelConfig(
        architecture="conv1d",
        channels=[6, 5],
        kernel_size=3,
        stride=2,
        padding="same",
        pool_after=[],
        batch_norm=True,
        readout=readout,
    )
    recipe = _recipe("direct", steps=8, neuron=neuron, model=model_cfg)
    torch.manual_seed(seed)
    model = build_model(model_cfg, neuron, (4, 9), 3)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for index, block in enumerate(model.synaptic_blocks()):
            norm = block.norm.module
            channels = norm.num_features
            norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.2)
            norm.running_var.copy_(
                torch.rand(channels, generator=generator) * 0.05 + (0.0003 if index == 0 else 0.3)
            )
            norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(channels, generator=generator) * 0.7)
    apply_numerics(model, neuron, "direct")
    return recipe, model.eval()


@pytest.mark.parametrize("readout", ["potential", "spike_count"])
def test_fixed_point_training_with_batch_norm_computes_what_the_export_writes(readout):
    """Fixed-point mode folds batch norm (running statistics) and scales each layer by the
    exporter's power of two: the export changes nothing (exact), and the reference simulator of the
    exported graph agrees with the model spike for spike and class for class."""
    recipe, model = _folded_fixed_point_model(readout)
    network, report = quantize_model(model, recipe)
    assert report.exact, report.inexact
    assert report.max_weight_error == 0.0 and report.max_bias_error == 0.0
    assert report.layers[0].scale_exp < 0  # the folded first layer had to be scaled down to fit
    assert all(layer.batch_norm_folded for layer in report.layers)
    x = torch.rand(16, 4, 9, generator=torch.Generator().manual_seed(3)).double()
    result = simulate(network, x.numpy(), record_spikes=True)
    with torch.no_grad():
        out = model(x.unsqueeze(0).expand(8, *x.shape))
    for name, spikes in out.spikes.items():
        np.testing.assert_array_equal(result.spikes[name], spikes.numpy().astype(np.uint8), err_msg=name)
    assert sum(int(s.sum()) for s in out.spikes.values()) > 0  # not a silent network
    np.testing.assert_array_equal(result.predictions, out.logits.argmax(dim=1).numpy())


def test_fixed_point_batch_norm_is_frozen_and_still_trained():
    """In fixed point the norm's statistics stay those of float training (Loihi has no batch), while
    its gain and shift and the weights get gradients through the folded, gridded layer."""
    _, model = _folded_fixed_point_model()
    model.train()
    norm = model.synaptic_blocks()[0].norm.module
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    x = torch.rand(8, 4, 4, 9, generator=torch.Generator().manual_seed(1)).double()
    model(x).logits.sum().backward()
    assert torch.equal(norm.running_mean, mean) and torch.equal(norm.running_var, var)
    assert float(norm.weight.grad.abs().sum()) > 0 and float(norm.bias.grad.abs().sum()) > 0
    assert float(model.synaptic_blocks()[0].synapse.module.weight.grad.abs().sum()) > 0


def _step_ir(network: ir.Network, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """A tiny stepping loop of the deployment graph's semantics (ir.py's docstring), test code only."""
    steps = network.time_steps
    # graded: the same payload every step; spikes: one 0/1 tensor per step
    sequence = [inputs] * steps if network.input_encoding == "graded" else list(inputs)
    spikes: dict[str, torch.Tensor] = {}
    for layer in network.layers:
        if isinstance(layer, ir.Flatten):
            sequence = [s.flatten(1) for s in sequence]
            continue
        if isinstance(layer, ir.Pool):
            assert layer.mode == "sum"
            pool = functional.avg_pool2d if len(layer.in_shape) == 3 else functional.avg_pool1d
            k = layer.kernel_size
            sequence = [
                torch.round(pool(s.double(), k) * k ** (len(layer.in_shape) - 1)).long() for s in sequence
            ]
            continue
        w = torch.from_numpy(layer.weight).double()
        if isinstance(layer, ir.Dense):
            synapse = lambda s, w=w: s.double() @ w.T  # noqa: E731
        else:
            conv = functional.conv2d if w.dim() == 4 else functional.conv1d
            synapse = lambda s, w=w, c=conv, lay=layer: c(  # noqa: E731
                s.double(), w, stride=lay.stride, padding=lay.padding, groups=lay.groups
            )
        n = layer.neurons
        batch = sequence[0].shape[0]
        state = CubaState.zeros_like(torch.zeros(batch, *layer.out_shape, dtype=torch.int64))
        out = []
        for t in range(steps):
            source = t - network.synapse_delay_steps
            total = (
                torch.round(synapse(sequence[source])).long() if source >= 0 else torch.zeros_like(state.u)
            )
            exp = layer.weight_exp
            a_in = total >> -exp if exp < 0 else total << exp
            bias = 0 if n.bias_mant is None else torch.from_numpy(n.bias_mant)
            s, state = cuba_step_fixed(state, a_in, n.du_lava, n.v_decay, n.vth_mant, bias, n.bias_exp)
            out.append(s)
        sequence = out
        spikes[layer.name] = torch.stack(out)
    return spikes


def _inputs(network: ir.Network, scheme: str, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(16, *network.input_shape, generator=generator, dtype=torch.float64)
    encoded = encode(scheme, x, network.time_steps, generator=generator)
    ir_input = torch.round(x * 255).long() if scheme == "direct" else encoded.long()
    return encoded, ir_input, x if scheme == "direct" else encoded


def _simulator_spikes(network, sim_input):
    reference = pytest.importorskip("toolchain.sim.reference")
    result = reference.simulate(network, sim_input.numpy(), record_spikes=True)
    return {name: torch.from_numpy(s.astype(np.int64)) for name, s in result.spikes.items()}


@pytest.mark.parametrize("backend", ["test-loop", "reference-simulator"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fixed_point_model_and_its_graph_spike_identically(name, backend):
    model, recipe = _fixed_point_model(name)
    network, _ = quantize_model(model, recipe)
    if backend == "test-loop" and any(
        isinstance(layer, ir.Pool) and layer.mode == "avg" for layer in network
    ):
        pytest.skip("the test loop implements sum pooling only")
    encoded, ir_input, sim_input = _inputs(network, recipe.encoding.scheme)
    with torch.no_grad():
        expected = model(encoded).spikes
    got = _step_ir(network, ir_input) if backend == "test-loop" else _simulator_spikes(network, sim_input)
    assert list(got) == model.layer_names
    for layer_name, spikes in expected.items():
        assert spikes.sum() > 0, f"{layer_name} is silent: the test would prove nothing"
        assert torch.equal(got[layer_name].reshape(spikes.shape).double(), spikes), layer_name


# --- every recipe ---------------------------------------------------------------------------


def _sample_shape_and_classes(recipe: Recipe) -> tuple[tuple[int, ...], int]:
    """The dataset's sample shape and class count, without reading its data."""
    described = dataset_shape(recipe.data.dataset, recipe.data.options)
    return described.sample_shape, described.num_classes


@pytest.mark.parametrize("numeric", ["float", "fixed_point"])
@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_quantizes(name, numeric):
    recipe = load_recipe(ROOT / "models" / name)
    recipe = Recipe(
        **{**recipe.__dict__, "neuron": NeuronConfig(**{**recipe.neuron.__dict__, "numeric": numeric})}
    )
    shape, classes = _sample_shape_and_classes(recipe)
    torch.manual_seed(0)
    model = build_model(recipe.model, recipe.neuron, shape, classes)
    apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    if recipe.ttfs.enabled:  # a TTFS network is not a CUBA SNN: refused, naming the recipe
        with pytest.raises(UnsupportedDynamicsError, match=rf"recipe '{name}' is a TTFS network"):
            quantize_model(model.eval(), recipe)
        return
    network, report = quantize_model(model.eval(), recipe)
    assert [layer.name for layer in network.synaptic_layers()] == model.layer_names
    assert [layer.kind for layer in network.layers] == [block.kind for block in model.blocks]
    assert network.num_classes == classes and network.input_shape == model.input_shape
    assert len(report.layers) == len(model.layer_names)
    if numeric == "fixed_point" and not recipe.model.batch_norm:
        assert report.exact, report.inexact


def test_a_batch_norm_bias_acts_from_step_zero_as_on_loihi():
    """With a synapse delay, the trained model delays the synaptic sum before batch norm, so the
    norm's shift (a neuron bias once folded) acts from step 0, as Loihi adds a bias to the voltage
    every step: the fixed-point model, its graph in the test loop and the reference simulator agree
    spike for spike, and the export is exact. The norm is chosen so that folding it changes no weight
    (scale 1) and its shift lies on the 1/64 grid."""
    neuron = NeuronConfig(**{**FIXED.__dict__, "synapse_delay": 1, "current_decay": 1.0})
    model_cfg = ModelConfig(architecture="mlp", hidden=[12], batch_norm=True)
    recipe = _recipe("direct", steps=16, neuron=neuron, model=model_cfg)
    torch.manual_seed(4)
    model = build_model(model_cfg, neuron, (10,), 3)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            block.synapse.weight.normal_(0.1, 0.5)
            norm = block.norm.module
            norm.running_mean.zero_()
            norm.eps = 0.0
            norm.running_var.fill_(1.0)  # scale gamma / sqrt(var + eps) = 1 exactly
            norm.weight.fill_(1.0)
            steps = torch.randint(-40, 41, norm.bias.shape, generator=generator)
            norm.bias.copy_(steps.float() / 64)  # shifts on the 1/64 grid: bias_mant = 64 * shift
    assert all(block.delay_steps == 1 and block.neuron.delay_steps == 0 for block in model.synaptic_blocks())
    apply_numerics(model, neuron, "direct")
    model.eval()
    network, report = quantize_model(model, recipe)
    assert report.exact, report.inexact
    assert any(
        layer.neurons.bias_mant is not None and layer.neurons.bias_mant.any()
        for layer in network.synaptic_layers()
    )
    encoded, ir_input, sim_input = _inputs(network, "direct")
    with torch.no_grad():
        expected = model(encoded).spikes
    for got in (_step_ir(network, ir_input), _simulator_spikes(network, sim_input)):
        for name, spikes in expected.items():
            assert spikes.sum() > 0, name
            assert torch.equal(got[name].reshape(spikes.shape).double(), spikes), name
