"""Architectures: shapes and names for each dataset's samples, ANN twins, recipe errors, a training step."""

from pathlib import Path

import pytest
import torch
from torch import nn

from toolchain.config import ModelConfig, NeuronConfig, load_recipe, parse_recipe
from toolchain.errors import RecipeError
from toolchain.snn.ann import AnnNetwork, build_ann
from toolchain.snn.architectures import plan_layers
from toolchain.snn.blocks import PoolBlock, SynapticBlock
from toolchain.snn.models import SpikingNetwork, build_model, network_input_shape

MODELS = Path(__file__).resolve().parents[1] / "models"
NEURON = NeuronConfig()

#: (id, [model] table, sample shape, classes, expected blocks as (name, kind, out_shape))
CASES = [
    (
        "mlp-digits",
        {"architecture": "mlp", "hidden": [32, 16]},
        (64,),
        10,
        [("dense1", "dense", (32,)), ("dense2", "dense", (16,)), ("output", "dense", (10,))],
    ),
    (
        "mlp-mnist",
        {"architecture": "mlp", "hidden": [32]},
        (1, 28, 28),
        10,
        [("flatten", "flatten", (784,)), ("dense1", "dense", (32,)), ("output", "dense", (10,))],
    ),
    (
        "vgg-cifar10",
        {"architecture": "vgg", "channels": [4, 8], "pool_after": [1, 2], "hidden": [16], "batch_norm": True},
        (3, 32, 32),
        10,
        [
            ("conv1", "conv", (4, 32, 32)),
            ("pool1", "pool", (4, 16, 16)),
            ("conv2", "conv", (8, 16, 16)),
            ("pool2", "pool", (8, 8, 8)),
            ("flatten", "flatten", (512,)),
            ("dense1", "dense", (16,)),
            ("output", "dense", (10,)),
        ],
    ),
    (
        "vgg-mnist-valid",
        {"architecture": "vgg", "channels": [4, 4], "padding": "valid", "pool_after": [2], "hidden": []},
        (1, 28, 28),
        10,
        [
            ("conv1", "conv", (4, 26, 26)),
            ("conv2", "conv", (4, 24, 24)),
            ("pool1", "pool", (4, 12, 12)),
            ("flatten", "flatten", (576,)),
            ("output", "dense", (10,)),
        ],
    ),
    (
        "conv1d-gsc",
        {
            "architecture": "conv1d",
            "channels": [8, 8],
            "stride": 2,
            "pool_after": [2],
            "pool": "avg",
            "hidden": [16],
            "dropout": 0.2,
        },
        (10, 49),
        12,
        [
            ("conv1", "conv", (8, 25)),
            ("conv2", "conv", (8, 13)),
            ("pool1", "pool", (8, 6)),
            ("flatten", "flatten", (48,)),
            ("dense1", "dense", (16,)),
            ("output", "dense", (12,)),
        ],
    ),
]
IDS = [case[0] for case in CASES]


def _model_config(table: dict) -> ModelConfig:
    return parse_recipe({"model": table}, "test").model


@pytest.mark.parametrize(("table", "shape", "classes", "expected"), [c[1:] for c in CASES], ids=IDS)
def test_blocks_names_and_shapes(table, shape, classes, expected):
    model = build_model(_model_config(table), NEURON, shape, classes)
    assert [(b.name, b.kind, b.out_shape) for b in model.blocks] == expected
    spiking = [(name, out) for name, kind, out in expected if kind in ("dense", "conv")]
    assert model.layer_names == [name for name, _ in spiking]
    assert model.layer_sizes == [torch.Size(out).numel() for _, out in spiking]
    for before, after in zip(model.blocks, list(model.blocks)[1:], strict=False):
        assert after.in_shape == before.out_shape


@pytest.mark.parametrize(("table", "shape", "classes", "expected"), [c[1:] for c in CASES], ids=IDS)
def test_forward_gives_spike_count_logits_and_every_layers_spikes(table, shape, classes, expected):
    torch.manual_seed(0)
    model = build_model(_model_config(table), NEURON, shape, classes).eval()
    x = torch.rand(5, 3, *shape) * 3
    out = model(x)
    assert out.logits.shape == (3, classes)
    assert list(out.spikes) == model.layer_names
    for block in model.synaptic_blocks():
        spikes = out.spikes[block.name]
        assert spikes.shape == (5, 3, *block.out_shape)
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.logits, out.spikes["output"].sum(dim=0))
    assert torch.equal(model(x).logits, out.logits)  # eval mode: deterministic (dropout off)


@pytest.mark.parametrize(("table", "shape", "classes", "expected"), [c[1:] for c in CASES], ids=IDS)
def test_ann_twin_has_the_same_topology(table, shape, classes, expected):
    config = _model_config(table)
    snn, ann = build_model(config, NEURON, shape, classes), build_ann(config, shape, classes)
    assert isinstance(ann, AnnNetwork)
    assert [(b.name, b.kind, b.in_shape, b.out_shape) for b in ann.blocks] == [
        (b.name, b.kind, b.in_shape, b.out_shape) for b in snn.blocks
    ]
    assert (ann.layer_names, ann.layer_sizes) == (snn.layer_names, snn.layer_sizes)
    snn_state, ann_state = snn.state_dict(), ann.state_dict()
    assert {k: v.shape for k, v in ann_state.items()} == {k: v.shape for k, v in snn_state.items()}
    ann.load_state_dict(snn_state)  # weights move between the twins
    assert all(isinstance(b.neuron, nn.ReLU) for b in ann.blocks if isinstance(b, SynapticBlock))
    assert ann.eval()(torch.rand(3, *shape)).shape == (3, classes)


def test_ann_logits_are_the_output_current():
    torch.manual_seed(0)
    ann = build_ann(_model_config({"architecture": "mlp", "hidden": [8]}), (5,), 3).eval()
    x = torch.rand(4, 5)
    w1, w2 = ann.blocks[0].weight, ann.blocks[1].weight
    torch.testing.assert_close(ann(x), torch.relu(x @ w1.T) @ w2.T)


@pytest.mark.parametrize(("table", "shape", "classes", "expected"), [c[1:] for c in CASES], ids=IDS)
def test_one_training_step_updates_every_weight(table, shape, classes, expected):
    torch.manual_seed(0)
    config = _model_config(table)
    # a low threshold keeps every layer of these tiny nets active at torch's default initialisation
    neuron = NeuronConfig(threshold=0.25)
    for model in (build_model(config, neuron, shape, classes), build_ann(config, shape, classes)):
        model.train()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        steps = len(model.layer_names) + 4  # room for a one-step synapse delay per layer
        x = torch.rand(steps, 6, *shape) * 3
        y = torch.randint(0, classes, (6,))
        logits = model(x).logits if isinstance(model, SpikingNetwork) else model(x[0])
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), name
            assert not torch.equal(p.detach(), before[name]), f"{name} did not change"


def test_sum_pooling_blocks_feed_spike_sums_to_the_next_layer():
    config = _model_config({"architecture": "vgg", "channels": [2], "pool_after": [1], "hidden": []})
    model = build_model(config, NEURON, (1, 4, 4), 2)
    pool = model.block("pool1")
    assert isinstance(pool, PoolBlock) and pool.pool.mode == "sum" and pool.pool.kernel_size == 2
    spikes = (torch.rand(3, 1, 2, 4, 4) < 0.5).float()
    assert pool(spikes).max() <= 4 and torch.equal(pool(spikes).sum(), spikes.sum())
    with pytest.raises(KeyError):
        model.block("conv9")


def test_folded_weight_bias_of_a_block():
    config = _model_config({"architecture": "vgg", "channels": [3], "pool_after": [], "batch_norm": True})
    model = build_model(config, NEURON, (1, 6, 6), 2).eval()
    conv = model.block("conv1")
    weight, bias = conv.folded_weight_bias()
    assert weight.shape == conv.weight.shape and bias is not None and bias.shape == (3,)
    x = torch.rand(2, 1, 1, 6, 6)
    expected = conv.norm(conv.synapse(x))  # current() also delays the sum by the synapse delay
    got = nn.functional.conv2d(x[:, 0], weight, bias, padding=1)
    torch.testing.assert_close(got, expected[:, 0], atol=1e-5, rtol=1e-5)
    plain = build_model(_model_config({"hidden": [3]}), NEURON, (4,), 2)
    assert plain.block("output").folded_weight_bias()[1] is None  # no batch norm, no bias


def test_input_shapes():
    config = _model_config({"architecture": "mlp", "hidden": [4]})
    assert build_model(config, NEURON, 64, 10).input_shape == (64,)  # an int is a flat sample
    assert network_input_shape((1, 28, 28)) == (1, 28, 28)
    assert network_input_shape((20, 32), "spikes") == (32,)  # spike trains [T, inputs]: one step
    flat = build_model(config, NEURON, 784, 10)
    assert flat(torch.rand(2, 3, 1, 28, 28)).logits.shape == (3, 10)  # images into a flat MLP
    with pytest.raises(ValueError, match=r"sample shape \(784,\), got \(2, 3, 5\)"):
        flat(torch.rand(2, 3, 5))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"architecture": "resnet"}, r"\[model\]\.architecture: expected one of 'mlp', 'conv1d', 'vgg'"),
        ({"channels": [16, 0]}, r"\[model\]\.channels: expected a number in \[1, inf\)"),
        ({"channels": 16}, r"\[model\]\.channels: expected a list"),
        ({"kernel_size": 0}, r"\[model\]\.kernel_size: expected a number in \[1, inf\)"),
        ({"stride": 1.5}, r"\[model\]\.stride: expected an integer"),
        ({"padding": "full"}, r"\[model\]\.padding: expected one of 'same', 'valid'"),
        ({"pool": "max"}, r"\[model\]\.pool: expected one of 'sum', 'avg'"),
        ({"pool_size": 1}, r"\[model\]\.pool_size: expected a number in \[2, inf\)"),
        ({"batch_norm": "yes"}, r"\[model\]\.batch_norm: expected true or false"),
        ({"dropout": 1.0}, r"\[model\]\.dropout: expected a number in \[0, 1\)"),
        ({"architecture": "vgg", "pool_after": [3]}, r"\[model\]: pool_after: names conv layer 3"),
        ({"architecture": "conv1d", "pool_after": [2, 1]}, r"\[model\]: pool_after: expected increasing"),
        ({"widths": [3]}, r"\[model\]\.widths: unknown key"),
    ],
)
def test_invalid_model_values_name_the_key(table, message):
    with pytest.raises(RecipeError, match=message) as info:
        parse_recipe({"model": table}, "models/x/recipe.toml")
    assert str(info.value).startswith("models/x/recipe.toml: ")


@pytest.mark.parametrize(
    ("table", "shape", "message"),
    [
        (
            {"architecture": "vgg"},
            (64,),
            r"\[model\]\.architecture: 'vgg' expects samples shaped \(channels, height",
        ),
        (
            {"architecture": "conv1d"},
            (1, 28, 28),
            r"\[model\]\.architecture: 'conv1d' expects samples shaped",
        ),
        (
            {
                "architecture": "vgg",
                "channels": [4, 4],
                "padding": "valid",
                "kernel_size": 5,
                "pool_after": [],
            },
            (1, 6, 6),
            r"\[model\]\.kernel_size: conv2 gets a \(4, 2, 2\) input, too small for kernel_size 5",
        ),
        (
            {"architecture": "conv1d", "channels": [4, 4], "pool_after": [1, 2], "pool_size": 4},
            (3, 10),
            r"\[model\]\.pool_after: pool2 after conv2 gets a \(4, 2\) input, smaller than pool_size 4",
        ),
    ],
)
def test_architectures_that_do_not_fit_the_samples_name_the_key(table, shape, message):
    with pytest.raises(RecipeError, match=message):
        plan_layers(_model_config(table), shape, 10)


#: the per-step input shape of each dataset the recipes use (without loading the data)
DATASET_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@pytest.mark.parametrize("name", ["mnist-mlp", "fashion-mnist-mlp", "gsc-conv1d", "cifar10-vgg"])
def test_recipes_build_for_their_datasets(name):
    recipe = load_recipe(MODELS / name)
    options = recipe.data.options
    shape = DATASET_SHAPES.get(recipe.data.dataset, (options.get("num_features", 10), 49))
    classes = 12 if recipe.data.dataset == "gsc" else 10
    model = build_model(recipe.model, recipe.neuron, shape, classes).eval()
    out = model(torch.rand(recipe.encoding.time_steps, 2, *shape))
    assert out.logits.shape == (2, classes)
    assert build_ann(recipe.model, shape, classes)(torch.rand(2, *shape)).shape == (2, classes)


def test_a_layer_too_large_to_build_is_refused_before_allocating():
    config = _model_config({"architecture": "mlp", "hidden": [10**9]})
    with pytest.raises(RecipeError, match=r"\[model\]: layer 'dense1' would have 1000000000 neurons"):
        build_model(config, NEURON, (64,), 10)
