"""The simulate stage (toolchain.sim.backends): one dispatch for every backend, one record format."""

import json

import numpy as np
import pytest

from toolchain import ir
from toolchain.activity import read_activity
from toolchain.errors import SimulationError
from toolchain.sim.backends import InputArrays, run_backend, simulate_backends
from toolchain.sim.reference import simulate


def _network(bias=None):
    hidden = ir.CubaNeurons(i_decay=4096, v_decay=1024, vth_mant=100)
    out = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=60, bias_mant=bias)
    layers = (
        ir.Dense("hidden", np.array([[64, 0, 32], [128, -64, 64]]), hidden),
        ir.Dense("out", np.array([[64, 64], [-64, 128]]), out),
    )
    return ir.Network("small", (3,), "spikes", 8, layers, synapse_delay_steps=1)


def _inputs(samples=5, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((8, samples, 3)) < 0.5).astype(np.float32)
    return InputArrays(x, np.arange(samples) % 2, samples)


def test_compare_runs_the_reference_and_records_agreement():
    network, inputs = _network(), _inputs()
    run = simulate_backends(network, inputs, backends=("torch",), compare=True)
    assert set(run.results) == {"reference", "torch"}
    assert run.comparison is not None and run.comparison.agree
    assert run.results["reference"].spikes is not None  # recorded for the comparison
    expected = simulate(network, inputs.inputs)
    np.testing.assert_array_equal(run.results["reference"].counts, expected.counts)
    record = run.record("reference")
    assert record["mismatched_spikes"] == 0 and record["comparison"]["agree"] is True
    assert record["accuracy"] == expected.accuracy(inputs.labels)
    assert [layer["name"] for layer in record["layers"]] == ["hidden", "out"]


def test_the_record_reads_back_as_activity(tmp_path):
    network, inputs = _network(), _inputs()
    run = simulate_backends(network, inputs)
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(run.record("reference")))
    activity, accuracy = read_activity(path)
    assert activity == run.results["reference"].activity
    assert accuracy == run.accuracy("reference")
    assert "comparison" not in run.record("reference")  # no comparison asked for


def test_a_tolerated_backend_that_refuses_is_recorded_not_raised():
    network = _network(bias=np.array([5, 0]))  # the torch model has no neuron bias
    with pytest.raises(SimulationError, match="bias"):
        simulate_backends(network, _inputs(), backends=("torch",), compare=True)
    run = simulate_backends(network, _inputs(), backends=("torch",), compare=True, tolerate=("torch",))
    assert "torch" not in run.results and "bias" in run.not_compared["torch"]
    assert run.record("reference")["not_compared"] == dict(run.not_compared)


def test_a_given_reference_is_reused_and_must_match_the_inputs():
    network, inputs = _network(), _inputs()
    reference = simulate(network, inputs.inputs, record_spikes=True)
    run = simulate_backends(network, inputs, backends=("torch",), compare=True, reference=reference)
    assert run.results["reference"] is reference
    with pytest.raises(SimulationError, match="holds 5 samples, the inputs 3"):
        simulate_backends(network, _inputs(samples=3), backends=("torch",), compare=True, reference=reference)


def test_bad_backends_are_refused_by_name():
    network, inputs = _network(), _inputs()
    with pytest.raises(SimulationError, match="unknown backend"):
        simulate_backends(network, inputs, backends=("loihi",))
    with pytest.raises(SimulationError, match="lava backend runs netx files"):
        run_backend("lava", network, inputs.inputs)
