"""NIR graphs as SpikingJelly, Norse and sinabs write them: imported, they spike as the library does.

Each network is built in the library, exported with the library's own NIR export, imported with
``nir_to_torch`` (and, for graphs on Loihi's grid, ``from_nir_graph`` + the reference simulator),
and run on the same random spikes as the library's model: every output spike must agree (0
mismatches), and the output must not be silent. What a library's graph cannot carry is pinned by
a test that the graph differs from the network, or by the refusal's message. snnTorch's graphs are
tested in ``tests/test_nir.py``; its recurrent layers here. Each library is skipped when absent.
"""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch

from toolchain.export.nir_torch import nir_to_torch
from toolchain.formats.nir import NirError, from_nir_graph, save_graph
from toolchain.sim.reference import simulate

STEPS, BATCH = 25, 6


def _spikes(*shape: int, seed: int, rate: float = 0.3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, BATCH, *shape, generator=generator) < rate).float()


def _ours(graph, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return nir_to_torch(graph, **kwargs)(inputs)


def _assert_same(ours: torch.Tensor, expected: torch.Tensor, min_spikes: int = 20) -> None:
    expected = expected.reshape(ours.shape)
    mismatches = int((ours != expected).sum())
    assert mismatches == 0, f"{mismatches} of {expected.numel()} output spikes differ"
    assert expected.sum() >= min_spikes, "the output is (nearly) silent: the test would prove nothing"


def _grid_weights(module: torch.nn.Module, seed: int, unit: int = 32) -> None:
    """Weights ``k / unit`` (``k`` in [-6, 8]) on Loihi's grid, a positive drift for activity.

    With ``unit`` 32 (``w_int = 2k``), or 8 after a 2x2 average pooling, every voltage is an even
    multiple of 1/64, so a threshold of 65/64 is never met exactly: the libraries that fire at
    ``v >= threshold`` and Loihi (``v > threshold``) cannot disagree on a tie.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.copy_(torch.randint(-6, 9, module.weight.shape, generator=generator) / unit)


def _loihi_spikes(graph: nir.NIRGraph, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    network = from_nir_graph(graph, time_steps=STEPS, **kwargs)
    result = simulate(network, inputs.to(torch.uint8).numpy(), record_spikes=True)
    return torch.from_numpy(result.spikes[network.layers[-1].name].astype(np.float32))


# --- SpikingJelly (NIR's equations, forward Euler, dt = 1e-4 s by default) ----------------------------


def _sj_run(net, inputs: torch.Tensor, dt: float = 1e-4, tmp_path=None):
    """SpikingJelly's own output spikes ``[T, B, ...]`` (multi-step mode) and its exported graph."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    functional.set_step_mode(net, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, inputs[:, :1], dt=dt)
    functional.reset_net(net)
    with torch.no_grad():
        expected = net(inputs)
    if tmp_path is not None:
        graph = save_graph(graph, tmp_path / "spikingjelly.nir")
    return expected, graph


@pytest.fixture(scope="module")
def sj():
    return pytest.importorskip(
        "spikingjelly.activation_based.nir_exchange", reason="spikingjelly not installed"
    )


def test_spikingjelly_dense_lif(sj, tmp_path):
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Linear(20, 30),
        neuron.LIFNode(tau=2.0),  # decay_input=True: r = 1
        layer.Linear(30, 10),
        neuron.LIFNode(tau=5.0, decay_input=False, v_threshold=0.8),  # r = tau
    )
    with torch.no_grad():
        net[0].weight.mul_(4)
    inputs = _spikes(20, seed=1)
    expected, path = _sj_run(net, inputs, tmp_path=tmp_path)
    _assert_same(_ours(path, inputs, dt=1e-4), expected)


def test_spikingjelly_cuba_lif(sj, tmp_path):
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        layer.Linear(20, 30),
        neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75, v_threshold=0.5),
        layer.Linear(30, 10),
        neuron.CUBALIFNode(c_decay=0.8, v_decay=0.9, v_threshold=0.4),
    )
    inputs = _spikes(20, seed=2)
    expected, path = _sj_run(net, inputs, tmp_path=tmp_path)
    _assert_same(_ours(path, inputs, dt=1e-4), expected)


def test_spikingjelly_conv_avgpool(sj, tmp_path):
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(2)
    net = torch.nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1),
        neuron.LIFNode(tau=2.0, v_threshold=0.3),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(64, 5),
        neuron.IFNode(v_threshold=0.5),
    )
    inputs = _spikes(2, 8, 8, seed=3, rate=0.4)
    expected, path = _sj_run(net, inputs, tmp_path=tmp_path)
    _assert_same(_ours(path, inputs, dt=1e-4), expected)


def test_spikingjelly_on_loihis_grid_runs_in_the_reference_simulator(sj):
    """IF neurons, weights on the grid, threshold 65/64: exact on Loihi, and no ties (see _grid_weights)."""
    from spikingjelly.activation_based import layer, neuron

    net = torch.nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, bias=False),
        neuron.IFNode(v_threshold=65 / 64),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(64, 6, bias=False),
        neuron.IFNode(v_threshold=65 / 64),
    )
    _grid_weights(net[0], seed=4)
    _grid_weights(net[4], seed=5, unit=8)
    inputs = _spikes(2, 8, 8, seed=6, rate=0.5)
    expected, graph = _sj_run(net, inputs)
    _assert_same(_loihi_spikes(graph, inputs, dt=1e-4), expected)
    _assert_same(_ours(graph, inputs, dt=1e-4), expected)


def test_spikingjelly_graph_of_another_dt_warns_without_dt(sj):
    """Exported at dt = 1e-3 (IF: r = 1/dt = 1000), read at 1e-4 the input is a tenth: a warning."""
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(3)
    net = torch.nn.Sequential(layer.Linear(20, 10), neuron.IFNode(v_threshold=0.5))
    inputs = _spikes(20, seed=7)
    expected, graph = _sj_run(net, inputs, dt=1e-3)
    with pytest.warns(UserWarning, match=r"states no time step .* dt = 0\.0001 s .* pass dt=SECONDS"):
        wrong = _ours(graph, inputs)
    assert not torch.equal(wrong, expected)
    _assert_same(_ours(graph, inputs, dt=1e-3), expected)


# --- Norse (to_nir writes tau = dt / tau_inv; convention="norse") ----------------------------------------


@pytest.fixture(scope="module")
def norse():
    return pytest.importorskip("norse.torch", reason="norse not installed")


def _norse_run(net, inputs: torch.Tensor):
    """Norse's own output spikes ``[T, B, ...]`` (stepped with its state) and its exported graph."""
    from norse.torch import to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch deprecates the call Norse makes
        graph = to_nir(net, inputs[0, :1])
    state, out = None, []
    with torch.no_grad():
        for x_t in inputs:
            z, state = net(x_t, state)
            out.append(z)
    return torch.stack(out), graph


def test_norse_dense_lif(norse, tmp_path):
    from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState

    torch.manual_seed(4)

    def lif(n: int, inv: float, v_th: float) -> LIFBoxCell:  # per-neuron values: the file can hold them
        return LIFBoxCell(
            LIFBoxParameters(
                tau_mem_inv=torch.full((n,), inv), v_leak=torch.zeros(n), v_th=torch.full((n,), v_th)
            )
        )

    net = SequentialState(
        torch.nn.Linear(20, 30), lif(30, 200.0, 0.3), torch.nn.Linear(30, 10), lif(10, 100.0, 0.2)
    )
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    inputs = _spikes(20, seed=8)
    expected, graph = _norse_run(net, inputs)
    path = save_graph(graph, tmp_path / "norse.nir")
    _assert_same(_ours(path, inputs, convention="norse", dt=1e-3), expected)


def test_norse_cuba_lif(norse):
    from norse.torch import LIFCell, LIFParameters, SequentialState

    torch.manual_seed(5)
    net = SequentialState(
        torch.nn.Linear(20, 30),
        LIFCell(),  # defaults: tau_syn_inv 200/s, tau_mem_inv 100/s, v_th 1, dt 1e-3
        torch.nn.Linear(30, 10),
        LIFCell(LIFParameters(tau_syn_inv=torch.as_tensor(300.0), v_th=torch.as_tensor(0.3))),
    )
    with torch.no_grad():
        net[0].weight.mul_(8)
    inputs = _spikes(20, seed=9)
    expected, graph = _norse_run(net, inputs)
    # scalar parameters: the 0-d arrays nir.write cannot store (h5py), so in memory
    with pytest.warns(UserWarning, match=r"dt = 0\.001 s \(Norse's to_nir default\)"):
        ours = _ours(graph, inputs, convention="norse")
    _assert_same(ours, expected)


def test_norse_conv(norse):
    from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState

    torch.manual_seed(6)
    net = SequentialState(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.as_tensor(300.0), v_th=torch.as_tensor(0.3))),
    )
    inputs = _spikes(2, 8, 8, seed=10, rate=0.4)
    expected, graph = _norse_run(net, inputs)
    assert tuple(graph.nodes["input"].input_type["input"]) == (1, 2, 8, 8)  # the sample's batch axis
    _assert_same(_ours(graph, inputs, convention="norse", dt=1e-3), expected)


def test_norse_pooling_and_flatten_are_lost_by_its_export(norse):
    from norse.torch import LIFBoxCell, SequentialState

    net = SequentialState(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        LIFBoxCell(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        LIFBoxCell(),
    )
    _, graph = _norse_run(net, _spikes(2, 8, 8, seed=11)[:2])
    with pytest.raises(
        NirError, match=r"^node '2' is empty \(NoneType\): the exporting library wrote no NIR"
    ):
        nir_to_torch(graph, convention="norse", dt=1e-3)


def test_norse_if_warns_without_convention_and_runs_with_it(norse):
    """Norse's IAF adds its input whatever dt: read as NIR (dt * r = 1e-4) it would be silent."""
    from norse.torch import IAFCell, IAFParameters, SequentialState

    torch.manual_seed(7)
    net = SequentialState(torch.nn.Linear(20, 10), IAFCell(IAFParameters(v_th=torch.full((10,), 0.5))))
    inputs = _spikes(20, seed=12)
    expected, graph = _norse_run(net, inputs)
    with pytest.warns(UserWarning, match=r"dt = 0\.0001 s .*convention='norse'"):
        silent = _ours(graph, inputs)
    assert silent.sum() == 0 < expected.sum()
    _assert_same(_ours(graph, inputs, convention="norse", dt=1e-3), expected)


# --- sinabs (time constants in steps, exp(-1/tau) decay; convention="sinabs") --------------------------


@pytest.fixture(scope="module")
def sinabs():
    return pytest.importorskip("sinabs", reason="sinabs not installed")


def _sinabs_run(net, inputs: torch.Tensor, squeeze: bool):
    """sinabs's own output spikes ``[T, B, ...]`` and its exported graph (sinabs is batch-major)."""
    import sinabs as sb

    x = inputs.transpose(0, 1)  # [B, T, ...]
    if squeeze:
        x = x.reshape(BATCH * STEPS, *inputs.shape[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = sb.to_nir(net, x)
    sb.reset_states(net)
    with torch.no_grad():
        out = net(x)
    return out.reshape(BATCH, STEPS, -1).transpose(0, 1), graph


def _single_spike_zero_reset() -> dict:
    from sinabs.activation import MembraneReset, SingleSpike

    return {"spike_fn": SingleSpike, "reset_fn": MembraneReset()}


def test_sinabs_dense_lif(sinabs):
    import sinabs.layers as sl

    torch.manual_seed(8)
    net = torch.nn.Sequential(
        torch.nn.Linear(20, 30),
        sl.LIF(
            tau_mem=torch.full((30,), 4.0),
            spike_threshold=torch.full((30,), 0.3),
            **_single_spike_zero_reset(),
        ),
        torch.nn.Linear(30, 10, bias=False),
        sl.LIF(
            tau_mem=torch.full((10,), 10.0),
            spike_threshold=torch.full((10,), 0.2),
            **_single_spike_zero_reset(),
        ),
    )
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    inputs = _spikes(20, seed=13)
    expected, graph = _sinabs_run(net, inputs, squeeze=False)
    assert tuple(graph.nodes["input"].input_type["input"]) == (STEPS, 20)  # the sample's time axis
    _assert_same(_ours(graph, inputs, convention="sinabs"), expected)


def test_sinabs_conv_sumpool(sinabs):
    import sinabs.layers as sl

    torch.manual_seed(9)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        sl.IAFSqueeze(batch_size=BATCH, spike_threshold=torch.tensor(0.5), **_single_spike_zero_reset()),
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        sl.IAFSqueeze(batch_size=BATCH, spike_threshold=torch.tensor(0.5), **_single_spike_zero_reset()),
    )
    inputs = _spikes(2, 8, 8, seed=14, rate=0.4)
    expected, graph = _sinabs_run(net, inputs, squeeze=True)
    _assert_same(_ours(graph, inputs, convention="sinabs"), expected)


def test_sinabs_on_loihis_grid_runs_in_the_reference_simulator(sinabs):
    """IAF neurons are NIR's IF at dt = 1 step: weights k/32 and threshold 65/64 read onto Loihi exactly."""
    import sinabs.layers as sl

    def iaf(n: int) -> sl.IAFSqueeze:
        return sl.IAFSqueeze(
            batch_size=BATCH, spike_threshold=torch.full((n,), 65 / 64), **_single_spike_zero_reset()
        )

    net = torch.nn.Sequential(
        torch.nn.Linear(20, 30, bias=False), iaf(30), torch.nn.Linear(30, 8, bias=False), iaf(8)
    )
    _grid_weights(net[0], seed=15)
    _grid_weights(net[2], seed=16)
    inputs = _spikes(20, seed=17, rate=0.5)
    expected, graph = _sinabs_run(net, inputs, squeeze=True)
    _assert_same(_loihi_spikes(graph, inputs, dt=1.0), expected)
    _assert_same(_ours(graph, inputs, convention="sinabs"), expected)
    with pytest.warns(UserWarning, match=r"dt = 0\.0001 s"):  # read as NIR at 1e-4 s: silent, but warned
        assert _ours(graph, inputs).sum() == 0


def test_sinabs_export_drops_what_nir_cannot_carry(sinabs):
    """sinabs's defaults (MultiSpike, MembraneSubtract) and LIF's tau_syn are not in its graph.

    The graph's nodes say one spike and a reset to 0 (NIR's IF/LIF), and a LIF without a synapse:
    a network with those defaults, or with ``tau_syn``, means something the graph does not.
    """
    import sinabs.layers as sl

    torch.manual_seed(10)
    inputs = _spikes(20, seed=18, rate=0.6)
    default = torch.nn.Sequential(torch.nn.Linear(20, 10), sl.IAFSqueeze(batch_size=BATCH))
    with torch.no_grad():
        default[0].weight.mul_(4)
    expected, graph = _sinabs_run(default, inputs, squeeze=True)
    assert expected.max() > 1  # several spikes in one step
    assert not torch.equal(_ours(graph, inputs, convention="sinabs"), expected)
    synaptic = torch.nn.Sequential(
        torch.nn.Linear(20, 10),
        sl.LIF(
            tau_mem=torch.full((10,), 4.0),
            tau_syn=torch.full((10,), 3.0),
            spike_threshold=torch.full((10,), 0.3),
        ),
    )
    _, graph = _sinabs_run(synaptic, inputs, squeeze=False)
    assert isinstance(graph.nodes["1"], nir.LIF)  # tau_syn is gone


# --- refusals and the time step ---------------------------------------------------------------------------


def test_snntorch_recurrent_layer_is_refused_as_recurrent():
    snn = pytest.importorskip("snntorch", reason="snntorch not installed")
    pytest.importorskip("nirtorch", reason="nirtorch not installed")
    from snntorch.export_nir import export_to_nir

    net = torch.nn.Sequential(
        torch.nn.Linear(4, 3),
        snn.RLeaky(
            beta=torch.full((3,), 0.9), V=torch.ones(3), all_to_all=False, init_hidden=True, output=True
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, 4), ignore_dims=[0])
    for read in (lambda: nir_to_torch(graph, dt=1e-4), lambda: from_nir_graph(graph, time_steps=3)):
        with pytest.raises(NirError, match=r"form a loop: a recurrent layer .* is not supported") as info:
            read()
        assert "branch" not in str(info.value)


def _if_graph(**metadata) -> nir.NIRGraph:
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[0.6]])), nir.IF(r=np.full(1, 1e4), v_threshold=np.ones(1))
    )
    graph.metadata = dict(metadata)
    return graph


def test_nir_to_torch_warns_once_naming_the_dt_it_uses():
    inputs = torch.ones(6, 1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spikes = _ours(_if_graph(), inputs)
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        "the NIR graph states no time step (no dt in its metadata): nir_to_torch reads its neurons with "
        "dt = 0.0001 s (snnTorch's and SpikingJelly's); pass dt=SECONDS if it was exported with another, "
        "and convention='norse' or 'sinabs' for those libraries' graphs"
    ]
    assert spikes.flatten().tolist() == [0, 1, 0, 1, 0, 1]  # v = 0.6, 1.2 > 1 -> reset, ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stated dt (argument or metadata), or sinabs's steps: no warning
        assert torch.equal(_ours(_if_graph(), inputs, dt=1e-4), spikes)
        assert torch.equal(_ours(_if_graph(dt=1e-4), inputs), spikes)
        assert _ours(_if_graph(), inputs, convention="sinabs").sum() == 6  # dt = 1 step: r = 1e4 per step


@pytest.mark.parametrize("dt", [0.0, -1e-4, float("nan"), float("inf")])
def test_nir_to_torch_refuses_a_time_step_that_is_not_positive(dt):
    with pytest.raises(NirError, match=r"^dt = .*: expected a positive, finite time step in seconds$"):
        nir_to_torch(_if_graph(), dt=dt)
    with pytest.raises(NirError, match=r"^dt = .*: expected a positive, finite time step in seconds$"):
        nir_to_torch(_if_graph(dt=dt))


def test_nir_to_torch_refuses_an_unknown_convention():
    with pytest.raises(NirError, match=r"^convention = 'lava': expected one of nir, norse, sinabs$"):
        nir_to_torch(_if_graph(dt=1e-4), convention="lava")
