"""``toolchain convert``: a float NIR graph from another library onto Loihi's registers, measured.

Hand-built NIR graphs pin the rounding rules (the weight grid, the input scale folded into the
weights, ``v_leak`` and a synaptic bias as the voltage bias, the refusals); an IF graph whose values
lie on Loihi's grid must convert without a single mismatched spike against the float graph (both
with NIR's instantaneous edges, and both with Lava's one-step delay in netx); snnTorch's own export
converts, and the netx file it gives runs in Lava spike for spike as in the reference simulator.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import warnings

import nir
import numpy as np
import pytest
import torch

from toolchain import ir
from toolchain.errors import QuantizationError
from toolchain.export.convert import convert_nir
from toolchain.export.nir_quantize import quantize_nir_graph
from toolchain.formats.netx import read_netx
from toolchain.formats.nir import NirError, from_nir_graph, save_graph, to_nir_graph
from toolchain.sim.reference import simulate

DT = 1e-4
STEPS, BATCH = 12, 16


def _graph(*nodes: tuple[str, nir.NIRNode], n_in: int) -> nir.NIRGraph:
    names = ["input", *(name for name, _ in nodes), "output"]
    last = nodes[-1][1]
    n_out = int(np.asarray(getattr(last, "v_threshold", getattr(last, "r", None))).size)
    graph_nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        **dict(nodes),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    return nir.NIRGraph(nodes=graph_nodes, edges=list(itertools.pairwise(names)))


def _lif(n: int, tau: float = 1e-3, r: float | None = None, v_leak: float = 0.0) -> nir.LIF:
    return nir.LIF(
        tau=np.full(n, tau),
        r=np.full(n, tau / DT if r is None else r),
        v_leak=np.full(n, v_leak),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
    )


def _if(n: int, threshold: float = 65 / 64) -> nir.IF:
    return nir.IF(r=np.full(n, 1 / DT), v_threshold=np.full(n, threshold), v_reset=np.zeros(n))


def test_weights_are_rounded_onto_the_8_bit_grid_and_every_error_reported():
    weight = np.array([[0.1, -0.2, 0.333], [0.05, 0.49, -0.01]])
    graph = _graph(("fc", nir.Linear(weight=weight)), ("lif", _lif(2)), n_in=3)
    converted = quantize_nir_graph(graph, time_steps=STEPS, scale_layers=False)
    layer = converted.network.layers[0]
    expected = 2 * np.round(weight * 32)  # even integers: a weight of 1.0 is 64
    np.testing.assert_array_equal(layer.weight, expected)
    report = converted.report.layers[0]
    assert report.weight_max_abs_error == pytest.approx(np.abs(expected / 64 - weight).max())
    assert (layer.neurons.i_decay, layer.neurons.v_decay, layer.neurons.vth_mant) == (4096, 410, 64)
    assert converted.network.synapse_delay_steps == 0  # NIR's edges are instantaneous
    assert not converted.report.exact


def test_the_layer_scale_shrinks_the_rounding_and_keeps_the_float_layer():
    weight = np.array([[0.1, -0.2, 0.333], [0.05, 0.09, -0.01]])
    graph = _graph(("fc", nir.Linear(weight=weight)), ("lif", _lif(2)), n_in=3)
    plain = quantize_nir_graph(graph, time_steps=STEPS, scale_layers=False).report.layers[0]
    scaled = quantize_nir_graph(graph, time_steps=STEPS).report.layers[0]
    assert scaled.scale_exp > 0
    assert scaled.weight_max_abs_error < plain.weight_max_abs_error
    assert scaled.registers.vth_mant == 64 * 2**scaled.scale_exp  # the threshold scaled alike


def test_the_input_scale_is_folded_into_the_weights():
    weight = np.array([[0.25, -0.125]])
    graph = _graph(("fc", nir.Linear(weight=weight)), ("lif", _lif(1, r=20.0)), n_in=2)  # (dt/tau) r = 2
    layer = quantize_nir_graph(graph, time_steps=STEPS, scale_layers=False).network.layers[0]
    np.testing.assert_array_equal(layer.weight, [[32, -16]])  # 2 x weight x 64


def test_v_leak_and_a_synaptic_bias_into_a_lif_become_the_voltage_bias():
    graph = _graph(
        ("fc", nir.Affine(weight=np.array([[0.5], [0.25]]), bias=np.array([0.125, -0.25]))),
        ("lif", _lif(2, v_leak=1.0)),  # (dt/tau) v_leak = 0.1 per step
        n_in=1,
    )
    neurons = quantize_nir_graph(graph, time_steps=STEPS, scale_layers=False).network.layers[0].neurons
    assert neurons.bias_exp == 6
    np.testing.assert_array_equal(neurons.bias_mant, np.round(np.array([0.225, -0.15]) * 64))


def test_what_loihi_cannot_hold_is_refused_naming_the_node():
    cuba = nir.CubaLIF(
        tau_syn=np.full(1, 2e-4),
        tau_mem=np.full(1, 1e-3),
        r=np.full(1, 10.0),
        v_leak=np.zeros(1),
        v_threshold=np.ones(1),
        v_reset=np.zeros(1),
        w_in=np.full(1, 2.0),
    )
    biased = _graph(("fc", nir.Affine(weight=np.ones((1, 2)), bias=np.ones(1))), ("cuba", cuba), n_in=2)
    with pytest.raises(QuantizationError, match=r"node 'fc': a synaptic bias .* bias=False"):
        quantize_nir_graph(biased, time_steps=STEPS)
    mixed = _lif(2)
    mixed.tau[1] = 2e-3
    with pytest.raises(NirError, match="node 'lif': the voltage decay differs between neurons"):
        quantize_nir_graph(
            _graph(("fc", nir.Linear(weight=np.ones((2, 2)))), ("lif", mixed), n_in=2), time_steps=STEPS
        )
    with pytest.raises(NirError, match="--time-steps"):
        quantize_nir_graph(_graph(("fc", nir.Linear(weight=np.ones((1, 2)))), ("lif", _lif(1)), n_in=2))


def test_a_graph_the_toolchain_wrote_converts_to_its_exact_reading():
    rng = np.random.default_rng(0)
    network = ir.Network(
        name="ours",
        input_shape=(6,),
        input_encoding="spikes",
        time_steps=STEPS,
        layers=(
            ir.Dense("hidden", 2 * rng.integers(-40, 40, (5, 6)), ir.CubaNeurons(1024, 512, 100)),
            ir.Dense("out", 2 * rng.integers(-40, 40, (3, 5)), ir.CubaNeurons(4096, 256, 90)),
        ),
    )
    graph = to_nir_graph(network, DT)
    converted = quantize_nir_graph(graph, scale_layers=False).network
    exact = from_nir_graph(graph)
    assert converted.synapse_delay_steps == exact.synapse_delay_steps == 1
    for ours, theirs in zip(converted.layers, exact.layers, strict=True):
        np.testing.assert_array_equal(ours.weight, theirs.weight)
        assert ours.neurons.registers == theirs.neurons.registers


def _if_graph_on_the_grid(seed: int) -> nir.NIRGraph:
    """20-16-4 IF neurons with weights k/32: the float graph computes exactly what Loihi does."""
    rng = np.random.default_rng(seed)
    return _graph(
        ("fc1", nir.Linear(weight=rng.integers(-6, 12, (16, 20)) / 32)),
        ("if1", _if(16)),
        ("fc2", nir.Linear(weight=rng.integers(-6, 12, (4, 16)) / 32)),
        ("if2", _if(4)),
        n_in=20,
    )


@pytest.fixture()
def if_model(tmp_path):
    path = save_graph(_if_graph_on_the_grid(1), tmp_path / "if.nir")
    x = (np.random.default_rng(2).random((BATCH, STEPS, 20)) < 0.4).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    labels = np.arange(BATCH) % 4
    np.save(tmp_path / "y.npy", labels)
    return path, tmp_path / "x.npy", tmp_path / "y.npy"


@pytest.mark.parametrize("to", ["nir", "netx"])
def test_an_on_grid_graph_converts_without_a_mismatched_spike(if_model, tmp_path, to):
    path, x, y = if_model
    conversion = convert_nir(path, tmp_path / f"out.{to}", to=to, time_steps=STEPS, inputs=x, labels=y)
    check = conversion.check
    assert check is not None
    assert check.quantization.mismatched_spikes == 0
    assert check.quantization.prediction_agreement == 1.0
    assert check.quantization.accuracy_a == check.quantization.accuracy_b
    if to == "netx":  # Lava's one-step delay per layer: measured separately, and it does change spikes
        assert check.synapse_delay_steps == 1 and check.delay is not None
        assert check.delay.mismatched_spikes > 0
        network = read_netx(conversion.out)
        assert network.synapse_delay_steps == 1
    else:
        assert check.synapse_delay_steps == 0 and check.delay is None


def test_convert_through_the_entry_point(if_model, tmp_path, cli):
    path, x, y = if_model
    out, report = tmp_path / "m.net", tmp_path / "r.json"
    args = ("convert", str(path), "--out", str(out), "--time-steps", str(STEPS), "--input", str(x))
    result = cli(*args, "--labels", str(y), "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "float graph vs quantized network on 16 samples" in result.stdout
    assert "0 of 768 output spike positions differ" in result.stdout
    assert "dt = 0.0001 s" in result.stderr  # the graph states no dt: the default is named
    data = json.loads(report.read_text())
    assert data["check"]["quantization"]["mismatched_spikes"] == 0
    assert data["synapse_delay_steps"] == 1
    # the written netx runs as the reference simulator says, with what convert wrote into it
    network = read_netx(out)
    spikes = np.load(x).transpose(1, 0, 2)
    result_sim = simulate(network, spikes)
    assert result_sim.counts.sum() > 0
    missing = cli("convert", str(path), "--out", str(tmp_path / "n.net"))
    assert missing.returncode == 2
    assert "--time-steps" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "n.net").exists()


HAS_SNNTORCH = importlib.util.find_spec("snntorch") is not None and importlib.util.find_spec("nirtorch")
HAS_LAVA = importlib.util.find_spec("lava") is not None


@pytest.mark.skipif(not HAS_SNNTORCH, reason="snntorch (test-only dependency) not installed")
def test_an_snntorch_model_converts_and_runs_in_lava_as_in_the_reference_simulator(tmp_path):
    import snntorch as snn
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(30, 24),
        snn.Leaky(
            beta=torch.full((24,), 0.9), threshold=torch.ones(24), init_hidden=True, reset_mechanism="zero"
        ),
        torch.nn.Linear(24, 5, bias=False),
        snn.Synaptic(
            alpha=torch.full((5,), 0.7),
            beta=torch.full((5,), 0.8),
            threshold=torch.ones(5),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
            output=True,
        ),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch deprecates the call snnTorch makes
        graph = export_to_nir(net, torch.zeros(1, 30), ignore_dims=[0])
    path = save_graph(graph, tmp_path / "snntorch.nir")
    inputs = (torch.rand(STEPS, 32, 30) < 0.3).float()
    snn_utils.reset(net)
    with torch.no_grad():
        expected = torch.stack([net(x_t)[0] for x_t in inputs])
    np.save(tmp_path / "x.npy", inputs.permute(1, 0, 2).numpy())
    np.save(tmp_path / "y.npy", expected.sum(dim=0).argmax(dim=1).numpy())
    conversion = convert_nir(
        path, tmp_path / "m.net", time_steps=STEPS, inputs=tmp_path / "x.npy", labels=tmp_path / "y.npy"
    )
    check = conversion.check
    assert check is not None and check.delay is not None
    assert check.delay.accuracy_a == 1.0  # the float graph (NIR's delay 0) predicts as snnTorch does
    q = check.quantization
    assert q.mismatched_spikes / q.positions < 0.1, q  # rounding moves a few spikes, not the output
    if not HAS_LAVA:
        pytest.skip("lava-nc is not installed (make install): the Lava half of this test did not run")
    from toolchain.sim.lava_backend import simulate_lava

    network = read_netx(conversion.out)
    x = inputs[:, :2].numpy()
    lava = simulate_lava(conversion.out, x, network=network, record_spikes=True)
    reference = simulate(network, x, record_spikes=True)
    for name, spikes in reference.spikes.items():
        assert np.array_equal(lava.spikes[name], spikes), name


def test_the_api_quantizes_a_float_graph_file(tmp_path):
    import toolchain

    path = save_graph(_if_graph_on_the_grid(3), tmp_path / "if.nir")
    with pytest.warns(UserWarning, match="dt = 0.0001 s"):
        network, report = toolchain.quantize_nir(path, time_steps=STEPS)
    assert network.synapse_delay_steps == 0 and len(report.layers) == 2
    assert report.max_weight_error == 0.0  # on the grid: nothing to round
    written = toolchain.write(network, tmp_path / "q.nir")
    assert toolchain.read(written).layers[0].weight.tolist() == network.layers[0].weight.tolist()
    with pytest.raises(NirError, match=r"if\.nir: .*--time-steps"):
        toolchain.quantize_nir(path)
