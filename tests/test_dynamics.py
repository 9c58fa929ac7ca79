"""The neuron equations against traces computed by hand (float and Loihi fixed point)."""

import ctypes
import mmap
import sys
import time

import numpy as np
import pytest
import torch

from toolchain.loihi_numbers import STATE_LIMIT, current_may_wrap
from toolchain.snn import dynamics
from toolchain.snn.dynamics import (
    FAST_INPUT_LIMIT,
    CubaState,
    clip_voltage,
    compiled_cuba_fixed_steps,
    compiled_cuba_float_steps,
    cuba_fixed_steps,
    cuba_float_steps,
    cuba_step,
    cuba_step_fixed,
    cuba_step_fixed_,
    cuba_subthreshold,
    effective_bias,
    fast_bias,
    fast_input,
    loihi_decay,
    spike_and_reset,
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


# ----------------------------------------------------------------------------------------------
# the float64 in-place formulation (cuba_step_fixed_) against the int64 functions


def _fast_steps(u, v, a_in, du, dv, vth, bias_mant, bias_exp, wrap=True):
    """Run ``cuba_step_fixed_`` over ``a_in`` ``[T, ...]`` from int64 state; spikes and states per step."""
    fu, fv = u.to(torch.float64), v.to(torch.float64)
    bias = None if bias_mant is None else fast_bias(bias_mant, bias_exp)
    scratch, spikes = torch.empty_like(fu), torch.empty((a_in.shape[0], *u.shape), dtype=torch.float64)
    states = []
    for t in range(a_in.shape[0]):
        cuba_step_fixed_(
            fu, fv, fast_input(a_in[t]), du, dv, vth, bias, spikes_out=spikes[t], scratch=scratch, wrap=wrap
        )
        states.append((fu.clone(), fv.clone()))
    return spikes, states


def _int_steps(u, v, a_in, du, dv, vth, bias_mant, bias_exp):
    state, spikes, states = CubaState(u, v), [], []
    for t in range(a_in.shape[0]):
        s, state = cuba_step_fixed(
            state, a_in[t], du, dv, vth, 0 if bias_mant is None else bias_mant, bias_exp
        )
        spikes.append(s)
        states.append((state.u, state.v))
    return torch.stack(spikes), states


def _assert_same(fast, exact):
    fast_spikes, fast_states = fast
    spikes, states = exact
    assert torch.equal(fast_spikes, spikes.to(torch.float64))
    for (fu, fv), (u, v) in zip(fast_states, states, strict=True):
        assert torch.equal(fu, u.to(torch.float64)) and torch.equal(fv, v.to(torch.float64))
        # every zero is +0.0: the simulator may test values through their bits
        assert not bool((torch.signbit(fu) & (fu == 0)).any() | (torch.signbit(fv) & (fv == 0)).any())


@pytest.mark.parametrize("seed", range(6))
def test_fast_step_equals_int64_functions_on_random_states(seed):
    g = torch.Generator().manual_seed(seed)
    n, steps = 4096, 12
    limit = STATE_LIMIT
    # any 24-bit state: u in (-2^23, 2^23], v in [-(2^23 - 1), 2^23 - 1], edges included
    u = torch.randint(-limit + 1, limit + 1, (n,), generator=g)
    v = torch.randint(-limit + 1, limit, (n,), generator=g)
    u[:6] = torch.tensor([limit, -limit + 1, 0, 1, -1, -4095])
    v[:6] = torch.tensor([limit - 1, -limit + 1, 0, -1, 1, 4095])
    # inputs up to the fast path's limit, both signs, many zeros: the wrap and the clip act
    a_in = torch.randint(-FAST_INPUT_LIMIT + 1, FAST_INPUT_LIMIT, (steps, n), generator=g)
    a_in[:, ::3] = torch.randint(-40, 41, (steps, (n + 2) // 3), generator=g)
    a_in[torch.rand(steps, n, generator=g) < 0.3] = 0
    a_in[0, :2] = torch.tensor([FAST_INPUT_LIMIT - 1, -FAST_INPUT_LIMIT + 1])
    du = int(torch.randint(0, 4096, (), generator=g)) if seed else 4095  # 4095: nothing kept
    dv = int(torch.randint(0, 4096, (), generator=g)) if seed != 1 else 0  # 0: everything kept
    vth = int(torch.randint(1, 2**17, (), generator=g))
    bias_mant = torch.randint(-4096, 4096, (n,), generator=g) if seed % 2 else None
    bias_exp = int(torch.randint(-8, 8, (), generator=g))
    args = (u, v, a_in, du, dv, vth, bias_mant, bias_exp)
    exact = _int_steps(*args)
    assert any(bool((s > 0).any()) for s in exact[0])  # some spikes
    _assert_same(_fast_steps(*args), exact)


def test_fast_step_rounds_toward_zero_and_wraps_at_the_edges():
    # decay products of both signs with and without a remainder, and the exact wrap boundaries
    u = torch.tensor([4095, -4095, 4096, -4096, 1, -1, 3, -3, STATE_LIMIT, -STATE_LIMIT + 1, 0, 0])
    v = torch.tensor([-7, 7, -4097, 4097, 0, 0, 5, -5, 0, 0, STATE_LIMIT - 1, -STATE_LIMIT + 1])
    a_in = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 2**17, -(2**17), 2**17 - 1, -(2**17) + 1]])
    for du, dv in ((2047, 2048), (0, 4095), (4095, 1), (1023, 3)):
        args = (u, v, a_in, du, dv, 2**17 - 1, None, 0)
        _assert_same(_fast_steps(*args), _int_steps(*args))
    # trunc toward zero by hand: 4095 * 2048 / 4096 = 2047.5 -> 2047, and -2047.5 -> -2047
    _, states = _fast_steps(u[:2], torch.zeros(2, dtype=torch.int64), a_in[:, :2], 2047, 0, 1, None, 0)
    assert states[0][0].tolist() == [2047.0, -2047.0]


def test_fast_step_may_skip_the_wrap_only_where_it_cannot_act():
    g = torch.Generator().manual_seed(7)
    du, n, steps = 1023, 2048, 40
    bound = 2**15  # u <= 2^15 * 64 * 4096 / 1024 = 2^23: the wrap may act
    assert current_may_wrap(bound, du) and not current_may_wrap(bound - 1, du)
    a_in = torch.randint(-bound + 1, bound, (steps, n), generator=g)
    zero = torch.zeros(n, dtype=torch.int64)
    args = (zero, zero, a_in, du, 128, 2**17 - 1, None, 0)
    _assert_same(_fast_steps(*args, wrap=False), _int_steps(*args))
    assert current_may_wrap(FAST_INPUT_LIMIT - 1, 4095)


@pytest.mark.parametrize("encoding", ["graded", "spikes"])
def test_simulator_fast_path_equals_int64_path(encoding, monkeypatch):
    """The reference simulator with cuba_step_fixed_ against the same run forced onto the int64
    functions: a conv with bias (channels-last), an avg pool, a dense layer, graded and spike input."""
    import numpy as np

    from toolchain import ir
    from toolchain.sim import reference

    rng = np.random.default_rng(3)
    bias = rng.integers(-300, 300, (4, 6, 6))
    conv_neurons = ir.CubaNeurons(i_decay=1024, v_decay=300, vth_mant=40, bias_mant=bias, bias_exp=2)
    layers = (
        ir.Conv("conv", rng.integers(-128, 128, (4, 2, 3, 3)) * 2, conv_neurons, (2, 6, 6), (1, 1), (1, 1)),
        ir.Pool("pool", "avg", 2, (4, 6, 6)),
        ir.Flatten("flat", (4, 3, 3)),
        ir.Dense(
            "out", rng.integers(-128, 128, (3, 36)) * 2, ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=30)
        ),
    )
    steps = 9
    if encoding == "graded":
        x = rng.random((5, 2, 6, 6))
        layers = (
            ir.Conv("conv", layers[0].weight, conv_neurons, (2, 6, 6), (1, 1), (1, 1), weight_exp=-8),
            *layers[1:],
        )
    else:
        x = (rng.random((steps, 5, 2, 6, 6)) < 0.4).astype(np.uint8)
    network = ir.Network("mixed", (2, 6, 6), encoding, steps, layers)
    fast = reference.simulate(network, x, batch_size=2, record_spikes=True)
    monkeypatch.setattr(reference, "FAST_INPUT_LIMIT", 0)  # every layer on the int64 functions
    exact = reference.simulate(network, x, batch_size=2, record_spikes=True)
    assert fast.activity.to_dict() == exact.activity.to_dict()
    for name, spikes in exact.spikes.items():
        assert np.array_equal(fast.spikes[name], spikes), name
    assert exact.activity.spikes_per_sample > 0


def _int64_steps(a_in, constant, delay, du, dv, vth, bias_mant, bias_exp, steps):
    """The tensor functions stepped over a window: spikes, voltages and active updates."""
    neurons = a_in.shape[1]
    state = CubaState(torch.zeros(neurons, dtype=torch.int64), torch.zeros(neurons, dtype=torch.int64))
    spikes, voltages, active = [], [], 0
    for t in range(steps):
        source = t - delay
        x = torch.zeros(neurons, dtype=torch.int64)
        if source >= 0:
            x = torch.from_numpy(a_in[0 if constant else source].astype(np.int64))
        active += int(((state.u != 0) | (state.v != 0) | (x != 0)).sum())
        spiked, state = cuba_step_fixed(state, x, du, dv, vth, bias_mant, bias_exp)
        spikes.append(spiked.numpy())
        voltages.append(state.v.numpy())
    return np.array(spikes), np.array(voltages), active


@pytest.mark.parametrize("block", [4, 512])
@pytest.mark.parametrize("seed", range(12))
def test_cuba_fixed_steps_equals_the_tensor_step(seed, block, monkeypatch):
    """The scalar loop (plain Python here) is the step of cuba_subthreshold_fixed and
    spike_and_reset_fixed: every spike, voltage and active update, wraps and clipping included;
    with blocks of 4 neurons the blocks straddle the samples (6 neurons each) and the last is short."""
    monkeypatch.setattr(dynamics, "NEURON_BLOCK", block)
    rng = np.random.default_rng(seed)
    steps, per_sample, samples = 9, 6, 3
    constant = seed % 3 == 0
    scale = (40, 2000, 2**19, 2**21)[seed % 4]  # the last two reach the 24-bit wrap and clip
    a_in = rng.integers(-scale, scale, (1 if constant else steps, per_sample * samples))
    a_in = a_in.astype(np.float64 if seed % 2 else np.int64)
    du, dv, vth = int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), int(rng.integers(1, 3000))
    bias_mant, bias_exp = rng.integers(-500, 500, per_sample), int(rng.integers(-3, 5))
    delay = seed % 3
    bias = effective_bias(torch.from_numpy(bias_mant), bias_exp).numpy()
    spikes = np.zeros((steps, a_in.shape[1]), np.float32)
    counts = np.zeros(a_in.shape[1])
    voltages = np.zeros((steps, a_in.shape[1]))
    active = cuba_fixed_steps(
        a_in, constant, delay, du, dv, vth, bias, spikes, counts, voltages, True, 0, a_in.shape[1]
    )
    expected = _int64_steps(
        a_in, constant, delay, du, dv, vth, torch.from_numpy(np.tile(bias_mant, samples)), bias_exp, steps
    )
    np.testing.assert_array_equal(spikes, expected[0])
    np.testing.assert_array_equal(voltages, expected[1])
    assert active == expected[2]
    np.testing.assert_array_equal(counts, expected[0].sum(axis=0))
    assert 0 < spikes.sum() < spikes.size or scale == 40  # the window exercises spiking


def test_cuba_fixed_steps_by_hand():
    """One neuron, i_decay 2048 (du_lava 2047), v_decay 1024, threshold 2 << 6, input 1 at steps 0
    and 1 arriving one step late: u = 64, then 32 + 64 = 96, then 48; v = 64, 48 + 96 = 144 > 128
    spikes and resets to 0, then 0 + 48 = 48."""
    a_in = np.array([[1], [1], [0], [0]], dtype=np.float32)
    spikes, counts, voltages = np.zeros((4, 1), np.float32), np.zeros(1), np.zeros((4, 1))
    active = cuba_fixed_steps(
        a_in, False, 1, 2047, 1024, 2, np.zeros(1, np.int64), spikes, counts, voltages, True, 0, 1
    )
    assert spikes[:, 0].tolist() == [0, 0, 1, 0]
    assert voltages[:, 0].tolist() == [0, 64, 0, 48]
    assert counts.tolist() == [1] and active == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("record_v", [True, False])
def test_the_compiled_kernel_computes_what_the_python_function_does(dtype, record_v):
    """Over more than two blocks of neurons (the last one short, the samples of 7 neurons straddling
    them), with inputs up to the largest float32 integers (the 4-byte input's int32 path) and, in
    the wider dtypes, beyond them."""
    compiled = compiled_cuba_fixed_steps()
    if compiled is None:
        pytest.skip("numba is not installed: the reference simulator runs the tensor functions")
    rng = np.random.default_rng(7)
    neurons = 2 * dynamics.NEURON_BLOCK + 37
    scale = 2**24 if dtype == np.float32 else 2**40
    a_in = rng.integers(-scale, scale, (20, neurons)).astype(dtype)
    a_in[:, ::3] = rng.integers(-(2**12), 2**12, a_in[:, ::3].shape)  # values that do not wrap
    bias = rng.integers(-3000, 3000, 7)
    outputs = []
    split = dynamics.NEURON_BLOCK + 100  # the compiled kernel in two ranges, as two threads step them
    for function, ranges in ((cuba_fixed_steps, [(0, neurons)]), (compiled, [(0, split), (split, neurons)])):
        spikes, voltages = np.zeros((20, neurons), np.float32), np.zeros((20, neurons))
        counts = np.ones(neurons)
        active = sum(
            function(a_in, False, 1, 1500, 700, 900, bias, spikes, counts, voltages, record_v, start, stop)
            for start, stop in ranges
        )
        outputs.append((spikes, counts, voltages, active))
    for python_value, compiled_value in zip(*outputs, strict=True):
        np.testing.assert_array_equal(python_value, compiled_value)
    assert 0 < outputs[1][0].sum() < outputs[1][0].size
    assert np.array_equal(outputs[1][1], 1 + outputs[1][0].sum(axis=0))  # counts added to


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="places an array before a page it may not write"
)
def test_the_compiled_kernel_runs_as_fast_wherever_the_unused_voltages_lie():
    """Without ``record_v`` the simulator passes a one-value array for the voltages. When the step's
    loop stored them under ``if record_v``, the compiler made that a masked store, which reached
    past the array; where that ran into a page the process may not write, every vector cost a
    microcode assist, many times the step's own work on an AVX-512 CPU."""
    compiled = compiled_cuba_fixed_steps()
    if compiled is None:
        pytest.skip("numba is not installed: the reference simulator runs the tensor functions")
    rng = np.random.default_rng(3)
    steps, neurons = 50, 8 * dynamics.NEURON_BLOCK
    a_in = (rng.integers(-300, 600, (steps, neurons)) * (rng.random((steps, neurons)) < 0.1)).astype(
        np.float32
    )
    bias = np.zeros(1, np.int64)
    page = mmap.PAGESIZE
    mapped = mmap.mmap(-1, 3 * page)
    values = np.frombuffer(mapped, np.uint8)
    values[:page] = 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(values.ctypes.data + page, 2 * page, 0) == 0  # PROT_NONE after the first page
    at_page_end = np.frombuffer(mapped, np.float64, count=1, offset=page - 8).reshape(1, 1)

    def fastest(voltages: np.ndarray) -> float:
        spikes, counts = np.empty((steps, neurons), np.float32), np.zeros(neurons)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            compiled(a_in, False, 1, 2048, 256, 200, bias, spikes, counts, voltages, False, 0, neurons)
            times.append(time.perf_counter() - start)
        return min(times)

    try:
        assert fastest(at_page_end) < 3 * fastest(np.zeros((1, 1)))
    finally:
        del at_page_end, values
        mapped.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_cuba_float_steps_equals_the_tensor_step(dtype, reset):
    """The float forward loop as scalar arithmetic (plain Python here, and compiled) gives the
    spikes and pre-reset voltages of cuba_subthreshold + spike_and_reset bit for bit."""
    rng = np.random.default_rng(3)
    current = (rng.standard_normal((12, 40)) * 0.9).astype(dtype)
    decay_u, decay_v, threshold = 0.3, 0.1, 1.0
    state = CubaState.zeros_like(torch.zeros(40, dtype=torch.from_numpy(current).dtype))
    expected_spikes, expected_voltages = [], []
    for x in torch.from_numpy(current):
        pre = cuba_subthreshold(state, x, decay_u, decay_v)
        spikes, state = spike_and_reset(pre, threshold, reset=reset)
        expected_spikes.append(spikes.numpy())
        expected_voltages.append(pre.v.numpy())
    functions = [cuba_float_steps]
    if compiled_cuba_float_steps() is not None:
        functions.append(compiled_cuba_float_steps())
    for function in functions:
        spikes, voltages = np.empty_like(current), np.empty_like(current)
        keep = (dtype(1.0 - decay_u), dtype(1.0 - decay_v), dtype(threshold))
        function(current, *keep, reset == "subtract", spikes, voltages, True)
        np.testing.assert_array_equal(spikes, np.array(expected_spikes))
        np.testing.assert_array_equal(voltages, np.array(expected_voltages))
    assert 0 < spikes.mean() < 1
