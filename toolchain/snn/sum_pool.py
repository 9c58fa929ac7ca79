"""Sum pooling's window sums, and their gradient as a compiled loop over the windows.

Sum pooling (kernel = stride, no padding, the remainder dropped) is by definition the depthwise
strided convolution with weights of ones (:func:`window_sums`, what export lowers it to), and
:func:`sum_pool` computes its forward so (oneDNN's depthwise convolution is the fastest of the
ways measured). Its gradient copies each window's gradient to every input of the window (zero for
the inputs the windows leave out): :func:`spread_windows`, a plain function on numpy arrays
compiled by numba (:mod:`toolchain.snn.compiled`), writes it once per input, a range of planes per
torch thread, instead of the convolution's backward (which oneDNN computes several times slower on
large maps) or a copy through a broadcast view of the gradient (a strided copy over six axes).
Where numba is absent, off the CPU and for other dtypes the broadcast copy runs; under tracing
the exporter records the convolution alone.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from toolchain.snn.compiled import channels_last, compile_for_floats, parallel_rows

# ----------------------------------------------------------------------------------------------
# the kernel: a plain function on numpy arrays, compiled by numba (compiled_spread_windows)


def spread_windows(grad: np.ndarray, window_rows: int, window_columns: int, grad_x: np.ndarray) -> None:
    """Write each window's gradient of ``grad`` ``[P, h, w]`` to every input of its window in
    ``grad_x`` ``[P, H, W]`` (``H >= h * window_rows``, ``W >= w * window_columns``), and zero to the
    inputs no window covers (the remainder rows and columns). Each window position is one pass
    over a row of windows (a strided store the compiler vectorizes)."""
    planes, rows, columns = grad.shape
    height, width = grad_x.shape[1:]
    for p in range(planes):
        for i in range(rows):
            g_row = grad[p, i]
            for a in range(window_rows):
                out = grad_x[p, i * window_rows + a]
                for b in range(window_columns):
                    for j in range(columns):
                        out[j * window_columns + b] = g_row[j]
                for c in range(columns * window_columns, width):
                    out[c] = 0
        for r in range(rows * window_rows, height):
            for c in range(width):
                grad_x[p, r, c] = 0


def spread_windows_channels_last(
    grad: np.ndarray, window_rows: int, window_columns: int, grad_x: np.ndarray
) -> None:
    """:func:`spread_windows` in channels-last order: ``grad`` ``[N, h, w, C]`` to ``grad_x``
    ``[N, H, W, C]``, each window's ``C`` gradients copied to every input position of its window
    (a contiguous run of ``C`` values), zeros where no window covers."""
    samples, rows, columns, channels = grad.shape
    height, width = grad_x.shape[1:3]
    g = grad.reshape(samples, rows, columns * channels)
    out = grad_x.reshape(samples, height, width * channels)
    covered = columns * window_columns * channels
    for n in range(samples):
        for r in range(height):
            out_row = out[n, r]
            i = r // window_rows
            if i < rows:
                g_row = g[n, i]
                for j in range(columns):
                    source = j * channels
                    for b in range(window_columns):
                        target = (j * window_columns + b) * channels
                        for c in range(channels):
                            out_row[target + c] = g_row[source + c]
                first_zero = covered
            else:
                first_zero = 0
            for k in range(first_zero, width * channels):
                out_row[k] = 0


@functools.cache
def compiled_spread_windows() -> Any:
    """:func:`spread_windows` compiled by numba for float32 and float64 (disk-cached), or ``None``
    where numba is not installed."""
    kernels = compile_for_floats(
        [(spread_windows, lambda d: (np.zeros((1, 1, 1), d), 1, 1, np.zeros((1, 1, 1), d)))]
    )
    return None if kernels is None else kernels[0]


@functools.cache
def compiled_spread_windows_channels_last() -> Any:
    """:func:`spread_windows_channels_last` compiled by numba for float32 and float64 (disk-cached),
    or ``None`` where numba is not installed."""
    kernels = compile_for_floats(
        [
            (
                spread_windows_channels_last,
                lambda d: (np.zeros((1, 1, 1, 1), d), 1, 1, np.zeros((1, 1, 1, 1), d)),
            )
        ]
    )
    return None if kernels is None else kernels[0]


# ----------------------------------------------------------------------------------------------
# sum pooling on tensors


def window_sums(x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """Sums of the ``kernel_size``-wide windows (stride ``kernel_size``) of the last ``dims`` axes
    of ``x`` ``[N, C, *spatial]``: the depthwise strided convolution with weights of ones (the
    definition, and the forward of :func:`sum_pool`)."""
    channels = x.shape[1]
    # int(): a constant kernel shape under tracing (the ONNX exporter needs one)
    ones = torch.ones((int(channels), 1, *(kernel_size,) * dims), dtype=x.dtype, device=x.device)
    conv = functional.conv2d if dims == 2 else functional.conv1d
    return conv(x, ones, stride=kernel_size, groups=channels)


def sum_pool(x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """:func:`window_sums` of ``x`` ``[N, C, *spatial]`` (``dims`` = 1 or 2 spatial axes),
    differentiable (once) with the gradient of a sum, computed by :func:`spread_windows` where it
    applies (module docstring)."""
    if torch.jit.is_tracing():
        return window_sums(x, kernel_size, dims)
    return _SumPool.apply(x, kernel_size, dims)


def _planes(x: torch.Tensor, dims: int) -> np.ndarray | None:
    """``x`` ``[N, C, *spatial]`` as a ``[N * C, H, W]`` array of planes (``H = 1`` for one spatial
    axis) sharing its memory, or ``None`` where the kernel does not apply."""
    if (
        compiled_spread_windows() is None
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
    ):
        return None
    planes = x.detach().view(-1, *x.shape[-2:]) if dims == 2 else x.detach().view(-1, 1, x.shape[-1])
    return planes.numpy()


class _SumPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
        ctx.in_shape = x.shape
        ctx.kernel_size = kernel_size
        ctx.dims = dims
        ctx.channels_last = channels_last(x)
        return window_sums(x, kernel_size, dims)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.channels_last:  # a 2-D input in channels-last order: the gradient in that order too
            # (a flattening before a dense layer hands it over in the default one): the small
            # pooled gradient reordered, not the input's
            grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = _spread_channels_last(grad, ctx.in_shape, ctx.kernel_size, ctx.dims)
        if grad_x is not None:
            return grad_x, None, None
        grad = grad.contiguous()
        grad_planes = _planes(grad, ctx.dims)
        if grad_planes is None:
            return _spread_by_copy(grad, ctx.in_shape, ctx.kernel_size), None, None
        grad_x = grad.new_empty(ctx.in_shape)
        target = _planes(grad_x, ctx.dims)
        kernel, size = compiled_spread_windows(), ctx.kernel_size
        window_rows = size if ctx.dims == 2 else 1
        parallel_rows(
            grad_planes.shape[0],
            lambda first, stop: kernel(grad_planes[first:stop], window_rows, size, target[first:stop]),
        )
        return grad_x, None, None


def _spread_channels_last(
    grad: torch.Tensor, in_shape: torch.Size, kernel_size: int, dims: int
) -> torch.Tensor | None:
    """The gradient of 2-D sum pooling for a ``grad`` in channels-last order (a 2-D convolution's
    output pooled), in that order, by :func:`spread_windows_channels_last`; ``None`` for any other
    gradient or where the kernel does not apply."""
    if (
        dims != 2
        or not channels_last(grad)
        or grad.device.type != "cpu"
        or grad.dtype not in (torch.float32, torch.float64)
    ):
        return None
    kernel = compiled_spread_windows_channels_last()
    if kernel is None:
        return None
    grad_x = torch.empty(in_shape, dtype=grad.dtype, memory_format=torch.channels_last)
    source = grad.permute(0, 2, 3, 1).numpy()
    target = grad_x.permute(0, 2, 3, 1).numpy()
    parallel_rows(
        source.shape[0],
        lambda first, stop: kernel(source[first:stop], kernel_size, kernel_size, target[first:stop]),
    )
    return grad_x


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
