"""The keyword spotter of Blouw et al. (2019) on Loihi: the per-operation estimate against the measurement.

Blouw, Choo, Hunsberger, Eliasmith, "Benchmarking Keyword Spotting Efficiency on Neuromorphic
Hardware", NICE 2019 (arXiv:1812.01739): a 390-256-256-29 spiking network, 10 time steps per
inference, measured on a Loihi board (Table 1): 296 inferences/s, 110 mW running, 29 mW idle, so
81 mW dynamic, i.e. 81 mW / 296 /s = 0.274 mJ dynamic and 110 mW / 296 /s = 0.372 mJ in all per
inference (derived here from the table's power and rate).

The trained network and its data are not public, so the activity is ASSUMED: every layer (the
input included) fires with probability ``p`` per neuron and time step, all weights non-zero (dense
layers), and every neuron that gets input updates actively. The estimate is printed for a sweep of
``p``; the per-time-step overhead that would close the gap to the measured dynamic energy is derived
at ``--p`` (the profile's ``[overhead].step_pj`` comes from this script at p = 0.2).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/energy_kws.py [--target loihi-sanafe]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.energy.model import estimate
from toolchain.energy.report import format_j, format_s
from toolchain.energy.targets import load_target

SIZES = (390, 256, 256, 29)
TIME_STEPS = 10
INFERENCES_PER_S = 296.0
RUNNING_W, IDLE_W = 110e-3, 29e-3
MEASURED_DYNAMIC_J = (RUNNING_W - IDLE_W) / INFERENCES_PER_S
MEASURED_TOTAL_J = RUNNING_W / INFERENCES_PER_S


def network() -> ir.Network:
    neurons = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=64)
    layers = tuple(
        ir.Dense(f"fc{i + 1}", np.ones((n_out, n_in), np.int64), neurons)
        for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES))
    )
    return ir.Network("kws-blouw2019", (SIZES[0],), "spikes", TIME_STEPS, layers)


def assumed_activity(p: float) -> Activity:
    layers = []
    events = p * SIZES[0] * TIME_STEPS
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        # a neuron updates actively at a step with input: P(any of n_in inputs spiked) = 1 - (1 - p)^n_in
        active = n_out * TIME_STEPS * (1 - (1 - p) ** n_in)
        layers.append(
            LayerCounts(
                name=f"fc{i + 1}",
                kind="dense",
                neurons=n_out,
                synapses=n_in * n_out,
                fan_in=n_in,
                fan_out=n_out,
                spikes_per_sample=p * n_out * TIME_STEPS,
                synops_per_sample=events * n_out,
                active_updates_per_sample=active,
                idle_updates_per_sample=n_out * TIME_STEPS - active,
                input_events_per_sample=events,
            )
        )
        events = p * n_out * TIME_STEPS
    return Activity("kws-blouw2019", f"assumed p = {p}", 1, TIME_STEPS, tuple(layers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--p", type=float, default=0.2, help="firing probability for the derived overhead")
    parser.add_argument(
        "--target", default="loihi", help="the Loihi profile to price on (loihi, loihi-sanafe; default loihi)"
    )
    args = parser.parse_args()
    loihi = load_target(args.target)
    net = network()
    print(
        f"measured (Blouw et al. 2019, Table 1): {INFERENCES_PER_S:g} inferences/s, dynamic "
        f"{format_j(MEASURED_DYNAMIC_J)} and total {format_j(MEASURED_TOTAL_J)} per inference\n"
    )
    print(
        "| p (spikes / neuron / step) | synops | synaptic | neuron | routing | estimate | "
        "estimate / measured dynamic | latency (compute only) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        e = estimate(net, assumed_activity(p), loihi)
        b = e.breakdown_j
        print(
            f"| {p} | {sum(layer.synops for layer in e.layers):.4g} | {format_j(b['synaptic'])} | "
            f"{format_j(b['neuron'])} | {format_j(b['routing'])} | {format_j(e.energy_per_inference_j)} | "
            f"{e.energy_per_inference_j / MEASURED_DYNAMIC_J:.4f} | {format_s(e.latency_per_inference_s)} |"
        )
    e = estimate(net, assumed_activity(args.p), loihi)
    overhead_step_j = (MEASURED_DYNAMIC_J - e.energy_per_inference_j) / TIME_STEPS
    print(
        f"\nat p = {args.p}: the per-operation estimate is {format_j(e.energy_per_inference_j)}, "
        f"{e.energy_per_inference_j / MEASURED_DYNAMIC_J:.2%} of the measured dynamic energy; the rest, "
        f"{format_j(MEASURED_DYNAMIC_J - e.energy_per_inference_j)} per inference "
        f"({1 - e.energy_per_inference_j / MEASURED_DYNAMIC_J:.2%}), is what the model cannot see "
        f"(embedded x86 management cores, host I/O, barrier synchronisation).\n"
        f"per-time-step overhead that closes the gap: {format_j(overhead_step_j)} "
        f"= {overhead_step_j * 1e12:.6g} pJ per step ({loihi.name}; loihi.toml's [overhead].step_pj "
        "is this figure on the loihi profile)\n"
        f"measured time per inference {format_s(1 / INFERENCES_PER_S)} against the modelled compute "
        f"latency {format_s(e.latency_per_inference_s)}; idle power x that time: "
        f"{format_j(IDLE_W / INFERENCES_PER_S)} per inference"
    )
    if loihi.get("overhead.step_pj") is None or loihi.static_power_mw is None:
        return
    with_overhead = estimate(net, assumed_activity(args.p), loihi, overhead=True, static=True)
    print(
        f"with --overhead --static: {format_j(with_overhead.energy_per_inference_j)} "
        f"(overhead {format_j(with_overhead.breakdown_j['overhead'])}, static "
        f"{format_j(with_overhead.breakdown_j['static'])}: static is idle power x the modelled latency)"
    )


if __name__ == "__main__":
    main()
