"""Every file reader fuzzed at once: outcomes, hangs and peak memory per format.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_formats.py --format all --inputs 10000 --seed 0

Formats and what a read is (each the reader a command runs on a user's file):

- ``netx``: :func:`toolchain.formats.netx.read_netx` (forked, as always) of the conv net of
  ``fuzz_netx.py``, mutated as there (bytes, truncation, a dataset or the ``/toolchain`` JSON
  replaced, a group deleted), with a string field or attribute rewritten as another string type,
  or an object renamed as for NIR;
- ``nir``: :func:`toolchain.formats.nir.read_nir` and :func:`toolchain.formats.nir.nir_to_torch` of
  the same network written by :func:`toolchain.formats.nir.write_nir`, mutated by bytes, by a
  dataset replaced (NaN, infinities, huge, negative, empty, a string, an extra axis, deleted), by
  a string dataset rewritten as another string type (fixed-length bytes, variable-length text, an
  array of strings) or by an object renamed (a name that is not UTF-8, which h5py gives as
  ``bytes`` beside the other names' ``str``, or a byte of it changed);
- ``onnx``: :func:`toolchain.export.inspect.describe` and its text and JSON renderings of the two
  files of ``fuzz_onnx.py``, mutated as there, or with a ``metadata_props`` entry nested deeply;
- ``recipe``: :func:`toolchain.config.load_recipe` of every ``models/*/recipe.toml``;
- ``target``: :func:`toolchain.energy.targets.parse_target_file` of every ``deploy/targets/*.toml``;
- ``activity``: :func:`toolchain.activity.read_activity` of the JSON ``toolchain simulate --json``
  writes for the netx network (simulated by the reference simulator), then the energy estimate
  on ``loihi`` (whose errors name the layer, not the file: only one line is asked of them);
  values replaced, keys deleted, nested deeply, or bytes mutated.

Each read runs in a forked child (``fuzzing.measured_read``) under ``--time-limit`` seconds (a read
past it is killed and counted as a hang) and its memory is measured: the child's resident set
when it starts (the interpreter it shares with this process) and its peak, including any process
the reader forks. Before the mutated inputs, every unmutated file of the format is read once in
this process (so that what the reader imports on first use is loaded before any child is forked)
and three times the same way: the largest of those peaks is the legitimate peak the mutated reads are held
to (at most ``--memory-factor`` times it, 2 by default). Prints per format the inputs, the
outcomes, the failures (anything but a result or a one-line ``ToolchainError`` naming the file),
the hangs, the slowest read and the peak memory against the legitimate peak; exits 1 if any
format has a failure, a hang or a peak beyond the factor. ``--keep DIR`` saves every input that
failed or hung.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_netx
import fuzz_onnx
from fuzzing import Measured, measured_read, mutate_bytes, mutate_json, mutate_lines

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("netx", "nir", "onnx", "recipe", "target", "activity")
#: how many times each unmutated file is read for the legitimate peak
LEGITIMATE_READS = 3


@dataclass
class Format:
    """A format under test: its unmutated files (name, bytes), the file name a mutated input is
    written to, how to mutate (``mutate(data, path, rng)`` writes ``path``, returns the mutation's
    kind) and how to read a path."""

    name: str
    seeds: list[tuple[str, bytes]]
    filename: str
    mutate: Callable[[bytes, Path, np.random.Generator], str]
    read: Callable[[Path], object]


@dataclass
class FormatResult:
    name: str
    inputs: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    slowest_s: float = 0.0
    legit_baseline_kib: int = 0
    legit_peak_kib: int = 0
    baseline_kib: int = 0
    peak_kib: int = 0
    peak_increase_kib: int = 0
    peak_kind: str = ""
    first_failures: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.outcomes["failure"]

    @property
    def hangs(self) -> int:
        return self.outcomes["hang"]

    def memory_factor(self) -> float:
        return self.peak_kib / self.legit_peak_kib if self.legit_peak_kib else float("inf")


# --- the formats -----------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _string_retyped(handle: h5py.File, rng: np.random.Generator, names: list[str]) -> None:
    """A string dataset rewritten as another string type (fixed-length bytes, variable-length
    text or bytes, an array of them): readers must not assume ``bytes`` or ``str``."""
    name = names[int(rng.integers(len(names)))]
    value = handle[name][()]
    text = (
        value.decode("utf-8", "replace")
        if isinstance(value, bytes)
        else str(np.asarray(value).reshape(-1)[0])
    )
    del handle[name]
    choice = int(rng.integers(5))
    if choice == 0:
        handle.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))
    elif choice == 1:
        handle.create_dataset(name, data=text.encode(), dtype=h5py.string_dtype("ascii"))
    elif choice == 2:
        handle.create_dataset(name, data=np.bytes_(text.encode()))
    elif choice == 3:
        handle.create_dataset(name, data=[text, text], dtype=h5py.string_dtype("utf-8"))
    else:
        handle.create_dataset(name, data=np.array([text.encode()]))


def _renamed(handle: h5py.File, rng: np.random.Generator) -> None:
    """An object moved to a name that is not UTF-8 (h5py then gives that name as ``bytes`` beside
    the others' ``str``), or given another object's name with a byte changed."""
    names: list[str] = []
    handle.visit(names.append)
    name = names[int(rng.integers(len(names)))]
    parent, _, leaf = name.rpartition("/")
    if rng.random() < 0.7:
        new = leaf.encode() + bytes([int(rng.integers(0x80, 0x100))])
    else:
        raw = bytearray(leaf.encode() or b"x")
        raw[int(rng.integers(len(raw)))] = int(rng.integers(1, 0x80))
        new = bytes(raw).replace(b"/", b"_").replace(b".", b"_")
    target = (parent.encode() + b"/" if parent else b"") + new
    with contextlib.suppress(ValueError, OSError):  # the name exists already
        handle.move(name, target)


def netx_format(folder: Path) -> Format:
    from toolchain.formats.netx import read_netx, write_netx

    valid = write_netx(fuzz_netx.valid_network(), folder / "valid.net").read_bytes()
    strings = ["layer/0/type", "layer/1/type", "layer/1/neuron/type", "layer/3/type", "layer/4/neuron/type"]

    def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
        if rng.random() < 0.15:
            path.write_bytes(data)
            with h5py.File(path, "r+") as handle:
                if rng.random() < 0.3:
                    _renamed(handle, rng)
                    return "name"
                if rng.random() < 0.5:
                    _string_retyped(handle, rng, strings)
                else:  # the sidecar's JSON as bytes or as text, valid or not UTF-8
                    text = handle["toolchain"].attrs["network"]
                    text = text if isinstance(text, str) else text.decode()
                    raw = text.encode() if rng.random() < 0.5 else text.encode()[:-3] + b"\xff\xfe"
                    handle["toolchain"].attrs["network"] = (
                        np.bytes_(raw) if rng.random() < 0.7 else raw.decode("latin-1")
                    )
            return "string type"
        return fuzz_netx.mutate(data, path, rng)

    return Format("netx", [("conv net", valid)], "fuzz.net", mutate, lambda path: read_netx(path))


NIR_MUTATIONS = ("nan", "inf", "negative", "huge", "zero", "string", "empty", "extra_dim", "delete", "scalar")


def _nir_replace(handle: h5py.File, name: str, mutation: str) -> None:
    old = np.asarray(handle[name][()])
    del handle[name]
    if mutation == "delete":
        return
    numeric = old.dtype.kind in "biuf"
    values = {
        "nan": np.full(old.shape, np.nan) if numeric else np.nan,
        "inf": np.full(old.shape, -np.inf) if numeric else np.inf,
        "negative": -np.abs(old) - 7 if numeric else -1,
        "huge": np.full(old.shape, 10**12) if numeric else 10**12,
        "zero": np.zeros(old.shape) if numeric else 0,
        "string": "garbage",
        "empty": np.zeros((0,)),
        "extra_dim": np.ones((*old.shape, 2)) if numeric else np.ones(2),
        "scalar": 3,
    }
    handle[name] = values[mutation]


def nir_format(folder: Path) -> Format:
    from toolchain.export.nir_torch import nir_to_torch
    from toolchain.formats.nir import read_nir, write_nir

    valid = write_nir(fuzz_netx.valid_network(), folder / "valid.nir").read_bytes()
    datasets: list[str] = []
    strings: list[str] = []
    with h5py.File(folder / "valid.nir", "r") as handle:

        def visit(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                datasets.append(name)
                if item.dtype.kind in "SO":
                    strings.append(name)

        handle.visititems(visit)

    def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
        choice = rng.random()
        if choice < 0.4:
            kind, blob = mutate_bytes(data, rng)
            path.write_bytes(blob)
            return kind
        path.write_bytes(data)
        with h5py.File(path, "r+") as handle:
            if choice < 0.5:
                _string_retyped(handle, rng, strings)
                return "string type"
            if choice < 0.6:
                _renamed(handle, rng)
                return "name"
            for _ in range(int(rng.integers(1, 4))):
                name = datasets[int(rng.integers(len(datasets)))]
                if name in handle:
                    _nir_replace(handle, name, NIR_MUTATIONS[int(rng.integers(len(NIR_MUTATIONS)))])
        return "dataset"

    def read(path: Path) -> None:
        read_nir(path)
        with warnings.catch_warnings():  # "the graph states no time step": once per input otherwise
            warnings.simplefilter("ignore")
            nir_to_torch(path)

    return Format("nir", [("conv net", valid)], "fuzz.nir", mutate, read)


def onnx_format(folder: Path) -> Format:
    from toolchain.export.inspect import describe, format_description

    valid = fuzz_onnx.valid_files(folder)

    def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
        choice = rng.random()
        if choice < 0.1:  # a metadata entry holding JSON nested deeply
            import onnx

            model = onnx.load_model_from_string(data)
            entry = model.metadata_props.add()
            depth = int(rng.choice([100, 900, 990, 2000, 100_000]))
            entry.key = "nested"
            entry.value = (
                "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
            )
            path.write_bytes(model.SerializeToString())
            return "metadata nesting"
        kind, blob = (fuzz_onnx.mutate_fields if choice < 0.35 else mutate_bytes)(data, rng)
        path.write_bytes(blob)
        return kind

    def read(path: Path) -> None:
        described = describe(path)
        format_description(described)
        json.dumps(described)

    return Format("onnx", [("snn mlp", valid[0]), ("ann vgg", valid[1])], "fuzz.onnx", mutate, read)


def _text_format(name: str, files: list[Path], filename: str, read: Callable[[Path], object]) -> Format:
    def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
        kind, blob = mutate_lines(data, rng)
        path.write_bytes(blob)
        return kind

    seeds = [(f.parent.name if f.name == "recipe.toml" else f.stem, f.read_bytes()) for f in files]
    return Format(name, seeds, filename, mutate, read)


def recipe_format(folder: Path) -> Format:
    from toolchain.config import load_recipe

    return _text_format("recipe", sorted((REPO / "models").glob("*/recipe.toml")), "recipe.toml", load_recipe)


def target_format(folder: Path) -> Format:
    from toolchain.energy.targets import parse_target_file

    return _text_format(
        "target", sorted((REPO / "deploy" / "targets").glob("*.toml")), "chip.toml", parse_target_file
    )


def activity_format(folder: Path) -> Format:
    from toolchain.activity import read_activity
    from toolchain.energy.model import estimate
    from toolchain.energy.targets import load_target
    from toolchain.errors import ToolchainError
    from toolchain.sim.reference import simulate

    network = fuzz_netx.valid_network()
    inputs = np.random.default_rng(0).integers(0, 2, size=(network.time_steps, 4, *network.input_shape))
    result = simulate(network, inputs.astype(np.float32))
    record = {"accuracy": 0.5, "activity": result.activity.to_dict()}
    target = load_target("loihi")

    def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
        kind, blob = mutate_json(record, rng)
        path.write_bytes(blob)
        return kind

    def read(path: Path) -> None:
        activity, _ = read_activity(path)
        try:
            estimate(network, activity, target)
        except ToolchainError as exc:  # names the layer, not the file it never saw: only one line is asked
            raise ToolchainError(f"{path}: estimate: {exc}") from None

    return Format("activity", [("simulate --json", json.dumps(record).encode())], "sim.json", mutate, read)


BUILDERS = {
    "netx": netx_format,
    "nir": nir_format,
    "onnx": onnx_format,
    "recipe": recipe_format,
    "target": target_format,
    "activity": activity_format,
}


# --- the run ---------------------------------------------------------------------------------


def run_format(
    fmt: Format,
    inputs: int,
    rng: np.random.Generator,
    folder: Path,
    *,
    time_limit_s: float = 10.0,
    legitimate_reads: int = LEGITIMATE_READS,
    keep: Path | None = None,
    log: Callable[[str], None] = print,
) -> FormatResult:
    """The legitimate peak (each unmutated file read ``legitimate_reads`` times), then ``inputs``
    mutated files read one at a time."""
    result = FormatResult(fmt.name)
    path = folder / fmt.filename
    for label, data in fmt.seeds:
        path.write_bytes(data)
        fmt.read(path)  # here first: what the reader imports on first use is in every child's baseline
        for _ in range(legitimate_reads):
            measured = measured_read(lambda: fmt.read(path), path, time_limit_s)
            if measured.outcome != "read":
                raise SystemExit(
                    f"{fmt.name}: the unmutated file {label!r} does not read: {measured.message}"
                )
            result.legit_peak_kib = max(result.legit_peak_kib, measured.peak_kib)
            result.legit_baseline_kib = max(result.legit_baseline_kib, measured.baseline_kib)
    start = time.perf_counter()
    for index in range(inputs):
        _, data = fmt.seeds[int(rng.integers(len(fmt.seeds)))]
        kind = fmt.mutate(data, path, rng)
        measured: Measured = measured_read(lambda: fmt.read(path), path, time_limit_s)
        result.inputs += 1
        result.kinds[kind] += 1
        result.outcomes[measured.outcome] += 1
        result.slowest_s = max(result.slowest_s, measured.seconds)
        result.baseline_kib = max(result.baseline_kib, measured.baseline_kib)
        if measured.peak_kib > result.peak_kib:
            result.peak_kib, result.peak_kind = measured.peak_kib, kind
        if measured.baseline_kib:
            result.peak_increase_kib = max(
                result.peak_increase_kib, measured.peak_kib - measured.baseline_kib
            )
        if measured.outcome in ("failure", "hang"):
            if len(result.first_failures) < 5:
                result.first_failures.append(
                    f"input {index} ({kind}): {measured.outcome}: {measured.message}"
                )
            log(f"{fmt.name} input {index} ({kind}): {measured.outcome}\n{measured.message}")
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, keep / f"{fmt.name}-{index}-{measured.outcome}{path.suffix}")
    result.seconds = time.perf_counter() - start
    return result


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def summary(result: FormatResult, memory_factor: float) -> list[str]:
    legit_increase = result.legit_peak_kib - result.legit_baseline_kib
    each_ms = result.seconds / max(result.inputs, 1) * 1000
    return [
        f"{result.name}: {result.inputs} inputs in {result.seconds:.1f} s ({each_ms:.1f} ms each, "
        f"slowest {result.slowest_s * 1000:.0f} ms); "
        f"mutations: {dict(result.kinds)}",
        f"  outcomes: {dict(result.outcomes)}; failures: {result.failures}; hangs: {result.hangs}",
        f"  peak memory: {_mib(result.peak_kib)} (read process at start: {_mib(result.baseline_kib)}; "
        f"largest increase {_mib(result.peak_increase_kib)}; peak from a {result.peak_kind!r} input) vs the "
        f"legitimate files' {_mib(result.legit_peak_kib)} (at start {_mib(result.legit_baseline_kib)}, "
        f"increase {_mib(legit_increase)}): {result.memory_factor():.2f}x (limit {memory_factor:g}x)",
    ]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--format", default="all", help=f"all, or some of {','.join(FORMATS)} (comma-separated)"
    )
    parser.add_argument("--inputs", type=int, default=10_000, help="mutated inputs per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-limit", type=float, default=10.0, help="seconds a read may take (else: a hang)"
    )
    parser.add_argument("--memory-factor", type=float, default=2.0)
    parser.add_argument("--keep", type=Path, help="copy every input that failed or hung here")
    args = parser.parse_args()
    names = FORMATS if args.format == "all" else tuple(args.format.split(","))
    if unknown := [name for name in names if name not in FORMATS]:
        parser.error(f"unknown format(s) {unknown}: choose from {', '.join(FORMATS)} or all")
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        formats = [BUILDERS[name](folder) for name in names]  # every import and seed before any fork
        for fmt in formats:
            rng = np.random.default_rng([args.seed, FORMATS.index(fmt.name)])
            result = run_format(fmt, args.inputs, rng, folder, time_limit_s=args.time_limit, keep=args.keep)
            results.append(result)
            print("\n".join(summary(result, args.memory_factor)), flush=True)
    print(
        f"seed {args.seed}, time limit {args.time_limit:g} s per read; total "
        f"{sum(r.inputs for r in results)} inputs in {sum(r.seconds for r in results):.1f} s"
    )
    bad = [r.name for r in results if r.failures or r.hangs or r.memory_factor() > args.memory_factor]
    print(f"formats with failures, hangs or a peak beyond {args.memory_factor:g}x: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
