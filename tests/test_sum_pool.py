"""Sum pooling's compiled gradient: by hand, against the broadcast copy, over threads, and the
fallbacks. (``test_layers.py`` checks the layers against the convolution.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.snn import compiled, sum_pool
from toolchain.snn.sum_pool import spread_windows, window_sums

pytestmark = pytest.mark.skipif(sum_pool.compiled_spread_windows() is None, reason="numba is not installed")


def test_kernels_by_hand():
    # one plane 3 x 5, windows 2 x 2: one row and two columns of windows, the remainder dropped
    grad = np.array([[[1.0, 2.0]]], np.float32)
    grad_x = np.full((1, 3, 5), np.nan, np.float32)
    spread_windows(grad, 2, 2, grad_x)  # the plain Python function, as written
    assert grad_x.tolist() == [[[1, 1, 2, 2, 0], [1, 1, 2, 2, 0], [0, 0, 0, 0, 0]]]


def _pool_and_grad(x: torch.Tensor, kernel_size: int, dims: int, grad_seed: int = 1):
    x = x.detach().requires_grad_(True)
    out = sum_pool.sum_pool(x, kernel_size, dims)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=x.dtype)
    (grad_x,) = torch.autograd.grad(out, x, grad)
    return out, grad_x


@pytest.mark.parametrize(("dims", "shape"), [(1, (5, 3, 11)), (2, (5, 3, 7, 9))])
def test_same_as_the_convolution_and_its_gradient_without_numba(monkeypatch, dims, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    compiled_result = _pool_and_grad(x, 2, dims)
    monkeypatch.setattr(sum_pool, "compiled_spread_windows", lambda: None)
    fallback = _pool_and_grad(x, 2, dims)
    assert torch.equal(compiled_result[0], window_sums(x, 2, dims))
    for ours, theirs in zip(compiled_result, fallback, strict=True):
        assert torch.equal(ours, theirs)


def test_threads_split_planes(monkeypatch, torch_free_pool):
    monkeypatch.setattr(compiled, "PARALLEL_ROWS_MIN", 4)
    x = torch.randn(9, 5, 8, 6, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _pool_and_grad(x, 3, 2)
        torch.set_num_threads(3)
        split = _pool_and_grad(x, 3, 2)
    finally:
        torch.set_num_threads(threads)
    for ours, theirs in zip(split, single, strict=True):
        assert torch.equal(ours, theirs)


def test_tracing_records_the_convolution():
    traced = torch.jit.trace(lambda a: sum_pool.sum_pool(a, 2, 2), (torch.rand(2, 3, 4, 4),))
    assert "aten::_convolution" in str(traced.graph)  # the exporter records the convolution


def test_channels_last_kernel_by_hand():
    # one sample 3 x 5 with 2 channels, windows 2 x 2: the remainder row and column get zeros
    grad = np.array([[[[1.0, 10.0], [2.0, 20.0]]]], np.float32)  # [N, h, w, C] = [1, 1, 2, 2]
    grad_x = np.full((1, 3, 5, 2), np.nan, np.float32)
    sum_pool.spread_windows_channels_last(grad, 2, 2, grad_x)  # the plain Python function
    assert grad_x[..., 0].tolist() == [[[1, 1, 2, 2, 0], [1, 1, 2, 2, 0], [0, 0, 0, 0, 0]]]
    assert grad_x[..., 1].tolist() == [[[10, 10, 20, 20, 0], [10, 10, 20, 20, 0], [0, 0, 0, 0, 0]]]


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 5, 7, 9)])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_a_channels_last_input_gets_its_gradient_in_that_order_bit_for_bit(shape, kernel_size):
    """A 2-D convolution's channels-last output pooled: the compiled channels-last spread gives the
    broadcast copy's gradient exactly, in channels-last order (remainders included)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        inputs = x.contiguous(memory_format=layout).requires_grad_(True)
        out = sum_pool.sum_pool(inputs, kernel_size, 2)
        # the gradient as the next convolution's backward gives it: in the input's order
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (grad_x,) = torch.autograd.grad(out, inputs, grad.contiguous(memory_format=layout))
        results.append((out, grad_x))
    (out, grad_x), (out_last, grad_last) = results
    assert grad_last.is_contiguous(memory_format=torch.channels_last) and not grad_last.is_contiguous()
    assert torch.equal(out, out_last)
    assert torch.equal(grad_x, grad_last)


def test_a_channels_last_input_gets_its_gradient_in_that_order_from_a_flattened_one():
    """A dense layer after the pooling hands back a gradient in the default order (the flattening's
    view): the input still gets its gradient in channels-last order, with the same values."""
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    grad = torch.randn(3, 4 * 4 * 4, generator=torch.Generator().manual_seed(1))
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        inputs = x.contiguous(memory_format=layout).requires_grad_(True)
        flat = sum_pool.sum_pool(inputs, 2, 2).flatten(1)
        (grad_x,) = torch.autograd.grad(flat, inputs, grad)
        grads.append(grad_x)
    assert grads[1].is_contiguous(memory_format=torch.channels_last) and not grads[1].is_contiguous()
    assert torch.equal(grads[0], grads[1])
