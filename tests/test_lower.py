"""Pooling lowered into the next synaptic layer: exact (torch on random integers), or refused by name."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional

from toolchain import ir
from toolchain.errors import QuantizationError
from toolchain.formats.lower import LoweringError, factor_pooling, lower_pooling

NEURONS = ir.CubaNeurons(i_decay=1024, v_decay=256, vth_mant=80)


def _weights(rng, *shape, low=-60, high=60):
    return (rng.integers(low, high, size=shape) * 2).astype(np.int64)


def _pool_then(in_shape, k, mode, target, flatten=False):
    """input -> Pool(k) -> [Flatten] -> target, as a network (the target built from the pooled shape)."""
    pool = ir.Pool("pool", mode, k, in_shape)
    layers = [pool]
    if flatten:
        layers.append(ir.Flatten("flat", pool.out_shape))
    layers.append(target(pool.out_shape))
    return ir.Network("net", in_shape, "spikes", 4, tuple(layers))


def _sum_pool(x, k, dims):
    """Sum pooling (kernel = stride, remainder dropped), exact on integers."""
    pool = functional.avg_pool2d if dims == 2 else functional.avg_pool1d
    return torch.round(pool(x, k) * k**dims)


def _torch_conv(x, layer):
    conv = functional.conv2d if len(layer.kernel_size) == 2 else functional.conv1d
    w = torch.from_numpy(layer.weight).double()
    return conv(x, w, stride=layer.stride, padding=layer.padding, groups=layer.groups)


def _inputs(rng, shape, batch=3):
    return torch.from_numpy(rng.integers(0, 256, size=(batch, *shape))).double()


def test_sum_pool_then_conv_is_the_strided_conv_of_the_issue():
    rng = np.random.default_rng(0)
    conv_w = _weights(rng, 3, 2, 3, 3)
    net = _pool_then((2, 8, 8), 2, "sum", lambda s: ir.Conv("conv", conv_w, NEURONS, s, (1, 1), (1, 1)))
    lowered = lower_pooling(net)
    (conv,) = lowered.layers
    assert (conv.name, conv.kernel_size, conv.stride, conv.padding) == ("conv", (6, 6), (2, 2), (2, 2))
    assert conv.in_shape == (2, 8, 8) and conv.out_shape == (3, 4, 4)
    # each weight repeated over its 2x2 window
    assert (conv.weight[1, 0, 2:4, 4:6] == conv_w[1, 0, 1, 2]).all()
    assert lowered.metadata["lowered_pooling"] == [{"pools": ["pool"], "into": "conv"}]


@pytest.mark.parametrize(
    ("in_shape", "k", "kernel", "stride", "padding", "groups"),
    [
        ((2, 8, 8), 2, 3, 1, 1, 1),
        ((4, 12, 9), 3, 2, 2, 0, 2),  # remainder 0 on H; W = 9 = 3 * 3
        ((2, 9, 9), 2, 3, 1, 0, 1),  # remainder 1, never read: no right padding reached
        ((2, 11, 10), 2, 2, 2, 0, 1),  # remainder 1 on H, windows stop before it
        ((3, 16), 2, 3, 1, 1, 1),  # 1-D
        ((2, 13), 4, 2, 1, 0, 2),  # 1-D with remainder 1, not read
        ((1, 6, 6), 3, 1, 1, 0, 1),
    ],
)
@pytest.mark.parametrize("mode", ["sum", "avg"])
def test_pool_then_conv_equals_the_folded_conv_exactly(in_shape, k, kernel, stride, padding, groups, mode):
    rng = np.random.default_rng(sum(in_shape) + k)
    dims = len(in_shape) - 1
    scale = k**dims if mode == "avg" else 1  # avg needs weights that stay on the grid after / k^d
    c_in = in_shape[0]
    weight = _weights(
        rng, 4, c_in // groups, *([kernel] * dims), low=-(256 // (2 * scale)), high=254 // (2 * scale)
    )
    weight = weight * scale
    net = _pool_then(
        in_shape,
        k,
        mode,
        lambda s: ir.Conv("conv", weight, NEURONS, s, (stride,) * dims, (padding,) * dims, groups=groups),
    )
    (folded,) = lower_pooling(net).layers
    x = _inputs(rng, in_shape)
    # average pooling is the sum / k^d: exact as the integer conv of the sums divided by k^d
    expected = _torch_conv(_sum_pool(x, k, dims), net.layers[-1]) / scale
    got = _torch_conv(x, folded)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)
    assert folded.out_shape == net.layers[-1].out_shape


@pytest.mark.parametrize(
    ("in_shape", "k", "kernel", "stride", "padding", "groups"),
    [
        ((2, 8, 8), 2, 3, 1, 1, 1),
        ((4, 12, 9), 3, 2, 2, 0, 2),
        ((3, 16), 2, 3, 1, 1, 1),  # 1-D
        ((1, 6, 6), 3, 1, 1, 0, 1),
        ((2, 16, 16), 4, 3, 1, 1, 1),
    ],
)
def test_factor_pooling_finds_the_pool_and_the_conv_a_fold_made(in_shape, k, kernel, stride, padding, groups):
    """The factor of a fold is the pool and the conv folded (random weights: no larger block is
    constant), and the factored sums equal the folded conv's on any input."""
    rng = np.random.default_rng(k + kernel)
    dims = len(in_shape) - 1
    weight = _weights(rng, 4, in_shape[0] // groups, *([kernel] * dims))
    net = _pool_then(
        in_shape,
        k,
        "sum",
        lambda s: ir.Conv("conv", weight, NEURONS, s, (stride,) * dims, (padding,) * dims, groups=groups),
    )
    (folded,) = lower_pooling(net).layers
    found = factor_pooling(folded)
    assert found is not None
    kernel_found, conv = found
    assert kernel_found == k
    original = net.layers[-1]
    assert (conv.in_shape, conv.stride, conv.padding, conv.groups) == (
        original.in_shape,
        original.stride,
        original.padding,
        original.groups,
    )
    assert np.array_equal(conv.weight, original.weight)
    x = _inputs(rng, in_shape)
    assert torch.equal(_torch_conv(_sum_pool(x, k, dims), conv), _torch_conv(x, folded))


def test_factor_pooling_takes_the_largest_pool_and_refuses_what_is_no_fold():
    rng = np.random.default_rng(3)
    w = _weights(rng, 2, 2, 2, 2)
    # a 2x2 kernel of one weight per filter and channel, stride 2: the fold of a 2x2 pool into a 1x1 conv
    flat = np.repeat(np.repeat(w[:, :, :1, :1], 2, axis=2), 2, axis=3)
    k, conv = factor_pooling(ir.Conv("c", flat, NEURONS, (2, 8, 8), (2, 2), (0, 0)))
    assert k == 2 and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    # stride 4, kernel 4, blocks constant over 4x4: pool 4 (not 2)
    block4 = np.repeat(np.repeat(w[:, :, :1, :1], 4, axis=2), 4, axis=3)
    assert factor_pooling(ir.Conv("c", block4, NEURONS, (2, 8, 8), (4, 4), (0, 0)))[0] == 4
    # not a fold: weights vary inside a block; stride 1; padding 1 with stride 2; input size odd
    assert factor_pooling(ir.Conv("c", _weights(rng, 2, 2, 4, 4), NEURONS, (2, 8, 8), (2, 2), (0, 0))) is None
    assert factor_pooling(ir.Conv("c", flat, NEURONS, (2, 8, 8), (1, 1), (0, 0))) is None
    assert factor_pooling(ir.Conv("c", flat, NEURONS, (2, 8, 8), (2, 2), (1, 1))) is None
    assert factor_pooling(ir.Conv("c", flat, NEURONS, (2, 9, 8), (2, 2), (0, 0))) is None


def test_a_remainder_the_folded_conv_would_read_is_refused():
    rng = np.random.default_rng(1)
    net = _pool_then(
        (2, 9, 8), 2, "sum", lambda s: ir.Conv("conv2", _weights(rng, 3, 2, 3, 3), NEURONS, s, (1, 1), (1, 1))
    )
    with pytest.raises(
        LoweringError,
        match=r"pooling 'pool' drops the last 1 of 9 inputs along spatial axis 0 .* conv 'conv2' "
        r"\(kernel 3, stride 1, padding 1\) reaches into its padding",
    ):
        lower_pooling(net)


@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize(("in_shape", "k"), [((3, 8, 8), 2), ((2, 9, 7), 2), ((4, 10), 3)])
def test_pool_then_dense_equals_a_dense_over_the_unpooled_input(in_shape, k, flatten):
    rng = np.random.default_rng(len(in_shape) * 10 + k)
    dims = len(in_shape) - 1
    pooled = ir.Pool("p", "sum", k, in_shape).out_shape
    weight = _weights(rng, 5, int(np.prod(pooled)))
    net = _pool_then(in_shape, k, "sum", lambda s: ir.Dense("fc", weight, NEURONS), flatten=flatten)
    lowered = lower_pooling(net)
    assert [layer.kind for layer in lowered.layers] == (["flatten", "dense"] if flatten else ["dense"])
    dense = lowered.layers[-1]
    assert dense.weight.shape == (5, int(np.prod(in_shape)))
    x = _inputs(rng, in_shape)
    expected = _sum_pool(x, k, dims).flatten(1) @ torch.from_numpy(weight).double().T
    got = x.flatten(1) @ torch.from_numpy(dense.weight).double().T
    assert torch.equal(got, expected)
    # the dropped remainder reads nothing
    full = dense.weight.reshape(5, *in_shape)
    if in_shape[1] % k:
        assert (full[:, :, (in_shape[1] // k) * k :] == 0).all()


@pytest.mark.parametrize(("first", "second"), [("sum", "sum"), ("sum", "avg"), ("avg", "avg")])
def test_consecutive_pools_compose_exactly(first, second):
    rng = np.random.default_rng(5)
    in_shape = (2, 13, 12)
    p1 = ir.Pool("p1", first, 2, in_shape)
    p2 = ir.Pool("p2", second, 3, p1.out_shape)
    scale = (4 if first == "avg" else 1) * (9 if second == "avg" else 1)
    weight = _weights(rng, 3, 2, 1, 1, low=-2, high=3) * scale
    conv = ir.Conv("c", weight, NEURONS, p2.out_shape, (1, 1), (0, 0))
    net = ir.Network("net", in_shape, "spikes", 2, (p1, p2, conv))
    (folded,) = lower_pooling(net).layers
    assert folded.kernel_size == (6, 6) and folded.stride == (6, 6)
    x = _inputs(rng, in_shape)
    expected = _torch_conv(_sum_pool(_sum_pool(x, 2, 2), 3, 2), conv) / scale
    assert torch.equal(_torch_conv(x, folded), expected)
    assert lower_pooling(net).metadata["lowered_pooling"] == [{"pools": ["p1", "p2"], "into": "c"}]


def test_average_pooling_off_the_grid_is_refused_by_name():
    weight = np.full((2, 2, 3, 3), 8, dtype=np.int64)
    weight[1, 0, 2, 1] = 6  # 6 / 4 = 1.5
    net = _pool_then((2, 8, 8), 2, "avg", lambda s: ir.Conv("conv3", weight, NEURONS, s, (1, 1), (1, 1)))
    with pytest.raises(
        QuantizationError,
        match=r"layer 'conv3': folding average pooling 'pool' multiplies its weights by 1/4, and 1 of "
        r"them leave Loihi's grid .* weight 6 at \(1, 0, 2, 1\) becomes 3/2",
    ):
        lower_pooling(net)
    weight[1, 0, 2, 1] = 4  # 4 / 4 = 1: an integer, but odd
    with pytest.raises(QuantizationError, match=r"weight 4 at .* becomes 1; use sum pooling"):
        lower_pooling(
            dataclasses.replace(
                net, layers=(net.layers[0], dataclasses.replace(net.layers[1], weight=weight))
            )
        )


def test_a_pool_without_a_synaptic_layer_after_it_is_refused():
    conv = ir.Conv("c", np.full((2, 1, 3, 3), 2, dtype=np.int64), NEURONS, (1, 8, 8), (1, 1), (1, 1))
    net = ir.Network("net", (1, 8, 8), "spikes", 2, (conv,))
    object.__setattr__(net, "layers", (conv, ir.Pool("tail", "sum", 2, (2, 8, 8))))  # the IR refuses this
    with pytest.raises(LoweringError, match=r"pooling 'tail' is not followed by a dense or conv layer"):
        lower_pooling(net)


def test_a_network_without_pooling_is_returned_unchanged():
    dense = ir.Dense("fc", np.full((3, 4), 2, dtype=np.int64), NEURONS)
    net = ir.Network("net", (4,), "spikes", 2, (dense,))
    assert lower_pooling(net) is net


def test_graded_first_layer_keeps_its_weight_exponent_and_spikes_match_the_reference():
    simulate = pytest.importorskip("toolchain.sim.reference").simulate
    rng = np.random.default_rng(7)
    in_shape = (2, 8, 8)
    conv1 = ir.Conv(
        "c1", _weights(rng, 4, 2, 3, 3, low=-20, high=60), NEURONS, (2, 4, 4), (1, 1), (1, 1), weight_exp=-8
    )
    pool2 = ir.Pool("p2", "sum", 2, conv1.out_shape)
    dense = ir.Dense("fc", _weights(rng, 3, 16, low=-20, high=60), NEURONS)
    net = ir.Network(
        "net",
        in_shape,
        "graded",
        10,
        (ir.Pool("p1", "sum", 2, in_shape), conv1, pool2, ir.Flatten("f", (4, 2, 2)), dense),
    )
    lowered = lower_pooling(net)
    assert lowered.synaptic_layers()[0].weight_exp == -8
    x = rng.random((4, *in_shape))
    original = simulate(net, x, record_spikes=True)
    folded = simulate(lowered, x, record_spikes=True)
    for name in ("c1", "fc"):
        np.testing.assert_array_equal(folded.spikes[name], original.spikes[name])
    assert original.spikes["c1"].sum() > 20 and original.counts.sum() > 5
