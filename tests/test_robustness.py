"""Robustness of the readers that issue 10 lists and the tests of the other stages do not fuzz.

Each reader (recipe TOML, MNIST IDX, CIFAR-10 python batches, GSC wav/flac clips, a run folder's
``model.pt``) gets mutated valid files (byte flips, truncation, inserted or deleted bytes, absurd
header fields, wrong-typed values) and must answer each with a result or a one-line
:class:`~toolchain.errors.ToolchainError` naming the file: never another exception, a hang (each
read runs under a time limit) or a large allocation (headers declaring 10^9 elements are refused
before allocating, measured with ``tracemalloc``). A full disk during an atomic write is a one-line
error that names the file and leaves the previous file intact.

The suite's run is derandomized (the same inputs every time); ``TOOLCHAIN_FUZZ_EXAMPLES=N`` runs N
examples per test with fresh randomness (``docs/robustness.md`` lists the figures of such runs).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from fuzzing import JSON_VALUES, TOML_VALUES, json_paths
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import toolchain.io as tio
from toolchain.config import load_recipe, parse_recipe, save_recipe
from toolchain.data import archive as archive_module
from toolchain.data import cifar10 as cifar10_module
from toolchain.data import gsc, load_dataset
from toolchain.data import mnist as mnist_module
from toolchain.data.archive import unpacked
from toolchain.errors import DataError, ToolchainError
from toolchain.export.run_loader import load_run
from toolchain.snn.models import build_model, network_input_shape
from toolchain.torch_files import save_torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "models").glob("*/recipe.toml"))
FUZZ_EXAMPLES = int(os.environ.get("TOOLCHAIN_FUZZ_EXAMPLES", "50"))
#: the suite's run is the same every time; a longer run (TOOLCHAIN_FUZZ_EXAMPLES set) explores anew
FUZZ_DERANDOMIZE = "TOOLCHAIN_FUZZ_EXAMPLES" not in os.environ
#: seconds one read may take before it counts as a hang
READ_TIMEOUT_S = 20.0
#: a reader refusing an absurd header may allocate at most this much on the Python heap
ALLOCATION_LIMIT_BYTES = 64 * 1024**2

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=FUZZ_DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: header words a mutation may write: the limits of uint32/int32, 10^9 and small odd values
ABSURD_WORDS = (0, 1, 3, 255, 10**9, 2**31 - 1, 2**31, 2**32 - 1)


class ReadTimeout(Exception):
    """A read ran past :data:`READ_TIMEOUT_S` (a hang): deliberately not a ToolchainError."""


@contextmanager
def time_limit(seconds: float = READ_TIMEOUT_S) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise ReadTimeout(f"read took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_or_toolchain_error(read: Callable[[], Any], names: str | Path, label: str) -> Any:
    """``read()``'s result, or None when it raised a one-line ToolchainError naming ``names``.

    Any other exception (and a hang, as :class:`ReadTimeout`) propagates and fails the test.
    """
    try:
        with time_limit():
            result = read()
    except ToolchainError as exc:
        message = str(exc)
        assert "\n" not in message, f"multi-line error: {message!r}"
        assert str(names) in message, f"error does not name {names}: {message!r}"
        _event(f"{label}: {type(exc).__name__}")
        return None
    _event(f"{label}: read")
    return result


def fuzz_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """``data`` written to ``tmp_path/fuzz/name`` (one folder for every example of a test)."""
    path = tmp_path / "fuzz" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _event(outcome: str) -> None:
    if currently_in_test_context():
        event(outcome)


@st.composite
def byte_mutations(draw: st.DrawFn, valid: bytes, header_bytes: int = 64) -> bytes:
    """``valid`` with 1-6 mutations, half of them in the first ``header_bytes`` bytes."""
    raw = bytearray(valid)
    for _ in range(draw(st.integers(1, 6), label="mutations")):
        if not raw:
            break
        hot = draw(st.booleans(), label="in header")
        end = min(len(raw), header_bytes) if hot else len(raw)
        at = draw(st.integers(0, end - 1), label="at")
        kind = draw(st.sampled_from(["flip", "byte", "word", "insert", "delete", "truncate"]), label="kind")
        if kind == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7), label="bit")
        elif kind == "byte":
            raw[at] = draw(st.integers(0, 255), label="value")
        elif kind == "word":
            word = draw(st.sampled_from(ABSURD_WORDS), label="word")
            order = draw(st.sampled_from(["<", ">"]), label="endian")
            raw[at : at + 4] = struct.pack(f"{order}I", word)
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=16), label="inserted")
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 64), label="deleted")]
        else:
            del raw[at:]
    return bytes(raw)


@contextmanager
def peak_allocation() -> Iterator[list[int]]:
    """Yields a one-item list that holds the peak of traced (Python and numpy) allocations after."""
    out = [0]
    tracemalloc.start()
    try:
        yield out
    finally:
        out[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# --- recipes ------------------------------------------------------------------------------------


@st.composite
def mutated_recipe(draw: st.DrawFn) -> bytes:
    return _mutated_lines(draw, draw(st.sampled_from(RECIPES), label="recipe").read_bytes().splitlines())


def _mutated_lines(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """A TOML file's lines with 1-4 line mutations (a value replaced, a line deleted, duplicated or
    byte-flipped, a stray key or table)."""
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1), label="line")
        kind = draw(st.sampled_from(["value", "delete", "duplicate", "bytes", "key"]), label="kind")
        if kind == "value" and b"=" in lines[at]:
            key = lines[at].split(b"=", 1)[0]
            lines[at] = key + b"= " + draw(st.sampled_from(TOML_VALUES), label="value").encode()
        elif kind == "delete":
            del lines[at]
        elif kind == "duplicate":
            lines.insert(at, lines[at])
        elif kind == "key":
            lines.insert(at, draw(st.sampled_from([b"seed", b"x.y", b"[model]", b"[[data]]"])) + b" = 1")
        else:
            raw = bytearray(lines[at])
            if raw:
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255), label="byte")
            lines[at] = bytes(raw)
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_valid_recipes_read(recipe: Path) -> None:
    assert load_recipe(recipe).name == recipe.parent.name


@FUZZ
@given(text=mutated_recipe())
def test_fuzz_recipe_reader_only_raises_recipe_errors(tmp_path: Path, text: bytes) -> None:
    path = fuzz_file(tmp_path, "recipe.toml", text)
    read_or_toolchain_error(lambda: load_recipe(path), path, "load_recipe")


TARGETS = sorted((REPO / "deploy" / "targets").glob("*.toml"))


@st.composite
def mutated_target(draw: st.DrawFn) -> bytes:
    return _mutated_lines(draw, draw(st.sampled_from(TARGETS), label="target").read_bytes().splitlines())


@FUZZ
@given(text=mutated_target())
def test_fuzz_target_profile_reader_only_raises_target_errors(tmp_path: Path, text: bytes) -> None:
    from toolchain.energy.targets import parse_target_file

    path = fuzz_file(tmp_path, "chip.toml", text)
    read_or_toolchain_error(lambda: parse_target_file(path), path, "parse_target_file")


@st.composite
def mutated_activity(draw: st.DrawFn) -> bytes:
    """The JSON of ``toolchain simulate --json`` (an activity and its accuracy), with 1-4 values
    replaced or keys deleted, or its bytes mutated."""
    import copy

    sys.path.insert(0, str(Path(__file__).parent))
    from test_energy import toy_activity

    data = {"accuracy": 0.5, "activity": toy_activity().to_dict()}
    if draw(st.booleans(), label="bytes"):
        return draw(byte_mutations(json.dumps(data).encode(), header_bytes=32))
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        paths = json_paths(data)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths), label="path")
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans(), label="delete") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(JSON_VALUES), label="value"))
        if not isinstance(data, dict):
            break
    return json.dumps(data).encode()


@FUZZ
@given(text=mutated_activity())
def test_fuzz_activity_reader_only_raises_toolchain_errors(tmp_path: Path, text: bytes) -> None:
    """``toolchain energy --activity``: the reader and the estimate refuse what does not fit."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_energy import toy_network

    from toolchain.activity import read_activity
    from toolchain.energy.model import estimate
    from toolchain.energy.targets import load_target

    path = fuzz_file(tmp_path, "sim.json", text)
    read = read_or_toolchain_error(lambda: read_activity(path), path, "read_activity")
    if read is not None:
        activity, _ = read
        try:
            with time_limit():
                estimate(toy_network(), activity, load_target("loihi"))
        except ToolchainError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("threshold = 1.0", "threshold = 1" + "0" * 400, r"\[neuron\]\.threshold: expected a number"),
        ("threshold = 1.0", "threshold = nan", r"\[neuron\]\.threshold: expected a finite number"),
        ("threshold = 1.0", "threshold = " + "[" * 2000 + "]" * 2000, "nested too deeply"),
        # passed the reader before, then crashed torch.manual_seed with an OverflowError traceback
        ("learning_rate = 0.002\nseed = 0", "learning_rate = 0.002\nseed = 1" + "0" * 30, r"\[train\]\.seed"),
    ],
)
def test_recipe_fuzz_findings_stay_fixed(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = (REPO / "models" / "digits-demo" / "recipe.toml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = tmp_path / "recipe.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ToolchainError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- MNIST IDX files -----------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape) + array.tobytes()


def _write_mnist(folder: Path, images: bytes | None = None, gz: bool = False) -> Path:
    """Four small valid IDX files (3 train, 2 test images) in ``folder``; ``images`` replaces the
    train images file's bytes. Returns the path of the train images file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": _idx(np.array([0, 1, 2], dtype=np.uint8)),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": _idx(np.array([3, 4], dtype=np.uint8)),
    }
    if images is not None:
        files["train-images-idx3-ubyte"] = images
    for stem, data in files.items():
        for old in (folder / stem, folder / f"{stem}.gz"):
            old.unlink(missing_ok=True)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / stem).write_bytes(data)
    return folder / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")


VALID_IDX = _idx(np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize("gz", [False, True])
def test_valid_idx_reads(tmp_path: Path, gz: bool) -> None:
    _write_mnist(tmp_path / "mnist", VALID_IDX, gz=gz)
    assert load_dataset("mnist", tmp_path).train.x.shape == (3, 1, 28, 28)


@FUZZ
@given(data=byte_mutations(VALID_IDX, header_bytes=16), gz=st.booleans())
def test_fuzz_idx_reader_only_raises_data_errors(tmp_path: Path, data: bytes, gz: bool) -> None:
    if gz and data[:1] == b"\x00":  # also mutate the compressed stream sometimes
        compressed = bytearray(gzip.compress(data, mtime=0))
        compressed[len(compressed) // 2] ^= 0xFF
        _write_mnist(tmp_path / "mnist", gz=True)
        path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
        path.write_bytes(bytes(compressed))
    else:
        path = _write_mnist(tmp_path / "mnist", data, gz=gz)
    ds = read_or_toolchain_error(lambda: load_dataset("mnist", tmp_path), path, "mnist")
    if ds is not None:
        assert ds.train.x.shape[1:] == (1, 28, 28) and len(ds.train.x) == len(ds.train.y)


@pytest.mark.parametrize(
    ("dims", "payload"),
    [((10**9, 28, 28), 100), ((2**32 - 1,) * 3, 100), ((2**31, 2**31, 4), 0)],
    ids=["1e9-images", "uint32-max", "int64-product-wraps-to-0"],
)
def test_idx_absurd_header_is_refused_before_allocating(
    tmp_path: Path, dims: tuple[int, ...], payload: int
) -> None:
    header = struct.pack(">I3I", 0x0803, *dims)
    path = _write_mnist(tmp_path / "mnist", header + bytes(payload))
    with peak_allocation() as peak, pytest.raises(ToolchainError, match="header declares") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)
    assert peak[0] < ALLOCATION_LIMIT_BYTES


def test_idx_gzip_bomb_is_refused_without_decompressing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist_module, "MAX_IDX_BYTES", 1024**2)  # 1 MiB instead of the real limit
    path = _write_mnist(tmp_path / "mnist", bytes(64 * 1024**2), gz=True)  # 64 MiB in 64 KB
    with peak_allocation() as peak, pytest.raises(ToolchainError, match="more than") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)
    assert peak[0] < 8 * 1024**2


# --- CIFAR-10 python batches ----------------------------------------------------------------------


class Py2Pickler(pickle._Pickler):  # type: ignore[misc]  # the pure-Python pickler, to override bytes
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as in the official CIFAR-10 batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _batch_pickle(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fuzz",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"a.png"] * n,
    }
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(batch)
    return buffer.getvalue()


def _write_batches(root: Path, first: bytes) -> Path:
    """A ``cifar-10-batches-py`` folder of 2-image batches whose ``data_batch_1`` is ``first``."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    ):
        (folder / name).write_bytes(first if i == 0 else _batch_pickle(2, i))
    return folder / "data_batch_1"


VALID_BATCH = _batch_pickle(2, 0)


def test_valid_batch_reads(tmp_path: Path) -> None:
    _write_batches(tmp_path, VALID_BATCH)
    ds = load_dataset("cifar10", tmp_path, {"source": "batches"})
    assert ds.train.x.shape == (10, 3, 32, 32) and ds.test.x.shape == (2, 3, 32, 32)


@FUZZ
@given(data=byte_mutations(VALID_BATCH, header_bytes=256))
def test_fuzz_cifar10_batch_reader_only_raises_data_errors(tmp_path: Path, data: bytes) -> None:
    path = _write_batches(tmp_path, data)
    ds = read_or_toolchain_error(
        lambda: load_dataset("cifar10", tmp_path, {"source": "batches"}), path, "cifar10 batches"
    )
    if ds is not None:
        assert ds.train.x.shape[1:] == (3, 32, 32) and len(ds.train.x) == len(ds.train.y)


@pytest.mark.parametrize(
    "opcode", [b"B", b"T", b"\x8e", b"X"], ids=["BINBYTES", "BINSTRING", "BINBYTES8", "BINUNICODE"]
)
def test_cifar10_pickle_declaring_a_huge_string_is_refused_before_allocating(
    tmp_path: Path, opcode: bytes
) -> None:
    size = struct.pack("<Q", 10**12) if opcode == b"\x8e" else struct.pack("<I", 2**31 - 1)
    path = _write_batches(tmp_path, b"\x80\x02}q\x00" + opcode + size + b"abc")
    with (
        peak_allocation() as peak,
        pytest.raises(ToolchainError, match="corrupt or truncated pickle") as info,
    ):
        load_dataset("cifar10", tmp_path, {"source": "batches"})
    assert str(path) in str(info.value)
    assert peak[0] < ALLOCATION_LIMIT_BYTES


# --- GSC clips (wav, flac) -----------------------------------------------------------------------


def _clip_bytes(fmt: str) -> bytes:
    noise = np.random.default_rng(0).normal(0, 0.05, 1600).clip(-1, 1)  # 0.1 s: small, padded on read
    buffer = io.BytesIO()
    soundfile.write(buffer, noise, gsc.af.SAMPLE_RATE, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


VALID_CLIPS = {"wav": _clip_bytes("WAV"), "flac": _clip_bytes("FLAC")}


@pytest.mark.parametrize("suffix", sorted(VALID_CLIPS))
def test_valid_clips_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"valid.{suffix}"
    path.write_bytes(VALID_CLIPS[suffix])
    audio = gsc.read_clip(path)
    assert audio.shape == (gsc.af.CLIP_SAMPLES,) and np.abs(audio[:1600]).max() > 0


@st.composite
def mutated_clip(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(VALID_CLIPS)), label="format")
    return suffix, draw(byte_mutations(VALID_CLIPS[suffix], header_bytes=96))


@FUZZ
@given(clip=mutated_clip(), offset=st.sampled_from([0, 0, 800, 10**9]))
def test_fuzz_gsc_clip_reader_only_raises_data_errors(
    tmp_path: Path, clip: tuple[str, bytes], offset: int
) -> None:
    suffix, data = clip
    path = tmp_path / f"fuzz.{suffix}"
    path.write_bytes(data)
    audio = read_or_toolchain_error(lambda: gsc.read_clip(path, offset), path, f"read_clip {suffix}")
    if audio is not None:
        assert audio.shape == (gsc.af.CLIP_SAMPLES,) and audio.dtype == np.float32
        assert np.isfinite(audio).all()
    read_or_toolchain_error(lambda: gsc._info(path), path, f"info {suffix}")


def test_wav_header_declaring_1e9_samples_reads_one_clip(tmp_path: Path) -> None:
    """A data chunk claiming 2 GB: the reader takes at most one clip's samples, never the claim."""
    raw = bytearray(VALID_CLIPS["wav"])
    at = raw.index(b"data")
    raw[at + 4 : at + 8] = struct.pack("<I", 2 * 10**9)
    raw[4:8] = struct.pack("<I", 2 * 10**9 + 36)
    path = tmp_path / "huge.wav"
    path.write_bytes(bytes(raw))
    with peak_allocation() as peak:
        audio = read_or_toolchain_error(lambda: gsc.read_clip(path), path, "huge wav")
    assert peak[0] < ALLOCATION_LIMIT_BYTES
    if audio is not None:
        assert audio.shape == (gsc.af.CLIP_SAMPLES,)
        np.testing.assert_array_equal(audio[1600:], 0)  # only the real samples, then padding


@pytest.mark.parametrize("num_features", [10**9, 10**6, 300])
def test_gsc_absurd_band_count_is_refused_before_allocating(num_features: int) -> None:
    recipe = {
        "name": "x",
        "data": {"dataset": "gsc", "options": {"features": "logmel", "num_features": num_features}},
    }
    with peak_allocation() as peak, pytest.raises(ToolchainError, match="num_features"), time_limit():
        parse_recipe(recipe, "fuzz.toml")
    assert peak[0] < ALLOCATION_LIMIT_BYTES


# --- checkpoints (a run folder's model.pt) --------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of the digits demo recipe with untrained weights (what load_run reads)."""
    run = tmp_path_factory.mktemp("run")
    recipe = load_recipe(REPO / "models" / "digits-demo")
    save_recipe(recipe, run / "recipe.toml")
    torch.manual_seed(0)
    model = build_model(recipe.model, recipe.neuron, network_input_shape((64,)), 10)
    save_torch(run / "model.pt", model.state_dict())
    return run


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > pwned.txt",))


def _copy_run(run: Path, dest: Path, model_bytes: bytes) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "recipe.toml").write_bytes((run / "recipe.toml").read_bytes())
    (dest / "model.pt").write_bytes(model_bytes)
    return dest / "model.pt"


def test_valid_run_folder_loads(run_folder: Path) -> None:
    loaded = load_run(run_folder)
    assert loaded.recipe.name == "digits-demo"


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "replacement",
    [
        pytest.param(lambda: pickle.dumps(_Exploit(), protocol=2), id="pickle-calling-os.system"),
        pytest.param(lambda: _torch_bytes({"exploit": _Exploit()}), id="torch-file-calling-os.system"),
        pytest.param(lambda: _torch_bytes([1, 2, 3]), id="a-list"),
        pytest.param(lambda: _torch_bytes({"layers.0.weight": "a string"}), id="wrong-types"),
        pytest.param(lambda: _torch_bytes({"x": torch.zeros(3)}), id="wrong-keys"),
        pytest.param(lambda: b"", id="empty"),
    ],
)
def test_checkpoint_replaced_is_refused(
    run_folder: Path, tmp_path: Path, replacement: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _copy_run(run_folder, tmp_path / "run", replacement())
    with pytest.raises(ToolchainError) as info:
        load_run(path.parent)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert "weights_only" not in str(info.value)  # never the advice to load a hostile file unsafely
    assert not (tmp_path / "pwned.txt").exists()


@pytest.fixture(scope="module")
def valid_model_bytes(run_folder: Path) -> bytes:
    return (run_folder / "model.pt").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_reader_only_raises_toolchain_errors(
    run_folder: Path, valid_model_bytes: bytes, data: st.DataObject
) -> None:
    mutated = data.draw(byte_mutations(valid_model_bytes, header_bytes=len(valid_model_bytes)))
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy_run(run_folder, Path(tmp) / "run", mutated)
        loaded = read_or_toolchain_error(lambda: load_run(path.parent), path, "load_run")
    if loaded is not None:
        assert loaded.recipe.name == "digits-demo"


# --- a full disk --------------------------------------------------------------------------------


class _FullDisk(io.BufferedWriter):
    """A file on a disk that fills after ``room`` bytes: later writes fail with ENOSPC."""

    room = 100

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        if self.tell() + size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "wb":
            return real_fdopen(fd, mode, *args, **kwargs)
        return _FullDisk(io.FileIO(fd, "wb"))

    monkeypatch.setattr(tio.os, "fdopen", fdopen)


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda p: tio.write_text(p, "x" * 10_000), id="write_text"),
        pytest.param(lambda p: tio.write_json(p, {"values": list(range(1000))}), id="write_json"),
        pytest.param(lambda p: save_torch(p, {"w": torch.zeros(1000)}), id="save_torch"),
    ],
)
def test_full_disk_is_one_line_and_keeps_the_previous_file(
    tmp_path: Path, request: pytest.FixtureRequest, write: Callable[[Path], Any]
) -> None:
    path = tmp_path / "out" / "checkpoint.pt"
    tio.write_text(path, "previous")
    request.getfixturevalue("full_disk")
    with pytest.raises(ToolchainError) as info:
        write(path)
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message and "\n" not in message
    assert path.read_text() == "previous"
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary left


def test_full_disk_while_saving_a_recipe_is_one_line(tmp_path: Path, full_disk: None) -> None:
    path = tmp_path / "recipe.toml"
    with pytest.raises(ToolchainError, match=r"recipe\.toml: write failed \(No space left on device\)"):
        save_recipe(load_recipe(REPO / "models" / "digits-demo"), path)
    assert not path.exists()


def test_unwritable_output_folder_fails_before_training(tmp_path: Path) -> None:
    """Through the real entry point: a one-line error, exit code 2, and no epoch was trained."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "toolchain", "train", "models/digits-demo", "--out", str(blocker / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"toolchain: error: {blocker / 'run'}: output folder is not writable (Not a directory)"
    )
    assert "Traceback" not in result.stderr
    assert "epoch" not in result.stdout + result.stderr


# --- dataset archives -----------------------------------------------------------------------------


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLCHAIN_CACHE", str(cache))
    return cache


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"data/../../evil.txt": b"x"}, None, "points outside the archive"),
        ({"/etc/evil.txt": b"x"}, None, "points outside the archive"),
        ({"data/a.txt": b"x"}, {"data/link": "/etc/passwd"}, "links and special files are not allowed"),
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_hostile_archive_members_are_refused_before_writing(
    tmp_path: Path, private_cache: Path, members: dict[str, bytes], links: dict[str, str] | None, message: str
) -> None:
    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(_tar_gz(members, links))
    with pytest.raises(ToolchainError, match=message) as info:
        unpacked(archive, tmp_path)
    assert str(archive) in str(info.value)
    assert not (tmp_path / "evil.txt").exists()
    assert not list((private_cache / "unpacked").iterdir())  # nothing left behind, not even partly


def test_zip_member_outside_the_archive_is_refused(tmp_path: Path, private_cache: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(ToolchainError, match="points outside the archive"):
        unpacked(archive, tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_archive_unpacking_to_more_than_the_limit_is_refused(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "MAX_UNPACKED_BYTES", 1024**2)
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(_tar_gz({"a.bin": bytes(2 * 1024**2)}))
    with pytest.raises(ToolchainError, match=r"would unpack to 0\.0 GiB, more than the 0 GiB limit"):
        unpacked(archive, tmp_path)


VALID_ARCHIVE = _tar_gz({"data/a.txt": b"hello", "data/b/c.bin": bytes(range(256)) * 4})


@FUZZ
@given(data=byte_mutations(VALID_ARCHIVE, header_bytes=32))
def test_fuzz_archive_unpacking_only_raises_data_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TOOLCHAIN_CACHE"] = str(root / "cache")
        try:
            archive = root / "data.tar.gz"
            archive.write_bytes(data)
            folder = read_or_toolchain_error(lambda: unpacked(archive, root), archive, "unpacked")
            if folder is not None:  # whatever came out lies inside the cache folder
                for path in folder.rglob("*"):
                    assert path.resolve().is_relative_to((root / "cache").resolve())
        finally:
            del os.environ["TOOLCHAIN_CACHE"]


# --- CIFAR-10 image files -------------------------------------------------------------------------


def _image_bytes(fmt: str) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


VALID_IMAGES = {"jpg": _image_bytes("JPEG"), "png": _image_bytes("PNG")}


@pytest.mark.parametrize("suffix", sorted(VALID_IMAGES))
def test_valid_images_decode(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"valid.{suffix}"
    path.write_bytes(VALID_IMAGES[suffix])
    assert cifar10_module.decode_image(path).shape == (3, 32, 32)


@st.composite
def mutated_image(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(VALID_IMAGES)), label="format")
    return suffix, draw(byte_mutations(VALID_IMAGES[suffix], header_bytes=128))


@FUZZ
@given(image=mutated_image())
def test_fuzz_cifar10_image_decoder_only_raises_data_errors(tmp_path: Path, image: tuple[str, bytes]) -> None:
    suffix, data = image
    path = tmp_path / f"fuzz.{suffix}"
    path.write_bytes(data)
    pixels = read_or_toolchain_error(lambda: cifar10_module.decode_image(path), path, f"decode {suffix}")
    if pixels is not None:
        assert pixels.shape == (3, 32, 32) and pixels.dtype == np.uint8


@pytest.mark.parametrize(
    "replacement",
    [
        pytest.param(lambda: pickle.dumps(_Exploit(), protocol=2), id="pickle-calling-os.system"),
        pytest.param(lambda: _torch_bytes([1, 2, 3]), id="a-list"),
        pytest.param(lambda: b"PK\x03\x04 truncated", id="truncated-zip"),
    ],
)
def test_ttfs_and_teacher_weights_refuse_bad_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replacement: Callable[[], bytes]
) -> None:
    from toolchain.train.teacher import _load_ann
    from toolchain.train.ttfs import load_ttfs_run

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "ttfs-run"
    run.mkdir()
    save_recipe(load_recipe(REPO / "models" / "digits-ttfs"), run / "recipe.toml")
    (run / "model.pt").write_bytes(replacement())
    dataset = load_dataset("digits")
    demo = load_recipe(REPO / "models" / "digits-demo")
    path = run / "model.pt"
    for load in (
        lambda: load_ttfs_run(run, dataset.sample_shape, dataset.num_classes),
        lambda: _load_ann(path, demo, dataset),
    ):
        with pytest.raises(ToolchainError) as info:
            load()
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "pwned.txt").exists()


# --- deeply nested text files: one line naming the file, never a RecursionError -----------------


def test_deeply_nested_files_are_refused_in_one_line(tmp_path: Path) -> None:
    from toolchain.activity import read_activity
    from toolchain.energy.targets import parse_target_file
    from toolchain.pipeline import _State

    deep_toml = tmp_path / "target.toml"
    deep_toml.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    deep_json = tmp_path / "activity.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    deep_state = tmp_path / "pipeline.json"
    deep_state.write_text('{"fingerprint": ' + "[" * 100_000 + "]" * 100_000 + "}")
    for path, read in (
        (deep_toml, parse_target_file),
        (deep_json, read_activity),  # returns (activity, accuracy)
        (deep_state, lambda p: _State.load(p, "f")),
    ):
        with pytest.raises(ToolchainError) as info:
            read(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), path


def test_cifar10_array_declared_without_its_data_is_refused(tmp_path: Path) -> None:
    """numpy's _reconstruct with a non-empty shape and no __setstate__ makes an array of
    uninitialised memory: 1,000 images from a few hundred bytes. Refused; numpy's own pickles load."""
    from toolchain.data.cifar10 import restricted_load

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]

    class Hollow:
        def __reduce__(self) -> tuple[Any, ...]:
            return (reconstruct, (np.ndarray, (1000, 3072), b"B"))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Hollow(), b"labels": [0] * 1000}, protocol=4))
    assert path.stat().st_size < 10_000
    with pytest.raises(
        DataError, match=r"refusing an array of shape \(1000, 3072\) declared without its data"
    ):
        restricted_load(path)
    real = tmp_path / "real"
    real.write_bytes(pickle.dumps({b"data": np.arange(12, dtype=np.uint8).reshape(3, 4)}, protocol=4))
    np.testing.assert_array_equal(restricted_load(real)[b"data"], np.arange(12).reshape(3, 4))
