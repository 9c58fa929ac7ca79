"""Layers: time-major synapses, pooling as a convolution of ones, time-shared dropout, BN folding."""

import pytest
import torch
from torch import nn
from torch.nn import functional

from toolchain.snn.layers import (
    AvgPool1d,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    SumPool1d,
    SumPool2d,
    TimeDistributed,
    conv_output_size,
    fold_batchnorm,
    pool_layer,
)


def _spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=generator) < p).float()


@pytest.mark.parametrize(
    ("layer", "shape", "out_shape", "weight_shape"),
    [
        (Dense(6, 4), (5, 3, 6), (5, 3, 4), (4, 6)),
        (Conv1d(2, 4, 3, stride=2, padding=1), (5, 3, 2, 9), (5, 3, 4, 5), (4, 2, 3)),
        (Conv2d(3, 8, 3, padding=1), (5, 3, 3, 6, 6), (5, 3, 8, 6, 6), (8, 3, 3, 3)),
    ],
)
def test_synapses_are_time_distributed_and_have_no_bias(layer, shape, out_shape, weight_shape):
    x = torch.randn(*shape)
    y = layer(x)
    assert y.shape == out_shape
    assert layer.weight.shape == weight_shape
    assert [name for name, _ in layer.named_parameters()] == ["module.weight"]  # no bias
    for t in range(shape[0]):  # the same per-sample layer at every step
        torch.testing.assert_close(y[t], layer.module(x[t]))


def test_conv_output_size_matches_torch():
    conv = nn.Conv1d(1, 1, kernel_size=5, stride=3, padding=2)
    assert conv(torch.zeros(1, 1, 17)).shape[-1] == conv_output_size(17, 5, 3, 2)


@pytest.mark.parametrize(
    ("pool_cls", "conv"), [(SumPool2d, functional.conv2d), (SumPool1d, functional.conv1d)]
)
def test_sum_pooling_is_exactly_a_strided_convolution_with_weights_of_ones(pool_cls, conv):
    pool = pool_cls(2)
    channels = 3
    spatial = (7, 6) if pool.dims == 2 else (9,)
    x = _spikes(4, 2, channels, *spatial)
    y = pool(x)
    flat = x.reshape(8, channels, *spatial)
    dense = conv(flat, pool.conv_weight(channels), stride=2)  # what export writes to netx
    assert torch.equal(y, dense.reshape(y.shape))
    assert y.shape[2:] == pool.output_shape((channels, *spatial))
    weight = pool.conv_weight(channels)
    assert weight.sum() == channels * 2**pool.dims and set(weight.unique().tolist()) == {0.0, 1.0}
    # and the plain window sums, the remainder row/column dropped
    if pool.dims == 2:
        windows = x[..., :6, :6].reshape(4, 2, channels, 3, 2, 3, 2).sum(dim=(4, 6))
    else:
        windows = x[..., :8].reshape(4, 2, channels, 4, 2).sum(dim=4)
    assert torch.equal(y, windows)


def test_sum_pooling_equals_its_depthwise_convolution_on_any_input():
    x = torch.randn(3, 2, 4, 8, 8)
    ones = torch.ones(4, 1, 2, 2)
    expected = functional.conv2d(x.reshape(6, 4, 8, 8), ones, stride=2, groups=4).reshape(3, 2, 4, 4, 4)
    assert torch.equal(SumPool2d(2)(x), expected)


@pytest.mark.parametrize(("avg_cls", "sum_cls"), [(AvgPool2d, SumPool2d), (AvgPool1d, SumPool1d)])
def test_average_pooling_is_sum_pooling_scaled(avg_cls, sum_cls):
    x = _spikes(2, 3, 4, 8, 8) if avg_cls.dims == 2 else _spikes(2, 3, 4, 8)
    avg, total = avg_cls(2), sum_cls(2)
    torch.testing.assert_close(avg(x), total(x) / 2**avg.dims)
    conv = functional.conv2d if avg.dims == 2 else functional.conv1d
    lowered = conv(x.reshape(6, *x.shape[2:]), avg.conv_weight(4), stride=2).reshape(avg(x).shape)
    torch.testing.assert_close(avg(x), lowered)


def test_pool_layer_picks_the_class_and_rejects_others():
    assert isinstance(pool_layer("sum", 2, 2), SumPool2d)
    assert isinstance(pool_layer("avg", 1, 3), AvgPool1d)
    with pytest.raises(ValueError, match="no 'max' pooling"):
        pool_layer("max", 2, 2)


def test_flatten_keeps_time_and_batch():
    assert Flatten()(torch.zeros(4, 2, 3, 5, 5)).shape == (4, 2, 75)


def test_dropout_drops_the_same_units_at_every_time_step():
    torch.manual_seed(0)
    dropout = Dropout(0.5).train()
    y = dropout(torch.ones(6, 8, 100))
    for t in range(1, 6):
        assert torch.equal(y[t], y[0])  # one mask per sample, shared over time
    assert not torch.equal(y[0, 0], y[0, 1])  # but different samples get different masks
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert 0.35 < float((y[0] == 0).float().mean()) < 0.65


def test_dropout_is_the_identity_in_eval_mode_and_with_p_zero():
    x = torch.rand(3, 2, 10)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        Dropout(1.0)


def test_batchnorm_normalises_each_channel_over_time_and_batch():
    norm = BatchNorm(3, spatial_dims=2).train()
    x = torch.randn(4, 5, 3, 6, 6) * torch.tensor([1.0, 5.0, 0.1]).view(1, 1, 3, 1, 1) + 7.0
    y = norm(x)
    per_channel = y.transpose(0, 2).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(dim=1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        BatchNorm(3, spatial_dims=3)


def _trained_norm(norm: BatchNorm, channels: int) -> BatchNorm:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        norm.module.running_mean.copy_(torch.randn(channels, generator=generator))
        norm.module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.module.weight.copy_(torch.randn(channels, generator=generator))
        norm.module.bias.copy_(torch.randn(channels, generator=generator))
    return norm.eval()


def test_folded_conv_equals_conv_then_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    conv, norm = Conv2d(3, 5, 3, padding=1), _trained_norm(BatchNorm(5, spatial_dims=2), 5)
    x = _spikes(4, 2, 3, 8, 8)
    weight, bias = fold_batchnorm(conv.weight, norm)
    assert weight.shape == conv.weight.shape and bias.shape == (5,)
    folded = TimeDistributed(nn.Conv2d(3, 5, 3, padding=1))
    with torch.no_grad():
        folded.module.weight.copy_(weight)
        folded.module.bias.copy_(bias)
        torch.testing.assert_close(folded(x), norm(conv(x)), atol=1e-5, rtol=1e-5)


def test_folded_dense_equals_dense_then_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    dense, norm = Dense(7, 4), _trained_norm(BatchNorm(4), 4)
    x = _spikes(3, 5, 7)
    with torch.no_grad():
        weight, bias = fold_batchnorm(dense.weight, norm.module)  # a bare torch BatchNorm works too
        torch.testing.assert_close(x @ weight.T + bias, norm(dense(x)), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_rejects_mismatches_and_missing_statistics():
    with pytest.raises(ValueError, match="4 output channels, the batch norm 5"):
        fold_batchnorm(torch.zeros(4, 3), nn.BatchNorm1d(5))
    with pytest.raises(ValueError, match="no running statistics"):
        fold_batchnorm(torch.zeros(4, 3), nn.BatchNorm1d(4, track_running_stats=False))


@pytest.mark.parametrize(
    "make",
    [lambda: Dense(12, 70), lambda: Conv1d(3, 5, 3, 2, 1), lambda: Conv2d(3, 4, 3, 1, 1)],
    ids=["dense", "conv1d", "conv2d"],
)
def test_input_constant_over_time_is_computed_once(make):
    # the direct encoding's stride-0 view: one per-sample computation, returned as such a view,
    # with the values and weight gradients of computing every step
    torch.manual_seed(0)
    layer = make().double()
    shape = {12: (12,), 3: (3, 9) if isinstance(layer, Conv1d) else (3, 6, 6)}[layer.weight.shape[1]]
    one_step = torch.rand(4, *shape, dtype=torch.float64)
    constant = one_step.unsqueeze(0).expand(5, *one_step.shape)
    results = []
    for x in (constant, constant.contiguous()):
        layer.zero_grad()
        out = layer(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum().backward()
        results.append((out, layer.weight.grad.clone()))
    (once, grad_once), (every, grad_every) = results
    assert once.stride(0) == 0 and every.stride(0) != 0
    torch.testing.assert_close(once, every, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_once, grad_every, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("constant", [False, True])
def test_conv2d_runs_channels_last_on_the_cpu_with_the_convolutions_values(constant):
    """The layer's output is channels-last per step (the order the neurons and pooling keep), its
    values and both gradients those of functional.conv2d in the default order (float64 here: to
    rounding); a constant input's gradient sums its steps in that order too."""
    torch.manual_seed(1)
    layer = Conv2d(3, 4, 3, 1, 1).double()
    one = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    x = one.unsqueeze(0).expand(5, *one.shape) if constant else torch.rand(5, 2, 3, 6, 6).double()
    x = x.detach().requires_grad_(True)
    out = layer(x)
    assert out[0].is_contiguous(memory_format=torch.channels_last) and not out[0].is_contiguous()
    expected = functional.conv2d(x.reshape(-1, 3, 6, 6), layer.weight, padding=1).reshape(out.shape)
    grad = torch.randn(out.shape, dtype=torch.float64)
    got = torch.autograd.grad(out, (x, layer.weight), grad)
    want = torch.autograd.grad(expected, (x, layer.weight), grad)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # a constant input reaches the layer through its one step: compare the input's gradient summed
    # over the steps (what the samples receive), as the weight's
    got_x, want_x = (got[0].sum(0), want[0].sum(0)) if constant else (got[0], want[0])
    torch.testing.assert_close(got_x, want_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    assert layer.with_weight(x, layer.weight)[0].is_contiguous(memory_format=torch.channels_last)


def test_batch_norm_is_not_computed_once():
    # batch statistics count every step: a constant input is normalized as the full tensor
    norm = BatchNorm(3, spatial_dims=0)
    x = torch.rand(4, 3).unsqueeze(0).expand(5, 4, 3)
    assert norm(x).stride(0) != 0


@pytest.mark.parametrize("kernel_size", [1, 2, 3])
@pytest.mark.parametrize(("pool_cls", "spatial"), [(SumPool1d, (8,)), (SumPool2d, (7, 8))])
def test_sum_pooling_gradient_is_the_convolutions(pool_cls, spatial, kernel_size):
    # its backward spreads each window's gradient over the window (zeros for a remainder): the
    # gradient the depthwise convolution of ones computes
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 4, *spatial, generator=generator, dtype=torch.float64, requires_grad=True)
    pool = pool_cls(kernel_size)
    out = pool(x)
    grad = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(out, x, grad)
    conv = functional.conv2d if len(spatial) == 2 else functional.conv1d
    ones = torch.ones(4, 1, *(kernel_size,) * len(spatial), dtype=torch.float64)
    expected_out = conv(x.reshape(6, 4, *spatial), ones, stride=kernel_size, groups=4)
    (expected,) = torch.autograd.grad(expected_out, x, grad.reshape(expected_out.shape))
    assert torch.equal(out.reshape(expected_out.shape), expected_out)
    assert torch.equal(ours, expected)
