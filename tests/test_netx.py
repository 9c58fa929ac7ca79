"""netx HDF5: round trips, refusals, lava-dl's own loader and a Lava run, and a reader that fails cleanly."""

import importlib.util
import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain import ir
from toolchain.errors import FormatError, QuantizationError, ToolchainError
from toolchain.formats.lower import lower_pooling
from toolchain.formats.netx import netx_input_shape, read_netx, write_netx

HAS_LAVA = importlib.util.find_spec("lava") is not None
lava_only = pytest.mark.skipif(not HAS_LAVA, reason="lava-nc / lava-dl are not installed (make install)")


def _neurons(bias=None, bias_exp=6, i_decay=1024, v_decay=256, vth=80):
    return ir.CubaNeurons(i_decay=i_decay, v_decay=v_decay, vth_mant=vth, bias_mant=bias, bias_exp=bias_exp)


def _w(rng, *shape, low=-30, high=60):
    return (rng.integers(low, high, size=shape) * 2).astype(np.int64)


def mlp(encoding="spikes", seed=0, bias=False):
    rng = np.random.default_rng(seed)
    exp = -8 if encoding == "graded" else 0
    hidden_bias = rng.integers(-40, 40, size=12) if bias else None
    layers = (
        ir.Flatten("flat", (1, 4, 4)),
        ir.Dense("fc1", _w(rng, 12, 16), _neurons(hidden_bias), weight_exp=exp),
        ir.Dense("fc2", _w(rng, 5, 12), _neurons(i_decay=4096, v_decay=0)),
    )
    return ir.Network(
        "mlp", (1, 4, 4), encoding, 10, layers, metadata={"recipe": "test", "classes": list("abcde")}
    )


def conv_net(encoding="spikes", seed=1, bias=False):
    rng = np.random.default_rng(seed)
    exp = -8 if encoding == "graded" else 0
    conv_bias = rng.integers(-30, 30, size=(4, 8, 8)) if bias else None
    c1 = ir.Conv("conv1", _w(rng, 4, 2, 3, 3), _neurons(conv_bias), (2, 8, 8), (1, 1), (1, 1), weight_exp=exp)
    p1 = ir.Pool("pool1", "sum", 2, c1.out_shape)
    c2 = ir.Conv("conv2", _w(rng, 6, 2, 3, 3), _neurons(), p1.out_shape, (1, 1), (1, 1), groups=2)
    p2 = ir.Pool("pool2", "sum", 2, c2.out_shape)
    fc = ir.Dense("fc", _w(rng, 5, 24), _neurons())
    layers = (c1, p1, c2, p2, ir.Flatten("flat", p2.out_shape), fc)
    return ir.Network("conv", (2, 8, 8), encoding, 12, layers, metadata={"numeric": "fixed_point"})


def conv1d_net(encoding="graded", seed=2):
    rng = np.random.default_rng(seed)
    exp = -8 if encoding == "graded" else 0
    c1 = ir.Conv("c1", _w(rng, 4, 3, 3), _neurons(), (3, 12), (1,), (1,), weight_exp=exp)
    c2 = ir.Conv("c2", _w(rng, 5, 4, 3), _neurons(), c1.out_shape, (2,), (0,))
    # no flatten before the dense layer: the writer adds the record netx needs
    fc = ir.Dense("fc", _w(rng, 3, math.prod(c2.out_shape)), _neurons())
    return ir.Network("speech", (3, 12), encoding, 6, (c1, c2, fc))


NETWORKS = {
    "mlp-spikes": lambda: mlp("spikes"),
    "mlp-graded-bias": lambda: mlp("graded", bias=True),
    "conv-pool-spikes": lambda: conv_net("spikes"),
    "conv-pool-graded-bias": lambda: conv_net("graded", bias=True),
    "conv1d-graded": lambda: conv1d_net("graded"),
    "conv1d-spikes": lambda: conv1d_net("spikes"),
    "flatten-2d-input": lambda: ir.Network(
        "seq",
        (2, 8),
        "spikes",
        3,
        (ir.Flatten("flat", (2, 8)), ir.Dense("fc", _w(np.random.default_rng(4), 3, 16), _neurons())),
    ),
}


def assert_same_network(a: ir.Network, b: ir.Network) -> None:
    assert (a.name, a.input_shape, a.input_encoding, a.time_steps, a.synapse_delay_steps) == (
        b.name,
        b.input_shape,
        b.input_encoding,
        b.time_steps,
        b.synapse_delay_steps,
    )
    assert a.metadata == b.metadata
    assert [(x.name, x.kind, x.in_shape, x.out_shape) for x in a.layers] == [
        (x.name, x.kind, x.in_shape, x.out_shape) for x in b.layers
    ]
    for x, y in zip(a.synaptic_layers(), b.synaptic_layers(), strict=True):
        np.testing.assert_array_equal(x.weight, y.weight)
        assert x.weight_exp == y.weight_exp
        if isinstance(x, ir.Conv):
            assert (x.stride, x.padding, x.groups) == (y.stride, y.padding, y.groups)
        nx, ny = x.neurons, y.neurons
        assert (nx.i_decay, nx.v_decay, nx.vth_mant, nx.bias_exp) == (
            ny.i_decay,
            ny.v_decay,
            ny.vth_mant,
            ny.bias_exp,
        )
        assert (nx.bias_mant is None) == (ny.bias_mant is None)
        if nx.bias_mant is not None:
            np.testing.assert_array_equal(nx.bias_mant, ny.bias_mant)


# ----------------------------------------------------------------------------------------------
# writing and reading back


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_round_trip_gives_the_lowered_network(kind, tmp_path):
    network = NETWORKS[kind]()
    path = write_netx(network, tmp_path / "model.net")
    assert path == tmp_path / "model.net"
    back = read_netx(path)
    assert_same_network(back, lower_pooling(network))
    assert not any(isinstance(layer, ir.Pool) for layer in back.layers)


def test_file_layout_is_netx_schema(tmp_path):
    write_netx(conv_net("spikes", bias=True), tmp_path / "conv.net")
    with h5py.File(tmp_path / "conv.net", "r") as f:
        layers = f["layer"]
        assert sorted(layers.keys(), key=int) == ["0", "1", "2", "3", "4"]
        types = [layers[str(i)]["type"][0] for i in range(5)]
        assert types == [b"input", b"conv", b"conv", b"flatten", b"dense"]
        assert "neuron" not in layers["0"]  # no input process: the input goes to the first conv
        assert layers["0"]["shape"][()].tolist() == [2, 8, 8]  # (C, H, W); netx reverses it
        conv2 = layers["2"]
        assert conv2["shape"][()].tolist() == [6, 4, 4]
        assert conv2["weight"].shape == (6, 2, 6, 6)  # pool folded: 3x3 -> 6x6, stride 2, padding 2
        assert conv2["stride"][()].tolist() == [2, 2] and conv2["padding"][()].tolist() == [2, 2]
        assert int(conv2["groups"][()]) == 2
        assert layers["1"]["bias"].shape == (8, 8, 4)  # per neuron in netx's (W, H, C)
        neuron = layers["4"]["neuron"]
        assert neuron["type"][0] == b"CUBA"
        assert [int(neuron[k][()]) for k in ("iDecay", "vDecay", "vThMant", "refDelay")] == [1024, 256, 80, 1]
        assert not bool(neuron["gradedSpike"][()])
        sidecar = json.loads(f["toolchain"].attrs["network"])
        assert sidecar["lava"] == {
            "input_message_bits": 0,
            "input_weight_exp": 0,
            "input_port_shape": [8, 8, 2],
        }


def test_graded_input_is_recorded_for_the_runtime(tmp_path):
    write_netx(conv1d_net("graded"), tmp_path / "speech.net")
    with h5py.File(tmp_path / "speech.net", "r") as f:
        assert [f["layer"][str(i)]["type"][0] for i in range(5)] == [
            b"input",
            b"conv",
            b"conv",
            b"flatten",
            b"dense",
        ]
        assert f["layer/0/shape"][()].tolist() == [3, 1, 12]  # 1-D as a 2-D conv over (C, 1, L)
        assert f["layer/1/weight"].shape == (4, 3, 1, 3)
        assert f["layer/2/stride"][()].tolist() == [1, 2]
        sidecar = json.loads(f["toolchain"].attrs["network"])
    assert sidecar["lava"] == {
        "input_message_bits": 8,
        "input_weight_exp": -8,
        "input_port_shape": [12, 1, 3],
    }
    assert netx_input_shape(mlp()) == (16,)


def test_bias_is_rescaled_to_netx_exponent_exactly(tmp_path):
    network = mlp()
    fc1 = network.layers[1]
    biased = ir.Dense("fc1", fc1.weight, _neurons(np.arange(-6, 6), bias_exp=7))
    network = ir.Network("mlp", (1, 4, 4), "spikes", 10, (network.layers[0], biased, network.layers[2]))
    back = read_netx(write_netx(network, tmp_path / "b.net"))
    neurons = back.layers[1].neurons
    assert neurons.bias_exp == 6
    np.testing.assert_array_equal(neurons.bias_mant, np.arange(-6, 6) * 2)  # same mant << exp


# ----------------------------------------------------------------------------------------------
# refusals


def _with_layer(network, index, layer):
    layers = list(network.layers)
    layers[index] = layer
    return ir.Network(
        network.name, network.input_shape, network.input_encoding, network.time_steps, tuple(layers)
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda n: ir.Network(n.name, n.input_shape, n.input_encoding, 4, n.layers, synapse_delay_steps=2),
            FormatError,
            r"network 'mlp': synapse_delay_steps = 2; netx builds Lava Dense/Conv synapses, which delay by "
            r"exactly 1",
        ),
        (
            lambda n: _with_layer(n, 2, ir.Dense("fc2", n.layers[2].weight, _neurons(), weight_exp=1)),
            FormatError,
            r"layer 'fc2': weight_exp = 1; a netx file holds no weight exponent",
        ),
        (
            lambda n: _with_layer(
                n, 1, ir.Dense("fc1", n.layers[1].weight, _neurons(np.full(12, 3), bias_exp=0))
            ),
            QuantizationError,
            r"layer 'fc1': bias_mant << bias_exp \(bias_exp = 0\) is not a multiple of 2\^6 for 12 neurons: "
            r"netx fixes bias_exp = 6",
        ),
        (
            lambda n: _with_layer(
                n, 1, ir.Dense("fc1", n.layers[1].weight, _neurons(np.full(12, 4095), bias_exp=7))
            ),
            QuantizationError,
            r"layer 'fc1': the bias needs mantissas in \[8190, 8190\] with netx's bias_exp = 6, "
            r"beyond the 13-bit",
        ),
        (
            lambda n: _with_layer(n, 2, ir.Dense("fc2", np.zeros((5, 12), dtype=np.int64), _neurons())),
            FormatError,
            r"layer 'fc2': all weights are 0; netx's optimize_weight_bits divides by the largest weight",
        ),
    ],
)
def test_what_netx_cannot_hold_is_refused_by_name(change, error, message, tmp_path):
    with pytest.raises(error, match=message):
        write_netx(change(mlp()), tmp_path / "x.net")
    assert not (tmp_path / "x.net").exists()


def test_inhibitory_refusal_needs_a_power_of_two_minimum(tmp_path):
    weight = -np.full((5, 12), 2, dtype=np.int64)
    weight[0, 0] = -128
    network = _with_layer(mlp(), 2, ir.Dense("fc2", weight, _neurons()))
    with pytest.raises(FormatError, match=r"the smallest, -128, is a power of two"):
        write_netx(network, tmp_path / "x.net")
    weight[0, 0] = -130
    write_netx(_with_layer(mlp(), 2, ir.Dense("fc2", weight, _neurons())), tmp_path / "x.net")


def test_non_json_metadata_is_refused(tmp_path):
    network = mlp()
    network = ir.Network("mlp", (1, 4, 4), "spikes", 10, network.layers, metadata={"bad": object()})
    with pytest.raises(FormatError, match=r"network 'mlp': metadata cannot be stored as JSON"):
        write_netx(network, tmp_path / "x.net")


# ----------------------------------------------------------------------------------------------
# the reader on bad files


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory) -> Path:
    return write_netx(conv_net("spikes", bias=True), tmp_path_factory.mktemp("valid") / "conv.net")


def _edited(valid_file, tmp_path, edit):
    path = tmp_path / "edited.net"
    path.write_bytes(valid_file.read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f, key, data):
    del f[key]
    f.create_dataset(key, data=data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.__delitem__("layer"), r"/: missing group 'layer'"),
        (lambda f: f["layer"].__delitem__("2"), r"/layer: layer groups must be named 0\.\.3"),
        (lambda f: f["layer/1"].__delitem__("weight"), r"/layer/1: missing dataset 'weight'"),
        (lambda f: f["layer/2"].__delitem__("neuron"), r"/layer/2: missing group 'neuron'"),
        (
            lambda f: _replace(f, "layer/2/type", np.array([b"pool"], dtype="S10")),
            r"/layer/2: layer type 'pool' is not supported",
        ),
        (
            lambda f: _replace(f, "layer/2/type", np.array([b"magic"], dtype="S10")),
            r"/layer/2: unknown layer type 'magic'",
        ),
        (
            lambda f: _replace(f, "layer/4/shape", np.array([-5])),
            r"/layer/4/shape: \(-5,\) is not a valid layer size",
        ),
        (
            lambda f: _replace(f, "layer/4/shape", np.array([10**9])),
            r"/layer/4/shape: \(1000000000,\) is not a valid",
        ),
        (
            lambda f: _replace(f, "layer/4/weight", np.full((5, 24), np.nan)),
            r"/layer/4/weight: holds NaN or infinite values",
        ),
        (
            lambda f: _replace(f, "layer/4/weight", np.full((5, 24), 2.5)),
            r"/layer/4/weight: holds values that are not integers",
        ),
        (
            lambda f: _replace(f, "layer/4/weight", np.full((5, 24), 300)),
            r"/layer/4: layer 'fc': weights span \[300, 300\]",
        ),
        (
            lambda f: _replace(f, "layer/4/neuron/iDecay", 5000),
            r"/layer/4/neuron: iDecay \(current decay x 4096\) = 5000 is outside",
        ),
        (
            lambda f: _replace(f, "layer/4/neuron/vThMant", 2**18),
            r"vThMant \(threshold x 64\) = 262144 is outside Loihi's register",
        ),
        (
            lambda f: _replace(f, "layer/4/neuron/type", np.array([b"SDNN"], dtype="S10")),
            r"neuron type 'SDNN' is not supported",
        ),
        (
            lambda f: _replace(f, "layer/2/shape", np.array([6, 5, 4])),
            r"/layer/2/shape: \(6, 5, 4\) differs from the convolution",
        ),
        (
            lambda f: _replace(f, "layer/2/dilation", np.array([2, 2])),
            r"/layer/2/dilation: \(2, 2\): only dilation 1",
        ),
        (
            lambda f: f["layer/4"].create_dataset("delay", data=np.ones(24)),
            r"/layer/4/delay: synaptic delays",
        ),
        (lambda f: f["layer/0"].create_group("neuron"), r"/layer/0/neuron: missing .*type"),
        (
            lambda f: (  # a 1 GiB string declared by the header and never written: refused, not allocated
                f["layer/4/neuron"].__delitem__("type")
                or f["layer/4/neuron"].create_dataset("type", shape=(), dtype="S1073741824")
            ),
            r"/layer/4/neuron/type: declares a string of 1073741824 bytes",
        ),
        (
            lambda f: f["toolchain"].attrs.__setitem__("network", "{not json"),
            r"/toolchain.network: invalid JSON",
        ),
        (
            lambda f: f["toolchain"].attrs.__setitem__("network", json.dumps({"name": 3})),
            r"/toolchain.network: 'name' must be a str",
        ),
        (
            lambda f: (
                f["layer/4"].__setitem__("weight_link", h5py.ExternalLink("/etc/passwd", "/x"))
                or f["layer/4"].__delitem__("weight")
                or f["layer/4"].move("weight_link", "weight")
            ),
            r"/layer/4/weight: is a ExternalLink; only plain datasets and groups",
        ),
    ],
)
def test_bad_files_give_one_line_errors_naming_file_and_key(edit, message, valid_file, tmp_path):
    path = _edited(valid_file, tmp_path, edit)
    with pytest.raises(FormatError, match=message) as info:
        read_netx(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_missing_not_hdf5_and_truncated_files(valid_file, tmp_path):
    with pytest.raises(FormatError, match=r"nothing\.net: no such netx file"):
        read_netx(tmp_path / "nothing.net")
    text = tmp_path / "text.net"
    text.write_text("not an HDF5 file\n")
    with pytest.raises(FormatError, match=r"text\.net: not a readable HDF5 file"):
        read_netx(text)
    data = valid_file.read_bytes()
    for fraction in (0.2, 0.5, 0.9):
        cut = tmp_path / f"cut{fraction}.net"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(FormatError, match=rf"cut{fraction}\.net: "):
            read_netx(cut)


def test_a_file_without_the_toolchain_group_needs_time_steps(valid_file, tmp_path):
    path = _edited(valid_file, tmp_path, lambda f: f.__delitem__("toolchain"))
    hint = r"/toolchain: missing .*give --time-steps N and --input-encoding graded\|spikes$"
    with pytest.raises(FormatError, match=hint):
        read_netx(path)
    network = read_netx(path, time_steps=7, input_encoding="spikes")
    assert network.time_steps == 7 and network.name == "edited"
    assert [layer.name for layer in network.layers] == ["layer1", "layer2", "layer3", "layer4"]
    assert [layer.kind for layer in network.layers] == ["conv", "conv", "flatten", "dense"]


def test_a_crash_or_hang_of_the_hdf5_library_is_contained(valid_file, monkeypatch):
    """libhdf5 can segfault on a corrupt file (benchmarks/fuzz_netx.py found one): reads run in a child."""
    import os
    import signal

    from toolchain.formats import netx as netx_module

    monkeypatch.setattr(netx_module, "_read_in_process", lambda *args: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(
        FormatError, match=r"conv\.net: the HDF5 library crashed \(SIGSEGV\) reading this file"
    ):
        read_netx(valid_file)
    monkeypatch.setattr(netx_module, "_read_in_process", lambda *args: time.sleep(30))
    monkeypatch.setattr(netx_module, "READ_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(FormatError, match=r"conv\.net: reading took longer than 0.5 s and was stopped"):
        read_netx(valid_file)
    assert time.perf_counter() - start < 5


MUTATIONS = st.one_of(
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=8),
    ),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(
        st.just("dataset"),
        st.sampled_from(
            [
                "layer/0/shape",
                "layer/1/weight",
                "layer/1/bias",
                "layer/2/stride",
                "layer/2/padding",
                "layer/2/groups",
                "layer/3/type",
                "layer/4/shape",
                "layer/4/weight",
                "layer/4/neuron/vDecay",
                "layer/4/neuron/type",
            ]
        ),
        st.one_of(
            st.integers(-(2**40), 2**40),
            st.floats(allow_nan=True, allow_infinity=True),
            st.lists(st.integers(-(2**20), 2**20), max_size=6),
            st.binary(max_size=12),
            st.text(st.characters(blacklist_characters="\x00"), max_size=12),
        ),
    ),
    st.tuples(
        st.just("attr"),
        st.one_of(
            st.text(st.characters(blacklist_characters="\x00"), max_size=200),
            st.integers(-(2**63), 2**63 - 1),  # what an HDF5 attribute can hold (int64)
            st.binary(max_size=50),
        ),
    ),
    st.tuples(
        st.just("delete"),
        st.sampled_from(["layer/1", "layer/2/neuron", "layer/4/weight", "toolchain", "layer/0/shape"]),
    ),
)


def _opaque(value: bytes):
    return np.void(value) if value else np.zeros(0, dtype=np.uint8)


def _mutate(data: bytes, path: Path, mutation) -> None:
    kind = mutation[0]
    if kind == "flip":
        buffer = bytearray(data)
        for offset, value in mutation[1]:
            buffer[offset % len(buffer)] ^= value
        path.write_bytes(bytes(buffer))
        return
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * mutation[1])])
        return
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        if kind == "dataset":
            key, value = mutation[1], mutation[2]
            del f[key]
            f.create_dataset(key, data=_opaque(value) if isinstance(value, bytes) else value)
        elif kind == "attr":
            value = mutation[1]
            f["toolchain"].attrs["network"] = _opaque(value) if isinstance(value, bytes) else value
        else:
            del f[mutation[1]]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=MUTATIONS)
def test_fuzz_mutated_files_raise_only_toolchain_errors(mutation, valid_file, tmp_path):
    path = tmp_path / "fuzz.net"
    _mutate(valid_file.read_bytes(), path, mutation)
    start = time.perf_counter()
    try:
        network = read_netx(path)
    except ToolchainError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(network, ir.Network)
    assert time.perf_counter() - start < 5.0


# ----------------------------------------------------------------------------------------------
# lava-dl's own loader and a Lava run


def _lava():
    from toolchain import lava_compat

    return lava_compat.import_lava()


def _netx_weight_as_ir(layer) -> np.ndarray:
    """The weights netx's block hands Lava, mapped back to the file's (torch) layout and scale."""
    synapse = layer.synapse
    if hasattr(synapse, "weights"):  # Dense: netx shifted the weights and set an exponent to match
        return np.asarray(synapse.weights.init) * 2.0 ** synapse.proc_params["weight_exp"]
    # Conv: netx flips the kernel and transposes it to (out, W, H, in) (hdf5.py:505-506)
    return np.asarray(synapse.weight.init).transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]


@pytest.mark.parametrize("kind", sorted(NETWORKS))
@pytest.mark.lava
@lava_only
def test_every_exported_file_loads_in_lava_dl_netx(kind, tmp_path):
    lava = _lava()
    network = lower_pooling(NETWORKS[kind]())
    path = write_netx(NETWORKS[kind](), tmp_path / "model.net")
    graded = network.input_encoding == "graded"
    net = lava.netx.hdf5.Network(net_config=str(path), input_message_bits=8 if graded else 0)
    synaptic = network.synaptic_layers()
    assert len(net) == len(synaptic)
    assert tuple(net.inp.shape) == netx_input_shape(network)
    for block, layer in zip(net.layers, synaptic, strict=True):
        expected_shape = (
            layer.out_shape
            if isinstance(layer, ir.Dense)
            else tuple(
                reversed(
                    layer.out_shape
                    if len(layer.out_shape) == 3
                    else (layer.out_shape[0], 1, layer.out_shape[1])
                )
            )
        )
        assert tuple(block.shape) == expected_shape
        weight = _netx_weight_as_ir(block)
        np.testing.assert_array_equal(weight.reshape(layer.weight.shape), layer.weight)
        neuron = block.neuron
        assert int(neuron.du.init) == layer.neurons.i_decay - 1
        assert int(neuron.dv.init) == layer.neurons.v_decay
        assert int(neuron.vth.init) == layer.neurons.vth_mant
        assert int(neuron.bias_exp.init) == 6
        if layer.neurons.bias_mant is not None:
            bias = np.asarray(neuron.bias_mant.init)
            if isinstance(layer, ir.Conv):
                bias = bias.transpose(2, 1, 0)
            np.testing.assert_array_equal(bias.reshape(-1), layer.neurons.bias_mant.reshape(-1))


@pytest.mark.lava
@lava_only
def test_netx_ignores_the_toolchain_group(valid_file, tmp_path):
    lava = _lava()
    path = _edited(valid_file, tmp_path, lambda f: f["toolchain"].attrs.__setitem__("network", "garbage {"))
    plain = lava.netx.hdf5.Network(net_config=str(valid_file))
    edited = lava.netx.hdf5.Network(net_config=str(path))
    assert str(plain) == str(edited) and len(plain) == 3


def _run_lava(path: Path, network: ir.Network, inputs: np.ndarray) -> list[np.ndarray]:
    """Run the netx file in Lava (fixed point) on one sample; each synaptic layer's spikes ``[T, *IR shape]``.

    ``inputs`` is what the network's input port receives each step, ``[T, *input_shape]`` in the
    IR's order: spikes, or the 8-bit payload for graded input (whose first dense layer's exponent
    netx cannot store: it is set here, as the /toolchain group says).
    """
    lava = _lava()
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    graded = network.input_encoding == "graded"
    net = lava.netx.hdf5.Network(net_config=str(path), input_message_bits=8 if graded else 0)
    if graded:
        synapse = net.layers[0].synapse
        synapse.proc_params.overwrite("weight_exp", synapse.proc_params["weight_exp"] - 8)
    steps = inputs.shape[0]
    port = netx_input_shape(network)
    if len(port) == 1:
        frames = inputs.reshape(steps, -1)
    else:
        frames = inputs.reshape(steps, *_chw(network.input_shape)).transpose(0, 3, 2, 1)
    source = Source(data=np.moveaxis(frames, 0, -1).astype(np.int32))
    source.s_out.connect(net.inp)
    sinks = []
    for block in net.layers:
        sink = Sink(shape=block.out.shape, buffer=steps)
        block.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(
            condition=lava.run_conditions.RunSteps(num_steps=steps),
            run_cfg=lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt"),
        )
        raw = [np.moveaxis(np.asarray(sink.data.get()), -1, 0) for sink in sinks]
    finally:
        net.stop()
    spikes = []
    for data, layer in zip(raw, network.synaptic_layers(), strict=True):
        if data.ndim == 4:  # (T, W, H, C) -> (T, C, H, W)
            data = data.transpose(0, 3, 2, 1)
        spikes.append(data.reshape(steps, *layer.out_shape))
    return spikes


def _chw(shape):
    return (shape[0], 1, shape[1]) if len(shape) == 2 else shape


@pytest.mark.parametrize("kind", ["mlp-spikes", "mlp-graded-bias", "conv-pool-spikes", "conv1d-spikes"])
@pytest.mark.lava
@lava_only
def test_lava_run_agrees_spike_for_spike_with_the_reference(kind, tmp_path):
    simulate = pytest.importorskip("toolchain.sim.reference").simulate
    import torch

    from toolchain.snn.loihi import graded_input

    original = NETWORKS[kind]()
    network = lower_pooling(original)
    path = write_netx(original, tmp_path / "model.net")
    rng = np.random.default_rng(11)
    steps = network.time_steps
    if network.input_encoding == "graded":
        x = rng.random((1, *network.input_shape))
        payload = np.round(graded_input(torch.from_numpy(x)).numpy() * 256).astype(np.int64)
        lava_inputs = np.repeat(payload, steps, axis=0)
    else:
        x = (rng.random((steps, 1, *network.input_shape)) < 0.4).astype(np.uint8)
        lava_inputs = x[:, 0]
    reference = simulate(original, x, record_spikes=True)
    lava_spikes = _run_lava(path, network, lava_inputs)
    total = 0
    for layer, spikes in zip(network.synaptic_layers(), lava_spikes, strict=True):
        np.testing.assert_array_equal(spikes, reference.spikes[layer.name][:, 0], err_msg=layer.name)
        total += int(spikes.sum())
    assert total > 50  # a busy network, not an all-silent agreement
    assert reference.counts.sum() > 0


@pytest.mark.lava
@lava_only
def test_weight_matrices_the_writer_accepts_survive_netx_and_lava_exactly():
    """netx's optimize_weight_bits then Lava's clip/truncate keep every accepted matrix (up to the shift)."""
    _lava()
    from toolchain.formats import netx as netx_module

    rng = np.random.default_rng(3)
    cases = [np.array([[-256, 254]]), np.array([[-2, 2]]), np.array([[0, 254]]), np.array([[-256, -2]])]
    cases += [np.array([[-128, -4]]), np.array([[-130, 0]]), np.array([[2, 0]]), np.array([[0, -6]])]
    for _ in range(150):
        low, high = sorted(int(v) * 2 for v in rng.integers(-128, 128, size=2))
        cases.append(rng.integers(low // 2, high // 2 + 1, size=(4, 6)) * 2)
    cases.append(np.zeros((2, 3), dtype=np.int64))
    accepted = refused = 0
    for weight in cases:
        weight = weight.astype(np.int64)
        try:
            netx_module._check_dense_weights(ir.Dense("fc", weight, _neurons()))
        except FormatError:
            refused += 1
            if weight.any():  # (all zero: netx's optimize_weight_bits raises)
                assert not np.array_equal(_through_netx_and_lava(weight), weight), weight.tolist()
            continue
        accepted += 1
        np.testing.assert_array_equal(_through_netx_and_lava(weight), weight, err_msg=str(weight.tolist()))
    assert accepted > 100 and refused == 3


def _through_netx_and_lava(weight: np.ndarray) -> np.ndarray:
    """The effective weights Lava's fixed-point Dense applies after netx's optimize_weight_bits."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    with np.errstate(divide="ignore"):
        shifted, bits, exponent, _ = optimize_weight_bits(weight.copy())
    mode = determine_sign_mode(shifted)
    return truncate_weights(clip_weights(shifted, mode, num_bits=8), mode, bits) * 2.0**exponent


@pytest.mark.lava
@lava_only
def test_a_file_slayer_exports_reads_back(tmp_path):
    _lava()
    import torch
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03}
    blocks = [slayer.block.cuba.Dense(params, 6, 5), slayer.block.cuba.Dense(params, 5, 3)]
    x = torch.rand(1, 6, 4)
    for block in blocks:
        x = block(x)
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for index, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(str(index)))
    network = read_netx(path, time_steps=4, input_encoding="spikes")
    assert [layer.kind for layer in network.layers] == ["dense", "dense"]
    for block, layer in zip(blocks, network.layers, strict=True):
        expected = block.synapse.pre_hook_fx(block.synapse.weight, descale=True).reshape(layer.weight.shape)
        np.testing.assert_array_equal(layer.weight, expected.detach().numpy().astype(np.int64))
        assert (layer.neurons.i_decay, layer.neurons.v_decay, layer.neurons.vth_mant) == (1024, 123, 80)


@pytest.mark.lava
@lava_only
def test_lava_fixed_point_conv_applies_its_weight_exponent():
    """Lava's fixed-point Conv ignores its weight_exp as shipped (12800 for both exponents);
    toolchain.lava_compat's fix 5 makes it shift the sums, as its Dense does (docs/formats.md)."""
    lava = _lava()
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    results = []
    for exp in (0, -8):
        source = Source(data=np.full((2, 2, 1, 3), 200, dtype=np.int32))
        conv = Conv(
            weight=np.full((1, 1, 1, 1), 64), input_shape=(2, 2, 1), weight_exp=exp, num_message_bits=8
        )
        sink = Sink(shape=conv.a_out.shape, buffer=3)
        source.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        try:
            source.run(
                condition=lava.run_conditions.RunSteps(num_steps=3),
                run_cfg=lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt"),
            )
            results.append(np.asarray(sink.data.get())[0, 0, 0].tolist())
        finally:
            source.stop()
    assert results == [[0, 12800, 12800], [0, 50, 50]]  # floor(12800 / 256) = 50
