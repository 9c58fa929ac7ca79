"""NIR export of TTFS networks (``docs/ttfs.md#nir``): weights and kernels kept, exact round trip,
never readable as a CUBA network."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from tests.test_cli import toolchain
from tests.test_ttfs_sim import NETS, _trained_like
from toolchain.config import load_recipe, save_recipe
from toolchain.export.ttfs import (
    NIR_KERNEL_TAG,
    export_ttfs_nir,
    is_ttfs_nir_graph,
    read_ttfs_nir,
    run_ttfs_nir_graph,
    ttfs_kernel_nodes,
)
from toolchain.formats.nir import NirError, load_graph, read_nir
from toolchain.torch_files import save_torch
from toolchain.train.trainer import MODEL_FILE, RECIPE_FILE
from toolchain.train.ttfs import build_for_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = load_recipe(ROOT / "models" / "digits-ttfs")


def _export(name: str, encode_input: bool, path: Path):
    model_cfg, shape = NETS[name]
    net, x = _trained_like(model_cfg, shape, encode_input)
    recipe = dataclasses.replace(RECIPE, model=model_cfg, ttfs=net.config)
    return net, x, recipe, export_ttfs_nir(net, recipe, path, provenance={"recipe": recipe.name})


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("encode_input", [True, False])
def test_the_nir_file_restores_the_surrogate_exactly(name, encode_input, tmp_path):
    net, x, recipe, path = _export(name, encode_input, tmp_path / "ttfs.nir")
    restored_recipe, restored = read_ttfs_nir(path)
    assert restored_recipe == recipe
    assert torch.equal(restored.run(x).logits, net.run(x).logits)  # bit-exact
    for key, value in net.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


@pytest.mark.parametrize("name", sorted(NETS))
def test_the_nodes_alone_compute_the_surrogate(name, tmp_path):
    """What a consumer that reads only the nodes (folded weights, kernel metadata) computes."""
    net, x, _, path = _export(name, True, tmp_path / "ttfs.nir")
    graph = load_graph(path)
    with torch.no_grad():
        logits = run_ttfs_nir_graph(graph, x)
        reference = net.run(x).logits
    assert (logits.argmax(1) == reference.argmax(1)).all()
    assert float((logits - reference).abs().max()) < 1e-4  # batch norm folded: float rounding only


def test_every_weight_and_kernel_parameter_is_in_the_nodes(tmp_path):
    net, _, _, path = _export("vgg-sum", True, tmp_path / "ttfs.nir")
    graph = load_graph(path)
    kernels = ttfs_kernel_nodes(graph)
    assert sorted(kernels) == sorted(name + ".kernel" for name in net.kernels())
    for name, kernel in net.kernels().items():
        node = graph.nodes[name + ".kernel"]
        assert isinstance(node, nir.Scale) and np.isnan(node.scale).all()  # never a usable scale
        assert node.metadata["toolchain_node"] == NIR_KERNEL_TAG
        assert float(node.metadata["tau"]) == float(kernel.tau.detach())
        assert float(node.metadata["t_d"]) == float(kernel.t_d.detach())
        assert int(node.metadata["time_window"]) == 8 and node.metadata["rounding"] == "ceil"
        assert float(node.metadata["epsilon"]) == net.config.epsilon
    for block in net.synaptic_blocks():
        weight, bias = block.folded_weight_bias()
        node = graph.nodes[block.name]
        assert np.array_equal(node.weight, weight.numpy())
        assert np.array_equal(node.bias, bias.numpy())
    assert not any(
        isinstance(node, nir.LIF | nir.CubaLIF | nir.IF | nir.Threshold) for node in graph.nodes.values()
    )
    assert graph.metadata["coding"] == "ttfs" and "not a LIF/CubaLIF" in graph.metadata["how_to_read"]
    assert isinstance(graph.nodes["pool1"], nir.SumPool2d)


def test_one_dimensional_pooling_becomes_an_equivalent_convolution(tmp_path):
    net, _, _, path = _export("conv1d", False, tmp_path / "ttfs.nir")
    node = load_graph(path).nodes["pool1"]
    assert isinstance(node, nir.Conv1d) and node.metadata["kind"] == "pool"
    k = int(node.metadata["kernel_size"])
    channels = net.block("pool1").in_shape[0]
    expected = np.zeros((channels, channels, k), dtype=np.float32)
    for c in range(channels):
        expected[c, c, :] = 1.0  # sum pooling: channel c reads channel c with weights 1
    assert np.array_equal(node.weight, expected)


def test_the_cuba_reader_refuses_a_ttfs_graph(tmp_path):
    _, _, _, path = _export("mlp", True, tmp_path / "ttfs.nir")
    with pytest.raises(NirError, match=r"ttfs\.nir: .*time-to-first-spike.*read_ttfs_nir.*docs/ttfs\.md"):
        read_nir(path, time_steps=8)
    # a graph holding one TTFS kernel node is refused even without the graph-level mark
    graph = load_graph(path)
    graph.metadata = {}
    assert is_ttfs_nir_graph(graph)
    from toolchain.formats.nir import from_nir_graph

    with pytest.raises(NirError, match=r"node '\w+\.kernel'.*TTFS temporal kernel"):
        from_nir_graph(graph, time_steps=8)


def test_an_edited_node_is_refused_naming_it(tmp_path):
    from toolchain.formats.nir import save_graph

    _, _, _, path = _export("mlp", True, tmp_path / "ttfs.nir")
    graph = load_graph(path)
    graph.nodes["dense1"].weight = graph.nodes["dense1"].weight * 2
    save_graph(graph, tmp_path / "edited.nir")
    with pytest.raises(NirError, match=r"edited\.nir: node 'dense1': weight"):
        read_ttfs_nir(tmp_path / "edited.nir")
    graph = load_graph(path)
    graph.nodes["dense1.kernel"].metadata["tau"] = 3.0
    save_graph(graph, tmp_path / "tau.nir")
    with pytest.raises(NirError, match=r"node 'dense1\.kernel': metadata\.tau"):
        read_ttfs_nir(tmp_path / "tau.nir")


def test_a_cuba_graph_is_not_read_as_ttfs(tmp_path):
    from toolchain import ir
    from toolchain.formats.nir import write_nir

    network = ir.Network(
        name="tiny",
        input_shape=(3,),
        input_encoding="spikes",
        time_steps=4,
        layers=(
            ir.Dense(
                name="dense1",
                weight=np.ones((2, 3), dtype=np.int64),
                neurons=ir.CubaNeurons(i_decay=4096, v_decay=128, vth_mant=10),
            ),
        ),
    )
    path = write_nir(network, tmp_path / "cuba.nir")
    assert not is_ttfs_nir_graph(load_graph(path))
    with pytest.raises(NirError, match=r"cuba\.nir: metadata\.toolchain\.format is 'toolchain-nir'"):
        read_ttfs_nir(path)


@pytest.fixture(scope="module")
def ttfs_run(tmp_path_factory):
    """A TTFS run folder (the digits-ttfs recipe, untrained weights with non-trivial statistics)."""
    run = tmp_path_factory.mktemp("runs") / "digits-ttfs"
    run.mkdir()
    torch.manual_seed(0)
    model = build_for_recipe(RECIPE, (64,), 10)
    model.train()
    model.run(torch.rand(64, 64))
    save_recipe(RECIPE, run / RECIPE_FILE)
    save_torch(run / MODEL_FILE, model.state_dict())
    return run


def test_cli_exports_a_ttfs_run_to_nir_and_inspect_shows_it(ttfs_run, tmp_path):
    out = tmp_path / "digits-ttfs.nir"
    result = toolchain("export", str(ttfs_run), "--format", "nir", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "TTFS" in result.stdout and out.is_file()
    _, model = read_ttfs_nir(out)
    assert set(model.kernels()) == {"input", "dense1"}
    graph = load_graph(out)
    assert math.isclose(float(graph.metadata["time_steps"]), 3 * 9)
    inspected = toolchain("inspect", str(out))
    assert inspected.returncode == 0, inspected.stderr
    assert "ttfs" in inspected.stdout and "dense1.kernel" in inspected.stdout and "tau" in inspected.stdout
    simulated = toolchain("simulate", str(out), "--samples", "4")
    assert simulated.returncode != 0 and "time-to-first-spike" in simulated.stderr
    assert "Traceback" not in simulated.stderr
