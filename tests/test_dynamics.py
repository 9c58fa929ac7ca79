"""The neuron equations against traces computed by hand (float and Loihi fixed point)."""

import pytest
import torch

from toolchain.snn.dynamics import (
    STATE_LIMIT,
    CubaState,
    clip_voltage,
    cuba_step,
    cuba_step_fixed,
    effective_bias,
    loihi_decay,
    wrap_current,
)


def _run_float(inputs, **params):
    state = CubaState.zeros_like(torch.zeros(1))
    spikes, volts = [], []
    for x in inputs:
        s, state = cuba_step(state, torch.tensor([x]), **params)
        spikes.append(int(s))
        volts.append(float(state.v))
    return spikes, volts


def test_float_cuba_trace_by_hand():
    # du = 0.5, dv = 0.25, threshold 1:
    # t1: u = 0.6, v = 0.6          t2: u = 0.3 + 0.6 = 0.9, v = 0.45 + 0.9 = 1.35 > 1 -> spike, v = 0
    # t3: u = 0.45, v = 0.45        t4: u = 0.225, v = 0.3375 + 0.225 = 0.5625
    spikes, volts = _run_float([0.6, 0.6, 0.0, 0.0], current_decay=0.5, voltage_decay=0.25, threshold=1.0)
    assert spikes == [0, 1, 0, 0]
    assert volts == pytest.approx([0.6, 0.0, 0.45, 0.5625])


def test_float_threshold_is_strict():
    spikes, _ = _run_float([1.0], current_decay=1.0, voltage_decay=0.0, threshold=1.0)
    assert spikes == [0]  # v == threshold does not spike (Lava: v > vth)


def test_float_bias_adds_to_voltage_not_current():
    state = CubaState.zeros_like(torch.zeros(1))
    _, state = cuba_step(state, torch.tensor([0.0]), 0.5, 0.0, 10.0, bias=0.25)
    _, state = cuba_step(state, torch.tensor([0.0]), 0.5, 0.0, 10.0, bias=0.25)
    assert float(state.u) == 0.0
    assert float(state.v) == pytest.approx(0.5)


def _run_fixed(a_in, **params):
    state = CubaState.zeros_like(torch.zeros(1, dtype=torch.int64))
    out = []
    for a in a_in:
        s, state = cuba_step_fixed(state, torch.tensor([a]), **params)
        out.append((int(s), int(state.u), int(state.v)))
    return out


def test_fixed_point_trace_by_hand():
    # du_lava = 1023 -> effective 1024: u keeps 3072/4096; dv = 512: v keeps 3584/4096; vth = 10 << 6 = 640.
    # t1: u = 5 << 6 = 320, v = 320                      t2: u = 240 + 320 = 560, v = 280 + 560 = 840 > 640
    # t3: u = 420, v = 0 + 420 = 420                     t4: u = 315 - 192 = 123, v = trunc(367.5) + 123 = 490
    trace = _run_fixed([5, 5, 0, -3], du_lava=1023, dv=512, vth_mant=10)
    assert trace == [(0, 320, 320), (1, 560, 0), (0, 420, 420), (0, 123, 490)]


def test_fixed_point_decay_rounds_toward_zero():
    # -101 * 3072 / 4096 = -75.75: Lava's sign(p) * (|p| >> 12) gives -75 (a floor would give -76)
    assert int(loihi_decay(torch.tensor(-101), 1024)) == -75
    assert int(loihi_decay(torch.tensor(101), 1024)) == 75


def test_fixed_point_bias_and_exponent():
    assert int(effective_bias(3, 2)) == 12
    assert int(effective_bias(12, -2)) == 3
    assert int(effective_bias(-5, -1)) == -3  # arithmetic right shift, as numpy's
    trace = _run_fixed([0, 0], du_lava=4095, dv=0, vth_mant=1, bias_mant=5, bias_exp=3)
    # v = 0 + 0 + 40 = 40, then 80 > 64 -> spike
    assert trace == [(0, 0, 40), (1, 0, 0)]


def test_state_wraps_and_saturates_like_lava():
    assert int(wrap_current(torch.tensor(STATE_LIMIT + 5))) == -STATE_LIMIT + 5
    assert int(wrap_current(torch.tensor(STATE_LIMIT))) == STATE_LIMIT  # Lava wraps only above 2^23
    assert int(wrap_current(torch.tensor(-STATE_LIMIT))) == STATE_LIMIT
    assert int(clip_voltage(torch.tensor(STATE_LIMIT + 100))) == STATE_LIMIT - 1
    assert int(clip_voltage(torch.tensor(-STATE_LIMIT - 100))) == -STATE_LIMIT + 1


def test_fixed_and_float_agree_when_exact():
    # decays of 1024/4096 and 0, integer inputs scaled by 64: the float model gives the same spikes
    a_in = [3, 4, 0, 7, 1, 0, 0, 9]
    fixed = [s for s, _, _ in _run_fixed(a_in, du_lava=1023, dv=0, vth_mant=12)]
    floating, _ = _run_float(
        [a * 64.0 for a in a_in], current_decay=0.25, voltage_decay=0.0, threshold=12 * 64.0
    )
    assert fixed == floating
    assert sum(fixed) > 0
