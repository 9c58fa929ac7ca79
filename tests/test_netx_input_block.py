"""lava-dl's ``Input`` block (an input layer of neurons driven by the sample itself) read, run and
written back: the reference simulator and Lava agree on every population's spikes and on the
output potentials, for files slayer's own ``export_hdf5`` writes.

In Lava the sample drives the input neurons' ``a_in`` (as lava-dl's tutorials connect it, e.g.
PilotNet's ``input_encoder.out.connect(net.in_layer.neuron.a_in)``); the current is
``x * weight + bias`` of the file's transform (graded input: the 8-bit payload, ``>> 8``).
"""

from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest

from toolchain import ir
from toolchain.activity import Activity
from toolchain.energy.model import ActivityMismatchError, estimate
from toolchain.energy.targets import load_target
from toolchain.export.inspect import describe
from toolchain.formats.netx import read_netx, write_netx
from toolchain.formats.nir import NirError, to_nir_graph
from toolchain.sim.compare import simulate_torch
from toolchain.sim.reference import simulate

HAS_LAVA = importlib.util.find_spec("lava") is not None
STEPS = 10


def _cuba(**kwargs) -> ir.CubaNeurons:
    return ir.CubaNeurons(**{"i_decay": 4096, "v_decay": 0, "vth_mant": 100, **kwargs})


def test_the_input_current_is_the_transform_of_the_sample():
    layer = ir.InputNeurons("in", _cuba(), scale_mant=96, offset_mant=16)
    np.testing.assert_array_equal(layer.current(np.array([0, 1, 1]), graded=False), [16, 112, 112])
    payloads = np.array([0, 128, 255])  # round(x * 255) of x = 0, ~0.5, 1
    np.testing.assert_array_equal(layer.current(payloads, graded=True), [16, 48 + 16, 95 + 16])


def test_input_neurons_are_validated():
    with pytest.raises(ir.IRError, match="no per-neuron bias"):
        ir.InputNeurons("in", _cuba(bias_mant=np.zeros(3, np.int64)))
    with pytest.raises(ir.IRError, match="never fire"):
        ir.InputNeurons("in", _cuba(vth_mant=1 << 17))


def _network(input_layer: ir.InputNeurons | None = None) -> ir.Network:
    weight = np.array([[64, 64, 0], [0, 0, 64]], dtype=np.int64)
    return ir.Network(
        name="tiny",
        input_shape=(3,),
        input_encoding="spikes",
        time_steps=6,
        layers=(ir.Dense("out", weight, _cuba(vth_mant=50)),),
        input_layer=input_layer,
    )


def test_the_reference_simulator_steps_the_input_neurons_by_hand():
    # one input spike a step: a_in = 64, u = 64 << 6 = 4096 each step (no current memory), v grows by
    # 4096 a step without leak and fires above vth_mant << 6 = 6400: steps 1, 3, 5 (reset to 0)
    network = _network(ir.InputNeurons("in", _cuba(), scale_mant=64, offset_mant=0))
    x = np.zeros((6, 1, 3), np.uint8)
    x[:, 0, 0] = 1
    result = simulate(network, x, record_spikes=True)
    np.testing.assert_array_equal(result.spikes["in"][:, 0, 0], [0, 1, 0, 1, 0, 1])
    assert result.spikes["in"][:, 0, 1:].sum() == 0
    # the output layer sees those spikes one step later (Lava's Dense): 64 << 6 = 4096 per input
    # spike against 50 << 6 = 3200, so it fires the step after each input spike arrives
    np.testing.assert_array_equal(result.spikes["out"][:, 0, 0], [0, 0, 1, 0, 1, 0])


def test_netx_round_trip_keeps_the_input_layer(tmp_path):
    network = _network(ir.InputNeurons("retina", _cuba(i_decay=1024, v_decay=410), 96, 16))
    back = read_netx(write_netx(network, tmp_path / "n.net"))
    before, after = network.input_layer, back.input_layer
    assert after is not None and before is not None
    assert (after.name, after.scale_mant, after.offset_mant) == ("retina", 96, 16)
    assert after.neurons.registers == before.neurons.registers
    with h5py.File(tmp_path / "n.net") as handle:  # slayer's layout: the transform and a neuron group
        assert int(handle["layer/0/weight"][0]) == 96 and int(handle["layer/0/bias"][0]) == 16
        assert int(handle["layer/0/neuron/iDecay"][()]) == 1024


def test_input_neurons_are_counted_and_priced():
    network = _network(ir.InputNeurons("retina", _cuba(), scale_mant=64, offset_mant=0))
    x = np.zeros((6, 2, 3), np.uint8)
    x[:, :, 0] = 1  # one input spike a step: the first input neuron fires at steps 1, 3, 5
    activity = simulate(network, x).activity
    counts = activity.input_neurons
    assert counts is not None and counts.kind == "input" and counts.neurons == 3
    assert counts.spikes_per_sample == 3.0
    assert counts.input_events_per_sample == 6.0  # non-zero input currents
    assert counts.active_updates_per_sample == 6.0  # the other two neurons never move
    assert counts.idle_updates_per_sample == 12.0
    assert activity.spikes_per_sample == 3.0 + activity.layers[0].spikes_per_sample
    assert Activity.from_dict(json.loads(json.dumps(activity.to_dict()))) == activity
    target = load_target("loihi")
    energy = estimate(network, activity, target)
    first = energy.layers[0]
    assert (first.name, first.kind, first.synaptic_j, first.routing_j) == ("retina", "input", 0.0, 0.0)
    expected_pj = 6 * target.neuron_active_pj + 12 * target.neuron_idle_pj
    assert first.neuron_j == pytest.approx(expected_pj * 1e-12)
    assert any("Input block" in text for text in energy.assumptions)
    without = Activity(**{**activity.__dict__, "input_neurons": None})
    with pytest.raises(ActivityMismatchError, match="holds no counts of them"):
        estimate(network, without, target)


def test_what_cannot_hold_input_neurons_refuses_them(tmp_path):
    network = _network(ir.InputNeurons("retina", _cuba()))
    with pytest.raises(NirError, match=r"'retina' has neurons .* export it to netx"):
        to_nir_graph(network)
    x = np.ones((6, 2, 3), np.uint8)
    with pytest.raises(Exception, match="no input layer of neurons"):
        simulate_torch(network, x)
    description = describe(write_netx(network, tmp_path / "n.net"))
    assert description["layers"][0]["kind"] == "input"
    assert description["layers"][0]["transform"] == {"weight_mant": 64, "bias_mant": 0}


# --- files slayer writes, against Lava --------------------------------------------------------------

needs_lava = pytest.mark.skipif(not HAS_LAVA, reason="lava-nc / lava-dl are not installed (make install)")


#: slayer's CUBA neuron parameters for both networks
SLAYER_NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1, "requires_grad": False}


def _slayer():
    from toolchain import lava_compat

    lava_compat.import_lava()
    import lava.lib.dl.slayer as slayer

    return slayer


def _export(blocks, path) -> None:
    with h5py.File(path, "w") as handle:
        group = handle.create_group("layer")
        for index, block in enumerate(blocks):
            block.export_hdf5(group.create_group(str(index)))


def _agree(path, network, x) -> None:
    from toolchain.sim.lava_backend import simulate_lava

    reference = simulate(network, x, record_spikes=True)
    lava = simulate_lava(path, x, network=network, record_spikes=True)
    assert reference.spikes is not None and lava.spikes is not None
    assert set(reference.spikes) == set(lava.spikes)
    for name, spikes in reference.spikes.items():
        mismatched = int((spikes != lava.spikes[name]).sum())
        assert mismatched == 0, f"{name}: {mismatched} spikes differ"
    assert reference.spikes[network.input_layer.name].sum() > 0, "silent input neurons prove nothing"
    if network.readout == "potential":
        assert np.array_equal(reference.potentials, lava.potentials)
        assert np.abs(reference.potentials).max() > 0


@pytest.mark.lava
@needs_lava
def test_a_slayer_dense_network_with_an_input_block_runs_as_in_lava(tmp_path):
    import torch

    slayer = _slayer()
    torch.manual_seed(0)
    params = SLAYER_NEURON
    blocks = [
        slayer.block.cuba.Input(params, weight=1.5, bias=0.25),
        slayer.block.cuba.Dense(params, 20, 12, weight_scale=2),
        slayer.block.cuba.Dense(params, 12, 4, weight_scale=2),
    ]
    x = torch.zeros(1, 20, 2)
    for block in blocks:  # slayer learns the blocks' shapes on a first forward pass
        x = block(x)
    _export(blocks, tmp_path / "slayer.net")
    network = read_netx(tmp_path / "slayer.net", time_steps=STEPS, input_encoding="spikes")
    assert network.input_layer is not None
    assert (network.input_layer.scale_mant, network.input_layer.offset_mant) == (96, 16)
    x = (np.random.default_rng(0).random((STEPS, 3, 20)) < 0.5).astype(np.uint8)
    _agree(tmp_path / "slayer.net", network, x)


@pytest.mark.lava
@needs_lava
def test_a_slayer_conv_network_with_an_input_block_and_graded_input_runs_as_in_lava(tmp_path):
    import torch

    slayer = _slayer()
    torch.manual_seed(1)
    params = SLAYER_NEURON
    blocks = [
        slayer.block.cuba.Input(params, weight=2.0, bias=0.1),
        slayer.block.cuba.Conv(params, 2, 4, 3, weight_scale=2),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Affine(params, 4 * 6 * 6, 3, weight_scale=2),  # a neuron-less readout
    ]
    x = torch.rand(1, 2, 8, 8, 4)
    for block in blocks:  # slayer learns the blocks' shapes on a first forward pass
        x = block(x)
    _export(blocks, tmp_path / "conv.net")
    network = read_netx(tmp_path / "conv.net", time_steps=STEPS, input_encoding="graded")
    assert network.readout == "potential" and network.input_shape == (2, 8, 8)
    _agree(tmp_path / "conv.net", network, np.random.default_rng(0).random((2, 2, 8, 8)))
