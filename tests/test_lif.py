"""Other frameworks' LIF neurons, re-implemented from their documented equations, equal CUBA exactly."""

import pytest
import torch

from toolchain.errors import UnsupportedDynamicsError
from toolchain.snn.dynamics import CubaState, cuba_step
from toolchain.snn.lif import from_snntorch_leaky, from_spikingjelly_lif

INPUTS = torch.tensor([0.9, 0.8, 1.7, 0.1, 0.0, 2.5, 0.6, 0.6, 0.6, 1.3, 0.2, 2.9]).reshape(-1, 1)


def _cuba(equivalent, inputs=INPUTS):
    state = CubaState.zeros_like(inputs[0])
    out = []
    for x in inputs:
        s, state = cuba_step(
            state,
            x * equivalent.input_scale,
            equivalent.current_decay,
            equivalent.voltage_decay,
            equivalent.threshold,
            reset=equivalent.reset,
        )
        out.append(int(s))
    return out


def _spikingjelly(tau, v_reset, decay_input, threshold=1.0):
    # SpikingJelly LIFNode.neuronal_charge / neuronal_fire / neuronal_reset (strict > to avoid ties)
    v, out = 0.0, []
    for x in INPUTS.flatten().tolist():
        h = v + (x - v) / tau if decay_input else v - v / tau + x
        s = 1 if h > threshold else 0
        v = (h - threshold * s) if v_reset is None else (h * (1 - s))
        out.append(s)
    return out


def _snntorch_zero(beta, threshold=1.0):
    # snnTorch Leaky, reset_mechanism="zero": the reset uses the previous step's membrane
    mem, out = 0.0, []
    for x in INPUTS.flatten().tolist():
        reset = 1.0 if mem > threshold else 0.0
        mem = beta * (1 - reset) * mem + x
        out.append(1 if mem > threshold else 0)
    return out


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("decay_input", [True, False])
def test_spikingjelly_lif_is_cuba(tau, v_reset, decay_input):
    expected = _spikingjelly(tau, v_reset, decay_input)
    assert _cuba(from_spikingjelly_lif(tau, v_reset=v_reset, decay_input=decay_input)) == expected
    assert sum(expected) > 0


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 1.0])
def test_snntorch_leaky_zero_reset_is_cuba(beta):
    expected = _snntorch_zero(beta)
    assert _cuba(from_snntorch_leaky(beta)) == expected
    assert sum(expected) > 0


def test_mappings_by_hand():
    sj = from_spikingjelly_lif(2.0)
    assert (sj.current_decay, sj.voltage_decay, sj.input_scale, sj.reset) == (1.0, 0.5, 0.5, "zero")
    assert from_snntorch_leaky(0.75).voltage_decay == 0.25


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: from_spikingjelly_lif(2.0, v_reset=-0.5), "v_reset = -0.5"),
        (lambda: from_spikingjelly_lif(0.5), "tau = 0.5"),
        (lambda: from_snntorch_leaky(0.9, reset_mechanism="subtract"), "after the decay"),
        (lambda: from_snntorch_leaky(0.9, reset_mechanism="none"), "'none'"),
        (lambda: from_snntorch_leaky(1.5), "beta = 1.5"),
    ],
)
def test_no_exact_equivalent_is_refused(call, message):
    with pytest.raises(UnsupportedDynamicsError, match=message):
        call()
