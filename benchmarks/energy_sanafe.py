"""SANA-FE (Boyle et al., IEEE TCAD 2025) beside the toolchain's energy model, on the same network.

SANA-FE 2.2.9 ships a Loihi architecture (``sanafe/examples/loihi.yaml``, costs from Davies et al.
2018) and the DVS-gesture network of its tutorial (``sanafe/examples/dvs_challenge.npz``: an input
layer of 32 x 32 bias-driven neurons, four 3 x 3 convolutions 1-16-32-64-11 channels, the first with
stride 2, and a dense 891 -> 11 layer; integer weights and thresholds). This script

1. builds that network in SANA-FE (``sanafe.layers``) and imports the same weights into an
   ``ir.Network`` (``Conv``/``Dense`` with ``weight_exp = 0``, so ``u += w << 6`` against
   ``vth_mant << 6`` with ``vth_mant = threshold``; CUBA with no current memory and no leak:
   SANA-FE's default LIF); the 4 weights below Loihi's
   8-bit grid, -261 and -289, are set to -256 **in both simulators**, so both run the same network);
2. maps SANA-FE's neurons core by core where :func:`toolchain.energy.placement.place` puts them
   in C order (SANA-FE's channel-major neuron order; same tiles, same mesh coordinates);
3. runs SANA-FE for ``--steps`` steps, records its input layer's spikes, feeds exactly those spikes to
   the toolchain's reference simulator, and prints per time step: spikes, neuron updates, synaptic
   events, energy by component and latency of both.

Run (SANA-FE is a benchmark-only dependency; it has no required dependencies)::

    .venv/bin/pip install --no-deps sanafe==2.2.9
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/energy_sanafe.py --steps 32
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from importlib.resources import files

import numpy as np

from toolchain import ir
from toolchain.energy.model import estimate
from toolchain.energy.placement import place
from toolchain.energy.targets import load_target
from toolchain.loihi_numbers import WEIGHT_MAX, WEIGHT_MIN

CHALLENGE = "dvs_challenge.npz"
LAYERS = ("conv1", "conv2", "conv3", "conv4", "dense1")
STRIDES = (2, 1, 1, 1)


def load_weights() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, int]:
    data = np.load(str(files("sanafe.examples") / CHALLENGE))
    weights, clipped = {}, 0
    for name in LAYERS:
        w = data[name].astype(np.int64)
        clipped += int(((w < WEIGHT_MIN) | (w > WEIGHT_MAX)).sum())
        weights[name] = np.clip(w, WEIGHT_MIN, WEIGHT_MAX)
    return weights, data["inputs"], data["thresholds"].astype(np.int64), clipped


def toolchain_network(weights: dict[str, np.ndarray], thresholds: np.ndarray, steps: int) -> ir.Network:
    """The DVS network in the toolchain's graph: SANA-FE's LIF (no leak, no current memory, hard reset)."""
    layers: list[ir.Layer] = []
    shape = (1, 32, 32)
    for i, name in enumerate(LAYERS[:4]):
        w = weights[name].transpose(3, 2, 0, 1)  # SANA-FE [ky, kx, c_in, c_out] -> [c_out, c_in, ky, kx]
        neurons = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=int(thresholds[i + 1]))
        conv = ir.Conv(name, w, neurons, shape, (STRIDES[i],) * 2, (0, 0), weight_exp=0)
        layers.append(conv)
        shape = conv.out_shape
    layers.append(ir.Flatten("flatten", shape))
    neurons = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=int(thresholds[5]))
    layers.append(ir.Dense("dense1", weights["dense1"].T.copy(), neurons, weight_exp=0))
    return ir.Network("dvs-gesture (SANA-FE tutorial)", (1, 32, 32), "spikes", steps, tuple(layers))


def sanafe_run(weights, biases, thresholds, network, target, steps):
    import sanafe
    from sanafe import layers as sl

    arch = sanafe.load_arch(str(files("sanafe.examples") / "loihi.yaml"))
    snn = sanafe.Network()
    groups = [sl.Input2D(snn, 32, 32, threshold=float(thresholds[0]))]
    for i, name in enumerate(LAYERS[:4]):
        groups.append(
            sl.Conv2D(
                snn,
                groups[-1],
                weights[name].astype(np.float64),
                stride_width=STRIDES[i],
                stride_height=STRIDES[i],
                threshold=float(thresholds[i + 1]),
            )
        )
    groups.append(
        sl.Dense(snn, groups[-1], 11, weights["dense1"].astype(np.float64), threshold=float(thresholds[5]))
    )
    for neuron, bias in zip(groups[0], biases, strict=True):
        neuron.set_attributes(model_attributes={"bias": float(bias)}, log_spikes=True)
    # the same cores as the toolchain's placement, tile by tile at the same mesh coordinates
    placement = place(network, target, order="c")
    height = 4  # SANA-FE numbers tiles column by column: x = id // height, y = id % height
    for group, where in zip(groups, placement.layers, strict=True):
        for index, neuron in enumerate(group):
            core = where.first_core + index // where.neurons_per_core
            tile = core // target.cores_per_tile
            x, y = tile % target.mesh_width_tiles, tile // target.mesh_width_tiles
            neuron.map_to_core(arch.tiles[x * height + y].cores[core % target.cores_per_tile])
    chip = sanafe.SpikingChip(arch)
    chip.load(snn)
    start = time.perf_counter()
    result = chip.sim(steps, spike_trace=True, perf_trace=True)
    result["wall_s"] = time.perf_counter() - start
    spikes_in = np.zeros((steps, 1, 1, 32, 32), np.float32)
    for t, fired in enumerate(result["spike_trace"]):
        for neuron in fired:
            if neuron.group_name == groups[0].group.get_name():
                spikes_in[t, 0, 0].flat[neuron.neuron_offset] = 1.0
    input_updates = int(np.count_nonzero(biases))  # SANA-FE updates a neuron with a bias every step
    return result, spikes_in, input_updates


def toolchain_per_step(network: ir.Network, spikes_in: np.ndarray, target) -> list[dict[str, float]]:
    """Per-step figures from runs over 1, 2, ..., T steps (the differences of the cumulative counts)."""
    from toolchain.sim.reference import simulate

    rows, previous = [], None
    for t in range(1, network.time_steps + 1):
        prefix = replace(network, time_steps=t)
        activity = simulate(prefix, spikes_in[:t]).activity
        e = estimate(prefix, activity, target, order="c")
        cumulative = {
            "spikes": activity.spikes_per_sample,
            "updates": sum(c.active_updates_per_sample for c in activity.layers),
            "synops": activity.synops_per_sample,
            "synaptic_j": e.breakdown_j["synaptic"],
            "neuron_j": e.breakdown_j["neuron"],
            "routing_j": e.breakdown_j["routing"],
            "energy_j": e.energy_per_inference_j,
            "hops": sum(layer.east_west_hops + layer.north_south_hops for layer in e.layers),
            "latency_s": e.latency_per_inference_s,
        }
        rows.append(cumulative if previous is None else {k: v - previous[k] for k, v in cumulative.items()})
        previous = cumulative
    return rows, e


def without_axon_limits(target):
    """Loihi's profile without the per-core axon limits, which SANA-FE does not enforce.

    With them (NengoLoihi's 4,096 input / 4,096 output axons per core, one output axon per source
    neuron and destination core) this network in SANA-FE's channel-major order spreads over 348
    cores (23 in the toolchain's default spatial order); without, both simulators place 1,024
    neurons per core on 21 cores.
    """
    drop = ("topology.max_fan_in_axons_per_core", "topology.max_fan_out_axons_per_core")
    return replace(target, values={k: v for k, v in target.values.items() if k not in drop})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the per-step rows as JSON")
    args = parser.parse_args()
    import sanafe

    target = without_axon_limits(load_target("loihi"))
    weights, biases, thresholds, clipped = load_weights()
    network = toolchain_network(weights, thresholds, args.steps)
    result, spikes_in, input_updates = sanafe_run(weights, biases, thresholds, network, target, args.steps)
    ours, full = toolchain_per_step(network, spikes_in, target)
    perf = result["perf_trace"]
    input_spikes = spikes_in.reshape(args.steps, -1).sum(axis=1)
    total_weights = sum(w.size for w in weights.values())
    zero_weights = sum(int((w == 0).sum()) for w in weights.values())
    print(
        f"SANA-FE {sanafe.__version__ if hasattr(sanafe, '__version__') else '2.2.9'}, {args.steps} steps; "
        f"{clipped} of {total_weights} weights set to {WEIGHT_MIN} in both; {zero_weights} zero weights "
        f"({zero_weights / total_weights:.2%}); placement {full.placement.cores} cores, "
        f"{full.placement.tiles} tiles; SANA-FE wall time {result['wall_s']:.2f} s\n"
    )
    header = (
        "| step | spikes SF (non-input) | spikes ours | updates SF (non-input) | updates ours | "
        "syn. events SF (incl. input layer's) | synops ours | energy SF (nJ) | energy ours (nJ) | "
        "latency SF (µs) |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for t in range(args.steps):
        print(
            f"| {t + 1} | {perf['fired'][t] - int(input_spikes[t])} | {ours[t]['spikes']:.0f} | "
            f"{perf['updated'][t] - input_updates} | {ours[t]['updates']:.0f} | {perf['spikes'][t]} | "
            f"{ours[t]['synops']:.0f} | {perf['total_energy'][t] * 1e9:.1f} | "
            f"{ours[t]['energy_j'] * 1e9:.1f} | "
            f"{perf['sim_time'][t] * 1e6:.2f} |"
        )
    T = args.steps
    sf = {
        "spikes (non-input)": (sum(perf["fired"]) - input_spikes.sum()) / T,
        "neuron updates (non-input)": (sum(perf["updated"]) - input_updates * T) / T,
        "synaptic events": sum(perf["spikes"]) / T,
        "energy: synaptic (J)": result["energy"]["synapse"] / T,
        "energy: neuron (J)": result["energy"]["soma"] / T,
        "energy: routing (J)": result["energy"]["network"] / T,
        "energy: total (J)": result["energy"]["total"] / T,
        "hops": sum(perf["hops"]) / T,
        "latency (s)": result["sim_time"] / T,
    }
    us = {
        "spikes (non-input)": sum(r["spikes"] for r in ours) / T,
        "neuron updates (non-input)": sum(r["updates"] for r in ours) / T,
        "synaptic events": sum(r["synops"] for r in ours) / T,
        "energy: synaptic (J)": full.breakdown_j["synaptic"] / T,
        "energy: neuron (J)": full.breakdown_j["neuron"] / T,
        "energy: routing (J)": full.breakdown_j["routing"] / T,
        "energy: total (J)": full.energy_per_inference_j / T,
        "hops": sum(r["hops"] for r in ours) / T,
        "latency (s)": full.latency_per_inference_s / T,
    }
    print(f"\nMean per time step over {T} steps:\n")
    print("| quantity | SANA-FE | toolchain | toolchain / SANA-FE |")
    print("|---|---|---|---|")
    for key in sf:
        ratio = us[key] / sf[key] if sf[key] else math.nan
        print(f"| {key} | {sf[key]:.4g} | {us[key]:.4g} | {ratio:.3f} |")
    extra = {
        "input spikes per step": float(input_spikes.mean()),
        "input neurons updated per step (SANA-FE)": input_updates,
        "neurons mapped": sum(layer.neurons for layer in full.placement.layers),
        "messages (packets) per step SANA-FE": result.get("packets_sent", 0) / T,
        "messages per step ours": sum(layer.messages for layer in full.layers) / T,
    }
    print(
        "\n"
        + "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in extra.items())
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"sanafe": sf, "toolchain": us, "per_step": ours, "extra": extra}, handle, indent=2)


if __name__ == "__main__":
    main()
