"""The driver the reader fuzz benchmarks share (``fuzz_netx.py``, ``fuzz_onnx.py``, ``fuzz_formats.py``).

A fuzz run writes one mutated input at a time, reads it, and sorts how the read ended: read
(``success``), a ``FormatError``, another ``ToolchainError`` or a failure (anything else, printed
with its traceback). :func:`fuzz` runs the loop and :func:`report` prints the two summary lines
and gives the exit status (1 if anything failed); :func:`fuzz_parser` holds the shared options.

:func:`measured_read` runs one read in a forked child instead, with a time limit (a read past it is
killed: a hang) and the child's memory measured: its resident set when it starts (the forked
interpreter, shared with the parent) and its peak (``ru_maxrss`` of the child and of any process
the reader itself forks and waits for), so a read's own allocation is ``peak - baseline``.
:func:`mutate_bytes`, :func:`mutate_lines` and :func:`mutate_json` are mutations of any file,
a TOML file's lines and a JSON document, drawn from a numpy generator.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import os
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import FormatError, ToolchainError


@dataclass
class FuzzTally:
    """What a fuzz run did: mutation kinds, outcomes, failures, the slowest read and the total time."""

    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: int = 0
    slowest_s: float = 0.0
    total_s: float = 0.0


def fuzz_parser(description: str, inputs: int) -> argparse.ArgumentParser:
    """``--inputs`` (default ``inputs``) and ``--seed`` (default 0)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--inputs", type=int, default=inputs)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def fuzz(
    inputs: int,
    write_input: Callable[[], str],
    read: Callable[[], object],
    *,
    success: str = "read",
    format_error: Callable[[FormatError, FuzzTally], str] | None = None,
) -> FuzzTally:
    """``inputs`` times: ``write_input()`` (writes the mutated file, returns its mutation kind),
    then ``read()``; ``format_error(exc, tally)`` names the outcome of a ``FormatError``
    (default ``"FormatError"``)."""
    tally = FuzzTally()
    start = time.perf_counter()
    for _ in range(inputs):
        tally.kinds[write_input()] += 1
        began = time.perf_counter()
        try:
            read()
            tally.outcomes[success] += 1
        except FormatError as exc:
            tally.outcomes["FormatError" if format_error is None else format_error(exc, tally)] += 1
        except ToolchainError:
            tally.outcomes["other ToolchainError"] += 1
        except Exception:  # a failure of the reader: report it
            tally.failures += 1
            tally.outcomes["failure"] += 1
            traceback.print_exc()
        tally.slowest_s = max(tally.slowest_s, time.perf_counter() - began)
    tally.total_s = time.perf_counter() - start
    return tally


def report(tally: FuzzTally, args: argparse.Namespace, slowest: str = "slowest") -> int:
    """Print the summary of ``tally`` (``slowest`` names the slowest input's time); 1 if any failed."""
    print(
        f"inputs tried: {args.inputs} (seed {args.seed}) in {tally.total_s:.1f} s; "
        f"mutations: {dict(tally.kinds)}"
    )
    print(
        f"outcomes: {dict(tally.outcomes)}; failures: {tally.failures}; "
        f"{slowest}: {tally.slowest_s * 1000:.1f} ms"
    )
    return 1 if tally.failures else 0


# --- one read in a forked child: outcome, time limit, memory ------------------------------------


@dataclass
class Measured:
    """How one read in a child ended (``read``, ``FormatError``, ``other ToolchainError``,
    ``failure`` or ``hang``), its message, its time and the child's resident set (KiB) at its start
    and at its peak."""

    outcome: str
    message: str
    seconds: float
    baseline_kib: int
    peak_kib: int


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measured_read(read: Callable[[], object], path: Path, time_limit_s: float) -> Measured:
    """``read()`` in a forked child (its own process group, so a hang is killed with everything the
    reader forked): the outcome, and ``failure`` also for an error that is not one line naming
    ``path``, or a child that died (a crash the reader did not contain)."""
    read_fd, write_fd = os.pipe()
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(read_fd)
            baseline = _rss_kib()
            try:
                read()
                outcome, message = "read", ""
            except FormatError as exc:
                outcome, message = "FormatError", str(exc)
            except ToolchainError as exc:
                outcome, message = "other ToolchainError", str(exc)
            except BaseException:  # a failure of the reader: report it
                outcome, message = "failure", traceback.format_exc()
            if outcome != "read" and outcome != "failure" and ("\n" in message or str(path) not in message):
                outcome, message = "failure", f"not one line naming the file: {message!r}"
            # the kernel's peak resident size; at least the resident size measured at the start
            # (the two are counted apart, and the peak can read a few KiB lower)
            peak = max(
                baseline,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            )
            with os.fdopen(write_fd, "w") as pipe:
                json.dump([outcome, message, baseline, peak], pipe)
        finally:
            os._exit(0)
    with contextlib.suppress(OSError):  # the child set it already, or has ended
        os.setpgid(pid, pid)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + time_limit_s
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
                os.killpg(pid, signal.SIGKILL)
                _, _, usage = os.wait4(pid, 0)
                seconds = time.perf_counter() - began
                return Measured("hang", f"killed after {time_limit_s:g} s", seconds, 0, usage.ru_maxrss)
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - began
    if not chunks:
        died = f"the reading process died (wait status {status})"
        return Measured("failure", died, seconds, 0, usage.ru_maxrss)
    outcome, message, baseline, peak = json.loads(b"".join(chunks))
    return Measured(outcome, message, seconds, baseline, peak)


# --- mutations ----------------------------------------------------------------------------------

#: 32-bit words a mutation may write: the limits of uint32/int32, 10^9 and small odd values
ABSURD_WORDS = (0, 1, 3, 255, 10**9, 2**31 - 1, 2**31, 2**32 - 1)


def mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """``data`` with one kind of byte mutation, 1-8 times: overwritten bytes, an absurd 32-bit word,
    inserted or deleted bytes, or the file truncated."""
    kind = str(rng.choice(["overwrite", "word", "truncate", "insert", "delete"]))
    buffer = bytearray(data)
    if kind == "truncate":
        return kind, bytes(buffer[: int(rng.integers(len(buffer)))])
    for _ in range(int(rng.integers(1, 9))):
        at = int(rng.integers(len(buffer))) if buffer else 0
        if kind == "overwrite" and buffer:
            buffer[at] = int(rng.integers(256))
        elif kind == "word":
            word = int(rng.choice(ABSURD_WORDS))
            buffer[at : at + 4] = word.to_bytes(4, str(rng.choice(["little", "big"])))
        elif kind == "insert":
            buffer[at:at] = rng.bytes(int(rng.integers(1, 17)))
        else:
            del buffer[at : at + int(rng.integers(1, 65))]
    return kind, bytes(buffer) or b"\x08"


#: values a TOML line mutation writes: numbers no float holds, NaN, wrong types, deep nesting, long text
TOML_VALUES = (
    "10" + "0" * 400,
    "-" + "9" * 30,
    "1e308",
    "1e999",
    "nan",
    "-inf",
    "0",
    "-1",
    "true",
    '"ten"',
    "[]",
    "[1, [2, 3]]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "[" * 2000 + "]" * 2000,
    "{ a = " * 500 + "1" + " }" * 500,
    '"' + "x" * 10_000 + '"',
)


def mutate_lines(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A TOML file with 1-4 line mutations (a value replaced by one of :data:`TOML_VALUES`, a line
    deleted, duplicated or byte-overwritten, a stray key or table), or a byte mutation."""
    if rng.random() < 0.25:
        return mutate_bytes(data, rng)
    lines = data.splitlines()
    kinds = []
    for _ in range(int(rng.integers(1, 5))):
        if not lines:
            break
        at = int(rng.integers(len(lines)))
        kind = str(rng.choice(["value", "delete", "duplicate", "bytes", "key"]))
        if kind == "value" and b"=" in lines[at]:
            key = lines[at].split(b"=", 1)[0]
            lines[at] = key + b"= " + str(rng.choice(TOML_VALUES)).encode()
        elif kind == "delete":
            del lines[at]
        elif kind == "duplicate":
            lines.insert(at, lines[at])
        elif kind == "key":
            lines.insert(at, rng.choice([b"seed", b"x.y", b"[model]", b"[[data]]", b"name"]) + b" = 1")
        else:
            raw = bytearray(lines[at])
            if raw:
                raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
            lines[at] = bytes(raw)
        kinds.append(kind)
    return "lines", b"\n".join(lines) + b"\n"


#: values a JSON mutation writes
JSON_VALUES = (None, -1, 0, 10**400, 1e308, float("nan"), float("-inf"), "x", "", [], {}, [[[]]], True)


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts and lists."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += json_paths(item, (*prefix, index))
    return paths


def mutate_json(data: Any, rng: np.random.Generator) -> tuple[str, bytes]:
    """The JSON of ``data`` with 1-4 values replaced (one of :data:`JSON_VALUES`, or nested
    100 to 100,000 deep) or keys deleted, or its bytes mutated."""
    text = json.dumps(data).encode()
    choice = rng.random()
    if choice < 0.3:
        return mutate_bytes(text, rng)
    data = copy.deepcopy(data)
    kind = "values"
    for _ in range(int(rng.integers(1, 5))):
        paths = json_paths(data)[1:]
        if not paths:
            break
        path = paths[int(rng.integers(len(paths)))]
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        elif rng.random() < 0.1:  # spliced into the text: deeper than json.dumps may recurse
            depth = int(rng.choice([100, 900, 990, 2000, 100_000]))
            parent[path[-1]] = "\x00nest"
            nested = (
                (b"[" * depth + b"]" * depth)
                if rng.random() < 0.5
                else (b'{"a":' * depth + b"1" + b"}" * depth)
            )
            return "nesting", json.dumps(data).encode().replace(b'"\\u0000nest"', nested, 1)
        else:
            parent[path[-1]] = copy.deepcopy(JSON_VALUES[int(rng.integers(len(JSON_VALUES)))])
    return kind, json.dumps(data).encode()
