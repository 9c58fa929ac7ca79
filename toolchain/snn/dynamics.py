"""Neuron dynamics: the ONE place where the CUBA-LIF equations and Loihi's fixed-point rules live.

Everything that steps a neuron (training's float and fixed-point modes, the reference simulator,
export checks, activity counts for energy) calls these pure functions on tensors. They hold no
state: state goes in and comes out, so the same function serves a torch module, a batched
simulator and a unit test.

Float CUBA-LIF, one time step (Lava's ``floating_pt`` LIF and lava-dl's CUBA neuron)::

    u[t] = u[t-1] * (1 - du) + x[t]              # synaptic current
    v[t] = v[t-1] * (1 - dv) + u[t] + bias       # membrane voltage
    s[t] = v[t] > threshold                      # spike
    v[t] = 0 where s[t]                          # hard reset to zero

Loihi fixed point (``lava.proc.lif.models.AbstractPyLifModelFixed``, lava-nc 0.10.0), with integer
decays ``du_lava, dv`` in 0..4095 (12 bits), the current offset ``ds_offset = 1`` that Lava adds to
``du_lava`` (netx writes ``du_lava = iDecay - 1``, so the effective decay is ``iDecay``), and
24-bit state::

    u = trunc(u * (4096 - (du_lava + 1)) / 4096) + (a_in << 6)   # then wrapped into 24 bits
    v = trunc(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp)   # then clipped to 24 bits
    s = v > (vth_mant << 6);  v = 0 where s

``trunc`` rounds toward zero: Lava computes ``sign(p) * (|p| >> 12)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from toolchain.loihi_numbers import (  # the fixed-point format the equations compute in
    ACTIVATION_SHIFT,
    CURRENT_DECAY_OFFSET,
    DECAY_SHIFT,
    DECAY_UNITY,
    STATE_BITS,
    STATE_LIMIT,
    STATE_SCALE,
    THRESHOLD_SHIFT,
)
from toolchain.snn.compiled import compile_kernel

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CubaState:
    """State of a population of CUBA neurons: synaptic current ``u`` and voltage ``v``, same shape."""

    u: torch.Tensor
    v: torch.Tensor

    @staticmethod
    def zeros_like(x: torch.Tensor) -> CubaState:
        return CubaState(torch.zeros_like(x), torch.zeros_like(x))


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """The spike function without a surrogate: 1 where ``x > 0`` (strict, as Lava's ``v > vth``).

    Written straight into a tensor of ``x``'s dtype, without a boolean tensor and a cast (several
    times faster per step on the CPU; same values, NaN gives 0). Under tracing (``torch.jit.trace``,
    which ``torch.onnx.export`` uses) it is the comparison and a cast (ONNX ``Greater`` + ``Cast``:
    the same values), as the ONNX exporter cannot translate an ``out=`` argument.
    """
    if torch.jit.is_tracing():
        return torch.gt(x, 0).to(x.dtype)
    return torch.gt(x, 0, out=torch.empty_like(x))


def cuba_subthreshold(
    state: CubaState,
    x: torch.Tensor,
    current_decay: float | torch.Tensor,
    voltage_decay: float | torch.Tensor,
    bias: float | torch.Tensor = 0.0,
) -> CubaState:
    """The float leaky integration of one step, before any spike: ``u``, ``v`` pre-reset."""
    u = state.u * (1.0 - current_decay) + x
    v = state.v * (1.0 - voltage_decay) + u + bias
    return CubaState(u, v)


def spike_and_reset(
    state: CubaState,
    threshold: float | torch.Tensor,
    spike_fn: SpikeFn = heaviside,
    reset: str = "zero",
) -> tuple[torch.Tensor, CubaState]:
    """Spike where ``v > threshold`` (through ``spike_fn``), then reset the voltages that spiked.

    ``reset="zero"`` (Loihi): ``v * (1 - s)``, which equals Lava's ``v[s] = 0`` for binary spikes
    and lets gradients through. ``reset="subtract"`` (the "soft" reset of snnTorch/SpikingJelly):
    ``v - threshold * s``; Loihi's CUBA neuron has no such reset.
    """
    spikes = spike_fn(state.v - threshold)
    if reset == "subtract":
        return spikes, CubaState(state.u, state.v - threshold * spikes)
    return spikes, CubaState(state.u, state.v * (1.0 - spikes))


def cuba_step(
    state: CubaState,
    x: torch.Tensor,
    current_decay: float | torch.Tensor,
    voltage_decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    bias: float | torch.Tensor = 0.0,
    spike_fn: SpikeFn = heaviside,
    reset: str = "zero",
) -> tuple[torch.Tensor, CubaState]:
    """One float step of CUBA-LIF; returns ``(spikes, new_state)``.

    ``current_decay``/``voltage_decay`` are the fractions lost per step (0 keeps everything, 1 keeps
    nothing); ``spike_fn`` maps ``v - threshold`` to spikes (a surrogate in training); ``reset`` as
    in :func:`spike_and_reset`.
    """
    pre_reset = cuba_subthreshold(state, x, current_decay, voltage_decay, bias)
    return spike_and_reset(pre_reset, threshold, spike_fn, reset)


def loihi_decay(value: torch.Tensor, decay: int | torch.Tensor) -> torch.Tensor:
    """``value * (4096 - decay) / 4096`` rounded toward zero, on integer tensors (Lava's decay)."""
    product = value.to(torch.int64) * (DECAY_UNITY - torch.as_tensor(decay, dtype=torch.int64))
    return torch.div(product, DECAY_UNITY, rounding_mode="trunc")


def wrap_current(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of the current: ``u - 2^24`` above ``2^23``, ``u + 2^24`` at or below ``-2^23``."""
    u = torch.where(u > STATE_LIMIT, u - 2 * STATE_LIMIT, u)
    return torch.where(u <= -STATE_LIMIT, u + 2 * STATE_LIMIT, u)


def clip_voltage(v: torch.Tensor) -> torch.Tensor:
    """Lava's saturation of the voltage to ``[-(2^23 - 1), 2^23 - 1]``."""
    return v.clamp(-STATE_LIMIT + 1, STATE_LIMIT - 1)


def effective_bias(bias_mant: int | torch.Tensor, bias_exp: int | torch.Tensor) -> torch.Tensor:
    """``bias_mant << bias_exp``, or ``>> -bias_exp`` for a negative exponent (Lava's ``scale_bias``)."""
    mant = torch.as_tensor(bias_mant, dtype=torch.int64)
    exp = torch.as_tensor(bias_exp, dtype=torch.int64)
    return torch.where(exp >= 0, mant << exp.clamp(min=0), mant >> (-exp).clamp(min=0))


def cuba_subthreshold_fixed(
    state: CubaState,
    a_in: torch.Tensor,
    du_lava: int | torch.Tensor,
    dv: int | torch.Tensor,
    bias_mant: int | torch.Tensor = 0,
    bias_exp: int | torch.Tensor = 0,
) -> CubaState:
    """Lava's bit-accurate leaky integration of one step on ``int64`` tensors, before any spike.

    ``a_in`` is the integer synaptic input (the weighted sum of the previous layer's spikes with
    integer weights); ``du_lava`` is the register value Lava holds (``iDecay - 1``), ``dv`` the
    voltage decay.
    """
    u = loihi_decay(state.u, torch.as_tensor(du_lava) + CURRENT_DECAY_OFFSET)
    u = wrap_current(u + (a_in.to(torch.int64) << ACTIVATION_SHIFT))
    v = clip_voltage(loihi_decay(state.v, dv) + u + effective_bias(bias_mant, bias_exp))
    return CubaState(u, v)


def spike_and_reset_fixed(state: CubaState, vth_mant: int | torch.Tensor) -> tuple[torch.Tensor, CubaState]:
    """Spike iff ``v > vth_mant << 6`` (strict), reset those voltages to 0; spikes as ``int64`` 0/1."""
    spikes = state.v > (torch.as_tensor(vth_mant, dtype=torch.int64) << THRESHOLD_SHIFT)
    return spikes.to(torch.int64), CubaState(state.u, torch.where(spikes, torch.zeros_like(state.v), state.v))


def cuba_step_fixed(
    state: CubaState,
    a_in: torch.Tensor,
    du_lava: int | torch.Tensor,
    dv: int | torch.Tensor,
    vth_mant: int | torch.Tensor,
    bias_mant: int | torch.Tensor = 0,
    bias_exp: int | torch.Tensor = 0,
) -> tuple[torch.Tensor, CubaState]:
    """One bit-accurate step of Lava's fixed-point LIF on ``int64`` tensors; returns ``(spikes, state)``."""
    pre_reset = cuba_subthreshold_fixed(state, a_in, du_lava, dv, bias_mant, bias_exp)
    return spike_and_reset_fixed(pre_reset, vth_mant)


# ----------------------------------------------------------------------------------------------
# the same fixed-point step, formulated for speed (float64, in place)
#
# float64 holds every integer below 2^53 exactly, so Lava's integer step can run on float64
# tensors that hold integers, with in-place operations that torch vectorizes (its float ``trunc``
# is not: it is done with ``floor``):
# - the decay: ``x = u * ((4096 - d) / 4096)`` rounds nothing (``u * (4096 - d)`` is below 2^36
#   for 24-bit state, and the factor is a 12-bit fraction), so ``x`` is a multiple of 1/4096;
#   ``trunc(x) = floor(x + c/2 - (c/2) * sign(x))`` with ``c = 4095/4096``: ``floor(x)`` for
#   ``x >= 0``, ``floor(x + 4095/4096) = ceil(x)`` for ``x < 0`` (every intermediate is exact);
# - the wrap of :func:`wrap_current`: ``u - 2^24 * floor((u + 2^23 - 1) / 2^24)``, equal to it
#   while ``u`` before the wrap lies in ``(-2^23 - 2^24, 2^23 + 2^24]``: always when ``u`` comes
#   from a previous step and ``|a_in << 6| < 2^24`` (:data:`FAST_INPUT_LIMIT`);
# - the reset: ``v - v * s`` (``v * (1 - s)`` for 0/1 spikes ``s``).
# The simulator checks the input bound and otherwise calls :func:`cuba_subthreshold_fixed` and
# :func:`spike_and_reset_fixed`.

#: :func:`cuba_step_fixed_` is exact while every ``|a_in|`` is below this (``|a_in << 6| < 2^24``)
FAST_INPUT_LIMIT = 2 ** (STATE_BITS - ACTIVATION_SHIFT)


def fast_input(a_in: torch.Tensor) -> torch.Tensor:
    """The synaptic input ``a_in << 6`` as the float64 tensor :func:`cuba_step_fixed_` adds
    (``a_in``: integers, in an integer or a floating dtype)."""
    return a_in.to(torch.float64).mul_(2**ACTIVATION_SHIFT)


def fast_bias(bias_mant: int | torch.Tensor, bias_exp: int | torch.Tensor) -> torch.Tensor:
    """:func:`effective_bias` as a float64 tensor (exact: it is below 2^20)."""
    return effective_bias(bias_mant, bias_exp).to(torch.float64)


def cuba_step_fixed_(
    u: torch.Tensor,
    v: torch.Tensor,
    a_in_shifted: torch.Tensor,
    du_lava: int,
    dv: int,
    vth_mant: int,
    bias: torch.Tensor | None = None,
    *,
    spikes_out: torch.Tensor,
    scratch: torch.Tensor,
    wrap: bool = True,
) -> None:
    """:func:`cuba_step_fixed` in place on float64 tensors holding integers: the same values.

    ``u``, ``v``: float64 state (start from zeros; every value a previous call left), overwritten
    with the post-reset state; ``a_in_shifted``: :func:`fast_input` of ``a_in`` (``|a_in|`` below
    :data:`FAST_INPUT_LIMIT`); ``bias``: :func:`fast_bias` or ``None``. The spikes (0/1) go to
    ``spikes_out``, a float64 tensor like ``u`` (a view of a larger one: no copy); ``scratch``, a
    float64 tensor like ``u``, is overwritten. ``wrap=False`` skips the wrap of ``u``: exact only where
    :func:`current_may_wrap` is false. No value of ``u`` or ``v`` is ever ``-0.0`` (every zero is
    ``+0.0``), so a value is zero iff its bits are.
    """
    _trunc_decay_(u, (DECAY_UNITY - du_lava - CURRENT_DECAY_OFFSET) / DECAY_UNITY, scratch).add_(a_in_shifted)
    if wrap:
        torch.add(u, STATE_LIMIT - 1, out=scratch).mul_(1.0 / (2 * STATE_LIMIT)).floor_()
        u.sub_(scratch, alpha=2 * STATE_LIMIT)
    _trunc_decay_(v, (DECAY_UNITY - dv) / DECAY_UNITY, scratch).add_(u)
    if bias is not None:
        v.add_(bias)
    v.clamp_(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    torch.gt(v, float(vth_mant << THRESHOLD_SHIFT), out=spikes_out)
    v.addcmul_(v, spikes_out, value=-1.0)


#: ``c / 2`` of the truncation above: ``4095 / 8192``
_TRUNC_OFFSET = (DECAY_UNITY - 1) / (2 * DECAY_UNITY)


def _trunc_decay_(value: torch.Tensor, keep: float, scratch: torch.Tensor) -> torch.Tensor:
    """``value = trunc(value * keep)`` in place (float64 integers, ``keep`` a 12-bit fraction);
    nothing to compute for ``keep`` 1 (a voltage decay of 0) or 0 (an ``i_decay`` of 4096)."""
    if keep == 1.0:
        return value
    if keep == 0.0:
        return value.zero_()
    value.mul_(keep)
    torch.sign(value, out=scratch)
    return value.add_(scratch, alpha=-_TRUNC_OFFSET).add_(_TRUNC_OFFSET).floor_()


def cuba_step_quantized(
    state: CubaState,
    x: torch.Tensor,
    du_lava: int,
    dv: int,
    vth_mant: int,
    spike_fn: SpikeFn = heaviside,
    input_scale: int = 2**6,
) -> tuple[torch.Tensor, CubaState]:
    """One quantization-aware step: Lava's fixed-point values, the float model's gradients.

    ``state`` holds float tensors whose values are Lava's integer state divided by
    :data:`STATE_SCALE` (exact in float32 below 2^24); ``x`` is the synaptic input in float units,
    which must lie on the ``1 / input_scale`` grid (weights on Loihi's grid times binary spikes do).
    The values of the returned spikes and state are exactly those of :func:`cuba_step_fixed`; the
    gradients are those of the float step with the same effective decays
    (``(du_lava + 1) / 4096``, ``dv / 4096``) and threshold ``vth_mant / 64``: a straight-through
    estimator around the integer rounding.
    """
    pre_reset = cuba_subthreshold_quantized(state, x, du_lava, dv, input_scale)
    return spike_and_reset(pre_reset, vth_mant / 2**THRESHOLD_SHIFT, spike_fn)


def cuba_subthreshold_quantized(
    state: CubaState, x: torch.Tensor, du_lava: int, dv: int, input_scale: int = 2**6
) -> CubaState:
    """The integration of :func:`cuba_step_quantized` alone (no spike, no reset): Lava's values of
    :func:`cuba_subthreshold_fixed` divided by :data:`STATE_SCALE`, the float step's gradients. A
    population that never fires (a potential readout) is this step alone."""
    current_decay = (du_lava + CURRENT_DECAY_OFFSET) / DECAY_UNITY
    smooth = cuba_subthreshold(state, x, current_decay, dv / DECAY_UNITY)
    with torch.no_grad():
        a_in = torch.round(x * input_scale).to(torch.int64)
        exact = cuba_subthreshold_fixed(CubaState(_to_int(state.u), _to_int(state.v)), a_in, du_lava, dv)
    return CubaState(_straight_through(smooth.u, exact.u), _straight_through(smooth.v, exact.v))


def _to_int(value: torch.Tensor) -> torch.Tensor:
    return torch.round(value * STATE_SCALE).to(torch.int64)


def _straight_through(smooth: torch.Tensor, exact_int: torch.Tensor) -> torch.Tensor:
    """The value of ``exact_int / STATE_SCALE`` with the gradient of ``smooth``."""
    return smooth + (exact_int.to(smooth.dtype) / STATE_SCALE - smooth).detach()


# ----------------------------------------------------------------------------------------------
# the same fixed-point step for a whole time window, one neuron at a time (compiled by numba)
#
# :func:`cuba_subthreshold_fixed` then :func:`spike_and_reset_fixed`, written as scalar integer
# arithmetic on one neuron, looped over the neurons and the time steps of a population. As plain
# Python it is the readable (slow) statement; :func:`compiled_cuba_fixed_steps` compiles this same
# function with numba, where the reference simulator runs it: one pass over the state per step
# instead of a tensor operation per term of the equations. Exact for any integer input (the
# arithmetic is ``int64``, as the functions above).


#: neurons stepped together through the whole window by :func:`cuba_fixed_steps`: their state
#: (five ``int64`` arrays of this length) stays in the core's first-level cache for all the steps
NEURON_BLOCK = 512


def cuba_fixed_steps(
    a_in: np.ndarray,
    constant: bool,
    delay: int,
    du_lava: int,
    dv: int,
    vth_mant: int,
    bias: np.ndarray,
    spikes: np.ndarray,
    counts: np.ndarray,
    voltages: np.ndarray,
    record_v: bool,
    start: int,
    stop: int,
) -> int:
    """Step neurons ``start`` to ``stop - 1`` of ``N`` through ``T`` steps of Lava's fixed-point
    CUBA-LIF, from zero state.

    ``a_in``: the integer synaptic input (any real or integer dtype holding integers, float32
    ones below ``2^24``, as every float32 integer is exact only there), ``[T, N]``, or ``[1, N]``
    the same at every step when ``constant``; it arrives ``delay`` steps late (zero before).
    ``bias``: :func:`effective_bias` of the ``M`` neurons of one sample, ``int64`` ``[M]`` (neuron
    ``n`` takes ``bias[n % M]``). Writes ``spikes`` ``[T, N]`` (0/1), adds each neuron's spikes to
    ``counts`` ``[N]`` and, with ``record_v``, the voltage after each step to ``voltages``
    ``[T, N]``; all of these only for the neurons of the range, so that threads may step disjoint
    ranges of the same arrays. Returns the active updates of the range: the neuron-steps whose
    input or state before the update is non-zero.
    """
    steps = spikes.shape[0]
    width = bias.shape[0]
    keep_u = DECAY_UNITY - (du_lava + CURRENT_DECAY_OFFSET)
    keep_v = DECAY_UNITY - dv
    threshold = vth_mant << THRESHOLD_SHIFT
    round_up = DECAY_UNITY - 1
    # a 4-byte input (float32 integers below 2^24) converts through int32, which the compiler
    # vectorizes (a float to int64 conversion it does one value at a time without AVX-512)
    narrow = a_in.itemsize == 4
    # the state of one block of neurons (and each one's bias, spike count and active updates)
    u = np.zeros(NEURON_BLOCK, dtype=np.int64)
    v = np.zeros(NEURON_BLOCK, dtype=np.int64)
    bias_b = np.zeros(NEURON_BLOCK, dtype=np.int64)
    spiked_b = np.zeros(NEURON_BLOCK, dtype=np.int64)
    active_b = np.zeros(NEURON_BLOCK, dtype=np.int64)
    # a block of neurons through every step, then the next block: the neurons are independent, and
    # the loop body is branch-free (comparisons as selects and products), so the compiler
    # vectorizes it over the block
    for first in range(start, stop, NEURON_BLOCK):
        size = min(NEURON_BLOCK, stop - first)
        for m in range(size):
            u[m] = 0
            v[m] = 0
            spiked_b[m] = 0
            bias_b[m] = bias[(first + m) % width]
        for t in range(steps):
            source = t - delay
            arrived = np.int64(source >= 0)  # no input before the synapse delay has passed
            row = 0 if constant or source < 0 else source
            x_in = a_in[row, first : first + size]
            spikes_s = spikes[t, first : first + size]
            for m in range(size):
                x = (np.int64(np.int32(x_in[m])) if narrow else np.int64(x_in[m])) * arrived
                u_n = u[m]
                v_n = v[m]
                active_b[m] += np.int64((u_n | v_n | x) != 0)
                # loihi_decay: product / 2**DECAY_SHIFT rounded toward zero (a negative product is
                # raised by DECAY_UNITY - 1 before the arithmetic shift, which floors)
                product = u_n * keep_u
                u_n = ((product + ((product >> 63) & round_up)) >> DECAY_SHIFT) + (x << ACTIVATION_SHIFT)
                # wrap_current
                u_n += 2 * STATE_LIMIT * (np.int64(u_n <= -STATE_LIMIT) - np.int64(u_n > STATE_LIMIT))
                product = v_n * keep_v
                v_n = ((product + ((product >> 63) & round_up)) >> DECAY_SHIFT) + u_n + bias_b[m]
                v_n = min(max(v_n, -STATE_LIMIT + 1), STATE_LIMIT - 1)  # clip_voltage
                spiked = np.int64(v_n > threshold)  # spike_and_reset_fixed
                spikes_s[m] = spiked
                spiked_b[m] += spiked
                v_n *= 1 - spiked
                u[m] = u_n
                v[m] = v_n
            # the voltages copied in a loop of their own: a store under ``if record_v`` in the loop
            # above compiles to a masked store, which costs a microcode assist at every vector
            # where the masked-off addresses reach past the (unused) array into a page it may not
            # write: the loop ran several times slower in some processes, as the array's place fell
            if record_v:
                voltages_s = voltages[t, first : first + size]
                for m in range(size):
                    voltages_s[m] = v[m]
        for m in range(size):
            counts[first + m] += spiked_b[m]
    return active_b.sum()


@functools.cache
def compiled_cuba_fixed_steps() -> Callable[..., int] | None:
    """:func:`cuba_fixed_steps` compiled by numba (cached on disk after the first compilation, a few
    seconds), or ``None`` where numba is not installed (the caller then runs the tensor functions
    above)."""
    return compile_kernel(
        cuba_fixed_steps,
        [
            (np.zeros((1, 1), dtype), False, 0, 0, 0, 1, np.zeros(1, np.int64),
             np.zeros((1, 1), np.float32), np.zeros(1), np.zeros((1, 1)), True, 0, 1)
            for dtype in (np.float32, np.float64, np.int64)  # the input dtypes the simulator passes
        ],
    )  # fmt: skip


def cuba_float_steps(
    current: np.ndarray,
    keep_u: float,
    keep_v: float,
    threshold: float,
    subtract: bool,
    spikes: np.ndarray,
    voltages: np.ndarray,
    keep_voltage: bool,
) -> None:
    """:func:`cuba_subthreshold` then :func:`spike_and_reset` (no bias) for ``T`` steps of ``N``
    neurons from zero state, one neuron at a time, in ``current``'s float dtype.

    ``current`` ``[T, N]``, or ``[1, N]`` the same at every step; ``keep_u = 1 - current_decay``,
    ``keep_v = 1 - voltage_decay`` and ``threshold`` already in ``current``'s dtype (as torch
    applies a Python number to a tensor); ``subtract`` selects the reset. Writes the spikes (0/1)
    to ``spikes`` ``[T, N]`` and, with ``keep_voltage``, the pre-reset voltages to ``voltages``
    ``[T, N]``. The operations are those of the tensor functions, in their order and rounded as
    they round (no fused multiply-add), so the values are bit for bit theirs.
    """
    steps, neurons = spikes.shape
    constant = current.shape[0] == 1
    zero = np.zeros(1, dtype=current.dtype)[0]  # 0 and 1 in the current's dtype: no promotion
    one = np.ones(1, dtype=current.dtype)[0]
    u = np.zeros(neurons, dtype=current.dtype)
    v = np.zeros(neurons, dtype=current.dtype)
    for t in range(steps):
        x_t = current[0 if constant else t]
        spikes_t = spikes[t]
        voltages_t = voltages[t if keep_voltage else 0]
        for n in range(neurons):
            u_n = u[n] * keep_u + x_t[n]
            v_n = v[n] * keep_v + u_n + zero
            if keep_voltage:
                voltages_t[n] = v_n
            spiked = one if v_n - threshold > zero else zero
            spikes_t[n] = spiked
            u[n] = u_n
            v[n] = v_n - threshold * spiked if subtract else v_n * (one - spiked)


@functools.cache
def compiled_cuba_float_steps() -> Callable[..., None] | None:
    """:func:`cuba_float_steps` compiled by numba (disk-cached) for float32 and float64, or ``None``
    where numba is not installed (the caller then runs the tensor functions)."""
    return compile_kernel(
        cuba_float_steps,
        [
            (np.zeros((1, 1), dtype), dtype(0.5), dtype(0.5), dtype(0.5), False,
             np.zeros((1, 1), dtype), np.zeros((1, 1), dtype), True)
            for dtype in (np.float32, np.float64)
        ],
    )  # fmt: skip
