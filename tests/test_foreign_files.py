"""Networks written by other libraries, and a user's own input, through the real ``toolchain`` entry point.

A netx file in slayer's layout (no ``/toolchain`` group: no time steps, no input encoding, no
dataset) and a NIR graph without metadata (no time steps, no ``dt``): ``inspect`` describes them
without flags; ``simulate`` and ``energy`` need ``--time-steps`` (and, for netx, ``--input-encoding``)
and ``--input``, and give one-line errors naming the flag or the file and what was expected.
"""

import json
import subprocess
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from cli_runner import toolchain

from toolchain import ir
from toolchain.formats.netx import read_netx, write_netx
from toolchain.formats.nir import read_nir
from toolchain.sim.reference import simulate

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8
SAMPLES = 6


def one_error(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a failed command (exit 2), asserted to name no Python keyword argument."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "time_steps=" not in lines[0] and "input_encoding=" not in lines[0]
    return lines[0]


def _type(group: h5py.Group, name: str) -> None:
    group.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _weights(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    return rng.integers(-40, 60, size=(n_out, n_in))


@pytest.fixture(scope="module")
def slayer_netx(tmp_path_factory) -> Path:
    """A 16-12-4 dense network by hand in slayer's ``export_hdf5`` layout: no ``/toolchain`` group."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("slayer") / "slayer.net"
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        first = layers.create_group("0")
        _type(first, "input")
        first.create_dataset("shape", data=np.array([16]))
        for index, (n_in, n_out) in enumerate([(16, 12), (12, 4)], start=1):
            group = layers.create_group(str(index))
            _type(group, "dense")
            group.create_dataset("shape", data=np.array([n_out]))
            group.create_dataset("inFeatures", data=n_in)
            group.create_dataset("outFeatures", data=n_out)
            group.create_dataset("weight", data=_weights(rng, n_out, n_in).astype(np.float32))
            neuron = group.create_group("neuron")
            _type(neuron, "CUBA")
            for key, value in {"iDecay": 1024, "vDecay": 512, "vThMant": 160, "refDelay": 1}.items():
                neuron.create_dataset(key, data=value)
            neuron.create_dataset("gradedSpike", data=False)
    return path


@pytest.fixture(scope="module")
def stripped_netx(tmp_path_factory) -> Path:
    """The toolchain's writer on a tiny network, then the ``/toolchain`` group deleted."""
    rng = np.random.default_rng(1)
    neurons = ir.CubaNeurons(i_decay=1024, v_decay=512, vth_mant=160)
    network = ir.Network(
        name="tiny",
        input_shape=(16,),
        input_encoding="spikes",
        time_steps=STEPS,
        layers=(
            ir.Dense("hidden", _weights(rng, 12, 16), neurons),
            ir.Dense("out", _weights(rng, 4, 12), neurons),
        ),
    )
    path = write_netx(network, tmp_path_factory.mktemp("stripped") / "stripped.net")
    with h5py.File(path, "a") as handle:
        del handle["toolchain"]
    return path


def _nir_graph(kind: str) -> nir.NIRGraph:
    """Input -> Affine -> LIF or CubaLIF -> Output on Loihi's grid for dt = 1e-4 s, no metadata."""
    rng = np.random.default_rng(2)
    dt, du, dv, n = 1e-4, 0.25, 0.125, 4
    weight = _weights(rng, n, 16) / 64
    if kind == "CubaLIF":
        neuron = nir.CubaLIF(
            tau_syn=np.full(n, dt / du),
            tau_mem=np.full(n, dt / dv),
            r=np.full(n, 1 / dv),
            v_leak=np.zeros(n),
            v_threshold=np.full(n, 160 / 64),
            v_reset=np.zeros(n),
            w_in=np.full(n, 1 / du),
        )
    else:
        neuron = nir.LIF(
            tau=np.full(n, dt / dv),
            r=np.full(n, 1 / dv),
            v_leak=np.zeros(n),
            v_threshold=np.full(n, 160 / 64),
            v_reset=np.zeros(n),
        )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([16])}),
            "affine": nir.Affine(weight=weight, bias=np.zeros(n)),
            "neurons": neuron,
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("input", "affine"), ("affine", "neurons"), ("neurons", "output")],
    )


@pytest.fixture(scope="module", params=["CubaLIF", "LIF"])
def foreign_nir(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nir") / f"{request.param.lower()}.nir"
    nir.write(path, _nir_graph(request.param))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Spike input ``[B, T, 16]``, graded input ``[B, 16]`` and ``[B, T, 16]``, labels, and bad inputs."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("inputs")
    spikes = (rng.random((SAMPLES, STEPS, 16)) < 0.4).astype(np.uint8)
    graded = rng.random((SAMPLES, 16)).astype(np.float32)
    nan = spikes.astype(np.float64)
    nan[2, 3, 4] = np.nan
    varying = np.repeat(graded[:, None], STEPS, axis=1)
    varying[1, 5, 0] = 1.0 - varying[1, 5, 0]
    arrays = {
        "spikes": spikes,
        "graded": graded,
        "graded_steps": np.repeat(graded[:, None], STEPS, axis=1),
        "labels": rng.integers(0, 4, size=SAMPLES),
        "wrong_shape": spikes[:, :, :15],
        "non_binary": spikes * 0.5,
        "nan": nan,
        "short": spikes[:, :5],
        "complex": spikes.astype(np.complex64),
        "graded_range": graded + 1.0,
        "graded_int": (graded * 255).astype(np.uint8),
        "graded_varying": varying,
        "few_labels": np.zeros(SAMPLES - 1, np.int64),
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = folder / f"{name}.npy"
        np.save(paths[name], array)
    return paths


# -- netx without the /toolchain group ------------------------------------------------------------


@pytest.mark.parametrize("which", ["slayer_netx", "stripped_netx"])
def test_inspect_describes_a_foreign_netx_file_without_flags(which, request, tmp_path):
    path = request.getfixturevalue(which)
    out = tmp_path / "inspect.json"
    result = toolchain("inspect", str(path), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "time steps not stated in the file" in result.stdout
    assert "input encoding not stated in the file" in result.stdout
    data = json.loads(out.read_text())
    network = data["network"]
    assert network["time_steps"] is None and network["input_encoding"] is None
    assert network["not_stated"] == ["time_steps", "input_encoding"]
    assert network["input_shape"] == [16] and network["classes"] == 4
    layers = [layer for layer in data["layers"] if "neurons" in layer]
    assert [layer["out_shape"] for layer in layers] == [[12], [4]]
    assert all(layer["neurons"]["vth_mant"] == 160 for layer in layers)
    assert layers[0]["quantization"]["weight_shape"] == [12, 16]


def test_simulate_names_the_missing_flags(slayer_netx, data):
    line = one_error(toolchain("simulate", str(slayer_netx), "--input", str(data["spikes"])))
    assert "--time-steps N and --input-encoding graded|spikes" in line
    line = one_error(
        toolchain("simulate", str(slayer_netx), "--time-steps", "8", "--input", str(data["spikes"]))
    )
    assert line.endswith("give --input-encoding graded|spikes")
    # no dataset in the file and no --input
    line = one_error(
        toolchain("simulate", str(slayer_netx), "--time-steps", "8", "--input-encoding", "spikes")
    )
    assert "names no dataset" in line and "--input FILE.npy" in line and "[B, T=8, 16]" in line


def _expected(network: ir.Network, x: np.ndarray):
    return simulate(network, x, record_spikes=True)


def _check_output(out: Path, expected, network: ir.Network, labels: np.ndarray | None) -> None:
    saved = np.load(out)
    output = network.synaptic_layers()[-1].name
    assert saved["spikes"].dtype == np.uint8 and saved["spikes"].shape == (STEPS, SAMPLES, 4)
    assert np.array_equal(saved["spikes"], expected.spikes[output].reshape(STEPS, SAMPLES, -1))
    assert np.array_equal(saved["counts"], expected.counts)
    assert np.array_equal(saved["predictions"], expected.predictions)
    assert saved["spikes"].sum() > 0 and len(set(saved["counts"].sum(axis=0))) > 1  # not trivial
    potentials = getattr(expected, "potentials", None)
    if potentials is not None:
        assert np.array_equal(saved["potentials"], potentials)
    if labels is None:
        assert "labels" not in saved.files
    else:
        assert np.array_equal(saved["labels"], labels)


@pytest.mark.parametrize("which", ["slayer_netx", "stripped_netx"])
def test_simulate_a_foreign_netx_file_on_own_spikes(which, request, data, tmp_path):
    path = request.getfixturevalue(which)
    out, report = tmp_path / "out.npz", tmp_path / "sim.json"
    result = toolchain(
        "simulate", str(path), "--time-steps", "8", "--input-encoding", "spikes",
        "--input", str(data["spikes"]), "--labels", str(data["labels"]),
        "--output", str(out), "--json", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    network = read_netx(path, time_steps=STEPS, input_encoding="spikes")
    x = np.load(data["spikes"]).transpose(1, 0, 2)  # the simulator's [T, B, 16]
    expected = _expected(network, x)
    labels = np.load(data["labels"])
    _check_output(out, expected, network, labels)
    sim = json.loads(report.read_text())
    assert sim["samples"] == SAMPLES and sim["input"] == str(data["spikes"]) and sim["dataset"] is None
    assert sim["accuracy"] == expected.accuracy(labels)
    assert sim["not_stated"] == ["input_encoding", "time_steps"]
    assert sim["activity"]["samples"] == SAMPLES


def test_simulate_a_foreign_netx_file_on_own_graded_samples(slayer_netx, data, tmp_path):
    network = read_netx(slayer_netx, time_steps=STEPS, input_encoding="graded")
    expected = _expected(network, np.load(data["graded"]))
    for name in ("graded", "graded_steps"):  # [B, 16], and the same sample at each of the T steps
        out = tmp_path / f"{name}.npz"
        result = toolchain(
            "simulate", str(slayer_netx), "--time-steps", "8", "--input-encoding", "graded",
            "--input", str(data[name]), "--output", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "accuracy not measured" in result.stdout
        _check_output(out, expected, network, None)


@pytest.mark.parametrize(
    ("encoding", "name", "message"),
    [
        (
            "spikes",
            "wrong_shape",
            "shape (6, 8, 15) does not fit the network's input (16,): expected 0/1 spikes",
        ),
        ("spikes", "non_binary", "spike input must be 0 or 1; 2 of 768 values are not (e.g. 0.5)"),
        ("spikes", "nan", "holds NaN: 1 of 768 values not finite"),
        ("spikes", "short", "holds T = 5 time steps, the network runs 8 (--time-steps)"),
        ("spikes", "complex", "dtype complex64: expected numbers"),
        ("spikes", "graded", "shape (6, 16) does not fit the network's input (16,): expected 0/1 spikes"),
        ("graded", "graded_range", "graded input must lie in [0, 1]"),
        ("graded", "graded_int", "dtype uint8: graded input must be floats in [0, 1]"),
        ("graded", "graded_varying", "graded sample 1 changes at step 5"),
    ],
)
def test_bad_input_files_are_one_line_errors(slayer_netx, data, encoding, name, message):
    result = toolchain(
        "simulate", str(slayer_netx), "--time-steps", "8", "--input-encoding", encoding,
        "--input", str(data[name]),
    )  # fmt: skip
    line = one_error(result)
    assert line.startswith(f"toolchain: error: {data[name]}: "), line
    if name == "non_binary":  # every 1 became 0.5
        message = message.replace("2 of", f"{int(np.load(data['spikes']).sum())} of")
    assert message in line


def test_bad_labels_and_misplaced_flags_are_one_line_errors(slayer_netx, stripped_netx, data, tmp_path):
    base = ["simulate", str(slayer_netx), "--time-steps", "8", "--input-encoding", "spikes"]
    line = one_error(toolchain(*base, "--input", str(data["spikes"]), "--labels", str(data["few_labels"])))
    assert f"{data['few_labels']}: labels of shape (5,): expected [B] = [6]" in line
    line = one_error(toolchain(*base, "--input", str(data["spikes"]), "--labels", str(data["graded"])))
    assert "labels of shape (6, 16)" in line
    line = one_error(toolchain(*base, "--input", str(tmp_path / "absent.npy")))
    assert "absent.npy: no such input file" in line
    archive = tmp_path / "x.npz"
    np.savez(archive, x=np.load(data["spikes"]))
    assert "an .npz archive" in one_error(toolchain(*base, "--input", str(archive)))
    assert "--dt applies to NIR files only" in one_error(
        toolchain(*base, "--input", str(data["spikes"]), "--dt", "1e-4")
    )


def test_a_stated_setting_is_not_contradicted(tmp_path, data):
    neurons = ir.CubaNeurons(i_decay=1024, v_decay=512, vth_mant=160)
    rng = np.random.default_rng(4)
    network = ir.Network("ours", (16,), "spikes", STEPS, (ir.Dense("out", _weights(rng, 4, 16), neurons),))
    path = write_netx(network, tmp_path / "ours.net")
    line = one_error(
        toolchain("simulate", str(path), "--input-encoding", "graded", "--input", str(data["graded"]))
    )
    assert "the file states spikes input; --input-encoding graded contradicts it" in line
    # a file that states its time steps runs for --time-steps instead
    out = tmp_path / "out.npz"
    short = tmp_path / "short.npy"
    np.save(short, np.load(data["spikes"])[:, :5])
    result = toolchain(
        "simulate", str(path), "--time-steps", "5", "--input", str(short), "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert np.load(out)["spikes"].shape == (5, SAMPLES, 4)


def test_energy_on_a_foreign_netx_file(slayer_netx, data, tmp_path):
    line = one_error(toolchain("energy", str(slayer_netx), "--input", str(data["spikes"])))
    assert "give --time-steps N and --input-encoding graded|spikes" in line
    out = tmp_path / "energy.json"
    result = toolchain(
        "energy", str(slayer_netx), "--time-steps", "8", "--input-encoding", "spikes",
        "--input", str(data["spikes"]), "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"simulating {SAMPLES} samples of {data['spikes']}" in result.stderr
    assert "per inference" in result.stdout
    estimate = json.loads(out.read_text())
    assert estimate["samples"] == SAMPLES and estimate["time_steps"] == STEPS
    network = read_netx(slayer_netx, time_steps=STEPS, input_encoding="spikes")
    expected = simulate(network, np.load(data["spikes"]).transpose(1, 0, 2)).activity
    assert [layer["spikes"] for layer in estimate["layers"]] == [
        layer.spikes_per_sample for layer in expected.layers
    ]


# -- NIR without metadata -------------------------------------------------------------------------


def test_inspect_describes_a_nir_graph_without_metadata(foreign_nir, tmp_path):
    out = tmp_path / "inspect.json"
    result = toolchain("inspect", str(foreign_nir), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "time steps not stated in the file" in result.stdout
    assert "dt 0.0001 s (not stated in the file: the default)" in result.stdout
    network = json.loads(out.read_text())["network"]
    assert network["time_steps"] is None and network["dt_s"] == 1e-4
    assert network["input_encoding"] == "spikes"  # NIR's default, named as not stated
    assert network["not_stated"] == ["time_steps", "input_encoding", "dt"]


def test_simulate_a_nir_graph_without_metadata(foreign_nir, data, tmp_path):
    line = one_error(toolchain("simulate", str(foreign_nir), "--input", str(data["spikes"])))
    assert line.endswith("states no time steps (no time_steps in its metadata): give --time-steps N")
    out = tmp_path / "out.npz"
    args = ["simulate", str(foreign_nir), "--time-steps", "8", "--input", str(data["spikes"])]
    result = toolchain(*args, "--output", str(out))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and result.stderr.count("dt = 0.0001 s") == 1, result.stderr
    assert "states no time step (no dt in its metadata)" in warnings[0] and "--dt SECONDS" in warnings[0]
    network = read_nir(foreign_nir, time_steps=STEPS)
    expected = _expected(network, np.load(data["spikes"]).transpose(1, 0, 2))
    _check_output(out, expected, network, None)
    # the same dt given: no warning, the same spikes
    again = tmp_path / "again.npz"
    result = toolchain(*args, "--dt", "1e-4", "--output", str(again))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert np.array_equal(np.load(again)["spikes"], np.load(out)["spikes"])


@pytest.mark.parametrize(
    ("dt", "message"),
    [
        ("2e-4", "with dt = 0.0002 s, Loihi's is 1; the graph was written for another dt"),
        ("1e-12", "dt = 1e-12 s gives a voltage decay dt/tau = 1.25e-09, below Loihi's step of 1/4096"),
        ("0", "argument --dt: expected a positive time step in seconds, got 0"),
        ("-1e-4", "argument --dt: expected a positive time step in seconds"),
        ("nan", "argument --dt: expected a positive time step in seconds"),
    ],
)
def test_an_implausible_dt_is_an_error(foreign_nir, data, dt, message):
    if "voltage decay" in message and foreign_nir.stem == "cubalif":
        message = message.replace("voltage decay dt/tau = 1.25e-09", "current decay dt/tau = 2.5e-09")
    args = ["simulate", str(foreign_nir), "--time-steps", "8", "--input", str(data["spikes"])]
    assert message in one_error(toolchain(*args, f"--dt={dt}"))


def test_energy_on_a_nir_graph_without_metadata(foreign_nir, data):
    result = toolchain(
        "energy", str(foreign_nir), "--time-steps", "8", "--dt", "1e-4", "--input", str(data["spikes"])
    )
    assert result.returncode == 0, result.stderr
    assert "per inference" in result.stdout and "warning" not in result.stderr


def test_a_dt_that_leaves_no_state_and_a_silent_output_are_warned_about(tmp_path, data):
    """dt = tau: every neuron forgets its voltage each step (warned); negative weights: no output spike."""
    rng = np.random.default_rng(5)
    for name, weight in (("forgetful", _weights(rng, 4, 16) / 64), ("silent", -np.ones((4, 16)) / 64)):
        graph = nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type={"input": np.array([16])}),
                "affine": nir.Affine(weight=weight, bias=np.zeros(4)),
                "neurons": nir.LIF(
                    tau=np.full(4, 1e-4),
                    r=np.ones(4),
                    v_leak=np.zeros(4),
                    v_threshold=np.full(4, 160 / 64),
                    v_reset=np.zeros(4),
                ),
                "output": nir.Output(output_type={"output": np.array([4])}),
            },
            edges=[("input", "affine"), ("affine", "neurons"), ("neurons", "output")],
            metadata={"dt": 1e-4, "time_steps": STEPS},
        )
        path = tmp_path / f"{name}.nir"
        nir.write(path, graph)
        result = toolchain("simulate", str(path), "--input", str(data["spikes"]))
        assert result.returncode == 0, result.stderr
        warnings = result.stderr.strip().splitlines()
        assert warnings[0] == (
            f"toolchain: warning: {path}: with dt = 0.0001 s every neuron forgets its current and voltage "
            "within one step (dt/tau = 1 for every time constant): if the graph's dt is smaller, give it "
            "with --dt SECONDS"
        )
        if name == "silent":
            assert warnings[1] == (
                f"toolchain: warning: {path}: the output layer never spiked on any of the {SAMPLES} samples, "
                "so every prediction is class 0; check --dt (seconds) and --time-steps"
            )
        else:
            assert len(warnings) == 1
