"""The event-driven TTFS SNN against the surrogate DNN, its activity, the training entry point,
the refusals and the ONNX export of TTFS runs (``docs/ttfs.md``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_cli import toolchain
from toolchain.config import ModelConfig, TTFSConfig, load_recipe, with_overrides
from toolchain.data import as_float, load_dataset
from toolchain.errors import RecipeError, ToolchainError
from toolchain.sim.ttfs import agreement, simulate_ttfs
from toolchain.snn.ttfs_model import build_ttfs_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _trained_like(model_cfg, shape, encode_input=True, seed=0):
    """A net with non-trivial batch-norm statistics and kernels (as after some training)."""
    torch.manual_seed(seed)
    net = build_ttfs_model(model_cfg, TTFSConfig(enabled=True, encode_input=encode_input), shape, 5)
    x = torch.rand(96, *shape)
    net.train()
    for _ in range(4):
        net.run(x)
    with torch.no_grad():
        for i, kernel in enumerate(net.kernels().values()):
            kernel.tau.fill_(1.5 + 0.25 * i)
            kernel.t_d.fill_(0.3 * i)
    net.eval()
    return net, x


NETS = {
    "mlp": (ModelConfig(hidden=[24, 12], batch_norm=True), (20,)),
    "mlp-no-bn": (ModelConfig(hidden=[16]), (20,)),
    "vgg-sum": (
        ModelConfig(architecture="vgg", channels=[4, 6], pool_after=[1, 2], hidden=[10], batch_norm=True),
        (1, 8, 8),
    ),
    "vgg-avg": (
        ModelConfig(
            architecture="vgg", channels=[4, 6], pool_after=[2], pool="avg", hidden=[], batch_norm=True
        ),
        (2, 6, 6),
    ),
    "conv1d": (ModelConfig(architecture="conv1d", channels=[4], pool_after=[1], hidden=[8]), (3, 10)),
}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("encode_input", [True, False])
def test_simulator_equals_the_surrogate_dnn(name, encode_input):
    model_cfg, shape = NETS[name]
    net, x = _trained_like(model_cfg, shape, encode_input)
    sim = simulate_ttfs(net, x, batch_size=40)
    match = agreement(net, x, sim)
    assert match.spike_mismatches == 0  # every neuron: same spike (or none) at the same step
    assert match.prediction_agreement == 1.0
    assert match.max_abs_logit_difference < 1e-5
    assert sim.max_spikes_per_neuron == 1
    spikes = sum(layer.spikes_per_sample for layer in sim.activity.layers)
    assert spikes > 0 and sim.activity.layers[-1].spikes_per_sample == 0.0


def test_activity_counts_by_hand():
    # one dense layer 2 -> 1 with weights [1, 0] after an input kernel: input 1.0 spikes at step 0,
    # input 0.01 never (t = 10 > 8). The hidden neuron gets w * e^0 = 1 and fires at step 0.
    net = build_ttfs_model(ModelConfig(hidden=[1]), TTFSConfig(enabled=True), (2,), 1)
    with torch.no_grad():
        net.block("dense1").synapse.weight.copy_(torch.tensor([[1.0, 0.0]]))
        net.block("output").synapse.weight.copy_(torch.tensor([[2.0]]))
    sim = simulate_ttfs(net, torch.tensor([[1.0, 0.01]]))
    dense1, output = sim.activity.layers
    assert sim.activity.source == "ttfs" and sim.activity.time_steps == 3 * 9
    assert sim.spike_times["input"].tolist() == [[0, 9]]  # 9 = no spike (window of 9 steps)
    assert sim.spike_times["dense1"].tolist() == [[0]]
    assert sim.input_spikes_per_sample == 1.0
    assert (dense1.synapses, dense1.fan_in, dense1.fan_out) == (1, 1, 1)
    assert (dense1.input_events_per_sample, dense1.synops_per_sample, dense1.spikes_per_sample) == (1, 1, 1)
    # integration: input at step 0, then V = 1 held for the 8 other steps (9); firing: step 0 (1)
    assert dense1.active_updates_per_sample == 10
    assert dense1.idle_updates_per_sample == 27 - 10
    assert sim.logits.tolist() == [[2.0]]  # 2 * decode(0) = 2
    assert (output.synops_per_sample, output.spikes_per_sample) == (1, 0)


def test_the_energy_model_prices_the_ttfs_activity_on_its_placement_graph():
    model_module = pytest.importorskip("toolchain.energy.model")
    targets = pytest.importorskip("toolchain.energy.targets")
    from toolchain.activity import Activity
    from toolchain.sim.ttfs import placement_network

    net, x = _trained_like(*NETS["vgg-sum"])
    activity = simulate_ttfs(net, x, network_name="t").activity
    assert Activity.from_dict(activity.to_dict()) == activity
    graph = placement_network(net, "t", activity.time_steps)
    assert graph.metadata["topology_only"] is True
    for layer, counts in zip(graph.synaptic_layers(), activity.layers, strict=True):
        # the graph keeps exactly the model's non-zero weights (folded batch norm)
        folded, _ = net.block(layer.name).folded_weight_bias()
        assert np.array_equal(layer.weight != 0, folded.numpy() != 0)
        assert layer.name == counts.name
    estimate = model_module.estimate(graph, activity, targets.load_target("loihi2"))
    assert estimate.to_dict()["energy_per_inference_j"] > 0


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-ttfs"
    result = toolchain("train", "models/digits-ttfs", "--epochs", "3", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return out, result


def test_cli_trains_a_ttfs_recipe_and_simulates_it(digits_run):
    out, result = digits_run
    metrics = json.loads((out / "metrics.json").read_text())
    sim = metrics["ttfs"]["simulator"]
    assert "TTFS SNN" in result.stdout
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2, 3]
    assert metrics["test_accuracy"] > 0.8
    assert sim["test_accuracy"] == metrics["test_accuracy"]
    assert sim["agreement_with_surrogate"]["prediction_agreement"] == 1.0
    # no neuron fires twice, on real data (the 450 test digits): counted from the events
    assert sim["max_spikes_per_neuron"] == 1
    assert sim["spikes_per_sample"] == pytest.approx(metrics["spikes_per_sample"], rel=1e-3, abs=0.5)
    assert set(metrics["ttfs"]["kernels"]) == {"input", "dense1"}


def test_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    """2 epochs, then --resume to 3, equal 3 uninterrupted epochs bit for bit. Both runs train in
    this process: the same torch thread count, hence the same float summation order (a CLI run in a
    subprocess may use another one)."""
    from toolchain.train.ttfs import fit_ttfs

    recipe = load_recipe(ROOT / "models" / "digits-ttfs")
    data = load_dataset("digits", None, {"test_fraction": 0.25, "seed": 0})
    full = tmp_path / "full"
    fit_ttfs(with_overrides(recipe, **{"train.epochs": 3}), data, full, progress=False, simulate=False)
    part = tmp_path / "part"
    fit_ttfs(with_overrides(recipe, **{"train.epochs": 2}), data, part, progress=False, simulate=False)
    fit_ttfs(
        with_overrides(recipe, **{"train.epochs": 3}), data, part, resume=True, progress=False, simulate=False
    )
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(part / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_ttfs_run_is_refused_as_a_cuba_snn_and_loads_as_ttfs(digits_run):
    from toolchain.export.ttfs import TTFSExportError, refuse
    from toolchain.train.trainer import load_trained
    from toolchain.train.ttfs import is_ttfs_recipe, load_ttfs_run

    out, _ = digits_run
    data = load_dataset("digits", None, {"test_fraction": 0.25, "seed": 0})
    with pytest.raises(ToolchainError, match=r"TTFS network \(\[ttfs\]\.enabled = true\).*fixed threshold"):
        load_trained(out, data.sample_shape, data.num_classes)
    recipe, model = load_ttfs_run(out, data.sample_shape, data.num_classes)
    assert is_ttfs_recipe(recipe)
    for fmt in ("netx", "onnx-snn"):
        with pytest.raises(TTFSExportError, match=f"--format {fmt}"):
            refuse(recipe, fmt)
    refuse(recipe, "onnx")  # the surrogate DNN's ONNX is allowed
    refuse(recipe, "nir")  # NIR as a TTFS graph (tests/test_ttfs_export.py), not as CUBA neurons
    x = torch.from_numpy(as_float(data.test.x))
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy = float((model.run(x).logits.argmax(1).numpy() == data.test.y).mean())
    assert accuracy == metrics["test_accuracy"]


def test_onnx_export_of_the_surrogate_matches_and_keeps_the_kernels(digits_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from toolchain.export.ttfs import export_ttfs_onnx
    from toolchain.train.ttfs import load_ttfs_run

    out, _ = digits_run
    data = load_dataset("digits", None, {"test_fraction": 0.25, "seed": 0})
    _, model = load_ttfs_run(out, data.sample_shape, data.num_classes)
    path = export_ttfs_onnx(model, tmp_path / "ttfs.onnx", metadata={"recipe": "digits-ttfs"})
    x = as_float(data.test.x).astype(np.float32)
    logits = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    reference = model.run(torch.from_numpy(x)).logits.detach().numpy()
    assert np.abs(logits - reference).max() < 1e-4
    assert (logits.argmax(1) == reference.argmax(1)).all()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    kernels = json.loads(props["toolchain.ttfs"])["kernels"]
    assert kernels["dense1"]["tau"] == pytest.approx(float(model.kernels()["dense1"].tau.detach()))


def test_recipe_combinations_that_are_refused():
    from toolchain.train.ttfs import check_ttfs_recipe

    recipe = load_recipe(ROOT / "models" / "digits-ttfs")
    with pytest.raises(RecipeError, match=r"\[encoding\]\.scheme"):
        check_ttfs_recipe(with_overrides(recipe, **{"encoding.scheme": "rate"}))
    with pytest.raises(RecipeError, match=r"\[ttfs\]\.bn_reg.*batch_norm"):
        check_ttfs_recipe(with_overrides(recipe, **{"model.batch_norm": False}))


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/data/mnist not present")
def test_no_neuron_fires_twice_on_mnist():
    mnist = load_dataset("mnist", SHARED)
    net = build_ttfs_model(
        ModelConfig(hidden=[64], batch_norm=True), TTFSConfig(enabled=True), mnist.sample_shape, 10
    )
    x = torch.from_numpy(as_float(mnist.test.x[:500]))
    net.train()
    net.run(x)
    net.eval()
    sim = simulate_ttfs(net, x)
    assert sim.max_spikes_per_neuron == 1
    assert agreement(net, x, sim).prediction_agreement == 1.0
    assert math.isclose(sim.input_spikes_per_sample, float((sim.spike_times["input"] < 9).sum()) / 500)


@pytest.mark.slow
def test_cli_export_of_a_ttfs_run(digits_run, tmp_path):
    out, _ = digits_run
    refused = toolchain("export", str(out), "--format", "netx", "--out", str(tmp_path / "x.h5"))
    assert refused.returncode == 2
    assert "is a TTFS network" in refused.stderr and "--format netx" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "x.h5").exists()
    written = toolchain("export", str(out), "--format", "onnx", "--out", str(tmp_path / "x.onnx"))
    assert written.returncode == 0, written.stderr
    assert "TTFS surrogate DNN" in written.stdout and (tmp_path / "x.onnx").is_file()
