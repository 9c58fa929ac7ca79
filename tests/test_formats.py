"""``toolchain.formats.detect``: the one format detection and graph reader every command uses."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain import ir
from toolchain.commands.energy import load_network
from toolchain.formats import netx
from toolchain.formats.detect import ModelFileError, detect_format, graph_format, read_graph
from toolchain.formats.nir import write_nir
from toolchain.sim.inputs import InputRangeError
from toolchain.sim.reference import SimulationResult


def _network() -> ir.Network:
    weight = np.array([[2, -4, 6], [8, 0, -2]], dtype=np.int64)
    dense = ir.Dense("out", weight, ir.CubaNeurons(i_decay=1024, v_decay=256, vth_mant=80))
    return ir.Network("tiny", (3,), "spikes", 4, (dense,))


def test_read_graph_reads_netx_and_nir_by_content_not_name(tmp_path):
    network = _network()
    netx_file = netx.write_netx(network, tmp_path / "a.net")
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(netx_file.read_bytes())
    read, fmt = read_graph(renamed)
    assert fmt == "netx" and detect_format(renamed) == "netx"
    np.testing.assert_array_equal(read.layers[0].weight, network.layers[0].weight)
    nir_file = tmp_path / "b.net"  # a NIR file with a netx name
    write_nir(network, tmp_path / "b.nir").rename(nir_file)
    assert read_graph(nir_file)[1] == "nir"
    # `toolchain energy` reads the same way: no suffix rule any more
    assert load_network(renamed, None)[0].layers[0].name == "out"


def test_graph_format_names_what_the_file_is(tmp_path):
    missing = tmp_path / "missing.net"
    with pytest.raises(ModelFileError) as info:
        graph_format(missing)
    assert str(info.value) == f"{missing}: no such file (expected a netx or NIR file from `toolchain export`)"
    onnx_like = tmp_path / "model.onnx"
    onnx_like.write_bytes(b"\x08\x07rest")
    with pytest.raises(ModelFileError) as info:
        graph_format(onnx_like)
    assert str(info.value) == (
        f"{onnx_like}: not an HDF5 file (netx or NIR expected; "
        "an ONNX model: export with --format netx or nir)"
    )
    text = tmp_path / "notes.net"
    text.write_text("hello\n")
    with pytest.raises(ModelFileError) as info:
        graph_format(text)
    assert str(info.value) == (
        f"{text}: not an HDF5 file (netx or NIR expected; the file starts with b'hello\\n')"
    )
    empty = tmp_path / "empty.net"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"not an HDF5 file .*the file is empty"):
        graph_format(empty)


def test_a_reader_crash_becomes_a_one_line_model_file_error(tmp_path, monkeypatch):
    path = netx.write_netx(_network(), tmp_path / "a.net")

    def broken(_path, **_settings):  # time_steps, input_encoding
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(netx, "read_netx", broken)
    with pytest.raises(ModelFileError) as info:
        read_graph(path)
    assert str(info.value) == f"{path}: cannot read the netx file (RuntimeError: boom)"


def test_input_range_error_carries_the_span():
    error = InputRangeError(-2.0, 300.0)
    assert (error.low, error.high) == (-2.0, 300.0)
    assert str(error) == "samples span [-2, 300]: graded 8-bit input (round(x * 255)) needs [0, 1]"


def test_simulation_result_from_batches_joins_along_the_samples():
    from toolchain.activity import Activity

    activity = Activity("tiny", "reference", 3, 4, ())
    counts = [np.array([[1, 3], [2, 2]]), np.array([[5, 0]])]
    spikes = {"out": [np.zeros((4, 2, 2), np.uint8), np.ones((4, 1, 2), np.uint8)]}
    result = SimulationResult.from_batches(counts, 2, activity, spikes)
    np.testing.assert_array_equal(result.counts, [[1, 3], [2, 2], [5, 0]])
    np.testing.assert_array_equal(result.predictions, [1, 0, 0])  # the first maximum on a tie
    assert result.spikes is not None and result.spikes["out"].shape == (4, 3, 2)
    assert result.spikes["out"][:, 2].all() and not result.spikes["out"][:, :2].any()
    empty = SimulationResult.from_batches([], 2, activity)
    assert empty.counts.shape == (0, 2) and empty.spikes is None
