"""Simulation speed: the reference simulator against Lava on the same netx files, side by side.

Two networks with random weights on Loihi's grid and random input spikes (the same file and the same
spikes for both backends):

- ``mlp``: 700-256-256-20 dense CUBA-LIF (Zenke's SHD layout), ``T = 100``, input spikes at
  ``--rate``;
- ``conv``: a small conv net on ``2 x 32 x 32`` input spikes (DVS-like): conv 8 (3x3, padding 1),
  sum pool 2, conv 16 (3x3, padding 1), sum pool 2, dense 10, ``T = 100``; netx holds it with the
  pooling lowered into the next layer (:func:`toolchain.formats.lower.lower_pooling`).

For each network the reference simulator runs ``--samples`` samples (batch 256; the fastest of
``--repeats`` runs) and Lava
``--lava-samples`` (one fresh Lava network per sample, as :mod:`toolchain.sim.lava_backend` runs it);
the spikes of every layer on Lava's samples are compared. Reported: sample-steps per second of the
reference (stepping; its start-up is milliseconds), Lava's steady-state sample-steps per second
(stepping only) and end to end (start-up, stepping and reading included), and both ratios.
Both run with one torch thread; Lava's actor processes may use both cores.

Run from the repository root with the project's environment (Lava included)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py            # print the table
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --json out.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --lava-samples 0   # reference only
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --write-docs       # update docs/benchmarks.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py --neuron-loops 3 --samples 256 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolchain import ir  # noqa: E402
from toolchain.formats.netx import read_netx, write_netx  # noqa: E402
from toolchain.sim.compare import compare  # noqa: E402
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


def _best_of(network: ir.Network, x: np.ndarray, repeats: int):
    """The reference simulator's result on ``x`` with the fastest stepping of ``repeats`` runs
    (every run gives the same spikes; the first ones also fault in the memory it allocates)."""
    results = [simulate(network, x, batch_size=256, record_spikes=True) for _ in range(max(1, repeats))]
    return min(results, key=lambda result: result.timing.run_s)


def measure(
    network: ir.Network,
    samples: int,
    lava_samples: int,
    rate: float,
    rng: np.random.Generator,
    repeats: int = 3,
) -> dict:
    from toolchain.sim.lava_backend import simulate_lava

    with tempfile.TemporaryDirectory() as folder:
        path = write_netx(network, Path(folder) / f"{network.name}.net")
        deployed = read_netx(path)  # what the file holds (pooling lowered): both backends run this
        x = (rng.random((network.time_steps, samples, *network.input_shape)) < rate).astype(np.uint8)
        reference = _best_of(deployed, x, repeats)
        if lava_samples == 0:
            return _reference_only(network, samples, reference)
        lava = simulate_lava(path, x[:, :lava_samples], network=deployed, record_spikes=True)
    comparison = compare(reference, {"lava": lava})
    lava_timing = lava.metadata["lava_timing"]
    lava_steps = lava_samples * network.time_steps
    reference_rate = reference.timing.sample_steps_per_second
    lava_steady = lava_steps / lava_timing["run_s"]
    lava_total = lava_steps / (lava_timing["startup_s"] + lava_timing["run_s"] + lava_timing["read_s"])
    return {
        "network": network.name,
        "time_steps": network.time_steps,
        "reference_samples": samples,
        "lava_samples": lava_samples,
        "spikes_per_sample": reference.activity.spikes_per_sample,
        "layer_spike_rates": {
            layer.name: layer.spikes_per_sample / (layer.neurons * network.time_steps)
            for layer in reference.activity.layers
        },
        "reference_sample_steps_per_second": reference_rate,
        "reference_startup_s": reference.timing.startup_s,
        **_event_costs(network, samples, reference),
        "lava_steady_sample_steps_per_second": lava_steady,
        "lava_end_to_end_sample_steps_per_second": lava_total,
        "lava_timing": lava_timing,
        "ratio_steady": reference_rate / lava_steady,
        "ratio_end_to_end": reference_rate / lava_total,
        "mismatched_spikes": comparison.mismatched_spikes,
    }


def _reference_only(network: ir.Network, samples: int, reference) -> dict:
    """A row without Lava (``--lava-samples 0``: quick iterations on the reference alone)."""
    return {
        "network": network.name,
        "time_steps": network.time_steps,
        "reference_samples": samples,
        "lava_samples": 0,
        "spikes_per_sample": reference.activity.spikes_per_sample,
        "layer_spike_rates": {
            layer.name: layer.spikes_per_sample / (layer.neurons * network.time_steps)
            for layer in reference.activity.layers
        },
        "reference_sample_steps_per_second": reference.timing.sample_steps_per_second,
        "reference_startup_s": reference.timing.startup_s,
        **_event_costs(network, samples, reference),
    }


def neuron_loops(
    network: ir.Network, samples: int, rate: float, rng: np.random.Generator, repeats: int
) -> dict:
    """The reference simulator with its compiled neuron loop (``dynamics.cuba_fixed_steps``) against
    the tensor functions it runs without numba, interleaved ``repeats`` times on the same netx file
    and spikes: the best sample-steps/s of each, and whether every spike is the same."""
    import toolchain.sim.reference as reference

    with tempfile.TemporaryDirectory() as folder:
        deployed = read_netx(write_netx(network, Path(folder) / f"{network.name}.net"))
    x = (rng.random((network.time_steps, samples, *network.input_shape)) < rate).astype(np.uint8)
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


def _event_costs(network: ir.Network, samples: int, reference) -> dict:
    """The reference's stepping time per synaptic operation and per neuron update (each the whole
    stepping time divided by that count: an upper bound of what one event costs)."""
    run_s = reference.timing.run_s
    synops = reference.activity.synops_per_sample * samples
    updates = sum(layer.neurons for layer in reference.activity.layers) * network.time_steps * samples
    return {
        "reference_synops": synops,
        "reference_ns_per_synop": run_s / synops * 1e9 if synops else None,
        "reference_ns_per_neuron_update": run_s / updates * 1e9 if updates else None,
    }


def table(rows: list[dict]) -> str:
    if any(r["lava_samples"] == 0 for r in rows):
        lines = ["| network | T | reference sample-steps/s |", "|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['network']} | {r['time_steps']} | {r['reference_sample_steps_per_second']:,.0f} "
                f"({r['reference_samples']} samples) |"
            )
        return "\n".join(lines)
    lines = [
        "| network | T | reference sample-steps/s | Lava steady sample-steps/s (per step) | "
        "Lava end to end (start-up per sample) | ratio steady | ratio end to end | mismatched spikes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["lava_timing"]
        lines.append(
            f"| {r['network']} | {r['time_steps']} | {r['reference_sample_steps_per_second']:,.0f} "
            f"({r['reference_samples']} samples) | {r['lava_steady_sample_steps_per_second']:,.0f} "
            f"({t['per_step_s'] * 1e3:.2f} ms) | {r['lava_end_to_end_sample_steps_per_second']:,.0f} "
            f"({t['startup_per_sample_s']:.2f} s) | {r['ratio_steady']:,.0f}x | "
            f"{r['ratio_end_to_end']:,.0f}x | "
            f"{r['mismatched_spikes']} ({r['lava_samples']} samples) |"
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
    command = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py", *given])
    report = f"Command: `{command}`\n\n{report}"
    print(report)
    if args.write_docs:
        from train_speed import write_docs

        write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="reference simulator samples (default 512)")
    parser.add_argument(
        "--lava-samples",
        type=int,
        default=3,
        help="Lava samples (default 3; 0: the reference alone, no comparison)",
    )
    parser.add_argument("--time-steps", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.05, help="input spike probability per step")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--repeats", type=int, default=3, help="reference runs per network, the fastest reported (default 3)"
    )
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
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.neuron_loops:
        loop_rows = [
            neuron_loops(build(rng, args.time_steps), args.samples, args.rate, rng, args.neuron_loops)
            for build in (mlp, conv)
        ]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
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
            f"1-min load {load:.1f}"
        )
        _report("sim_speed-neuron-loops", "\n".join(lines), args)
        return 0 if all(r["same_spikes"] for r in loop_rows) else 1
    rows = [
        measure(build(rng, args.time_steps), args.samples, args.lava_samples, args.rate, rng, args.repeats)
        for build in (mlp, conv)
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = dense_ns_per_mac()
    lines = [
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, one torch thread; 1-minute load average {load_before:.1f} before, "
        f"{load:.1f} after",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
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
            "divided by each count)"
        )
    _report("sim_speed", "\n".join(lines), args)
    if args.json:
        args.json.write_text(
            json.dumps({"load_1min": load, "dense_ns_per_mac": machine, "rows": rows}, indent=2) + "\n"
        )
    return 0 if all(r.get("mismatched_spikes", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
