"""1-D convolution synapses as matrix products: the kernels by hand, values and gradients against
``functional.conv1d``, chunks, bit-exactness on integers, and every fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from toolchain.snn import unfolded_conv1d
from toolchain.snn.layers import Conv1d
from toolchain.snn.unfolded_conv1d import conv1d_synapse, fold_windows, unfold_windows

pytestmark = pytest.mark.skipif(unfolded_conv1d.compiled_kernels() is None, reason="numba is not installed")

#: (samples, channels, length, out channels, kernel, stride, padding): strides below, equal to and
#: above the kernel, padding 0 to kernel - 1, a kernel longer than the input, one output position
GEOMETRIES = [
    (3, 4, 9, 5, 3, 2, 1),
    (2, 3, 7, 4, 1, 1, 0),
    (2, 3, 10, 4, 4, 3, 2),
    (2, 2, 3, 3, 5, 1, 2),
    (2, 2, 5, 3, 2, 4, 0),
    (4, 10, 49, 6, 3, 2, 1),
    (1, 1, 3, 1, 3, 1, 0),
]


@pytest.fixture(autouse=True)
def _small_windows(monkeypatch):
    # the products for windows of any size here (small layers keep the tests exact and quick), on
    # whatever CPU runs the tests
    monkeypatch.setattr(unfolded_conv1d, "WINDOW_VALUES_MIN", 1)
    monkeypatch.setattr(
        unfolded_conv1d, "PRODUCTS_CPU_CAPABILITIES", (torch.backends.cpu.get_cpu_capability(),)
    )


def test_kernels_by_hand():
    # one sample, 2 channels, 4 positions; kernel 2, stride 2, padding 1: windows at -1..0, 1..2, 3..4
    x = np.array([[[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]], np.float32)
    cols = np.full((1, 3, 4), np.nan, np.float32)
    unfold_windows(x, 2, 2, 1, cols)  # the plain Python function, as written
    # tap-major: [tap 0 of channels 0 and 1, tap 1 of channels 0 and 1]
    assert cols[0].tolist() == [[0.0, 0.0, 1.0, 10.0], [2.0, 20.0, 3.0, 30.0], [4.0, 40.0, 0.0, 0.0]]
    grad_cols = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    grad_x = np.full((1, 2, 4), np.nan, np.float32)
    fold_windows(grad_cols, 2, 2, 1, grad_x)
    # each position gets the gradient of the one window value it was copied to
    assert grad_x[0].tolist() == [[2.0, 4.0, 6.0, 8.0], [3.0, 5.0, 7.0, 9.0]]


def test_overlapping_windows_add_up_by_hand():
    # kernel 3, stride 1, no padding: position 2 of 4 is in both windows
    grad_cols = np.array([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]], np.float32)  # [1, 2 windows, 3 taps x 1]
    grad_x = np.zeros((1, 1, 4), np.float32)
    fold_windows(grad_cols, 3, 1, 0, grad_x)
    assert grad_x[0, 0].tolist() == [1.0, 12.0, 23.0, 30.0]


def _grads(conv, x, weight, grad, stride, padding):
    x = x.detach().requires_grad_(True)
    weight = weight.detach().requires_grad_(True)
    out = conv(x, weight, stride, padding)
    return (out, *torch.autograd.grad(out, (x, weight), grad))


def _reference(x, weight, stride, padding):
    return functional.conv1d(x, weight, stride=stride, padding=padding)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("chunk_elements", [1, 50, 1 << 20])
def test_values_and_gradients_equal_the_convolution(monkeypatch, geometry, chunk_elements):
    # chunks of one sample, of a few, and all samples at once
    monkeypatch.setattr(unfolded_conv1d, "CHUNK_ELEMENTS", chunk_elements)
    samples, channels, length, out_channels, kernel, stride, padding = geometry
    generator = torch.Generator().manual_seed(sum(geometry))
    x = torch.randn(samples, channels, length, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, channels, kernel, generator=generator, dtype=torch.float64)
    out_length = (length + 2 * padding - kernel) // stride + 1
    grad = torch.randn(samples, out_channels, out_length, generator=generator, dtype=torch.float64)
    ours = _grads(conv1d_synapse, x, weight, grad, stride, padding)
    theirs = _grads(_reference, x, weight, grad, stride, padding)
    assert "UnfoldedConv1d" in type(ours[0].grad_fn).__name__  # the products ran
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_bit_exact_on_integer_weights_float32():
    # 0/1 spikes and integer weights (fixed-point training): every partial sum is exact
    generator = torch.Generator().manual_seed(3)
    x = (torch.rand(64, 16, 25, generator=generator) < 0.2).float()
    weight = torch.randint(-50, 51, (32, 16, 3), generator=generator).float()
    with torch.no_grad():
        assert torch.equal(conv1d_synapse(x, weight, 2, 1), _reference(x, weight, 2, 1))


def test_only_the_gradients_asked_for():
    x = torch.rand(2, 3, 8, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    out = conv1d_synapse(x, weight, 1, 1)  # x needs no gradient (a network's first layer)
    (grad_weight,) = torch.autograd.grad(out.sum(), weight)
    (expected,) = torch.autograd.grad(_reference(x, weight, 1, 1).sum(), weight)
    torch.testing.assert_close(grad_weight, expected, rtol=1e-12, atol=1e-12)


def test_falls_back_to_the_convolution(monkeypatch):
    x = torch.rand(2, 3, 8)
    weight = torch.randn(4, 3, 3, requires_grad=True)
    out = conv1d_synapse(x.to(torch.bfloat16), weight.to(torch.bfloat16), 1, 1)  # not float32 / 64
    assert "UnfoldedConv1d" not in type(out.grad_fn).__name__
    monkeypatch.setattr(unfolded_conv1d, "WINDOW_VALUES_MIN", 3 * 3 + 1)  # windows of 9 values
    assert "UnfoldedConv1d" not in type(conv1d_synapse(x, weight, 1, 1).grad_fn).__name__
    monkeypatch.setattr(unfolded_conv1d, "WINDOW_VALUES_MIN", 3 * 3)
    assert "UnfoldedConv1d" in type(conv1d_synapse(x, weight, 1, 1).grad_fn).__name__
    with pytest.raises(RuntimeError):  # the convolution's own error: no output position
        conv1d_synapse(torch.rand(1, 3, 2), torch.randn(4, 3, 5), 1, 0)
    constant = weight.detach().clone()
    traced = torch.jit.trace(lambda a: conv1d_synapse(a, constant, 2, 1), (x,))
    assert "aten::_convolution" in str(traced.graph)  # the exporter records the convolution
    monkeypatch.setattr(unfolded_conv1d, "compiled_kernels", lambda: None)  # numba absent
    out = conv1d_synapse(x, weight, 2, 1)
    assert "UnfoldedConv1d" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, _reference(x, weight, 2, 1))


def test_the_conv1d_layer_runs_the_products():
    layer = Conv1d(3, 5, kernel_size=3, stride=2, padding=1).double()
    x = torch.rand(4, 2, 3, 11, dtype=torch.float64)  # [T, B, C, L]
    out = layer(x)
    assert any("UnfoldedConv1d" in type(node).__name__ for node, _ in out.grad_fn.next_functions)
    expected = functional.conv1d(x.reshape(8, 3, 11), layer.weight, stride=2, padding=1).reshape(out.shape)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elsewhere_a_2d_convolution_in_channels_last_order(monkeypatch, dtype):
    # on a CPU outside PRODUCTS_CPU_CAPABILITIES: the convolution as a 2-D one over [N, C, 1, L]
    # in channels-last order, its output channels-last; the values and both gradients of conv1d
    monkeypatch.setattr(unfolded_conv1d, "PRODUCTS_CPU_CAPABILITIES", ())
    generator = torch.Generator().manual_seed(9)
    for samples, channels, length, out_channels, kernel, stride, padding in GEOMETRIES:
        x = torch.randn(samples, channels, length, generator=generator, dtype=dtype)
        weight = torch.randn(out_channels, channels, kernel, generator=generator, dtype=dtype)
        grad = None
        results = []
        for synapse in (conv1d_synapse, _reference):
            xx, ww = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
            out = synapse(xx, ww, stride, padding)
            grad = torch.randn(out.shape, generator=generator, dtype=dtype) if grad is None else grad
            out.backward(grad)
            results.append((out, xx.grad, ww.grad))
        assert "UnfoldedConv1d" not in type(results[0][0].grad_fn).__name__
        if out_channels > 1 and results[0][0].shape[2] > 1:
            assert results[0][0].transpose(1, 2).is_contiguous()  # channels last
        tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
        for ours, theirs in zip(results[0], results[1], strict=True):
            torch.testing.assert_close(ours, theirs, **tolerance)
