"""Simulation speed: the reference simulator against Lava on the same netx files, side by side.

Two networks with random weights on Loihi's grid and random input spikes (the same file and the same
spikes for both backends):

- ``mlp``: 700-256-256-20 dense CUBA-LIF (Zenke's SHD layout), ``T = 100``, input spikes at
  ``--rate``;
- ``conv``: a small conv net on ``2 x 32 x 32`` input spikes (DVS-like): conv 8 (3x3, padding 1),
  sum pool 2, conv 16 (3x3, padding 1), sum pool 2, dense 10, ``T = 100``; netx holds it with the
  pooling lowered into the next layer (:func:`toolchain.formats.lower.lower_pooling`).

For each network, ``--rounds`` rounds: one reference run of ``--samples`` samples (batch 256,
every layer's spikes recorded), then Lava on ``--lava-samples`` more of them (one fresh Lava
network per sample, as :mod:`toolchain.sim.lava_backend` runs it), whose spikes of every layer are
compared with the reference's. Taking turns, both backends see the same load on a shared machine.
Reported: the reference's sample-steps per second (stepping; its start-up is milliseconds), best
run and median; Lava's steady state (stepping only) per sample, fastest and median, and end to
end (start-up, stepping and reading); the ratio of the fastest of each and of the medians. The
reference runs on ``--threads`` torch threads (default one); Lava's actor processes use whatever
cores are free.

Run from the repository root with the project's environment (Lava included)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py            # print the table
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --json out.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --lava-samples 0   # reference only
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --write-docs       # update docs/benchmarks.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --neuron-loops 3 --samples 256 --write-docs
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sim_speed.py --threads 2 --write-docs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --chunks 3 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_description

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolchain import ir  # noqa: E402
from toolchain.formats.netx import read_netx, write_netx  # noqa: E402
from toolchain.sim.compare import mismatched_spikes  # noqa: E402
from toolchain.sim.reference import simulate  # noqa: E402


def _weights(rng: np.random.Generator, shape: tuple[int, ...], mean: float, std: float) -> np.ndarray:
    """Random even integers in Loihi's [-256, 254]."""
    return (np.clip(np.round(rng.normal(mean, std, shape) / 2), -128, 127) * 2).astype(np.int64)


def mlp(rng: np.random.Generator, steps: int) -> ir.Network:
    neurons = ir.CubaNeurons(i_decay=1024, v_decay=128, vth_mant=256)
    sizes = (700, 256, 256, 20)
    spreads = ((-2.0, 40.0), (-1.0, 40.0), (2.0, 30.0))
    layers = tuple(
        ir.Dense(name, _weights(rng, (sizes[i + 1], sizes[i]), *spreads[i]), neurons)
        for i, name in enumerate(("dense1", "dense2", "output"))
    )
    return ir.Network("mlp-700-256-256-20", (700,), "spikes", steps, layers)


def conv(rng: np.random.Generator, steps: int) -> ir.Network:
    neurons = ir.CubaNeurons(i_decay=2048, v_decay=256, vth_mant=200)
    layers = (
        ir.Conv("conv1", _weights(rng, (8, 2, 3, 3), 0.0, 40.0), neurons, (2, 32, 32), (1, 1), (1, 1)),
        ir.Pool("pool1", "sum", 2, (8, 32, 32)),
        ir.Conv("conv2", _weights(rng, (16, 8, 3, 3), 0.0, 24.0), neurons, (8, 16, 16), (1, 1), (1, 1)),
        ir.Pool("pool2", "sum", 2, (16, 16, 16)),
        ir.Flatten("flatten", (16, 8, 8)),
        ir.Dense("output", _weights(rng, (10, 1024), 0.0, 8.0), neurons),
    )
    return ir.Network("conv-2x32x32", (2, 32, 32), "spikes", steps, layers)


def input_spikes(network: ir.Network, samples: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Random 0/1 input spikes ``[T, samples, *input_shape]``, each with probability ``rate``."""
    return (rng.random((network.time_steps, samples, *network.input_shape)) < rate).astype(np.uint8)


def deployed_with_spikes(
    network: ir.Network, samples: int, rate: float, rng: np.random.Generator
) -> tuple[ir.Network, np.ndarray]:
    """What a netx file of ``network`` holds (written and read back: pooling lowered), and
    :func:`input_spikes` for it."""
    with tempfile.TemporaryDirectory() as folder:
        deployed = read_netx(write_netx(network, Path(folder) / f"{network.name}.net"))
    return deployed, input_spikes(network, samples, rate, rng)


def _minor_faults() -> int:
    """Minor page faults of this process so far (fresh memory paged in)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(
    network: ir.Network,
    samples: int,
    lava_samples: int,
    rate: float,
    rng: np.random.Generator,
    rounds: int = 3,
) -> dict:
    """``rounds`` rounds, each one reference run of ``samples`` samples then Lava on
    ``lava_samples`` more of them (the next ones each round), on the same netx file: every Lava
    spike compared with the reference's, each backend's rate per run (the reference's) or per
    sample (Lava's steady state), and both ratios of the fastest and of the medians."""
    from toolchain.sim.lava_backend import simulate_lava

    with tempfile.TemporaryDirectory() as folder:
        path = write_netx(network, Path(folder) / f"{network.name}.net")
        deployed = read_netx(path)  # what the file holds (pooling lowered): both backends run this
        x = input_spikes(network, samples, rate, rng)
        simulate(deployed, x[:, :2])  # loads the compiled kernels (start-up, not stepping)
        reference_rates, faults, lava_run_s, lava_total_s, lava_startup_s = [], [], [], 0.0, []
        mismatched, compared = 0, 0
        for round_ in range(max(1, rounds)):
            before = _minor_faults()
            reference = simulate(deployed, x, batch_size=256, record_spikes=True)
            faults.append((_minor_faults() - before) / reference.timing.sample_steps)
            reference_rates.append(reference.timing.sample_steps_per_second)
            if lava_samples == 0:
                continue
            first = min(round_ * lava_samples, samples - lava_samples)
            lava = simulate_lava(
                path, x[:, first : first + lava_samples], network=deployed, record_spikes=True
            )
            assert lava.spikes is not None and reference.spikes is not None
            part = {
                name: spikes[:, first : first + lava_samples] for name, spikes in reference.spikes.items()
            }
            mismatched += sum(mismatched_spikes(part, lava.spikes).values())
            compared += lava_samples
            timing = lava.metadata["lava_timing"]
            lava_run_s.extend(timing["run_s_per_sample"])
            lava_startup_s.append(timing["startup_s"] / lava_samples)
            lava_total_s += timing["startup_s"] + timing["run_s"] + timing["read_s"]
            del lava
        activity = reference.activity
        del reference
    best, median = max(reference_rates), float(np.median(reference_rates))
    row = {
        "network": network.name,
        "time_steps": network.time_steps,
        "reference_samples": samples,
        "spikes_per_sample": activity.spikes_per_sample,
        "layer_spike_rates": {
            layer.name: layer.spikes_per_sample / (layer.neurons * network.time_steps)
            for layer in activity.layers
        },
        **_event_costs(network, activity, samples, samples * network.time_steps / best),
        "rounds": len(reference_rates),
        "reference_rates": reference_rates,
        "reference_best": best,
        "reference_median": median,
        "reference_faults_per_sample_step": min(faults),
        "lava_samples": compared,
    }
    if not compared:
        return row
    lava_rates = [network.time_steps / run_s for run_s in lava_run_s]
    lava_fastest, lava_median = max(lava_rates), float(np.median(lava_rates))
    lava_end_to_end = compared * network.time_steps / lava_total_s
    return {
        **row,
        "lava_rates": lava_rates,
        "lava_fastest": lava_fastest,
        "lava_median": lava_median,
        "lava_startup_per_sample_s": float(np.median(lava_startup_s)),
        "lava_end_to_end": lava_end_to_end,
        "ratio_fastest": best / lava_fastest,
        "ratio_medians": median / lava_median,
        "ratio_end_to_end": median / lava_end_to_end,
        "mismatched_spikes": mismatched,
    }


def chunk_sizes(
    network: ir.Network, samples: int, rate: float, rng: np.random.Generator, repeats: int, chunks: list[int]
) -> list[dict]:
    """The reference with each of ``chunks`` as its largest chunk of a layer's ``[T, B, ...]`` tensor
    (``reference.CHUNK_ELEMENTS``), interleaved ``repeats`` times: the best rate of each and its
    minor page faults per sample-step (the same spikes whatever the chunk)."""
    import toolchain.sim.reference as reference

    deployed, x = deployed_with_spikes(network, samples, rate, rng)
    shipped = reference.CHUNK_ELEMENTS
    best = {chunk: (0.0, 0.0) for chunk in chunks}
    try:
        simulate(deployed, x[:, :2])
        for _ in range(repeats):
            for chunk in chunks:
                reference.CHUNK_ELEMENTS = chunk
                before = _minor_faults()
                timing = simulate(deployed, x, record_spikes=True).timing
                faults = (_minor_faults() - before) / timing.sample_steps
                if timing.sample_steps_per_second > best[chunk][0]:
                    best[chunk] = (timing.sample_steps_per_second, faults)
    finally:
        reference.CHUNK_ELEMENTS = shipped
    return [
        {
            "network": network.name,
            "chunk": chunk,
            "shipped": chunk == shipped,
            "rate": rate_,
            "faults": faults,
        }
        for chunk, (rate_, faults) in best.items()
    ]


def neuron_loops(
    network: ir.Network, samples: int, rate: float, rng: np.random.Generator, repeats: int
) -> dict:
    """The reference simulator with its compiled neuron loop (``dynamics.cuba_fixed_steps``) against
    the tensor functions it runs without numba, interleaved ``repeats`` times on the same netx file
    and spikes: the best sample-steps/s of each, and whether every spike is the same."""
    import toolchain.sim.reference as reference

    deployed, x = deployed_with_spikes(network, samples, rate, rng)
    compiled = reference.compiled_cuba_fixed_steps
    loops = {"compiled": compiled, "tensors": lambda: None}
    best = dict.fromkeys(loops, 0.0)
    results = {}
    try:
        for _ in range(repeats):
            for name, loop in loops.items():
                reference.compiled_cuba_fixed_steps = loop
                results[name] = simulate(deployed, x, record_spikes=True)
                best[name] = max(best[name], results[name].timing.sample_steps_per_second)
    finally:
        reference.compiled_cuba_fixed_steps = compiled
    spikes = [result.spikes for result in results.values()]
    same = all(np.array_equal(spikes[0][layer], spikes[1][layer]) for layer in spikes[0])
    return {"network": network.name, "samples": samples, "repeats": repeats, **best, "same_spikes": same}


def dense_ns_per_mac(repeats: int = 5) -> float:
    """The machine's own pace: one thread's best time per multiply-add of a dense float32 product
    (a 25,600 x 700 by 700 x 256 matrix product, the MLP's first layer over a 256-sample batch of 100
    steps), in nanoseconds."""
    a, b = torch.rand(25_600, 700), torch.rand(700, 256)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best / (25_600 * 700 * 256) * 1e9


def _event_costs(network: ir.Network, activity, samples: int, run_s: float) -> dict:
    """The reference's stepping time ``run_s`` per synaptic operation and per neuron update of its
    ``activity`` (each the whole stepping time divided by that count: an upper bound of what one
    event costs)."""
    synops = activity.synops_per_sample * samples
    updates = sum(layer.neurons for layer in activity.layers) * network.time_steps * samples
    return {
        "reference_synops": synops,
        "reference_ns_per_synop": run_s / synops * 1e9 if synops else None,
        "reference_ns_per_neuron_update": run_s / updates * 1e9 if updates else None,
    }


def table(rows: list[dict]) -> str:
    if any(r["lava_samples"] == 0 for r in rows):
        lines = ["| network | T | reference sample-steps/s: best (median) |", "|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['network']} | {r['time_steps']} | {r['reference_best']:,.0f} "
                f"({r['reference_median']:,.0f}) |"
            )
        return "\n".join(lines)
    lines = [
        "| network | T | reference sample-steps/s: best (median) | Lava steady sample-steps/s: fastest "
        "sample (median) | ratio of the fastest | ratio of the medians | Lava end to end (start-up per "
        "sample) | ratio end to end | mismatched spikes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['time_steps']} | {r['reference_best']:,.0f} "
            f"({r['reference_median']:,.0f}) | {r['lava_fastest']:,.0f} ({r['lava_median']:,.0f}) | "
            f"**{r['ratio_fastest']:,.0f}x** | "
            f"{r['ratio_medians']:,.0f}x | {r['lava_end_to_end']:,.0f} "
            f"({r['lava_startup_per_sample_s']:.2f} s) | {r['ratio_end_to_end']:,.0f}x | "
            f"{r['mismatched_spikes']} ({r['lava_samples']} samples) |"
        )
    return "\n".join(lines)


def chunk_table(rows: list[dict], repeats: int, samples: int, load: float) -> str:
    lines = [
        "| network | largest chunk (elements of a layer's tensor) | sample-steps/s "
        "| minor page faults per sample-step |",
        "|---|---|---|---|",
    ]
    for r in rows:
        shipped = " (the simulator's)" if r["shipped"] else ""
        lines.append(
            f"| {r['network']} | 2^{int(np.log2(r['chunk']))}{shipped} | {r['rate']:,.0f} "
            f"| {r['faults']:.1f} |"
        )
    lines.append(
        f"\nbest of {repeats} interleaved runs of {samples} samples each (spikes recorded), glibc's "
        f"allocator as the process starts it (the simulator raises its thresholds, toolchain.heap); "
        f"1-min load {load:.1f}"
    )
    return "\n".join(lines)


def _report(section: str, report: str, args: argparse.Namespace) -> None:
    """Print ``report`` under the command that made it; with ``--write-docs`` also put it in its
    marked section of docs/benchmarks.md."""
    given, skip = [], False
    for arg in sys.argv[1:]:  # the command as run, less where its JSON went
        if skip or arg.startswith("--json"):
            skip = arg == "--json"
            continue
        given.append(arg)
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    command = " ".join([f"OMP_NUM_THREADS={threads} .venv/bin/python benchmarks/sim_speed.py", *given])
    report = f"Command: `{command}`\n\n{report}"
    print(report)
    if args.write_docs:
        from train_speed import write_docs

        write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="reference simulator samples (default 512)")
    parser.add_argument(
        "--lava-samples",
        type=int,
        default=2,
        help="Lava samples per round (default 2; 0: the reference alone, no comparison)",
    )
    parser.add_argument("--time-steps", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.05, help="input spike probability per step")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds per network, each one reference run then Lava's samples (default 3)",
    )
    parser.add_argument("--threads", type=int, default=1, help="the reference's torch threads (default 1)")
    parser.add_argument(
        "--write-docs", action="store_true", help="also write the table into docs/benchmarks.md"
    )
    parser.add_argument(
        "--neuron-loops",
        type=int,
        default=0,
        metavar="REPEATS",
        help="instead: the reference with its compiled neuron loop against the tensor functions, "
        "interleaved REPEATS times",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=0,
        metavar="REPEATS",
        help="instead: the reference with its largest chunk against 2^24 elements, interleaved REPEATS times",
    )
    args = parser.parse_args(argv)
    if args.lava_samples > args.samples:
        parser.error(
            f"--lava-samples {args.lava_samples} is more than --samples {args.samples}: "
            "Lava runs some of the reference's samples"
        )
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    load_before = _load()
    if args.chunks:
        import toolchain.sim.reference as reference

        sizes = [2**24, reference.CHUNK_ELEMENTS]
        chunk_rows = [
            row
            for build in (mlp, conv)
            for row in chunk_sizes(
                build(rng, args.time_steps), args.samples, args.rate, rng, args.chunks, sizes
            )
        ]
        _report("sim_speed-chunks", chunk_table(chunk_rows, args.chunks, args.samples, _load()), args)
        return 0
    if args.neuron_loops:
        loop_rows = [
            neuron_loops(build(rng, args.time_steps), args.samples, args.rate, rng, args.neuron_loops)
            for build in (mlp, conv)
        ]
        lines = [
            "| network | compiled neuron loop, sample-steps/s | tensor functions | ratio | same spikes |",
            "|---|---|---|---|---|",
        ]
        for r in loop_rows:
            lines.append(
                f"| {r['network']} | {r['compiled']:,.0f} | {r['tensors']:,.0f} | "
                f"{r['compiled'] / r['tensors']:.2f}x | {r['same_spikes']} |"
            )
        lines.append(
            f"\nbest of {args.neuron_loops} interleaved runs of {args.samples} samples each; "
            f"1-min load {_load():.1f}"
        )
        _report("sim_speed-neuron-loops", "\n".join(lines), args)
        return 0 if all(r["same_spikes"] for r in loop_rows) else 1
    rows = [
        measure(build(rng, args.time_steps), args.samples, args.lava_samples, args.rate, rng, args.rounds)
        for build in (mlp, conv)
    ]
    load = _load()
    machine = dense_ns_per_mac()
    threads = "one torch thread" if args.threads == 1 else f"{args.threads} torch threads"
    lines = [
        f"- machine: {platform.machine()} ({cpu_description()}), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, the reference on {threads}; 1-minute load average "
        f"{load_before:.1f} before, {load:.1f} after",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- {args.rounds} rounds per network, each one reference run of {args.samples} samples (spikes "
        f"recorded) then {args.lava_samples} Lava samples",
        "",
        table(rows),
        "",
        f"- the machine, one thread: {machine:.3f} ns per multiply-add of a dense float32 product",
    ]
    for r in rows:
        rates = ", ".join(f"{name} {rate:.3f}" for name, rate in r["layer_spike_rates"].items())
        lines.append(f"- {r['network']}: spikes per neuron per step: {rates}")
        lines.append(
            f"- {r['network']}: reference {r['reference_ns_per_synop']:.2f} ns per synaptic operation, "
            f"{r['reference_ns_per_neuron_update']:.2f} ns per neuron update (its whole stepping time "
            "divided by each count, best run); "
            f"{r['reference_faults_per_sample_step']:.1f} minor page faults per sample-step"
        )
    section = "sim_speed" if args.threads == 1 else f"sim_speed-threads-{args.threads}"
    _report(section, "\n".join(lines), args)
    if args.json:
        args.json.write_text(
            json.dumps({"load_1min": load, "dense_ns_per_mac": machine, "rows": rows}, indent=2) + "\n"
        )
    return 0 if all(r.get("mismatched_spikes", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
