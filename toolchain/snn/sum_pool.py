"""Sum pooling's window sums and their gradient, as compiled loops over the windows.

Sum pooling (kernel = stride, no padding, the remainder dropped) is by definition the depthwise
strided convolution with weights of ones (:func:`window_sums`, what export lowers it to). Its
gradient copies each window's gradient to every input of the window (zero for the inputs the
windows leave out). :func:`sum_pool` computes both with two plain functions on numpy arrays,
compiled by numba (:mod:`toolchain.snn.compiled`):

- :func:`sum_windows`: each window's sum, added row by row of the window from zero, the order of
  the convolution's sum (bit for bit the convolution's on spikes, whose sums are exact);
- :func:`spread_windows`: the gradient written once to every input, instead of the convolution's
  backward (which oneDNN computes several times slower on large maps) or a copy through a
  broadcast view of the gradient (a strided copy over six axes).

Both write a plane at a time, over the planes split into ranges for torch's threads. Where numba
is absent, off the CPU, for other dtypes and under tracing (the ONNX exporter records the
convolution itself), the convolution and the broadcast copy run instead.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from toolchain.snn.compiled import compile_kernel, parallel_rows

# ----------------------------------------------------------------------------------------------
# kernels: plain functions on numpy arrays, compiled by numba (compiled_kernels)


def sum_windows(x: np.ndarray, window_rows: int, window_columns: int, sums: np.ndarray) -> None:
    """Write the sums of the ``window_rows x window_columns`` windows (stride = window) of each
    plane of ``x`` ``[P, H, W]`` to ``sums`` ``[P, H // window_rows, W // window_columns]``."""
    planes, rows, columns = sums.shape
    for p in range(planes):
        for i in range(rows):
            out = sums[p, i]
            out[:] = 0
            for a in range(window_rows):
                x_row = x[p, i * window_rows + a]
                for j in range(columns):
                    total = out[j]
                    for b in range(window_columns):
                        total += x_row[j * window_columns + b]
                    out[j] = total


def spread_windows(grad: np.ndarray, window_rows: int, window_columns: int, grad_x: np.ndarray) -> None:
    """Write each window's gradient of ``grad`` ``[P, h, w]`` to every input of its window in
    ``grad_x`` ``[P, H, W]`` (``H >= h * window_rows``, ``W >= w * window_columns``), and zero to the
    inputs no window covers (the remainder rows and columns)."""
    planes, rows, columns = grad.shape
    height, width = grad_x.shape[1:]
    for p in range(planes):
        for i in range(rows):
            g_row = grad[p, i]
            for a in range(window_rows):
                out = grad_x[p, i * window_rows + a]
                for j in range(columns):
                    value = g_row[j]
                    for b in range(window_columns):
                        out[j * window_columns + b] = value
                out[columns * window_columns : width] = 0
        grad_x[p, rows * window_rows : height] = 0


class _Kernels(NamedTuple):
    sums: Any
    spread: Any


@functools.cache
def compiled_kernels() -> _Kernels | None:
    """The two kernels compiled by numba for float32 and float64 (disk-cached), or ``None`` where
    numba is not installed."""
    kernels = []
    for function in (sum_windows, spread_windows):
        compiled = compile_kernel(
            function,
            [(np.zeros((1, 1, 1), d), 1, 1, np.zeros((1, 1, 1), d)) for d in (np.float32, np.float64)],
        )
        if compiled is None:
            return None
        kernels.append(compiled)
    return _Kernels(*kernels)


# ----------------------------------------------------------------------------------------------
# sum pooling on tensors


def window_sums(x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """Sums of the ``kernel_size``-wide windows (stride ``kernel_size``) of the last ``dims`` axes
    of ``x`` ``[N, C, *spatial]``: the depthwise strided convolution with weights of ones (the
    definition, and what runs where the kernels do not apply)."""
    channels = x.shape[1]
    # int(): a constant kernel shape under tracing (the ONNX exporter needs one)
    ones = torch.ones((int(channels), 1, *(kernel_size,) * dims), dtype=x.dtype, device=x.device)
    conv = functional.conv2d if dims == 2 else functional.conv1d
    return conv(x, ones, stride=kernel_size, groups=channels)


def sum_pool(x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """:func:`window_sums` of ``x`` ``[N, C, *spatial]`` (``dims`` = 1 or 2 spatial axes),
    differentiable (once) with the gradient of a sum; by the compiled kernels where they apply
    (module docstring)."""
    if torch.jit.is_tracing():
        return window_sums(x, kernel_size, dims)
    return _SumPool.apply(x, kernel_size, dims)


def _planes(x: torch.Tensor, dims: int) -> np.ndarray | None:
    """``x`` ``[N, C, *spatial]`` as a ``[N * C, H, W]`` array of planes (``H = 1`` for one spatial
    axis) sharing its memory, or ``None`` where the kernels do not apply."""
    if (
        compiled_kernels() is None
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
    ):
        return None
    planes = x.detach().view(-1, *x.shape[-2:]) if dims == 2 else x.detach().view(-1, 1, x.shape[-1])
    return planes.numpy()


def _run(kernel: Any, source: np.ndarray, kernel_size: int, dims: int, target: np.ndarray) -> None:
    """``kernel`` (either of the two) over the planes of ``source`` and ``target``, in ranges of
    planes on torch's threads."""
    window_rows = kernel_size if dims == 2 else 1
    parallel_rows(
        source.shape[0],
        lambda first, stop: kernel(source[first:stop], window_rows, kernel_size, target[first:stop]),
    )


class _SumPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
        ctx.in_shape = x.shape
        ctx.kernel_size = kernel_size
        ctx.dims = dims
        x_planes = _planes(x, dims)
        if x_planes is None:
            return window_sums(x, kernel_size, dims)
        sums = x.new_empty((*x.shape[:2], *(size // kernel_size for size in x.shape[2:])))
        _run(compiled_kernels().sums, x_planes, kernel_size, dims, _planes(sums, dims))
        return sums

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous()
        grad_planes = _planes(grad, ctx.dims)
        if grad_planes is None:
            return _spread_by_copy(grad, ctx.in_shape, ctx.kernel_size), None, None
        grad_x = grad.new_empty(ctx.in_shape)
        _run(compiled_kernels().spread, grad_planes, ctx.kernel_size, ctx.dims, _planes(grad_x, ctx.dims))
        return grad_x, None, None


def _spread_by_copy(grad: torch.Tensor, in_shape: torch.Size, kernel_size: int) -> torch.Tensor:
    """:func:`spread_windows` on tensors: a copy through a broadcast view of ``grad``, then zeros
    padded for the remainder."""
    lead, pooled = grad.shape[:2], grad.shape[2:]
    windows = grad.reshape(*lead, *(size for n in pooled for size in (n, 1)))
    spread = windows.expand(*lead, *(size for n in pooled for size in (n, kernel_size)))
    grad_x = spread.reshape(*lead, *(n * kernel_size for n in pooled))
    remainder = [size - n * kernel_size for size, n in zip(in_shape[2:], pooled, strict=True)]
    if any(remainder):
        grad_x = functional.pad(grad_x, [p for extra in reversed(remainder) for p in (0, extra)])
    return grad_x
