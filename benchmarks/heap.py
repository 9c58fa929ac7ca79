"""What keeping freed memory (``toolchain.heap.keep_freed_memory``) changes, as users run the toolchain.

``toolchain train`` and ``toolchain simulate`` run with glibc's allocator as the process starts it;
``toolchain.train.trainer.fit`` and ``toolchain.sim.reference.simulate`` raise its mmap and trim
thresholds once (see ``toolchain/heap.py``). This script times, each in a fresh process with the
allocator's defaults (no ``MALLOC_*`` variable), with the thresholds raised and with
``TOOLCHAIN_KEEP_FREED_MEMORY=0``, taking turns:

- ``vgg-train``: the training step of the CIFAR-10-sized VGG of ``train_speed_conv.py`` (batch 32,
  ``T = 4``, the fused loops), ``--steps`` steps after two untimed ones: the median step and the
  minor page faults per step;
- ``gsc-train``: the same for the speech conv net (batch 64, ``T = 10``);
- ``conv-sim``: the reference simulator on ``sim_speed.py``'s conv net, one run of ``--samples``
  samples (spikes recorded) after a two-sample warm-up, as one ``toolchain simulate`` runs:
  sample-steps per second and minor page faults per sample-step.

Run from the repository root with the project's environment::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heap.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heap.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORKLOADS = ("vgg-train", "gsc-train", "conv-sim")
SETTINGS = {"raised": {}, "defaults": {"TOOLCHAIN_KEEP_FREED_MEMORY": "0"}}


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def train_worker(net: str, steps: int) -> dict:
    """The median training step (ms) and minor page faults per step of the toolchain's ``net``."""
    import torch
    import train_speed
    import train_speed_conv

    from toolchain.heap import keep_freed_memory

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    keep_freed_memory()  # as ``fit`` does before its first step
    setup = train_speed_conv.conv_setup(net)
    inputs, labels = train_speed.make_batch(setup)
    runners, skipped = train_speed.build_runners(
        setup, train_speed.network(setup), inputs, ["toolchain-fused"]
    )
    if not runners:
        raise SystemExit("; ".join(skipped))
    runner = runners[0]
    for _ in range(2):
        train_speed.train_step(runner, labels)
    times = []
    before = _faults()
    for _ in range(steps):
        start = time.perf_counter()
        train_speed.train_step(runner, labels)
        times.append(time.perf_counter() - start)
    return {"value": statistics.median(times) * 1e3, "faults": (_faults() - before) / steps}


def sim_worker(samples: int) -> dict:
    """Sample-steps per second and minor page faults per sample-step of one reference run."""
    import numpy as np
    import sim_speed

    from toolchain.sim.reference import simulate

    rng = np.random.default_rng(0)
    deployed, x = sim_speed.deployed_with_spikes(sim_speed.conv(rng, 100), samples, 0.05, rng)
    simulate(deployed, x[:, :2])  # start-up: the compiled kernels
    before = _faults()
    timing = simulate(deployed, x, record_spikes=True).timing
    return {"value": timing.sample_steps_per_second, "faults": (_faults() - before) / timing.sample_steps}


def run_worker(workload: str, setting: str, args: argparse.Namespace) -> dict:
    """``workload`` in a fresh process with the allocator's defaults and ``setting``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.pop("TOOLCHAIN_KEEP_FREED_MEMORY", None)
    env.update(SETTINGS[setting])
    command = [sys.executable, __file__, "--worker", workload, "--steps", str(args.steps)]
    done = subprocess.run(
        [*command, "--samples", str(args.samples)], env=env, capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"{workload} ({setting}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[tuple[str, str], list[dict]], trials: int, load: tuple[float, float]) -> str:
    import torch
    from machine import cpu_description

    lines = [
        f"- machine: {cpu_description()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{os.environ.get('OMP_NUM_THREADS', '1')} thread(s); 1-minute load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after",
        f"- {trials} fresh processes per row, taking turns; glibc's allocator defaults in each",
        "",
        "| workload | measure | thresholds raised: median (best) | defaults: median (best) "
        "| gain of the medians | page faults, raised / defaults |",
        "|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        raised, defaults = results[(workload, "raised")], results[(workload, "defaults")]
        if not raised:
            continue
        sim = workload.endswith("-sim")
        pick = max if sim else min
        unit = "sample-steps/s" if sim else "ms per training step"
        per = "per sample-step" if sim else "per step"

        def cell(rows: list[dict], pick=pick, sim=sim) -> str:
            values = [row["value"] for row in rows]
            fmt = "{:,.0f}" if sim else "{:.1f}"
            return f"{fmt.format(statistics.median(values))} ({fmt.format(pick(values))})"

        median_raised = statistics.median(row["value"] for row in raised)
        median_defaults = statistics.median(row["value"] for row in defaults)
        gain = median_raised / median_defaults if sim else median_defaults / median_raised
        faults = (
            f"{statistics.median(r['faults'] for r in raised):,.1f} / "
            f"{statistics.median(r['faults'] for r in defaults):,.1f} {per}"
        )
        lines.append(
            f"| {workload} | {unit} | {cell(raised)} | {cell(defaults)} | **{gain:.2f}x** | {faults} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="fresh processes per workload and setting")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per process")
    parser.add_argument("--samples", type=int, default=512, help="simulated samples per process")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker == "conv-sim":
            result = sim_worker(args.samples)
        else:
            result = train_worker(args.worker.split("-")[0], args.steps)
        print(json.dumps(result))
        return 0
    results: dict[tuple[str, str], list[dict]] = {(w, s): [] for w in WORKLOADS for s in SETTINGS}
    load_before = os.getloadavg()[0]
    for trial in range(args.trials):
        for workload in args.workloads:
            order = list(SETTINGS) if trial % 2 == 0 else list(reversed(SETTINGS))
            for setting in order:
                result = run_worker(workload, setting, args)
                results[(workload, setting)].append(result)
                print(f"trial {trial + 1}: {workload} {setting}: {result}", file=sys.stderr, flush=True)
    report = table(results, args.trials, (load_before, os.getloadavg()[0]))
    given = " ".join(argv if argv is not None else sys.argv[1:])
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    command = f"OMP_NUM_THREADS={threads} .venv/bin/python benchmarks/heap.py {given}".strip()
    report = f"Command: `{command}`\n\n{report}"
    print(report)
    if args.write_docs:
        from train_speed import write_docs

        write_docs(report, "<!-- heap:begin -->", "<!-- heap:end -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
