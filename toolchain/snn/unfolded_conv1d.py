"""1-D convolution synapses as matrix products over the unfolded input.

A 1-D convolution of ``x`` ``[N, C, L]`` with ``weight`` ``[O, C, K]`` (stride ``s``, ``p`` zeros
at each end) is the matrix product of the input's windows with the flattened weight::

    cols[n, o, k * C + c] = x[n, c, s * o + k - p]        (0 outside the input)
    y[n, :, o]            = weight.permute(0, 2, 1).reshape(O, K * C) @ cols[n, o]

and its gradients are two more products: ``grad_weight = grad^T @ cols`` and
``grad_cols = grad @ weight``, whose windows are added back onto the input positions they came
from (``grad_x``). :func:`conv1d_synapse` computes it so: the unfolding (:func:`unfold_windows`)
and the adding back (:func:`fold_windows`) are plain functions on numpy arrays compiled by numba
(:mod:`toolchain.snn.compiled`), the products are torch's matrix multiplications.

On the speech network's layers (64 channels, kernel 3, stride 2, 25 and 13 frames) with AVX2
kernels, oneDNN's 1-D convolution computes its backward several times slower than its forward,
while the three products run at the matrix multiplication's rate; with AVX-512 kernels the
convolution is faster than the products, fastest as a 2-D one in channels-last order
(``benchmarks/unfolded_conv1d.py`` measures the three ways). The products' values are those of the
convolution, summed in another order: equal where every partial sum is exact (integer weights on a
float grid, as fixed-point training uses), within float rounding otherwise.

The products run where :func:`_applies`: numba installed, on the CPU, float32/64, windows of at
least :data:`WINDOW_VALUES_MIN` values, torch's kernels in :data:`PRODUCTS_CPU_CAPABILITIES`.
Elsewhere on the CPU the convolution runs as the 2-D one in channels-last order
(:func:`_channels_last_conv1d`); off the CPU and under tracing (the ONNX exporter records the
convolution itself) ``functional.conv1d`` runs.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from toolchain.snn.compiled import compile_for_floats

#: the fewest values per window (``C * K``) at which the products run: on narrower windows
#: (``benchmarks/unfolded_conv1d.py``: the speech network's first layer, 10 channels x 3 = 30) the
#: convolution is faster, on its 64 x 3 = 192 the products are
WINDOW_VALUES_MIN = 64
#: the instruction sets of torch's CPU kernels (``torch.backends.cpu.get_cpu_capability()``) on
#: which the products run: with AVX2 they took 1.3x and 1.5x less time than oneDNN's convolution
#: (forward and backward, the speech network's second and third layers, one thread; 1.0x and 1.2x
#: with two); with AVX-512 oneDNN's convolution took as long with one thread and 1.3x less with two
#: (``benchmarks/unfolded_conv1d.py``, docs/benchmarks.md); elsewhere they were not measured
PRODUCTS_CPU_CAPABILITIES = ("AVX2",)
#: the most window values (``samples * L_out * K * C``) unfolded at a time (1 MiB of float32): the
#: buffers of a chunk (its windows, then their gradient) are reused chunk after chunk, instead of
#: tensors of every sample's windows
CHUNK_ELEMENTS = 262144

# ----------------------------------------------------------------------------------------------
# kernels: plain functions on numpy arrays, compiled by numba (compiled_kernels)


def unfold_windows(x: np.ndarray, kernel_size: int, stride: int, padding: int, cols: np.ndarray) -> None:
    """Write the windows of ``x`` ``[N, C, L]`` to ``cols`` ``[N, L_out, kernel_size * C]``:
    ``cols[n, o, k * C + c] = x[n, c, stride * o + k - padding]``, zero where that position lies
    in the padding (tap-major, so that each tap is one run of ``C`` values)."""
    samples, channels, length = x.shape
    out_length = cols.shape[1]
    for n in range(samples):
        x_n = x[n]
        for o in range(out_length):
            row = cols[n, o]
            start = stride * o - padding
            for k in range(kernel_size):
                q = start + k
                base = k * channels
                if 0 <= q < length:
                    for c in range(channels):
                        row[base + c] = x_n[c, q]
                else:
                    for c in range(channels):
                        row[base + c] = 0


def fold_windows(
    grad_cols: np.ndarray, kernel_size: int, stride: int, padding: int, grad_x: np.ndarray
) -> None:
    """Write to ``grad_x`` ``[N, C, L]`` the sum, over the windows in order, of each window's
    gradient ``grad_cols`` ``[N, L_out, kernel_size * C]`` at the input position it was unfolded
    from (the transpose of :func:`unfold_windows`; nothing for the padding)."""
    samples, channels, length = grad_x.shape
    out_length = grad_cols.shape[1]
    for n in range(samples):
        g_n = grad_x[n]
        g_n[:, :] = 0
        for o in range(out_length):
            row = grad_cols[n, o]
            start = stride * o - padding
            for k in range(kernel_size):
                q = start + k
                if 0 <= q < length:
                    base = k * channels
                    for c in range(channels):
                        g_n[c, q] += row[base + c]


class _Kernels(NamedTuple):
    unfold: Any
    fold: Any


@functools.cache
def compiled_kernels() -> _Kernels | None:
    """The two kernels compiled by numba for float32 and float64 (disk-cached), or ``None`` where
    numba is not installed."""

    def arguments(d: Any) -> tuple[Any, ...]:
        return (np.zeros((1, 1, 1), d), 1, 1, 0, np.zeros((1, 1, 1), d))

    kernels = compile_for_floats([(unfold_windows, arguments), (fold_windows, arguments)])
    return None if kernels is None else _Kernels(*kernels)


# ----------------------------------------------------------------------------------------------
# the synapse on tensors


def conv1d_synapse(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``functional.conv1d(x, weight, stride=stride, padding=padding)`` for ``x`` ``[N, C, L]``
    and ``weight`` ``[O, C, K]`` (no bias, dilation 1, one group): as matrix products where they
    apply (differentiable once), else as a 2-D convolution in channels-last order on the CPU
    (module docstring)."""
    if _applies(x, weight):
        return _UnfoldedConv1d.apply(x, weight, stride, padding)
    if (
        x.dim() == 3
        and x.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    ):
        return _channels_last_conv1d(x, weight, stride, padding)
    return functional.conv1d(x, weight, stride=stride, padding=padding)


def _channels_last_conv1d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``functional.conv1d`` as the 2-D convolution of ``x`` ``[N, C, 1, L]`` in channels-last
    order: oneDNN computes it so faster, forward and backward, than the 1-D convolution, whose
    backward copies the input to another order (``benchmarks/unfolded_conv1d.py``). The output
    ``[N, O, L_out]`` lies with its channels last, and the neurons step it in that order
    (:func:`toolchain.snn.fused.cuba_sequence`); the next layer's input then needs no copy."""
    planes = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    out = functional.conv2d(planes, weight.unsqueeze(2), stride=(1, stride), padding=(0, padding))
    return out.squeeze(2)


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and x.dim() == 3
        and weight.dim() == 3
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype
        and x.shape[1] == weight.shape[1]
        and x.shape[1] * weight.shape[2] >= WINDOW_VALUES_MIN
        and x.shape[0] > 0
        and torch.backends.cpu.get_cpu_capability() in PRODUCTS_CPU_CAPABILITIES
        and compiled_kernels() is not None
    )


class _Geometry(NamedTuple):
    """The convolution's sizes and its chunks of samples."""

    samples: int
    channels: int
    length: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    out_length: int
    chunk: int  # samples per chunk

    @classmethod
    def of(cls, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> _Geometry:
        samples, channels, length = x.shape
        out_channels, _, kernel_size = weight.shape
        out_length = (length + 2 * padding - kernel_size) // stride + 1
        chunk = max(1, CHUNK_ELEMENTS // max(1, out_length * kernel_size * channels))
        return cls(samples, channels, length, out_channels, kernel_size, stride, padding, out_length, chunk)

    def chunks(self) -> list[slice]:
        starts = range(0, self.samples, self.chunk)
        return [slice(first, min(self.samples, first + self.chunk)) for first in starts]

    def unfold(self, x: np.ndarray, cols: torch.Tensor) -> torch.Tensor:
        """The windows of the samples ``x`` (an array ``[n, C, L]``) written to the start of
        ``cols``, returned as ``[n * L_out, K * C]``."""
        windows = cols[: x.shape[0] * self.out_length]
        target = windows.view(x.shape[0], self.out_length, -1).numpy()
        compiled_kernels().unfold(x, self.kernel_size, self.stride, self.padding, target)
        return windows


class _UnfoldedConv1d(torch.autograd.Function):
    """The forward and backward products a chunk of samples at a time (:data:`CHUNK_ELEMENTS`
    windows' values), each chunk's windows and their gradient in buffers reused chunk after
    chunk."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        shape = _Geometry.of(x, weight, stride, padding)
        if shape.out_length < 1:  # the convolution's own error message
            return functional.conv1d(x, weight, stride=stride, padding=padding)
        x = x.detach().contiguous()
        ctx.save_for_backward(x, weight)
        ctx.shape = shape
        weight_t = _tap_major(weight).t()  # [K * C, O]
        out = x.new_empty(shape.samples, shape.out_channels, shape.out_length)
        cols = x.new_empty(shape.chunk * shape.out_length, shape.kernel_size * shape.channels)
        products = x.new_empty(shape.chunk * shape.out_length, shape.out_channels)
        x_array = x.numpy()
        for part in shape.chunks():
            windows = shape.unfold(x_array[part], cols)
            rows = products[: windows.shape[0]]
            torch.mm(windows, weight_t, out=rows)
            out[part].copy_(rows.view(-1, shape.out_length, shape.out_channels).transpose(1, 2))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        shape: _Geometry = ctx.shape
        want_x, want_weight = ctx.needs_input_grad[:2]
        weight_taps = _tap_major(weight)  # [O, K * C]
        grad_x = x.new_empty(x.shape) if want_x else None
        grad_taps = x.new_zeros(weight_taps.shape[1], shape.out_channels) if want_weight else None
        rows_buffer = x.new_empty(shape.chunk * shape.out_length, shape.out_channels)
        cols = x.new_empty(shape.chunk * shape.out_length, weight_taps.shape[1])
        x_array = x.numpy()
        fold = compiled_kernels().fold
        for part in shape.chunks():
            window_grad = grad[part].transpose(1, 2)  # [n, L_out, O]
            grad_rows = rows_buffer[: window_grad.shape[0] * shape.out_length]
            grad_rows.view(window_grad.shape).copy_(window_grad)
            if grad_taps is not None:
                grad_taps.addmm_(shape.unfold(x_array[part], cols).t(), grad_rows)
            if grad_x is not None:
                grad_cols = torch.mm(grad_rows, weight_taps, out=cols[: grad_rows.shape[0]])
                fold(
                    grad_cols.view(-1, shape.out_length, grad_cols.shape[1]).numpy(),
                    shape.kernel_size,
                    shape.stride,
                    shape.padding,
                    grad_x[part].numpy(),
                )
        grad_weight = None
        if grad_taps is not None:  # [K * C, O] -> [O, C, K]
            grad_weight = grad_taps.view(shape.kernel_size, shape.channels, -1).permute(2, 1, 0).contiguous()
        return grad_x, grad_weight, None, None


def _tap_major(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[O, C, K]`` as ``[O, K * C]``, the order of :func:`unfold_windows`' columns."""
    return weight.detach().permute(0, 2, 1).reshape(weight.shape[0], -1)
