"""The event-driven dense synapse against the matrix product, its kernels against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from toolchain.snn import compiled, event_synapses
from toolchain.snn.event_synapses import (
    EVENT_OUTPUTS_MIN,
    count_events,
    dense_synapse,
    event_product,
    event_weight_gradient,
    find_events,
    gather_events,
)
from toolchain.snn.layers import Dense

pytestmark = pytest.mark.skipif(event_synapses.compiled_kernels() is None, reason="numba is not installed")

X = np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]], dtype=np.float32)
W_T = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0], [1000.0, 2000.0]], dtype=np.float32)  # [I, O]


def _events_by_hand() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.zeros(3, np.int64)
    count_events(X, counts)  # the plain Python functions, as written
    assert counts.tolist() == [2, 0, 1]
    row_starts = np.array([0, 2, 2, 3], np.int64)
    indices = np.zeros(3, np.int32)
    values = np.zeros(3, np.float32)
    gather_events(X, row_starts, indices, values)
    assert indices.tolist() == [1, 3, 0]
    assert values.tolist() == [1.0, 2.0, 3.0]
    return row_starts, indices, values


def test_kernels_by_hand():
    row_starts, indices, values = _events_by_hand()
    out = np.full((3, 2), np.nan, np.float32)
    event_product(row_starts, indices, values, W_T, out)
    # row 0: 1 * [10, 20] + 2 * [1000, 2000]; row 1: no events; row 2: 3 * [1, 2]
    assert out.tolist() == [[2010.0, 4020.0], [0.0, 0.0], [3.0, 6.0]]
    grad = np.array([[1.0, -1.0], [5.0, 5.0], [0.5, 2.0]], np.float32)
    weight_grad_t = np.zeros((4, 2), np.float32)
    event_weight_gradient(row_starts, indices, values, grad, weight_grad_t)
    # input 0: 3 * grad[2]; input 1: 1 * grad[0]; input 3: 2 * grad[0]; input 2: never active
    assert weight_grad_t.tolist() == [[1.5, 6.0], [1.0, -1.0], [0.0, 0.0], [2.0, -2.0]]


def test_gather_ranges_stay_in_their_place():
    # rows gathered as separate ranges (as threads do), in either order, give the whole list: a
    # range whose last rows have no events must not write into the next range's first place
    x = np.zeros((6, 5), np.float32)
    x[0, [1, 4]] = 1.0
    x[3, 0] = 1.0
    x[4, [2, 3]] = 2.0
    counts = (x != 0).sum(axis=1)
    row_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gather = event_synapses.compiled_kernels().gather
    expected_indices = np.nonzero(x)[1]
    for order in ([(0, 3), (3, 6)], [(3, 6), (0, 3)], [(0, 1), (1, 4), (4, 6)]):
        indices = np.full(int(row_starts[-1]), -1, np.int32)
        values = np.zeros(int(row_starts[-1]), np.float32)
        for first, stop in order:
            gather(x[first:stop], row_starts[first : stop + 1], indices, values)
        assert indices.tolist() == expected_indices.tolist()
        assert values.tolist() == x[x != 0].tolist()


def _inputs(dtype, rows=300, inputs=90, outputs=EVENT_OUTPUTS_MIN + 6, density=0.1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    active = torch.rand(rows, inputs, generator=generator) < density
    graded = torch.randint(1, 4, (rows, inputs), generator=generator).to(dtype) / 2
    x = active.to(dtype) * graded
    x[:7] = 0  # rows without events
    weight = torch.randn(outputs, inputs, generator=generator, dtype=dtype)
    grad = torch.randn(rows, outputs, generator=generator, dtype=dtype)
    return x, weight, grad


def _both_ways(x, weight, grad):
    results = []
    for product in (dense_synapse, functional.linear):
        xi = x.clone().requires_grad_(True)
        wi = weight.clone().requires_grad_(True)
        out = product(xi, wi)
        out.backward(grad)
        results.append((out.detach(), xi.grad, wi.grad, out.grad_fn))
    return results


def test_same_values_and_gradients_as_the_matrix_product():
    events, dense = _both_ways(*_inputs(torch.float64))
    assert "EventDense" in type(events[3]).__name__  # the event path ran
    for ours, theirs in zip(events[:3], dense[:3], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_bit_exact_on_integer_weights_float32():
    # integer weights and 0/1 spikes: every partial sum is an exact float32 integer, in any order
    x, weight, _ = _inputs(torch.float32)
    x = (x != 0).float()
    weight = torch.round(weight * 50)
    with torch.no_grad():
        assert torch.equal(dense_synapse(x, weight), functional.linear(x, weight))


def test_threads_split_rows(monkeypatch, torch_free_pool):
    monkeypatch.setattr(compiled, "PARALLEL_ROWS_MIN", 16)
    x, weight, grad = _inputs(torch.float64, rows=301)
    grad = torch.round(grad * 8)  # integer gradients: the partial sums of the threads add exactly
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _both_ways(x, weight, grad)[0]
        torch.set_num_threads(3)
        split = _both_ways(x, weight, grad)[0]
    finally:
        torch.set_num_threads(threads)
    for ours, theirs in zip(split[:3], single[:3], strict=True):
        assert torch.equal(ours, theirs)


def test_falls_back_to_the_matrix_product(monkeypatch):
    x, weight, _ = _inputs(torch.float32)
    assert find_events(x) is not None
    assert find_events(torch.ones_like(x)) is None  # too dense
    narrow = weight[: EVENT_OUTPUTS_MIN - 1]
    cases = [
        (torch.ones_like(x), weight),
        (x, narrow),  # too few outputs
        (x.to(torch.bfloat16), weight.to(torch.bfloat16)),  # not float32 / float64
    ]
    for xi, wi in cases:
        out = dense_synapse(xi, wi.detach().requires_grad_(True))
        assert "EventDense" not in type(out.grad_fn).__name__
    traced = torch.jit.trace(lambda a: dense_synapse(a, weight), (x,))
    assert "aten::linear" in str(traced.graph) or "aten::matmul" in str(traced.graph)
    monkeypatch.setattr(event_synapses, "compiled_kernels", lambda: None)
    out = dense_synapse(x, weight.detach().requires_grad_(True))
    assert "EventDense" not in type(out.grad_fn).__name__


def test_dense_layer_runs_on_events():
    layer = Dense(90, EVENT_OUTPUTS_MIN + 6).double()
    x, _, _ = _inputs(torch.float64)
    spikes = x.reshape(30, 10, 90)
    out = layer(spikes)
    assert "EventDense" in type(out.grad_fn.next_functions[0][0]).__name__  # under the reshape
    expected = functional.linear(spikes, layer.weight)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
