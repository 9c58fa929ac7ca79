"""The potential readout: a non-spiking output layer that integrates, end to end.

Train a tiny model with ``[model].readout = "potential"`` -> quantize -> netx -> the reference
simulator, Lava and the fixed-point torch model agree spike for spike and output potential for
potential; lava-dl's neuron-less dense layer reads as such a readout; ONNX keeps the logits.
"""

import importlib.util

import h5py
import numpy as np
import pytest
import torch

from toolchain import ir
from toolchain.config import parse_recipe
from toolchain.data.encoding import encode
from toolchain.export.onnx import export_snn_onnx
from toolchain.export.quantize import quantize_model
from toolchain.formats.netx import read_netx, write_netx
from toolchain.formats.onnx import run_onnx
from toolchain.loihi_numbers import NEVER_SPIKE_VTH_MANT, STATE_SCALE, CubaRegisters
from toolchain.sim.compare import compare, simulate_torch
from toolchain.sim.reference import simulate
from toolchain.snn.dynamics import heaviside
from toolchain.snn.models import build_model, readout_population
from toolchain.snn.numerics import apply_numerics

HAS_LAVA = importlib.util.find_spec("lava") is not None
torch.set_num_threads(1)


def _recipe(numeric: str = "fixed_point", scheme: str = "rate", steps: int = 6, **model):
    return parse_recipe(
        {
            "name": "readout",
            "encoding": {"scheme": scheme, "time_steps": steps},
            "model": {"hidden": [12], "readout": "potential", **model},
            "neuron": {"numeric": numeric, "voltage_decay": 0.2},
        }
    )


def _model(recipe, inputs: int = 10, classes: int = 3, scale: float = 3.0):
    torch.manual_seed(0)
    model = build_model(recipe.model, recipe.neuron, (inputs,), classes)
    apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return model.eval()


def _spikes(steps: int, batch: int, inputs: int = 10, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, inputs)) < 0.4).astype(np.uint8)


def test_readout_population_integrates_by_hand():
    """v[t] = v[t-1] + x[t] (current decay 1, voltage decay 0), never a spike; logits = v[T-1] / T."""
    population = readout_population(parse_recipe({"name": "x"}).neuron, heaviside)
    population.delay_steps = 0
    x = torch.tensor([[[0.5, -1.0]], [[0.25, 2.0]], [[1.0, 0.0]]])
    volts = population(x)
    np.testing.assert_allclose(volts[:, 0].numpy(), [[0.5, -1.0], [0.75, 1.0], [1.75, 1.0]])
    population.use_fixed_point(CubaRegisters(4096, 0, NEVER_SPIKE_VTH_MANT))
    np.testing.assert_allclose(population(x.double())[:, 0].numpy(), [[0.5, -1.0], [0.75, 1.0], [1.75, 1.0]])


def test_model_logits_are_the_time_mean_of_the_output_input():
    recipe = _recipe(numeric="float", scheme="direct")
    model = _model(recipe, scale=1.0)
    x = torch.rand(6, 4, 10)
    out = model(x)
    output = model.blocks[-1]
    current = output.current(model.blocks[0](x))  # the synaptic input of the output layer, delayed 1 step
    delayed = torch.cat([torch.zeros_like(current[:1]), current[:-1]])
    torch.testing.assert_close(out.logits, delayed.mean(dim=0))
    assert out.potentials is not None and out.potentials.shape == (6, 4, 3)
    assert "output" not in out.spikes  # the readout never fires: no spikes to count or regularize
    out.logits.sum().backward()
    assert float(output.synapse.module.weight.grad.abs().sum()) > 0


def test_exported_readout_never_fires_and_matches_the_trained_logits():
    recipe = _recipe()
    model = _model(recipe)
    network, _ = quantize_model(model, recipe)
    assert network.readout == "potential"
    assert not network.layers[-1].neurons.spiking
    assert (network.layers[-1].neurons.i_decay, network.layers[-1].neurons.v_decay) == (4096, 0)
    x = _spikes(6, 8)
    result = simulate(network, x, record_spikes=True)
    assert result.spikes["output"].sum() == 0 and result.counts.sum() == 0
    assert result.potentials.shape == (6, 8, 3)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).double()).logits
    # the fixed-point model's logit is the voltage after the last step / T, in units of 2^12
    np.testing.assert_array_equal(result.scores, (logits * 6 * STATE_SCALE).round().long().numpy())
    np.testing.assert_array_equal(result.predictions, logits.argmax(dim=1).numpy())
    assert np.ptp(result.scores) > 0  # not a silent network


def test_ir_refuses_a_readout_that_does_not_match_the_output_layer():
    recipe = _recipe()
    network, _ = quantize_model(_model(recipe), recipe)
    spiking = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=64)
    layers = (*network.layers[:-1], ir.Dense("output", network.layers[-1].weight, spiking))
    with pytest.raises(ir.IRError, match="a potential readout needs an output layer that never fires"):
        ir.Network("n", network.input_shape, "spikes", 6, layers, readout="potential")
    with pytest.raises(ir.IRError, match="the output layer never fires"):
        ir.Network("n", network.input_shape, "spikes", 6, network.layers, readout="spike_count")
    with pytest.raises(ir.IRError, match="readout must be one of"):
        ir.Network("n", network.input_shape, "spikes", 6, network.layers, readout="max")


def test_netx_round_trip_keeps_the_readout(tmp_path):
    recipe = _recipe()
    network, _ = quantize_model(_model(recipe), recipe)
    back = read_netx(write_netx(network, tmp_path / "m.net"))
    assert back.readout == "potential"
    assert back.layers[-1].neurons.registers == network.layers[-1].neurons.registers


def test_nir_round_trip_keeps_the_readout_bit_exactly(tmp_path):
    from toolchain.formats.nir import read_nir, write_nir

    recipe = _recipe()
    network, _ = quantize_model(_model(recipe), recipe)
    path = write_nir(network, tmp_path / "m.nir")
    back = read_nir(path)
    assert back.readout == "potential"
    assert back.layers[-1].neurons.registers == network.layers[-1].neurons.registers
    x = _spikes(6, 5, seed=4)
    np.testing.assert_array_equal(simulate(back, x).potentials, simulate(network, x).potentials)


def _without_output_neuron(path):
    """lava-dl's form of a readout: the last dense layer has no ``neuron`` group, and no sidecar."""
    with h5py.File(path, "r+") as handle:
        del handle["toolchain"]
        layers = handle["layer"]
        del layers[str(len(layers) - 1)]["neuron"]


def test_a_neuronless_dense_layer_reads_as_netx_integrator(tmp_path):
    recipe = _recipe()
    network, _ = quantize_model(_model(recipe), recipe)
    path = write_netx(network, tmp_path / "m.net")
    _without_output_neuron(path)
    back = read_netx(path, time_steps=6, input_encoding="spikes")
    neurons = back.layers[-1].neurons
    assert back.readout == "potential"
    assert (neurons.i_decay, neurons.v_decay, neurons.vth_mant) == (0, 4096, 2**17)
    x = _spikes(6, 4)
    result = simulate(back, x)
    # netx's integrator keeps every input in u and v = u; ours (iDecay 4096, vDecay 0) keeps it in v:
    # without a bias both give v[t] = sum of a_in << 6 up to t
    ours = simulate(network, x)
    np.testing.assert_array_equal(result.potentials, ours.potentials)
    assert np.abs(ours.potentials).max() > 0


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed (make install)")
@pytest.mark.parametrize("neuronless", [False, True], ids=["toolchain-file", "lava-dl-neuronless"])
def test_reference_lava_and_torch_agree_potential_for_potential(tmp_path, neuronless):
    from toolchain.sim.lava_backend import simulate_lava

    recipe = _recipe()
    network, _ = quantize_model(_model(recipe), recipe)
    path = write_netx(network, tmp_path / "m.net")
    if neuronless:
        _without_output_neuron(path)
    back = read_netx(path, time_steps=6, input_encoding="spikes") if neuronless else read_netx(path)
    x = _spikes(6, 5, seed=3)
    reference = simulate(back, x, record_spikes=True)
    lava = simulate_lava(path, x, network=back, record_spikes=True)
    others = {"lava": lava}
    if not neuronless:  # the torch model has no netx integrator (iDecay 0): compare it on ours
        others["torch"] = simulate_torch(back, x)
    comparison = compare(reference, others)
    assert comparison.agree, comparison.to_dict()
    assert comparison.potential_mismatches == dict.fromkeys(others, 0)
    np.testing.assert_array_equal(lava.potentials, reference.potentials)
    assert np.abs(reference.potentials).max() > 0


def test_trained_potential_readout_deploys_exactly(tmp_path):
    """A fixed-point model trained with the readout exports with no change: reference = torch."""
    from toolchain.data import load_dataset
    from toolchain.train.trainer import fit

    recipe = parse_recipe(
        {
            "name": "digits-readout",
            "data": {"dataset": "digits"},
            "encoding": {"scheme": "rate", "time_steps": 6},
            "model": {"hidden": [32], "readout": "potential"},
            "neuron": {"numeric": "fixed_point"},
            "train": {"epochs": 4, "batch_size": 32, "learning_rate": 0.005},
        }
    )
    dataset = load_dataset("digits")
    run = fit(recipe, dataset, tmp_path / "run", progress=False)
    assert run.evaluation.accuracy > 0.6  # it learned something in a few epochs
    network, report = quantize_model(run.model.eval(), recipe)
    assert not report.inexact or all("fixed point" not in note for note in report.inexact)
    x_static = torch.from_numpy(dataset.test.x[:64]).float()
    spikes = encode("rate", x_static, 6, torch.Generator().manual_seed(0)).numpy()
    reference = simulate(network, spikes, record_spikes=True)
    torch_result = simulate_torch(network, spikes)
    comparison = compare(reference, {"torch": torch_result})
    assert comparison.agree, comparison.to_dict()
    with torch.no_grad():
        logits = run.model(torch.from_numpy(spikes).double()).logits
    np.testing.assert_array_equal(reference.predictions, logits.argmax(dim=1).numpy())


def test_onnx_export_of_a_potential_readout(tmp_path):
    recipe = _recipe(numeric="float", scheme="direct")
    model = _model(recipe, scale=1.0)
    path = export_snn_onnx(model, 6, tmp_path / "m.onnx", record_spikes=True)
    x = torch.rand(6, 5, 10)
    with torch.no_grad():
        expected = model(x)
    got = run_onnx(path, x.numpy())
    assert set(got) == {"logits", "spikes_dense1"}
    assert np.abs(got["logits"] - expected.logits.numpy()).max() <= 1e-5


@pytest.mark.parametrize(
    ("recipe_name", "overrides"),
    [
        ("gsc-paper", {}),
        (
            "gsc-paper",
            {"distill.teacher": "ann", "distill.teacher_epochs": 1, "regularization.logits_weight": 0.01},
        ),
        ("cifar10-paper", {}),
    ],
    ids=["gsc-paper", "gsc-paper-kd-logits", "cifar10-paper"],
)
def test_paper_setting_recipes_parse_and_train_one_step(tmp_path, recipe_name, overrides):
    """The paper-setting recipes: the readout, LIF and surrogate they state, one training step on
    random data of their dataset's shape (no data set needed)."""
    from pathlib import Path

    from toolchain.config import load_recipe, with_overrides
    from toolchain.data import ArraySplit, Dataset, dataset_shape
    from toolchain.train.trainer import fit

    root = Path(__file__).resolve().parents[1]
    recipe = load_recipe(root / "models" / recipe_name / "recipe.toml")
    assert recipe.model.readout == "potential"
    assert (recipe.neuron.voltage_decay, recipe.neuron.threshold, recipe.neuron.surrogate) == (
        0.5,
        2.0,
        "sigmoid",
    )
    recipe = with_overrides(
        recipe, **{"train.epochs": 1, "train.batch_size": 2, "train.device": "cpu", **overrides}
    )
    shape = dataset_shape(recipe.data.dataset, recipe.data.options)
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.random((2, *shape.sample_shape)).astype(np.float32), np.array([0, 1]))
    dataset = Dataset(recipe.data.dataset, split, split, shape.classes, shape.sample_shape)
    result = fit(recipe, dataset, tmp_path / "run", progress=False)
    assert np.isfinite(result.history[0].loss)
    assert result.model.readout == "potential"
    assert result.evaluation.layers[-1].spikes_per_sample == 0.0  # the readout never fires
