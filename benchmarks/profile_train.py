"""Where a training step of the reference SNN spends its time, per framework (torch.profiler).

Same workload and networks as ``train_speed.py`` (``--net vgg`` or ``gsc``: those of
``train_speed_conv.py``). Profiles ``--batches`` training steps after a
warm-up, on one thread by default so that the profiler's CPU times add up to the wall time, and
splits the step into

- matmul: the synapses' ``aten::mm``/``addmm``/``bmm`` and convolutions (slayer's dense synapse
  is a ``conv3d``), forward and backward, and the toolchain's event-driven dense synapses and 1-D
  convolutions (the own time of their ``_EventDense`` and ``_UnfoldedConv1d`` autograd functions,
  forward and backward: compiled kernels);
- other ops: every other ``aten::`` operator, i.e. the neuron dynamics, the loss, Adam: the
  elementwise kernels and the dispatcher's per-call cost; and the own time of the toolchain's
  fused CUBA-LIF autograd function (``_CubaSequence``, forward and backward: compiled loops);
- autograd nodes: the autograd engine's per-node work and the ``*Backward`` nodes themselves;
- Python: the rest of the wall time, outside any operator (the interpreter running the time loop,
  module calls, the custom autograd functions' Python code);

plus the number of operator calls per step (``aten::`` calls), which is what a per-step Python
loop multiplies, and the three largest of the other operators. Run from the repository root::

    benchmarks/.venv/bin/python benchmarks/profile_train.py                 # print the table
    benchmarks/.venv/bin/python benchmarks/profile_train.py --write-docs    # and update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed
import train_speed_conv

MATMUL_OPS = {
    "aten::mm",
    "aten::addmm",
    "aten::addmm_",
    "aten::bmm",
    "aten::mkldnn_convolution",
    "aten::slow_conv3d_forward",
    "aten::convolution_backward",
}
#: the toolchain's custom autograd functions: their own time (outside any aten operator) is their
#: compiled kernels; the event-driven dense synapse and the 1-D convolution's unfolding count with
#: the synapses' matmuls, the fused CUBA-LIF loops with the other operators (the neuron dynamics)
SYNAPSE_FUNCTIONS = {"_EventDense", "_EventDenseBackward", "_UnfoldedConv1d", "_UnfoldedConv1dBackward"}
NEURON_FUNCTIONS = {"_CubaSequence", "_CubaSequenceBackward"}


def split(events: list, wall_ms: float, batches: int) -> dict[str, float | str]:
    """Milliseconds per step in each category, operator calls per step, the largest other operators."""
    matmul = other = nodes = 0.0
    calls = 0
    others: list[tuple[float, str]] = []
    for event in events:
        self_ms = event.self_cpu_time_total / 1000.0
        if event.key in MATMUL_OPS or event.key in SYNAPSE_FUNCTIONS:
            matmul += self_ms
        elif event.key in NEURON_FUNCTIONS or event.key.startswith("aten::"):
            other += self_ms
            others.append((self_ms, event.key))
        elif event.key.startswith("autograd::") or "Backward" in event.key:
            nodes += self_ms
        if event.key.startswith("aten::"):
            calls += event.count
    python = max(0.0, wall_ms - matmul - other - nodes)
    return {
        "total": wall_ms / batches,
        "matmul": matmul / batches,
        "other": other / batches,
        "nodes": nodes / batches,
        "python": python / batches,
        "calls": calls / batches,
        "largest": ", ".join(
            f"`{key.removeprefix('aten::').removeprefix('_')}` {ms / batches:.0f}"
            for ms, key in sorted(others, reverse=True)[:3]
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--frameworks", nargs="+", choices=list(train_speed.BUILDERS), default=list(train_speed.BUILDERS)
    )
    parser.add_argument("--batches", type=int, default=3, help="profiled training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument(
        "--net", choices=["mlp", *train_speed_conv.RECIPES], default="mlp", help="the network (default mlp)"
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update {train_speed.DOCS}")
    args = parser.parse_args(argv)
    train_speed.keep_freed_memory()  # the allocator settings of the timed processes
    torch.set_num_threads(args.threads)

    setup = train_speed.Setup() if args.net == "mlp" else train_speed_conv.conv_setup(args.net)
    inputs, labels = train_speed.make_batch(setup)
    runners, skipped = train_speed.build_runners(setup, train_speed.network(setup), inputs, args.frameworks)
    for item in skipped:
        print(f"skipped {item}", file=sys.stderr)
    for runner in runners:
        for _ in range(2):
            train_speed.train_step(runner, labels)
    best: dict[str, dict[str, Any]] = {}
    loads = []
    for _ in range(args.rounds):  # interleaved; each framework keeps its fastest round
        for runner in runners:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                for _ in range(args.batches):
                    train_speed.train_step(runner, labels)
                wall_ms = (time.perf_counter() - start) * 1000.0
            loads.append(os.getloadavg()[0])
            result = split(list(prof.key_averages()), wall_ms, args.batches)
            if runner.name not in best or result["total"] < best[runner.name]["total"]:
                best[runner.name] = result
    rows = [(runner.name, best[runner.name]) for runner in runners]

    command = train_speed.command_line("profile_train.py", argv)
    lines = [
        f"Command: `{command}`; torch.get_num_threads() = {torch.get_num_threads()}, "
        f"the fastest of {args.rounds} interleaved rounds of {args.batches} profiled training steps "
        "each, 1-minute load average "
        f"{min(loads):.2f} to {max(loads):.2f}. Times are per training step (batch {setup.batch}, "
        f"T = {setup.steps}), measured under the profiler (which adds to every operator call); "
        "glibc's allocator keeping freed memory, as in the speed tables; all frameworks in one process.",
        "",
        "| framework | ms per step | matmul | other ops | autograd nodes | Python (outside ops) "
        "| operator calls per step | largest other ops, ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:

        def share(part: float, r: dict[str, Any] = r) -> str:
            return f"{part:.0f} ms ({100 * part / r['total']:.0f} %)"

        lines.append(
            f"| {name} | {r['total']:.0f} | {share(r['matmul'])} | {share(r['other'])} "
            f"| {share(r['nodes'])} | {share(r['python'])} | {r['calls']:.0f} | {r['largest']} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.write_docs:
        section = "profile_train" if args.net == "mlp" else f"profile_train-{args.net}"
        train_speed.write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
        print(f"\nwrote {train_speed.DOCS.relative_to(train_speed.REPO)} ({section})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
