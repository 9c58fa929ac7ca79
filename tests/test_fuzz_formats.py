"""Readers with bounded time and memory: every format fuzzed by the benchmark's driver, and the
defences the fuzzing needed, each pinned by a targeted test.

``benchmarks/fuzz_formats.py`` reads ≥ 10,000 mutated files per format (netx, NIR, ONNX, recipe
TOML, target TOML, activity JSON), each in a forked child under a time limit with its peak memory
measured against reading the unmutated files; the suite runs the same driver on a small sample
(:data:`SAMPLE_INPUTS` per format). ``docs/robustness.md`` gives the figures of a full run.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from toolchain.errors import FormatError, ToolchainError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import fuzz_formats  # noqa: E402
import fuzz_netx  # noqa: E402
import fuzz_onnx  # noqa: E402

#: mutated inputs per format in the suite's run (the benchmark's full run: 10,000)
SAMPLE_INPUTS = int(os.environ.get("TOOLCHAIN_FUZZ_FORMAT_INPUTS", "24"))


@pytest.mark.parametrize("name", fuzz_formats.FORMATS)
def test_fuzz_sample_of_every_format_has_no_failure_hang_or_memory_blowup(name: str, tmp_path: Path) -> None:
    """The benchmark's driver on a sample: a result or a one-line ToolchainError naming the file
    for every input, none past the time limit, no peak beyond 2x the unmutated files'."""
    fmt = fuzz_formats.BUILDERS[name](tmp_path)
    rng = np.random.default_rng([0, fuzz_formats.FORMATS.index(name)])
    result = fuzz_formats.run_format(
        fmt, SAMPLE_INPUTS, rng, tmp_path, legitimate_reads=1, log=lambda _: None
    )
    assert result.inputs == SAMPLE_INPUTS
    assert result.failures == 0 and result.hangs == 0, result.first_failures
    assert result.memory_factor() <= 2.0, fuzz_formats.summary(result, 2.0)


# --- HDF5 object names that are not UTF-8: h5py gives them as bytes beside the others' str -----


def _netx_file(folder: Path) -> Path:
    from toolchain.formats.netx import write_netx

    return write_netx(fuzz_netx.valid_network(), folder / "valid.net")


def _nir_file(folder: Path) -> Path:
    from toolchain.formats.nir import write_nir

    return write_nir(fuzz_netx.valid_network(), folder / "valid.nir")


@pytest.mark.parametrize(
    ("make", "edit"),
    [
        # earlier: "corrupt netx file (TypeError: '<' not supported between instances of 'bytes' and 'str')"
        (_netx_file, lambda f: f["layer"].create_group(b"\xff")),
        (_netx_file, lambda f: f["layer/1/neuron"].create_dataset(b"v\xfe", data=1)),
        # earlier: "corrupt HDF5 file (SystemError: <cyfunction FastRLock.__exit__ ...> returned a result
        # with an exception set)": the UnicodeDecodeError mangled inside h5py's visiting callback
        (_nir_file, lambda f: f.move("node/nodes/fc", b"node/nodes/f\xffc")),
        (_nir_file, lambda f: f["node/metadata"].create_dataset(b"\xfe\xff", data=1)),
    ],
    ids=["netx-layer", "netx-neuron", "nir-node", "nir-metadata"],
)
def test_hdf5_names_mixing_bytes_and_str_are_one_format_error(tmp_path: Path, make, edit) -> None:
    from toolchain.export.inspect import describe
    from toolchain.export.nir_torch import nir_to_torch
    from toolchain.formats.netx import read_netx
    from toolchain.formats.nir import read_nir

    path = make(tmp_path)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    with h5py.File(path, "r") as handle:  # what h5py gives: bytes for this name, str for the others
        kinds = {type(name) for group in (handle, *_groups(handle)) for name in group}
    assert kinds == {bytes, str}
    readers = [describe] + ([read_netx] if path.suffix == ".net" else [read_nir, nir_to_torch])
    for read in readers:
        with pytest.raises(FormatError, match=r"the HDF5 object name b'.*' is not UTF-8 text") as info:
            read(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert "TypeError" not in str(info.value) and "SystemError" not in str(info.value)


def _groups(handle: h5py.File) -> list[h5py.Group]:
    groups: list[h5py.Group] = []
    handle.id.links.visit(lambda name, info: groups.append(name) if name.isascii() else None, info=True)
    return [handle[name] for name in groups if isinstance(handle[name], h5py.Group)]


def _raise(exc: BaseException) -> None:
    raise exc


# --- variable-length strings whose stored length is corrupt ---------------------------------------


def _with_vlen_length(path: Path, dataset: str | None, length: int) -> Path:
    """``path`` with one variable-length string (``dataset``, or netx's ``/toolchain`` attribute
    when None) padded to 12345 characters, then its stored length set to ``length``."""
    with h5py.File(path, "r+") as handle:
        if dataset is None:
            text = handle["toolchain"].attrs["network"]
            handle["toolchain"].attrs["network"] = text.ljust(12345)
        else:
            text = handle[dataset][()].decode()
            del handle[dataset]
            handle.create_dataset(dataset, data=text.ljust(12345), dtype=h5py.string_dtype())
    raw = bytearray(path.read_bytes())
    # a vlen descriptor: the length (uint32), then the global heap collection's address in the file
    hits = [
        at
        for at in range(len(raw) - 12)
        if raw[at : at + 4] == struct.pack("<I", 12345)
        and 0 < struct.unpack("<Q", raw[at + 4 : at + 12])[0] < len(raw)
    ]
    assert len(hits) == 1
    raw[hits[0] : hits[0] + 4] = struct.pack("<I", length)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("make", "dataset"),
    [(_netx_file, None), (_nir_file, "node/metadata/toolchain/provenance")],
    ids=["netx-sidecar", "nir-provenance"],
)
def test_a_corrupt_string_length_is_refused_without_allocating_it(tmp_path: Path, make, dataset) -> None:
    """libhdf5 allocates a variable-length string's stored length before reading it: a fuzzed netx
    file (one flipped byte) made the reader allocate 932.8 MiB. The length is now bounded by the
    file's size while the string is read (toolchain.isolation.memory_limit in the forked reader)."""
    from fuzzing import measured_read

    from toolchain.formats.netx import read_netx
    from toolchain.formats.nir import read_nir

    path = _with_vlen_length(make(tmp_path), dataset, 2**30)  # 1 GiB, in a file of a few dozen KB
    assert path.stat().st_size < 200_000
    read = read_netx if path.suffix == ".net" else read_nir
    measured = measured_read(lambda: read(path), path, 60)
    assert measured.outcome == "FormatError"
    assert "declares a string longer than the file" in measured.message or (
        "declares strings longer than the file" in measured.message
    )
    assert measured.peak_kib - measured.baseline_kib < 128 * 1024  # KiB: far below the 1 GiB declared


# --- NIR reads run where a hang or a crash of libhdf5 can be stopped ---------------------------


def test_a_hang_or_crash_while_reading_nir_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """libhdf5 spun forever inside its string read on 3 of 3,000 byte-mutated NIR files, in-process:
    the reading now runs in a forked child (the netx reader's mechanism, toolchain.isolation)."""
    from toolchain.formats.nir import NirError, files, read_nir

    path = _nir_file(tmp_path)
    monkeypatch.setattr(files, "_load_graph", lambda p: time.sleep(30))
    monkeypatch.setattr(files, "READ_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(NirError, match=r"valid\.nir: reading took longer than 0.5 s and was stopped$"):
        read_nir(path)
    assert time.perf_counter() - start < 5
    monkeypatch.setattr(files, "_load_graph", lambda p: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(NirError, match=r"valid\.nir: the HDF5 library crashed \(SIGSEGV\) reading this file"):
        read_nir(path)
    monkeypatch.undo()
    assert read_nir(path).name == "fuzz"  # the graph comes back from the child whole


def test_the_isolated_reader_passes_results_and_errors_through(tmp_path: Path) -> None:
    from toolchain.isolation import run_isolated

    path = tmp_path / "x.bin"
    result = run_isolated(lambda: {"a": np.arange(3)}, path, timeout_s=30, what="file")
    assert result["a"].tolist() == [0, 1, 2]

    def refuse() -> None:
        raise ToolchainError(f"{path}: refused for a reason")

    with pytest.raises(FormatError, match=r"x\.bin: refused for a reason$"):
        run_isolated(refuse, path, timeout_s=30, what="file")
    with pytest.raises(FormatError, match=r"x\.bin: corrupt test file \(RecursionError: deep\)$"):
        run_isolated(lambda: _raise(RecursionError("deep")), path, timeout_s=30, what="test file")


# --- ONNX metadata nested deeply: described, never a RecursionError ----------------------------


@pytest.mark.parametrize("depth", [500, 990, 2000, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deeply_nested_onnx_metadata_is_described_in_one_piece(tmp_path: Path, depth: int, kind: str) -> None:
    """A ``metadata_props`` entry of JSON nested deeply: ``inspect`` (text and ``--json``) works;
    JSON deeper than the parser recurses is shown as text (earlier: a RecursionError traceback)."""
    import onnx

    from toolchain.export.inspect import describe, format_description
    from toolchain.io import write_json

    model = onnx.load_model_from_string(fuzz_onnx.valid_files(tmp_path)[1])
    entry = model.metadata_props.add()
    entry.key = "nested"
    entry.value = "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth
    path = tmp_path / "nested.onnx"
    path.write_bytes(model.SerializeToString())
    described = describe(path)
    assert "nested" in described["metadata"]
    assert "nested:" in format_description(described)
    write_json(tmp_path / "described.json", described)
    json.loads((tmp_path / "described.json").read_text())


def test_the_benchmark_counts_a_hang_and_a_crash(tmp_path: Path) -> None:
    """The driver's own measure: a read past the time limit is a hang, a dead reader a failure,
    and a message that does not name the file a failure."""
    from fuzzing import measured_read

    path = tmp_path / "f"
    assert measured_read(lambda: time.sleep(30), path, 0.5).outcome == "hang"
    assert measured_read(lambda: os.kill(os.getpid(), signal.SIGKILL), path, 5).outcome == "failure"
    assert measured_read(lambda: _raise(FormatError("no file")), path, 5).outcome == "failure"
    named = measured_read(lambda: _raise(FormatError(f"{path}: bad")), path, 5)
    assert named.outcome == "FormatError" and 0 < named.baseline_kib <= named.peak_kib
    grown = measured_read(lambda: np.ones(64 * 2**20 // 8).sum(), path, 5)  # 64 MiB
    assert grown.outcome == "read" and grown.peak_kib - grown.baseline_kib > 60 * 1024
