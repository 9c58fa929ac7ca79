"""`toolchain inspect`: format detection by content, describe_network on a known graph, the real CLI."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cli_runner import toolchain

from toolchain import ir
from toolchain.config import ModelConfig
from toolchain.export.inspect import InspectError, describe_network, detect_format
from toolchain.export.onnx import export_ann_onnx
from toolchain.snn.ann import build_ann

ROOT = Path(__file__).resolve().parents[1]


def _network() -> ir.Network:
    """conv (with bias) -> sum pool -> flatten -> dense, spikes in, 5 steps: values checked by hand."""
    conv_weight = np.zeros((4, 2, 3, 3), dtype=np.int64)
    conv_weight[0, 0, 1, 1] = -120
    conv_weight[1, 1, 0, 0] = 98
    conv_weight[2, 0, 2, 2] = 2
    dense_weight = np.full((10, 64), 4, dtype=np.int64)
    dense_weight[:, :32] = 0
    dense_weight[3, 40] = -256
    bias = np.zeros((4, 8, 8), dtype=np.int64)
    bias[1] = 17
    bias[2] = -3
    return ir.Network(
        name="hand",
        input_shape=(2, 8, 8),
        input_encoding="spikes",
        time_steps=5,
        layers=(
            ir.Conv(
                "conv1",
                conv_weight,
                ir.CubaNeurons(i_decay=4096, v_decay=410, vth_mant=80, bias_mant=bias, bias_exp=6),
                in_shape=(2, 8, 8),
                stride=(1, 1),
                padding=(1, 1),
            ),
            ir.Pool("pool1", "sum", 2, (4, 8, 8)),
            ir.Flatten("flatten", (4, 4, 4)),
            ir.Dense("readout", dense_weight, ir.CubaNeurons(i_decay=2048, v_decay=100, vth_mant=64)),
        ),
        metadata={"recipe": "hand-made", "numeric": "fixed_point", "classes": list("abcdefghij")},
    )


def test_describe_network_values():
    described = describe_network(_network())
    net = described["network"]
    assert net["input_shape"] == [2, 8, 8]
    assert net["input_encoding"] == "spikes"
    assert net["time_steps"] == 5
    assert net["classes"] == 10
    assert net["neurons"] == 4 * 8 * 8 + 10
    assert net["weights"] == 4 * 2 * 9 + 640
    assert net["nonzero_weights"] == 3 + 320  # columns 32..63 of the dense layer
    assert described["metadata"]["classes"] == list("abcdefghij")
    conv, pool, flatten, dense = described["layers"]
    assert (conv["kind"], conv["in_shape"], conv["out_shape"]) == ("conv", [2, 8, 8], [4, 8, 8])
    assert conv["kernel_size"] == [3, 3] and conv["stride"] == [1, 1] and conv["padding"] == [1, 1]
    assert conv["quantization"]["weight_int_min"] == -120
    assert conv["quantization"]["weight_int_max"] == 98
    assert conv["quantization"]["weight_float_min"] == -120 / 64
    assert conv["quantization"]["bits"] == 8  # [-120, 98] needs 8 signed bits
    assert conv["quantization"]["distinct_values"] == 4
    assert conv["neurons"]["i_decay"] == 4096 and conv["neurons"]["v_decay"] == 410
    assert conv["neurons"]["vth_mant"] == 80 and conv["neurons"]["threshold"] == 80 / 64
    assert conv["neurons"]["bias"] == {"mant_min": -3, "mant_max": 17, "exp": 6}
    assert pool == {"name": "pool1", "kind": "pool", "in_shape": [4, 8, 8], "out_shape": [4, 4, 4],
                    "mode": "sum", "kernel_size": 2}  # fmt: skip
    assert flatten["out_shape"] == [64]
    assert dense["quantization"]["weight_int_min"] == -256
    assert dense["quantization"]["bits"] == 9
    assert dense["quantization"]["weight_float_max"] == 4 / 64
    assert dense["quantization"]["zero_fraction"] == pytest.approx(320 / 640)
    assert dense["neurons"]["current_decay"] == 0.5 and dense["neurons"]["bias"] is None
    json.dumps(described)  # plain data


def test_detect_format_by_content(tmp_path):
    netx = tmp_path / "model.onnx"  # the name does not decide
    with h5py.File(netx, "w") as handle:
        handle.create_group("layer").create_group("0")
    assert detect_format(netx) == "netx"
    nir_file = tmp_path / "model.net"
    with h5py.File(nir_file, "w") as handle:
        handle.create_group("node")
        handle.create_dataset("version", data="1.0")
    assert detect_format(nir_file) == "nir"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_group("something")
    with pytest.raises(InspectError, match=r"neither netx .* nor NIR .*top-level keys: \['something'\]"):
        detect_format(other)
    onnx_like = tmp_path / "model.bin"
    onnx_like.write_bytes(b"\x08\x08rest")
    assert detect_format(onnx_like) == "onnx"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InspectError, match="is empty"):
        detect_format(empty)
    fake_hdf5 = tmp_path / "fake.h5"
    fake_hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(InspectError, match="not a readable HDF5 file"):
        detect_format(fake_hdf5)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    ann = build_ann(ModelConfig(architecture="vgg", channels=[4], pool_after=[1], hidden=[8]), (3, 8, 8), 10)
    return export_ann_onnx(ann, tmp_path_factory.mktemp("onnx") / "vgg.onnx", metadata={"recipe": "tiny"})


def test_cli_inspect_onnx_prints_and_writes_json(tmp_path, onnx_file):
    out = tmp_path / "inspect.json"
    result = toolchain("inspect", str(onnx_file), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert f"{onnx_file}: onnx" in result.stdout
    assert "input input: float (batch, 3, 8, 8)" in result.stdout
    assert "output logits: float (batch, 10)" in result.stdout
    assert "recipe: tiny" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["blocks.0.synapse.module.weight", "float", "(4,", "3,", "3,", "3)"] in [r[:6] for r in rows]
    data = json.loads(out.read_text())
    assert data["format"] == "onnx"
    assert data["opset"] == {"ai.onnx": 17}
    assert data["checker"] == "ok"
    assert data["metadata"]["recipe"] == "tiny"
    assert data["outputs"] == [{"name": "logits", "dtype": "float", "shape": ["batch", 10]}]
    assert data["operators"]["Conv"] == 2  # the convolution and the sum pooling
    conv = next(t for t in data["initializers"] if t["name"] == "blocks.0.synapse.module.weight")
    assert conv["shape"] == [4, 3, 3, 3] and conv["on_loihi_grid"] is False


@pytest.mark.parametrize(
    ("fmt", "module", "suffix"),
    [("netx", "toolchain.formats.netx", ".net"), ("nir", "toolchain.formats.nir", ".nir")],
)
def test_cli_inspect_graph_formats(tmp_path, fmt, module, suffix):
    write = getattr(importlib.import_module(module), f"write_{fmt}")
    read = getattr(importlib.import_module(module), f"read_{fmt}")
    network = _network()
    path = write(network, tmp_path / f"hand{suffix}")
    out = tmp_path / "inspect.json"
    result = toolchain("inspect", str(path), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert f"{path}: {fmt}" in result.stdout
    data = json.loads(out.read_text())
    assert data["format"] == fmt
    expected = describe_network(read(path))  # what the reader gives is what inspect describes
    assert data["layers"] == json.loads(json.dumps(expected["layers"]))
    synaptic = [layer for layer in data["layers"] if "neurons" in layer]
    assert synaptic[0]["neurons"]["vth_mant"] == 80
    assert synaptic[-1]["quantization"]["weight_int_min"] == -256
    assert data["network"]["time_steps"] == 5


def test_cli_unknown_format_is_one_line_exit_2(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    result = toolchain("inspect", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"toolchain: error: {path}: unknown format (expected a netx or NIR HDF5 file or an ONNX model; "
        "the file starts with b'hello\\n')"
    ]


def test_cli_missing_and_corrupt_files(tmp_path, onnx_file, capsys):
    from toolchain.cli import main

    assert main(["inspect", str(tmp_path / "absent.onnx")]) == 2  # in process: the same handler
    assert capsys.readouterr().err.strip() == f"toolchain: error: {tmp_path / 'absent.onnx'}: no such file"
    assert main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"toolchain: error: {tmp_path}: not a file"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_file.read_bytes()[:300])
    result = toolchain("inspect", str(truncated))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"toolchain: error: {truncated}: not a valid ONNX file")


def test_initializer_statistics_by_hand():
    from toolchain.export.inspect import STATS_CHUNK, _value_stats

    on_grid = _value_stats(np.array([2 / 64, -4.0, 254 / 64, 0.0], dtype=np.float32))
    assert on_grid == {"min": -4.0, "max": 254 / 64, "non_finite": 0, "integer_valued": False,
                       "on_loihi_grid": True}  # fmt: skip
    assert _value_stats(np.array([1 / 64]))["on_loihi_grid"] is False  # odd: Lava drops the last bit
    assert _value_stats(np.array([256 / 64]))["on_loihi_grid"] is False  # beyond 254
    assert _value_stats(np.array([np.nan, 1.0]))["non_finite"] == 1
    assert _value_stats(np.array([np.nan]))["min"] is None
    ints = _value_stats(np.array([3, -7, 0], dtype=np.int64))
    assert ints == {"min": -7.0, "max": 3.0, "non_finite": 0, "integer_valued": True}
    chunked = np.zeros(STATS_CHUNK + 3, dtype=np.float32)
    chunked[-1] = 0.5  # in the second chunk: on the grid, not an integer
    assert _value_stats(chunked)["max"] == 0.5 and _value_stats(chunked)["integer_valued"] is False
