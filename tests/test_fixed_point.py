"""Loihi fixed point: the number formats, the quantization-aware step, and agreement with Lava itself."""

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.config import NeuronConfig
from toolchain.errors import QuantizationError, RecipeError
from toolchain.loihi_numbers import STATE_SCALE, CubaRegisters, neuron_registers
from toolchain.snn.dynamics import CubaState, cuba_step_fixed, cuba_step_quantized
from toolchain.snn.layers import TimeDistributed
from toolchain.snn.loihi import graded_input, synaptic_input_grid, weight_grid, weights_to_int
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.numerics import apply_numerics
from toolchain.snn.surrogate import spike_function


def test_weight_grid_values_and_straight_through_gradient():
    w = torch.tensor([0.0, 0.01, 0.02, -0.05, 1.0, 3.99, -4.2, 5.0], requires_grad=True)
    q = weight_grid(w)
    # even integers / 64: 0.01*64 = 0.64 -> 0; 0.02*64 = 1.28 -> 2; -3.2 -> -4; 255.4 -> 254 (clamped); -256
    assert (q.detach() * 64).tolist() == [0, 0, 2, -4, 64, 254, -256, 254]
    q.sum().backward()
    assert w.grad.tolist() == [1.0] * 8


def test_neuron_registers_and_their_rounding():
    registers, report = neuron_registers(current_decay=0.1, voltage_decay=0.03, threshold=1.25)
    assert registers == CubaRegisters(i_decay=410, v_decay=123, vth_mant=80)
    assert registers.du_lava == 409
    assert report[0].quantized == 410 / 4096
    assert report[0].abs_error == pytest.approx(abs(410 / 4096 - 0.1))
    assert report[2].abs_error == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"current_decay": 0.0, "voltage_decay": 0.1, "threshold": 1.0},
            r"iDecay .* = 0 is outside .* \[1, 4096\]",
        ),
        (
            {"current_decay": 1.0, "voltage_decay": 1.0, "threshold": 1.0},
            r"vDecay .* = 4096 is outside .*4095\]",
        ),
        (
            {"current_decay": 1.0, "voltage_decay": 0.1, "threshold": 5000.0},
            r"vThMant .* = 320000 is outside",
        ),
    ],
)
def test_registers_out_of_range_are_named(kwargs, message):
    with pytest.raises(QuantizationError, match=message):
        neuron_registers(**kwargs)


def test_weights_to_int_refuses_overflow_and_nan():
    assert weights_to_int(torch.tensor([0.5, -4.0, 3.96875]), "dense1").tolist() == [32, -256, 254]
    with pytest.raises(QuantizationError, match=r"layer 'dense1': weights span \[-1\.0000, 3\.9900\]"):
        weights_to_int(torch.tensor([-1.0, 3.99]), "dense1")  # 3.99 * 64 = 255.4 -> 256 > 254
    with pytest.raises(QuantizationError, match="layer 'conv2': weights contain NaN"):
        weights_to_int(torch.tensor([float("nan")]), "conv2")


def test_graded_input_and_synaptic_floor():
    x = torch.tensor([0.0, 1.0, 0.5, 13 / 255])
    assert (graded_input(x) * 256).tolist() == [0.0, 255.0, 128.0, 13.0]
    # the arithmetic right shift of Lava's weight exponent floors, also below zero
    assert (synaptic_input_grid(torch.tensor([-1020 / 256 / 64, 1530 / 256 / 64])) * 64).tolist() == [
        -4.0,
        5.0,
    ]


def test_quantized_step_values_equal_the_integer_step():
    torch.manual_seed(0)
    regs = CubaRegisters(i_decay=1024, v_decay=256, vth_mant=80)
    state_f = CubaState.zeros_like(torch.zeros(64, dtype=torch.float64))
    state_i = CubaState.zeros_like(torch.zeros(64, dtype=torch.int64))
    total = 0
    for _ in range(50):
        a_int = torch.randint(-40, 90, (64,))
        s_f, state_f = cuba_step_quantized(
            state_f, a_int.double() / 64, regs.du_lava, regs.v_decay, regs.vth_mant
        )
        s_i, state_i = cuba_step_fixed(state_i, a_int, regs.du_lava, regs.v_decay, regs.vth_mant)
        assert torch.equal(s_f.to(torch.int64), s_i)
        assert torch.equal(torch.round(state_f.u * STATE_SCALE).to(torch.int64), state_i.u)
        assert torch.equal(torch.round(state_f.v * STATE_SCALE).to(torch.int64), state_i.v)
        total += int(s_i.sum())
    assert total > 100


def test_quantized_step_passes_gradients():
    x = torch.full((4,), 2.0, dtype=torch.float64, requires_grad=True)
    state = CubaState.zeros_like(x.detach())
    spikes, _ = cuba_step_quantized(state, x, 4095, 0, 64, spike_function("fast_sigmoid", 10.0))
    spikes.sum().backward()
    assert spikes.tolist() == [1.0] * 4
    assert torch.all(x.grad > 0)


def test_fixed_point_mode_errors_name_the_recipe_section():
    model = _TwoLayer()
    config = NeuronConfig(numeric="fixed_point", current_decay=0.0)
    with pytest.raises(RecipeError, match=r"\[neuron\] in fixed_point mode: iDecay"):
        apply_numerics(model, config, "rate")


class _TwoLayer(nn.Module):
    def __init__(self, sizes=(6, 5, 3), neuron: NeuronConfig | None = None):
        super().__init__()
        neuron = neuron or NeuronConfig()
        spike = spike_function(neuron.surrogate, neuron.surrogate_scale)
        self.fc1 = TimeDistributed(nn.Linear(sizes[0], sizes[1], bias=False))
        params = (neuron.current_decay, neuron.voltage_decay, neuron.threshold, spike)
        self.lif1 = CubaLIF(*params, delay_steps=neuron.synapse_delay)
        self.fc2 = TimeDistributed(nn.Linear(sizes[1], sizes[2], bias=False))
        self.lif2 = CubaLIF(*params, delay_steps=neuron.synapse_delay)

    def forward(self, x):
        hidden = self.lif1(self.fc1(x))
        return hidden, self.lif2(self.fc2(hidden))


NEURON = NeuronConfig(numeric="fixed_point", current_decay=0.25, voltage_decay=0.0625, threshold=0.75)
STEPS = 24


def _fixed_point_net():
    torch.manual_seed(3)
    model = _TwoLayer(neuron=NEURON)
    with torch.no_grad():
        model.fc1.module.weight.normal_(0.05, 0.4)
        model.fc2.module.weight.normal_(0.2, 0.6)
    apply_numerics(model, NEURON, "direct")
    return model


def _lava_run(payload: np.ndarray, w1: np.ndarray, w2: np.ndarray, regs: CubaRegisters):
    """Source (8-bit graded) -> Dense(w1, exp -8) -> LIF -> Dense(w2) -> LIF, as netx would build it."""
    from toolchain import lava_compat

    lava = lava_compat.import_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    neuron = {"du": regs.du_lava, "dv": regs.v_decay, "vth": regs.vth_mant}
    source = Source(data=payload)
    dense1 = Dense(weights=w1, weight_exp=-8, num_message_bits=8)
    lif1 = LIF(shape=(w1.shape[0],), **neuron)
    dense2 = Dense(weights=w2)
    lif2 = LIF(shape=(w2.shape[0],), **neuron)
    sink1 = Sink(shape=(w1.shape[0],), buffer=payload.shape[1])
    sink2 = Sink(shape=(w2.shape[0],), buffer=payload.shape[1])
    source.s_out.connect(dense1.s_in)
    dense1.a_out.connect(lif1.a_in)
    lif1.s_out.connect(dense2.s_in)
    lif1.s_out.connect(sink1.a_in)
    dense2.a_out.connect(lif2.a_in)
    lif2.s_out.connect(sink2.a_in)
    try:
        source.run(
            condition=lava.run_conditions.RunSteps(num_steps=payload.shape[1]),
            run_cfg=lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt"),
        )
        return np.asarray(sink1.data.get()), np.asarray(sink2.data.get())
    finally:
        source.stop()


@pytest.mark.lava
@pytest.mark.skipif(
    importlib.util.find_spec("lava") is None, reason="lava-nc is not installed (make install)"
)
def test_fixed_point_model_agrees_with_lava_spike_for_spike():
    model = _fixed_point_net()
    generator = torch.Generator().manual_seed(7)
    payload = torch.randint(0, 256, (STEPS, 2, 6), generator=generator)
    payload[:, :, 0] = 255  # a strong input keeps the network busy
    with torch.no_grad():
        hidden, output = model(payload.double() / 255)
    w1 = weights_to_int(model.fc1.module.weight, "fc1").numpy()
    w2 = weights_to_int(model.fc2.module.weight, "fc2").numpy()
    assert w1.min() < 0 < w1.max()  # mixed signs: Lava drops the LSB, so the grid must be even
    regs = model.lif1.registers
    for sample in range(payload.shape[1]):
        lava_hidden, lava_output = _lava_run(payload[:, sample].T.numpy().astype(np.int32), w1, w2, regs)
        np.testing.assert_array_equal(lava_hidden, hidden[:, sample].T.numpy())
        np.testing.assert_array_equal(lava_output, output[:, sample].T.numpy())
    assert 0.05 < float(hidden.mean()) < 0.9  # a non-trivial pattern in both layers
    assert float(output.sum()) > 10
