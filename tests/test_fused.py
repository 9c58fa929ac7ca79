"""The fused CUBA-LIF sequence against autograd through ``cuba_step``, stepped one step at a time.

The reference is written out here (a loop of :func:`toolchain.snn.dynamics.cuba_step` with the
surrogate spike function, under autograd), not taken from :class:`CubaLIF`, which itself runs
:func:`cuba_sequence` in float mode.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from toolchain.errors import RecipeError
from toolchain.snn import fused
from toolchain.snn.dynamics import CubaState, cuba_step
from toolchain.snn.fused import cuba_sequence
from toolchain.snn.layers import _RepeatOverTime
from toolchain.snn.neurons import delay
from toolchain.snn.surrogate import SURROGATES, spike_function

DECAYS = [0.0, 0.1, 0.5, 1.0]


def _step_by_step(current, du, dv, threshold, name, scale, reset="zero"):
    """Spikes ``[T, ...]``: ``cuba_step`` over time under autograd (what ``CubaLIF`` did before fusing)."""
    spike_fn = spike_function(name, scale)
    state = CubaState.zeros_like(current[0])
    spikes = []
    for x_t in current:
        s_t, state = cuba_step(state, x_t, du, dv, threshold, spike_fn=spike_fn, reset=reset)
        spikes.append(s_t)
    return torch.stack(spikes)


def _reference(current, du, dv, threshold, name, scale, reset="zero"):
    """Spikes and the input (whose .grad autograd fills) through the step-by-step loop."""
    x = current.detach().clone().requires_grad_(True)
    return _step_by_step(x, du, dv, threshold, name, scale, reset), x


def _fused(current, du, dv, threshold, name, scale, reset="zero"):
    x = current.detach().clone().requires_grad_(True)
    return cuba_sequence(x, du, dv, threshold, name, scale, reset), x


def _compare(current, du, dv, threshold, name, scale, weights, reset="zero"):
    ref_spikes, ref_x = _reference(current, du, dv, threshold, name, scale, reset)
    out_spikes, out_x = _fused(current, du, dv, threshold, name, scale, reset)
    assert torch.equal(out_spikes, ref_spikes)
    (ref_spikes * weights).sum().backward()
    (out_spikes * weights).sum().backward()
    assert torch.allclose(out_x.grad, ref_x.grad, rtol=1e-10, atol=1e-12), (
        (out_x.grad - ref_x.grad).abs().max()
    )
    return ref_spikes.detach()


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("name", list(SURROGATES))
def test_same_spikes_and_gradients_as_autograd(name, reset):
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(12, 3, 5, generator=generator, dtype=torch.float64) * 0.8
    weights = torch.randn(12, 3, 5, generator=generator, dtype=torch.float64)
    total_spikes = 0.0
    for du, dv in itertools.product(DECAYS, DECAYS):
        spikes = _compare(current, du, dv, 1.0, name, 2.0, weights, reset)
        total_spikes += float(spikes.sum())
    assert total_spikes > 0  # the reset path was exercised


@pytest.mark.parametrize("name", list(SURROGATES))
def test_without_spikes(name):
    # a threshold far above the input: no spike, the gradient is only the surrogate tail through time
    generator = torch.Generator().manual_seed(1)
    current = torch.rand(10, 2, 4, generator=generator, dtype=torch.float64) * 0.1
    weights = torch.randn(10, 2, 4, generator=generator, dtype=torch.float64)
    spikes = _compare(current, 0.2, 0.3, 5.0, name, 1.5, weights)
    assert float(spikes.sum()) == 0


def test_loss_on_spike_counts_through_a_network():
    # gradients reaching the current through later layers, as in training (CE on spike counts)
    generator = torch.Generator().manual_seed(2)
    current = torch.randn(20, 4, 6, generator=generator, dtype=torch.float64)
    w = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    grads = []
    for layer in ("reference", "fused"):
        x = current.clone().requires_grad_(True)
        if layer == "reference":
            hidden = _step_by_step(x, 0.3, 0.1, 0.5, "fast_sigmoid", 5.0)
            out = _step_by_step(hidden @ w, 0.3, 0.1, 0.5, "fast_sigmoid", 5.0)
        else:
            hidden = cuba_sequence(x, 0.3, 0.1, 0.5, "fast_sigmoid", 5.0)
            out = cuba_sequence(hidden @ w, 0.3, 0.1, 0.5, "fast_sigmoid", 5.0)
        loss = torch.nn.functional.cross_entropy(out.sum(0), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)
    assert grads[0].abs().sum() > 0


def test_per_neuron_decays_and_threshold():
    generator = torch.Generator().manual_seed(3)
    current = torch.randn(8, 2, 3, generator=generator, dtype=torch.float64)
    du = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    dv = torch.tensor([1.0, 0.25, 0.0], dtype=torch.float64)
    threshold = torch.tensor([0.5, 1.0, 0.2], dtype=torch.float64)
    for reset in ("zero", "subtract"):
        _compare(current, du, dv, threshold, "sigmoid", 4.0, torch.ones_like(current), reset)


def test_float32_spikes_are_bitwise_and_no_grad_path():
    generator = torch.Generator().manual_seed(4)
    current = torch.randn(30, 8, 16, generator=generator)
    ref = _step_by_step(current, 0.2, 0.1, 1.0, "triangle", 1.0)
    with torch.no_grad():
        fused = cuba_sequence(current.requires_grad_(True), 0.2, 0.1, 1.0, "triangle", 1.0)
    assert not fused.requires_grad
    assert torch.equal(fused, ref)


def test_bad_arguments():
    current = torch.zeros(3, 2, 1)
    with pytest.raises(RecipeError, match="unknown surrogate"):
        cuba_sequence(current, 0.1, 0.1, 1.0, "relu", 1.0)
    with pytest.raises(RecipeError, match="surrogate_scale"):
        cuba_sequence(current, 0.1, 0.1, 1.0, "sigmoid", 0.0)
    with pytest.raises(RecipeError, match="reset"):
        cuba_sequence(current, 0.1, 0.1, 1.0, "sigmoid", 1.0, "none")
    with pytest.raises(ValueError, match="constant"):
        cuba_sequence(current, torch.tensor(0.1, requires_grad=True), 0.1, 1.0, "sigmoid", 1.0)
    empty = torch.zeros(0, 2, 1, requires_grad=True)
    assert cuba_sequence(empty, 0.1, 0.1, 1.0, "sigmoid", 1.0).shape == (0, 2, 1)


def _set_chunk_elements(monkeypatch, elements):
    # the backward's chunk bound, on one thread and on several
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", elements)
    monkeypatch.setattr(fused, "SERIAL_CHUNK_ELEMENTS", elements)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_chunk_bound_depends_on_the_threads(threads):
    # one thread: larger chunks (no operator waits for another thread); several: torch's grain,
    # so that no operator of the backward runs as a parallel region
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        steps = fused._chunk_steps(1000)
    finally:
        torch.set_num_threads(previous)
    bound = fused.SERIAL_CHUNK_ELEMENTS if threads == 1 else fused.CHUNK_ELEMENTS
    assert steps == bound // 1000 and steps * 1000 <= bound < (steps + 1) * 1000
    assert fused.CHUNK_ELEMENTS < fused.SERIAL_CHUNK_ELEMENTS
    assert fused._chunk_steps(10**9) == 1  # at least one step


@pytest.mark.parametrize("chunk_steps", [1, 3, 5])
def test_backward_chunks_do_not_change_the_gradient(monkeypatch, chunk_steps):
    # the backward walks time in chunks; 13 steps in chunks of 1, 3 (uneven) and 5 steps
    generator = torch.Generator().manual_seed(5)
    current = torch.randn(13, 2, 4, generator=generator, dtype=torch.float64)
    weights = torch.randn(13, 2, 4, generator=generator, dtype=torch.float64)
    _set_chunk_elements(monkeypatch, chunk_steps * 8)
    for reset in ("zero", "subtract"):
        _compare(current, 0.3, 0.2, 0.8, "fast_sigmoid", 3.0, weights, reset)


@pytest.mark.parametrize("chunk_elements", [8, 24, 1 << 17])
def test_compiled_backward_equals_the_tensor_recursion(monkeypatch, chunk_elements):
    # the compiled recursion (numba) against the tensor one, over chunks of 1 and 3 steps and all
    if fused.compiled_cuba_float_backward_steps() is None:
        pytest.skip("numba is not installed")
    generator = torch.Generator().manual_seed(6)
    current = torch.randn(13, 2, 4, generator=generator, dtype=torch.float64)
    weights = torch.randn(13, 2, 4, generator=generator, dtype=torch.float64)
    _set_chunk_elements(monkeypatch, chunk_elements)
    for reset, name in itertools.product(("zero", "subtract"), SURROGATES):
        grads = []
        for compiled in (True, False):
            if not compiled:
                monkeypatch.setattr(fused, "compiled_cuba_float_backward_steps", lambda *kind: None)
            x = current.clone().requires_grad_(True)
            (cuba_sequence(x, 0.3, 0.2, 0.8, name, 3.0, reset) * weights).sum().backward()
            grads.append(x.grad)
        monkeypatch.undo()
        _set_chunk_elements(monkeypatch, chunk_elements)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", [*SURROGATES, "given"])
def test_the_kernels_surrogate_derivatives_are_the_surrogates_bit_for_bit(name, dtype):
    # one step with nothing carried in and a gradient of 1 at the spikes: the kernel's output is its
    # sigma' (1 * sigma' + 0 * carry + 0 * keep), which must equal the surrogate's tensor function
    kind = fused.KERNEL_SLOPES.get(name, fused.SLOPE_GIVEN)
    kernel = fused.compiled_cuba_float_backward_steps(kind)
    if kernel is None:
        pytest.skip("numba is not installed")
    surrogate = "sigmoid" if name == "given" else name
    generator = torch.Generator().manual_seed(8)
    # voltages around the threshold, exactly on it, and far away (where the sigmoid saturates)
    v = torch.cat(
        [torch.randn(4093, generator=generator, dtype=dtype) * 2, torch.tensor([0.75, 40, -40], dtype=dtype)]
    )
    threshold, scale = 0.75, 3.7
    expected = SURROGATES[surrogate](v - threshold, scale)
    pre = {
        fused.SLOPE_SIGMOID: torch.sigmoid(torch.mul(v - threshold, scale)),
        fused.SLOPE_GIVEN: expected,
    }.get(kind, torch.full_like(v, float("nan")))  # not read
    cast = v.numpy().dtype.type
    out = torch.empty_like(v)
    state = [torch.zeros_like(v).numpy() for _ in range(2)]
    kernel(torch.ones_like(v)[None].numpy(), v[None].numpy(), pre[None].numpy(), cast(0.3), cast(0.2),
           cast(threshold), False, cast(scale), *state, out[None].numpy())  # fmt: skip
    assert (expected > 0).any() and ((expected == 0).any() or name != "triangle")  # both branches
    assert torch.equal(out, expected)


def test_current_constant_over_time_as_a_view():
    # a stride-0 current (a synapse computed once for a constant input): the compiled loop reads
    # its one step at every step; same spikes and gradient as the materialized current
    generator = torch.Generator().manual_seed(7)
    one_step = torch.randn(3, 5, generator=generator, dtype=torch.float64) + 0.4
    weights = torch.randn(9, 3, 5, generator=generator, dtype=torch.float64)
    results = []
    for materialize in (False, True):
        x = one_step.clone().requires_grad_(True)
        current = x.unsqueeze(0).expand(9, 3, 5)
        current = current.contiguous() if materialize else current
        spikes = cuba_sequence(current, 0.3, 0.1, 0.5, "sigmoid", 4.0)
        (spikes * weights).sum().backward()
        results.append((spikes.detach(), x.grad))
    assert results[0][0].sum() > 0
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("constant", [False, True])
def test_a_channels_last_current_is_stepped_in_its_memory_order(constant):
    """A 2-D convolution's output on the CPU is channels-last per step: the fused loop steps it as
    it lies in memory (permuted to [T, B, H, W, C]), with the spikes of the same current in the
    default order, bit for bit, its gradient to rounding, and the gradient comes back channels-last."""
    generator = torch.Generator().manual_seed(2)
    steps, shape = 5, (3, 4, 6, 7)
    one = torch.randn(shape, generator=generator) * 2
    default = (
        one.unsqueeze(0).expand(steps, *shape)
        if constant
        else torch.randn(steps, *shape, generator=generator) * 2
    )
    last = default.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if not constant else None
    if constant:
        last = one.contiguous(memory_format=torch.channels_last).unsqueeze(0).expand(steps, *shape)
    assert fused._memory_order(last) is not None and fused._memory_order(default) is None
    grad = torch.randn(steps, *shape, generator=generator)
    results = []
    for current in (default, last):
        current = current.detach().requires_grad_(True)
        spikes = fused.cuba_sequence(current, 0.3, 0.1, 1.0, "sigmoid", 4.0)
        (grad_current,) = torch.autograd.grad(spikes, current, grad)
        results.append((spikes, grad_current))
    assert 0 < results[0][0].mean() < 1
    assert torch.equal(results[0][0], results[1][0])
    # the same arithmetic per neuron, but a neuron may fall in the compiled loops' vectorized body in
    # one order and in their remainder in the other: float32 rounding apart
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)
    assert results[1][1][0].is_contiguous(memory_format=torch.channels_last) or constant


@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 7)])
def test_a_synapse_delay_keeps_a_convolutions_memory_order(constant, shape):
    # the recipes' default delay of one step must not turn a conv layer's channels-last current
    # (a step, or one step repeated over time; 2-D or 1-D) into the default order, where the loops
    # would step it in another order than its memory's
    generator = torch.Generator().manual_seed(5)
    last = (0, *range(2, len(shape)), 1)  # [B, *spatial, C]
    back = tuple(last.index(axis) for axis in range(len(shape)))
    one = torch.randn(shape, generator=generator).permute(last).contiguous().permute(back)
    if constant:
        current = one.unsqueeze(0).expand(6, *shape)
    else:
        steps = torch.randn(6, *shape, generator=generator)
        current = steps.permute(0, *(a + 1 for a in last)).contiguous().permute(0, *(a + 1 for a in back))
    assert fused._memory_order(current) is not None
    delayed = delay(current, 1)
    assert fused._memory_order(delayed) is not None
    assert torch.equal(delayed[0], torch.zeros_like(current[0]))
    assert torch.equal(delayed[1:], current[:-1])
    assert torch.equal(delay(current.contiguous(), 1), delayed)  # the default order: the same values


@pytest.mark.parametrize("constant", [False, True])
def test_a_channels_last_1d_current_is_stepped_in_its_memory_order(constant):
    # a 1-D convolution computed as a 2-D one in channels-last order: [T, B, C, L] lying as
    # [T, B, L, C]; the same spikes as in the default order and the gradient to rounding, and a
    # constant input's gradient (the sum over time) comes back in that order too
    generator = torch.Generator().manual_seed(3)
    steps, shape = 5, (3, 4, 9)
    one = (torch.randn(shape, generator=generator) * 2).transpose(1, 2).contiguous().transpose(1, 2)
    results = []
    for last in (False, True):
        x = (one if last else one.contiguous()).detach().requires_grad_(True)
        current = (
            _RepeatOverTime.apply(x, steps)
            if constant
            else (x.unsqueeze(0) * torch.arange(1.0, steps + 1).reshape(-1, 1, 1, 1) / 3)
        )
        assert (fused._memory_order(current) is not None) == last
        spikes = fused.cuba_sequence(current, 0.3, 0.1, 1.0, "sigmoid", 4.0)
        weights = torch.arange(spikes.numel(), dtype=spikes.dtype).reshape(spikes.shape) % 7 - 3
        (spikes * weights).sum().backward()
        results.append((spikes.detach(), x.grad))
    assert 0 < results[0][0].mean() < 1
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
    assert results[1][1].transpose(1, 2).is_contiguous()


def test_no_steps_of_a_channels_last_current():
    # a channels-last current with no time steps: no memory order to take, empty spikes
    current = torch.empty(0, 2, 3, 4, 5).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert fused._memory_order(current) is None
    assert cuba_sequence(current, 0.3, 0.1, 1.0, "sigmoid", 4.0).shape == (0, 2, 3, 4, 5)
