"""A CUBA-LIF population over a whole sequence as one autograd node: forward loop, hand-written BPTT.

:class:`~toolchain.snn.neurons.CubaLIF` steps :func:`~toolchain.snn.dynamics.cuba_step` under
autograd, which records about ten graph nodes per time step and replays them one by one backward.
:func:`cuba_sequence` computes the same spikes and the same gradient with one node per population:

- forward: the time loop of the dynamics' own pure functions
  (:func:`~toolchain.snn.dynamics.cuba_subthreshold` then
  :func:`~toolchain.snn.dynamics.spike_and_reset`, what ``cuba_step`` composes; no second copy of
  the equations) without autograd, saving only the pre-reset voltages ``v'[t]`` (one
  ``[T, B, ...]`` tensor; spikes and surrogate derivatives are recomputed from it);
- backward: the exact reverse-time recursion (backpropagation through time) of those equations with
  the surrogate derivative of :data:`~toolchain.snn.surrogate.SURROGATES`, including the gradient
  through the reset, as autograd through the step-by-step module computes it.

The recursion, with ``a = 1 - current_decay``, ``b = 1 - voltage_decay``, ``x = v' - threshold``,
``s = x > 0``, ``σ' = surrogate'(x)``, ``gs[t]`` the gradient arriving at the spikes ``s[t]``, and
``gv'[t]``, ``gu[t]`` the gradients of the loss with respect to ``v'[t]`` and ``u[t]``::

    forward:  u[t] = a u[t-1] + in[t]        v'[t] = b v[t-1] + u[t]
              v[t] = v'[t] (1 - s[t])        (reset "zero")
              v[t] = v'[t] - threshold s[t]  (reset "subtract")

    gv'[t] = b gv'[t+1] r[t] + gs[t] σ'[t]
    gu[t]  = a gu[t+1] + gv'[t]              (= d loss / d in[t]; gv'[T] = gu[T] = 0)

    r[t] = (1 - s[t]) - v'[t] σ'[t]          (reset "zero")
    r[t] = 1 - threshold σ'[t]               (reset "subtract")

``r[t] = dv[t]/dv'[t]``: directly, and through the spike (the ``σ'`` term; detaching the reset, a
common trick, would drop it and change the gradient). Everything that does not depend on the
recursion (``s``, ``σ'``, ``r``, ``gs σ'``) is computed a chunk of steps at a time, so each step of
the backward is two tensor operations.

Decays and threshold are constants (Python numbers, or tensors broadcastable to one step's shape
``[B, ...]`` without gradient), as in :class:`~toolchain.snn.neurons.CubaLIF`; the bias is 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from toolchain.errors import RecipeError
from toolchain.snn.compiled import compile_kernel, inverse_permutation, steps_channels_last_permutation
from toolchain.snn.dynamics import (
    CubaState,
    compiled_cuba_float_steps,
    cuba_subthreshold,
    heaviside,
    spike_and_reset,
)
from toolchain.snn.surrogate import SURROGATES, spike_function

Constant = float | torch.Tensor
RESETS = ("zero", "subtract")
#: most elements per chunk of the backward pass (the sigmoid that the compiled recursion takes, or
#: every factor of the tensor recursion) where torch runs on several threads:
#: torch's intra-op grain (an element-wise operator on more elements runs as a parallel region),
#: so that every operator of the backward runs on the calling thread. A parallel region waits for
#: all its threads; when other processes hold the other cores that wait costs milliseconds per
#: operator (measured with benchmarks/fused_variants.py --threads 2 --busy 2 on the shared 2-core
#: machine, docs/benchmarks.md). Small chunks also keep the temporaries in the cache and let the
#: allocator reuse their memory.
CHUNK_ELEMENTS = 32768
#: the same on one thread, where no operator waits for another thread: larger chunks make fewer
#: operator calls (benchmarks/fused_variants.py --threads 1: chunks of 8 steps of the MLP's hidden
#: layer against 2), their temporaries 512 KiB of float32 each
SERIAL_CHUNK_ELEMENTS = 131072


def _chunk_steps(neurons: int) -> int:
    """Steps per chunk of the backward pass for ``neurons`` elements per step (at least one):
    :data:`SERIAL_CHUNK_ELEMENTS` where torch runs on one thread, else :data:`CHUNK_ELEMENTS`."""
    elements = SERIAL_CHUNK_ELEMENTS if torch.get_num_threads() == 1 else CHUNK_ELEMENTS
    return max(1, elements // max(1, neurons))


def cuba_sequence(
    current: torch.Tensor,
    current_decay: Constant,
    voltage_decay: Constant,
    threshold: Constant,
    surrogate_name: str,
    surrogate_scale: float,
    reset: str = "zero",
) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of a CUBA-LIF population driven by ``current`` ``[T, B, ...]``.

    The same values as :class:`~toolchain.snn.neurons.CubaLIF` with
    ``spike_function(surrogate_name, surrogate_scale)`` and ``reset`` (state zero at ``t = 0``,
    no bias, no delay), and the same gradient with respect to ``current``; no gradient flows to
    the decays or the threshold. When no gradient is needed (``torch.no_grad()``, or ``current``
    does not require grad) it runs the forward loop only and saves nothing.
    """
    spike = spike_function(surrogate_name, surrogate_scale)  # validates both, naming the recipe keys
    if reset not in RESETS:
        raise RecipeError(f"[neuron].reset: expected one of: {', '.join(RESETS)}; got {reset!r}")
    for name, value in (
        ("current_decay", current_decay),
        ("voltage_decay", voltage_decay),
        ("threshold", threshold),
    ):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise ValueError(f"cuba_sequence: {name} is a constant here; it must not require grad")
    if current.dim() < 2:
        raise ValueError(f"cuba_sequence: expected current [T, B, ...], got shape {tuple(current.shape)}")
    order = _memory_order(current)
    if order is not None:  # stepped in its memory order: the neurons are independent
        spikes = cuba_sequence(
            current.permute(order),
            current_decay, voltage_decay, threshold, surrogate_name, surrogate_scale, reset,
        )  # fmt: skip
        return spikes.permute(inverse_permutation(order))
    if not (torch.is_grad_enabled() and current.requires_grad):
        spikes, _ = _forward_loop(current, current_decay, voltage_decay, threshold, reset, keep_voltage=False)
        return spikes
    return _CubaSequence.apply(
        current, current_decay, voltage_decay, threshold, spike.name, spike.scale, reset
    )


def _memory_order(current: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation of ``current`` ``[T, B, C, *spatial]`` (one or two spatial axes) to
    ``[T, B, *spatial, C]`` where each step lies in that order in memory (a convolution's output on
    the CPU, :func:`~toolchain.snn.compiled.steps_channels_last_permutation`), as one tensor or one
    step repeated (stride 0 over time), so that the permuted tensor is what the compiled loops
    take; ``None`` otherwise and under tracing."""
    order = None if torch.jit.is_tracing() else steps_channels_last_permutation(current)
    if order is None:
        return None
    repeated = current.shape[0] > 1 and current.stride(0) == 0
    return order if repeated or current.permute(order).is_contiguous() else None


def _forward_loop(
    current: torch.Tensor,
    current_decay: Constant,
    voltage_decay: Constant,
    threshold: Constant,
    reset: str,
    keep_voltage: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step the dynamics over time; returns spikes and, if ``keep_voltage``, pre-reset voltages.

    Each step is :func:`~toolchain.snn.dynamics.cuba_subthreshold` then
    :func:`~toolchain.snn.dynamics.spike_and_reset`, exactly what
    :func:`~toolchain.snn.dynamics.cuba_step` composes, so spikes and states are bit for bit those
    of the step-by-step module.
    """
    spikes = torch.empty_like(current)
    voltages = torch.empty_like(current) if keep_voltage else None
    if current.shape[0] == 0:
        return spikes, voltages
    if _compiled_forward(current, spikes, voltages, current_decay, voltage_decay, threshold, reset):
        return spikes, voltages
    state = CubaState.zeros_like(current[0])
    for t, x_t in enumerate(current):
        pre_reset = cuba_subthreshold(state, x_t, current_decay, voltage_decay)
        s_t, state = spike_and_reset(pre_reset, threshold, heaviside, reset)
        # copied while still in cache: cheaper than one torch.stack at the end
        spikes[t].copy_(s_t)
        if voltages is not None:
            voltages[t].copy_(pre_reset.v)
    return spikes, voltages


def _compiled_forward(
    current: torch.Tensor,
    spikes: torch.Tensor,
    voltages: torch.Tensor | None,
    current_decay: Constant,
    voltage_decay: Constant,
    threshold: Constant,
    reset: str,
) -> bool:
    """The forward loop by :func:`~toolchain.snn.dynamics.cuba_float_steps` compiled by numba, one
    pass over the neurons per step instead of a tensor operation per term (the same values, bit for
    bit); ``False`` where it does not apply (numba absent, a tensor off the CPU, not float32/64,
    per-neuron constants), and the caller steps the tensor functions."""
    kernel = compiled_cuba_float_steps()
    kernel_constants = _kernel_constants(current, current_decay, voltage_decay, threshold)
    steps = current.shape[0]
    # a current the same at every step as a view (stride 0 over time): its one step, read each step
    rows = current[:1] if steps > 1 and current.stride(0) == 0 else current
    if (
        kernel is None
        or kernel_constants is None
        or torch.jit.is_tracing()
        or not rows[0].is_contiguous()
        or not (rows.shape[0] == 1 or rows.is_contiguous())
    ):
        return False
    kernel(
        rows.detach().reshape(rows.shape[0], -1).numpy(),
        *kernel_constants,
        reset == "subtract",
        spikes.view(steps, -1).numpy(),
        (spikes if voltages is None else voltages).view(steps, -1).numpy(),  # not written without keep
        voltages is not None,
    )
    return True


class _CubaSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        current: torch.Tensor,
        current_decay: Constant,
        voltage_decay: Constant,
        threshold: Constant,
        surrogate_name: str,
        scale: float,
        reset: str,
    ) -> torch.Tensor:
        spikes, v_pre = _forward_loop(
            current, current_decay, voltage_decay, threshold, reset, keep_voltage=True
        )
        ctx.save_for_backward(v_pre)
        ctx.constants = (current_decay, voltage_decay, threshold, surrogate_name, scale, reset)
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (v_pre,) = ctx.saved_tensors
        grad_current = _backward_through_time(grad_spikes, v_pre, *ctx.constants)
        return grad_current, None, None, None, None, None, None


def _backward_through_time(
    grad_spikes: torch.Tensor,
    v_pre: torch.Tensor,
    current_decay: Constant,
    voltage_decay: Constant,
    threshold: Constant,
    surrogate_name: str,
    scale: float,
    reset: str,
) -> torch.Tensor:
    """The reverse-time recursion of the module docstring; returns ``d loss / d current``.

    On the CPU with scalar constants the recursion is a kernel of :func:`backward_steps_kernel`
    compiled by numba, which computes ``σ'`` too (:func:`_compiled_backward`). Otherwise time is
    walked backward in chunks of at most :func:`_chunk_steps` steps: the factors of a chunk
    (``σ'``, ``r``, ``gs σ'``) are computed at once, then its steps are two tensor operations each.
    """
    grad = _compiled_backward(
        grad_spikes, v_pre, current_decay, voltage_decay, threshold, surrogate_name, scale, reset
    )
    if grad is not None:
        return grad
    steps = v_pre.shape[0]
    grad_current = torch.empty_like(v_pre)
    chunk = _chunk_steps(v_pre.numel() // max(1, steps))
    derivative = SURROGATES[surrogate_name]
    keep_voltage = 1.0 - voltage_decay
    keep_current = 1.0 - current_decay
    grad_v: torch.Tensor | None = None  # gv'[t + 1]
    grad_u: torch.Tensor | None = None  # gu[t + 1]
    for end in range(steps, 0, -chunk):
        start = max(0, end - chunk)
        v = v_pre[start:end]
        x = v - threshold
        slope = derivative(x, scale)
        carry = _carry(x, v, slope, threshold, keep_voltage, reset)
        injected = grad_spikes[start:end] * slope
        for t in range(end - start - 1, -1, -1):
            out = grad_current[start + t]
            if grad_v is None or grad_u is None:
                grad_v = injected[t]
                grad_u = out.copy_(grad_v)
                continue
            grad_v = torch.addcmul(injected[t], grad_v, carry[t])
            if isinstance(keep_current, torch.Tensor):
                grad_u = torch.addcmul(grad_v, grad_u, keep_current, out=out)
            else:
                grad_u = torch.add(grad_v, grad_u, alpha=keep_current, out=out)
    return grad_current


def _carry(
    x: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    threshold: Constant,
    keep_voltage: Constant,
    reset: str,
) -> torch.Tensor:
    """``b r[t]`` for a chunk: ``b ((1 - s) - v' σ')`` (reset zero) or ``b (1 - threshold σ')``.

    ``1 - s`` is computed as ``x <= 0`` straight into a float tensor (``torch.le`` with ``out``:
    no bool tensor, cast or subtraction as in ``1 - heaviside(x)``); the two differ only where
    ``x`` is NaN, where ``v' σ'`` is NaN too.
    """
    if reset == "zero":
        not_spiking = torch.le(x, 0, out=torch.empty_like(x))
        if isinstance(keep_voltage, torch.Tensor):
            return (not_spiking - v * slope) * keep_voltage
        return torch.addcmul(not_spiking.mul_(keep_voltage), v, slope, value=-keep_voltage)
    if isinstance(keep_voltage, torch.Tensor) or isinstance(threshold, torch.Tensor):
        return (1.0 - threshold * slope) * keep_voltage
    return torch.mul(slope, -keep_voltage * threshold).add_(keep_voltage)


#: how :func:`backward_steps_kernel` gets the surrogate derivative ``σ'`` of ``x = v' - threshold``
#: (:mod:`toolchain.snn.surrogate` defines each; the kernel's arithmetic is that of the surrogate's
#: tensor function, operation for operation, so the values are the same bit for bit):
#: ``pre`` holds ``σ'`` itself, computed by the surrogate's tensor function (any surrogate)
SLOPE_GIVEN = 0
#: ``pre`` holds ``sig(scale x)`` (torch's sigmoid: its vectorized ``exp`` is several times faster
#: than a compiled loop's), the kernel computes ``scale (1 - sig) sig`` (``sigmoid_backward``'s order)
SLOPE_SIGMOID = 1
#: the kernel computes ``1 / (scale |x| + 1)^2`` from ``v'`` (``pre`` unused)
SLOPE_FAST_SIGMOID = 2
#: the kernel computes ``scale max(0, 1 - scale |x|)`` from ``v'`` (``pre`` unused)
SLOPE_TRIANGLE = 3
#: the surrogates whose derivative the kernel computes (itself, or from a sigmoid): the rest are given
KERNEL_SLOPES = {"sigmoid": SLOPE_SIGMOID, "fast_sigmoid": SLOPE_FAST_SIGMOID, "triangle": SLOPE_TRIANGLE}


def backward_steps_kernel(slope_kind: int) -> Callable[..., None]:
    """The kernel of the reverse-time recursion of the module docstring for surrogate derivatives of
    kind ``slope_kind`` (:data:`SLOPE_GIVEN` and the others), a constant of the returned function,
    so that its compiled loop has no branch on it (with one, numba's loop no longer vectorizes)."""

    def cuba_float_backward_steps(
        grad_spikes: np.ndarray,
        v_pre: np.ndarray,
        pre: np.ndarray,
        keep_u: float,
        keep_v: float,
        threshold: float,
        subtract: bool,
        scale: float,
        grad_v: np.ndarray,
        grad_u: np.ndarray,
        grad_current: np.ndarray,
    ) -> None:
        """The recursion for ``N`` neurons over ``T`` consecutive steps, one neuron at a time:
        writes ``gu`` (the gradient at the input current) to ``grad_current`` from ``grad_spikes``
        (``gs``, the gradient at the spikes) and ``v_pre`` (the pre-reset voltages), all
        ``[T, N]``, with the surrogate derivative ``σ'`` of ``v_pre - threshold`` taken from
        ``pre`` ``[T, N]`` or computed here with ``scale`` (by ``slope_kind``); constants in
        their dtype (``keep_u = 1 - current_decay``, ``keep_v = 1 - voltage_decay``). ``grad_v``
        and ``grad_u`` ``[N]`` carry ``gv'`` and ``gu`` of the step after the last (zeros after the
        sequence's end) in, and those of the first step out, so that a sequence can be walked in
        chunks of steps, latest first."""
        steps, neurons = grad_spikes.shape
        zero = np.zeros(1, dtype=grad_spikes.dtype)[0]
        one = np.ones(1, dtype=grad_spikes.dtype)[0]
        for t in range(steps - 1, -1, -1):
            g_t = grad_spikes[t]
            out_t = grad_current[t]
            v_t = v_pre[t]
            pre_t = pre[t]
            for n in range(neurons):
                v = v_t[n]
                x = v - threshold
                if slope_kind == SLOPE_SIGMOID:
                    sig = pre_t[n]
                    sigma = scale * (one - sig) * sig
                elif slope_kind == SLOPE_FAST_SIGMOID:
                    denominator = scale * abs(x) + one
                    sigma = one / (denominator * denominator)
                elif slope_kind == SLOPE_TRIANGLE:
                    sigma = scale * max(one - scale * abs(x), zero)
                else:
                    sigma = pre_t[n]
                if subtract:
                    carry = keep_v * (one - threshold * sigma)
                else:
                    not_spiking = one if x <= zero else zero
                    carry = keep_v * (not_spiking - v * sigma)
                gv = g_t[n] * sigma + grad_v[n] * carry
                gu = gv + grad_u[n] * keep_u
                grad_v[n] = gv
                grad_u[n] = gu
                out_t[n] = gu

    return cuba_float_backward_steps


@functools.cache
def compiled_cuba_float_backward_steps(slope_kind: int = SLOPE_GIVEN) -> Callable[..., None] | None:
    """:func:`backward_steps_kernel` of ``slope_kind`` compiled by numba (disk-cached) for float32
    and float64, or ``None`` where numba is not installed (the tensor recursion then runs)."""
    return compile_kernel(
        backward_steps_kernel(slope_kind),
        [
            (np.zeros((1, 1), dtype), np.zeros((1, 1), dtype), np.zeros((1, 1), dtype), dtype(0.5),
             dtype(0.5), dtype(0.5), False, dtype(1), np.zeros(1, dtype), np.zeros(1, dtype),
             np.zeros((1, 1), dtype))
            for dtype in (np.float32, np.float64)
        ],
        ieee_division=True,  # fast_sigmoid's division, as torch's
    )  # fmt: skip


def _compiled_backward(
    grad_spikes: torch.Tensor,
    v_pre: torch.Tensor,
    current_decay: Constant,
    voltage_decay: Constant,
    threshold: Constant,
    surrogate_name: str,
    scale: float,
    reset: str,
) -> torch.Tensor | None:
    """``d loss / d current`` by :func:`backward_steps_kernel` compiled by numba, or ``None``
    where it does not apply (the conditions of :func:`_compiled_forward`). Time is walked in chunks
    of :func:`_chunk_steps` steps, latest first; for each, torch computes what the kernel takes of
    the surrogate derivative (nothing, the sigmoid, or the derivative itself:
    :data:`KERNEL_SLOPES`) into one buffer, then the kernel walks its steps."""
    slope_kind = KERNEL_SLOPES.get(surrogate_name, SLOPE_GIVEN)
    kernel = compiled_cuba_float_backward_steps(slope_kind)
    kernel_constants = _kernel_constants(v_pre, current_decay, voltage_decay, threshold)
    if kernel is None or kernel_constants is None or not v_pre.is_contiguous():
        return None
    grad = torch.empty_like(v_pre)
    steps = v_pre.shape[0]
    flat_grad, flat_v = grad.view(steps, -1), v_pre.view(steps, -1)
    flat_spikes = grad_spikes.to(v_pre.dtype).contiguous().view(steps, -1)
    neurons = flat_v.shape[1]
    grad_v = np.zeros(neurons, dtype=flat_v.numpy().dtype)
    grad_u = np.zeros_like(grad_v)
    chunk = _chunk_steps(neurons)
    sigmoids = (
        torch.empty((min(chunk, steps), neurons), dtype=v_pre.dtype) if slope_kind == SLOPE_SIGMOID else None
    )
    kernel_scale = kernel_constants[0].dtype.type(scale)
    for end in range(steps, 0, -chunk):
        start = max(0, end - chunk)
        v = flat_v[start:end]
        pre = v  # not read
        if sigmoids is not None:  # sig(scale x), the surrogate function's operations
            pre = torch.sub(v, threshold, out=sigmoids[: end - start]).mul_(scale).sigmoid_()
        elif slope_kind == SLOPE_GIVEN:
            pre = SURROGATES[surrogate_name](v - threshold, scale)
        kernel(
            flat_spikes[start:end].numpy(),
            v.numpy(),
            pre.numpy(),
            *kernel_constants,
            reset == "subtract",
            kernel_scale,
            grad_v,
            grad_u,
            flat_grad[start:end].numpy(),
        )
    return grad


def _kernel_constants(
    like: torch.Tensor, current_decay: Constant, voltage_decay: Constant, threshold: Constant
) -> tuple[np.floating, np.floating, np.floating] | None:
    """``(1 - current_decay, 1 - voltage_decay, threshold)`` as the compiled loops take them, in
    ``like``'s dtype as torch applies them (``1 - decay`` in the constant's own precision, then the
    tensor's dtype); ``None`` where the loops do not apply: ``like`` off the CPU or not
    float32/64, or a constant per neuron."""
    constants = (current_decay, voltage_decay, threshold)
    if (
        like.device.type != "cpu"
        or like.dtype not in (torch.float32, torch.float64)
        or any(isinstance(value, torch.Tensor) and value.numel() != 1 for value in constants)
    ):
        return None
    cast = np.float32 if like.dtype == torch.float32 else np.float64
    return cast(float(1.0 - current_decay)), cast(float(1.0 - voltage_decay)), cast(float(threshold))
