"""Dense synapses driven by events: ``x @ W^T`` from the non-zero entries of ``x`` only.

A dense layer's input in a spiking network is mostly zeros (spikes at rates of a few percent to
a few tens of percent). :func:`dense_synapse` computes ``functional.linear(x, weight)`` by adding,
for every non-zero ``x[r, i]``, the row ``x[r, i] * weight[:, i]`` to output row ``r``: the
synaptic operations a neuromorphic chip performs, instead of the ``rows * inputs * outputs``
multiply-adds of a matrix product. Its gradient with respect to the weight is the same walk over
the events (``dW[:, i] += x[r, i] * g[r]``); the gradient with respect to ``x`` is the dense
product ``g @ W``, as the surrogate gradient reaches every input.

The sums are those of the matrix product, in another order: bit for bit equal where every partial
sum is exact (integer weights on a float grid, as the reference simulator and fixed-point training
use), and within float rounding otherwise (``benchmarks/event_synapses.py`` measures it). The
events are found by :func:`count_events` and :func:`gather_events` (a compressed sparse row list of
the non-zero entries), the products by :func:`event_product` and :func:`event_weight_gradient`:
plain functions on numpy arrays, compiled by numba (:mod:`toolchain.snn.compiled`). Where numba is
absent, on other devices, under tracing (ONNX export), for layers with fewer than
:data:`EVENT_OUTPUTS_MIN` outputs and where more than :data:`EVENT_DENSITY_MAX` of ``x`` is
non-zero, the matrix product runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from toolchain.snn.compiled import compile_for_floats, parallel_rows

#: the largest fraction of non-zero inputs at which the event-driven synapse runs: above it the
#: matrix product costs less (``benchmarks/event_synapses.py``: with 256 outputs the two are about
#: even at 0.2 to 0.3 of the inputs non-zero, forward and weight gradient alike)
EVENT_DENSITY_MAX = 0.2
#: the fewest outputs at which the event-driven synapse runs: finding the events costs about as
#: much as a product with a few tens of outputs (same benchmark: with 20 outputs the product is
#: faster forward at every density, with 64 about even, with 256 the events are faster up to 0.2)
EVENT_OUTPUTS_MIN = 64


# ----------------------------------------------------------------------------------------------
# kernels: plain functions on numpy arrays, compiled by numba (compiled_kernels)


def count_events(x: np.ndarray, counts: np.ndarray) -> None:
    """Write the number of non-zero entries of each row of ``x`` ``[N, I]`` to ``counts`` ``[N]``."""
    rows, inputs = x.shape
    for r in range(rows):
        x_r = x[r]
        count = 0
        for i in range(inputs):
            count += x_r[i] != 0
        counts[r] = count


def gather_events(x: np.ndarray, row_starts: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    """Write the input index and the value of every non-zero entry of ``x`` ``[N, I]`` to
    ``indices`` and ``values``, row ``r``'s from ``row_starts[r]`` on (``row_starts`` ``[N + 1]``,
    from :func:`count_events`; the rows may be a range of a larger input, whose events go to the
    same lists).

    Each entry is written at the row's next free place, which only an event then takes, so that
    the loop has no branch; past a row's last event that place is the first of a later row of the
    range, which rewrites it. A row whose events end the range's (where that place would belong
    to another range, or lie past the lists) writes its events only.
    """
    rows, inputs = x.shape
    range_end = row_starts[rows]
    for r in range(rows):
        x_r = x[r]
        end = row_starts[r]
        if row_starts[r + 1] < range_end:
            for i in range(inputs):
                value = x_r[i]
                indices[end] = i
                values[end] = value
                end += value != 0
        else:
            for i in range(inputs):
                value = x_r[i]
                if value != 0:
                    indices[end] = i
                    values[end] = value
                    end += 1


def event_product(
    row_starts: np.ndarray, indices: np.ndarray, values: np.ndarray, weight_t: np.ndarray, out: np.ndarray
) -> None:
    """``out[r] = sum of values[k] * weight_t[indices[k]]`` over the events ``k`` of row ``r``:
    ``x @ W^T`` with ``weight_t = W^T`` ``[I, O]``, ``out`` ``[N, O]``. Four events at a time,
    summed in pairs before they are added to the row (fewer passes over it)."""
    rows, outputs = out.shape
    for r in range(rows):
        acc = out[r]
        for o in range(outputs):
            acc[o] = 0
        k = row_starts[r]
        end = row_starts[r + 1]
        while k + 4 <= end:
            w1, w2 = weight_t[indices[k]], weight_t[indices[k + 1]]
            w3, w4 = weight_t[indices[k + 2]], weight_t[indices[k + 3]]
            v1, v2, v3, v4 = values[k], values[k + 1], values[k + 2], values[k + 3]
            for o in range(outputs):
                acc[o] += (v1 * w1[o] + v2 * w2[o]) + (v3 * w3[o] + v4 * w4[o])
            k += 4
        while k < end:
            w = weight_t[indices[k]]
            v = values[k]
            for o in range(outputs):
                acc[o] += v * w[o]
            k += 1


def event_weight_gradient(
    row_starts: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    grad: np.ndarray,
    weight_grad_t: np.ndarray,
) -> None:
    """Add ``x^T @ grad`` to ``weight_grad_t`` ``[I, O]`` (the weight's gradient, transposed) from the
    events of ``x``: ``weight_grad_t[indices[k]] += values[k] * grad[r]`` for every event ``k`` of
    row ``r``; ``grad`` ``[N, O]``. Two events at a time (one pass over ``grad[r]``)."""
    rows, outputs = grad.shape
    for r in range(rows):
        g = grad[r]
        k = row_starts[r]
        end = row_starts[r + 1]
        while k + 2 <= end:
            a, b = weight_grad_t[indices[k]], weight_grad_t[indices[k + 1]]
            v_a, v_b = values[k], values[k + 1]
            for o in range(outputs):
                g_o = g[o]
                a[o] += v_a * g_o
                b[o] += v_b * g_o
            k += 2
        while k < end:
            row = weight_grad_t[indices[k]]
            v = values[k]
            for o in range(outputs):
                row[o] += v * g[o]
            k += 1


@dataclass(frozen=True)
class _Kernels:
    count: Any
    gather: Any
    product: Any
    weight_gradient: Any


@functools.cache
def compiled_kernels() -> _Kernels | None:
    """The four kernels compiled by numba for float32 and float64 (disk-cached), or ``None`` where
    numba is not installed."""
    kernels = compile_for_floats(
        [
            (count_events, lambda d: (np.zeros((1, 1), d), np.zeros(1, np.int64))),
            (
                gather_events,
                lambda d: (np.zeros((1, 1), d), np.zeros(2, np.int64), np.zeros(1, np.int32), np.zeros(1, d)),
            ),
            (event_product, lambda d: (*_no_events(d), np.zeros((1, 1), d), np.zeros((1, 1), d))),
            (event_weight_gradient, lambda d: (*_no_events(d), np.zeros((1, 1), d), np.zeros((1, 1), d))),
        ]
    )
    return None if kernels is None else _Kernels(*kernels)


def _no_events(dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0, dtype)


# ----------------------------------------------------------------------------------------------
# the synapse on tensors


@dataclass(frozen=True)
class Events:
    """The non-zero entries of an ``[N, I]`` input, row by row (compressed sparse rows).

    ``row_starts`` ``[N + 1]`` (``int64``: row ``r``'s events are ``row_starts[r]`` up to
    ``row_starts[r + 1]``), ``indices`` (``int32``) and ``values`` (the input's dtype), one element
    per event.
    """

    shape: tuple[int, int]
    row_starts: np.ndarray
    indices: np.ndarray
    values: np.ndarray


def find_events(x: torch.Tensor, density_max: float = EVENT_DENSITY_MAX) -> Events | None:
    """The events of ``x`` ``[N, I]`` (a float tensor on the CPU), or ``None`` where numba is absent
    or more than ``density_max`` of the entries are non-zero."""
    kernels = compiled_kernels()
    if kernels is None:
        return None
    array = x.detach().contiguous().numpy()
    rows, inputs = array.shape
    counts = np.empty(rows, np.int64)
    parallel_rows(rows, lambda first, stop: kernels.count(array[first:stop], counts[first:stop]))
    row_starts = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=row_starts[1:])
    count = int(row_starts[-1])
    if count > density_max * rows * inputs:
        return None
    indices = np.empty(count, np.int32)
    values = np.empty(count, array.dtype)
    parallel_rows(
        rows,
        lambda first, stop: kernels.gather(array[first:stop], row_starts[first : stop + 1], indices, values),
    )
    return Events((rows, inputs), row_starts, indices, values)


def dense_synapse(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``functional.linear(x, weight)`` for ``x`` ``[N, I]`` and ``weight`` ``[O, I]``, event-driven
    where it applies (module docstring), differentiable in both (once)."""
    events = _events_for(x, weight)
    if events is None:
        return functional.linear(x, weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _EventDense.apply(x, weight, events)
    return _product(events, weight)


def _events_for(x: torch.Tensor, weight: torch.Tensor) -> Events | None:
    if (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or x.dim() != 2
        or weight.dim() != 2
        or x.device.type != "cpu"
        or weight.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or weight.dtype != x.dtype
        or x.shape[0] == 0
        or x.shape[1] != weight.shape[1]
        or weight.shape[0] < EVENT_OUTPUTS_MIN
    ):
        return None
    return find_events(x)


def _product(events: Events, weight: torch.Tensor) -> torch.Tensor:
    kernels = compiled_kernels()
    assert kernels is not None
    out = torch.empty(events.shape[0], weight.shape[0], dtype=weight.dtype)
    weight_t = weight.detach().t().contiguous().numpy()
    out_array, starts = out.numpy(), events.row_starts
    parallel_rows(
        events.shape[0],
        lambda first, stop: kernels.product(
            starts[first : stop + 1], events.indices, events.values, weight_t, out_array[first:stop]
        ),
    )
    return out


class _EventDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, events: Events) -> torch.Tensor:
        ctx.events = events
        ctx.save_for_backward(weight)
        return _product(events, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        (weight,) = ctx.saved_tensors
        events: Events = ctx.events
        grad_out = grad_out.contiguous()
        grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            kernels = compiled_kernels()
            assert kernels is not None
            grad_weight = _weight_gradient(events, grad_out, kernels)
        return grad_x, grad_weight, None


def _weight_gradient(events: Events, grad_out: torch.Tensor, kernels: _Kernels) -> torch.Tensor:
    """``grad_out^T @ x`` ``[O, I]`` from the events of ``x``; each piece of rows (one per thread)
    is summed into a gradient of its own (a numpy array: no torch operator on a pool thread, see
    ``parallel_rows``), and those are added in the order of the pieces."""
    grad = grad_out.numpy()
    starts = events.row_starts
    partial: dict[int, np.ndarray] = {}

    def work(first: int, stop: int) -> None:
        grad_t = np.zeros((events.shape[1], grad.shape[1]), grad.dtype)
        kernels.weight_gradient(
            starts[first : stop + 1], events.indices, events.values, grad[first:stop], grad_t
        )
        partial[first] = grad_t

    parallel_rows(events.shape[0], work, pieces_per_thread=1)  # a gradient-sized buffer per piece
    total = partial.pop(0)
    for first in sorted(partial):
        total += partial[first]
    return torch.from_numpy(total).t().contiguous()
