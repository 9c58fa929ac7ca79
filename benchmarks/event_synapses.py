"""When the event-driven dense synapse pays: its cost against the matrix product's, per input density.

``toolchain.snn.event_synapses.dense_synapse`` computes a dense layer's ``x @ W^T`` from the
non-zero entries of ``x`` (and the weight gradient from the same events) where few are non-zero.
This measures, on ``rows x inputs`` inputs with a given fraction of random 0/1 entries and
``outputs`` neurons, the forward (finding the events and the product) and the weight gradient of
both ways, interleaved, best of ``--repeats``; the product's counterparts are torch's
``functional.linear`` and ``grad.t() @ x``. The thresholds ``EVENT_DENSITY_MAX`` and
``EVENT_OUTPUTS_MIN`` of that module come from this table. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/event_synapses.py --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/event_synapses.py --threads 1 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import machine
import torch
from torch.nn import functional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from toolchain.snn import event_synapses  # noqa: E402

SECTION = "event_synapses"


def best_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def measure(rows: int, inputs: int, outputs: int, density: float, repeats: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, inputs, generator=generator) < density).float()
    weight = torch.randn(outputs, inputs, generator=generator)
    grad = torch.randn(rows, outputs, generator=generator)
    kernels = event_synapses.compiled_kernels()
    if kernels is None:
        raise SystemExit("numba is not installed: the event-driven synapse does not run")
    events = event_synapses.find_events(x, density_max=1.0)
    assert events is not None

    def event_forward() -> object:
        found = event_synapses.find_events(x, density_max=1.0)
        assert found is not None
        return event_synapses._product(found, weight)

    exact = functional.linear(x, weight)
    difference = float((event_forward() - exact).abs().max()) / float(exact.abs().max())
    return {
        "dense forward": best_ms(lambda: functional.linear(x, weight), repeats),
        "event forward": best_ms(event_forward, repeats),
        "find events": best_ms(lambda: event_synapses.find_events(x, density_max=1.0), repeats),
        "dense weight grad": best_ms(lambda: grad.t() @ x, repeats),
        "event weight grad": best_ms(lambda: event_synapses._weight_gradient(events, grad, kernels), repeats),
        "difference": difference,
    }


def report_header(command: str) -> list[str]:
    """The lines above a table: its command, the date, the machine, the load at the end and the
    allocator's settings."""
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    settings = " ".join(f"{key}={os.environ.get(key)}" for key in keys)
    return [
        f"Command: `{command}`",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()} ({machine.cpu_description()}), {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, "
        f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}",
        f"- 1-minute load average at the end: {os.getloadavg()[0]:.2f}",
        f"- glibc's allocator keeping freed memory, as in the training tables ({settings})",
    ]


def render(results: list[tuple[tuple[int, int, int, float], dict[str, float]]], command: str) -> str:
    lines = [
        *report_header(command),
        "- times: best of the repeats, ms; *event forward* includes finding the events; *× dense*: the "
        "dense time over the event time (above 1: the events are faster); *difference*: the largest "
        "|event - dense| of the forward over the largest |dense| (float32 rounding in another order)",
        "",
        "| rows x inputs -> outputs | density | dense forward | event forward (finding events) | × dense "
        "| dense weight grad | event weight grad | × dense | difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (rows, inputs, outputs, density), r in results:
        lines.append(
            f"| {rows} x {inputs} -> {outputs} | {density:g} | {r['dense forward']:.2f} "
            f"| {r['event forward']:.2f} ({r['find events']:.2f}) "
            f"| {r['dense forward'] / r['event forward']:.2f} | {r['dense weight grad']:.2f} "
            f"| {r['event weight grad']:.2f} | {r['dense weight grad'] / r['event weight grad']:.2f} "
            f"| {r['difference']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=6400, help="samples x time steps (default: 64 x 100)")
    parser.add_argument("--inputs", type=int, nargs="+", default=[700, 256])
    parser.add_argument("--outputs", type=int, nargs="+", default=[20, 64, 256])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5])
    args = parse_timing_arguments(parser, argv)
    results = []
    for inputs in args.inputs:
        for outputs in args.outputs:
            for density in args.densities:
                key = (args.rows, inputs, outputs, density)
                results.append((key, measure(*key, args.repeats)))
                print(f"{key}: {results[-1][1]}", file=sys.stderr)
    report = render(results, project_command("event_synapses.py", argv))
    publish(report, SECTION, args.write_docs)
    return 0


def parse_timing_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser``'s arguments with the ones every layer benchmark takes (``--repeats``,
    ``--threads``, ``--write-docs``), parsed from ``argv``; sets torch's threads when given. The
    script runs with the training tables' allocator settings (``train_speed.keep_freed_memory``:
    it starts again with them where they are not set)."""
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_speed import keep_freed_memory

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def project_command(script: str, argv: Sequence[str] | None) -> str:
    """The command line as the docs print it, for a script run with the project's ``.venv``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_speed import command_line

    return command_line(script, argv).replace("benchmarks/.venv/", ".venv/")


def publish(report: str, section: str, write: bool) -> None:
    """Print ``report``; with ``write``, replace its section (``SECTION-threadsN``) of the docs."""
    print(report)
    if write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_speed import write_docs

        name = f"{section}-threads{torch.get_num_threads()}"
        write_docs(report, f"<!-- {name}:begin -->", f"<!-- {name}:end -->")


if __name__ == "__main__":
    raise SystemExit(main())
