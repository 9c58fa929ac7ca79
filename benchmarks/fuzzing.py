"""The driver the reader fuzz benchmarks share (``fuzz_netx.py``, ``fuzz_onnx.py``).

A fuzz run writes one mutated input at a time, reads it, and sorts how the read ended: read
(``success``), a ``FormatError``, another ``ToolchainError`` or a failure (anything else, printed
with its traceback). :func:`fuzz` runs the loop and :func:`report` prints the two summary lines
and gives the exit status (1 if anything failed); :func:`fuzz_parser` holds the shared options.
"""

from __future__ import annotations

import argparse
import collections
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

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
