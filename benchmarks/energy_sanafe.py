"""SANA-FE (Boyle et al., IEEE TCAD 2025) beside the toolchain's energy model, at SANA-FE's own setting.

SANA-FE 2.2.9 ships a Loihi architecture (``sanafe/examples/loihi.yaml``: the per-event costs
Boyle et al. calibrated against Loihi) and the DVS-gesture network of its tutorial
(``sanafe/examples/dvs_challenge.npz``: an input layer of 32 x 32 bias-driven neurons, four 3 x 3
convolutions 1-16-32-64-11 channels, the first with stride 2, and a dense 891 -> 11 layer; integer
weights and thresholds). This script

1. builds that network in SANA-FE (``sanafe.layers``, as the tutorial does) and imports the same
   weights into an ``ir.Network`` (``Conv``/``Dense`` with ``weight_exp = 0``, so ``u += w << 6``
   against ``vth_mant << 6`` with ``vth_mant = threshold``; CUBA with no current memory and no
   leak: SANA-FE's default LIF); the 4 weights below Loihi's 8-bit grid, -261 and -289, are set to
   -256 **in both simulators**, so both run the same network;
2. maps SANA-FE's network as its DVS tutorial does (SANA-FE repository,
   ``tutorial/tutorial_5_dvs.ipynb``: ``layer_mapped_core_counts = [1, 4, 16, 16, 4, 1]``, each
   layer split evenly over that many cores, cores taken in ``arch.cores()`` order, i.e. tile by
   tile, tiles numbered column by column) and places the toolchain's network on the same cores
   (:func:`toolchain.energy.placement.place` with ``cores_per_layer`` and ``tile_order="columns"``,
   neurons in C order, SANA-FE's channel-major order; the one difference: SANA-FE puts
   ``len // count`` neurons on each core and the rest on the last, the toolchain
   ``ceil(len / count)``, which changes conv4's split, 891 neurons on 4 cores);
3. runs SANA-FE for ``--steps`` steps (default 128), records its input layer's spikes, feeds exactly
   those spikes to the toolchain's reference simulator, and prints the event counts of both
   (synaptic events with and without zero weights: SANA-FE processes a zero weight, the toolchain
   counts non-zero weights) and the energy of both, on the ``loihi`` profile (Davies et al.'s Table
   2) and on the ``loihi-sanafe`` profile (SANA-FE's calibrated figures), with the ratios.

Run (SANA-FE is a benchmark-only dependency; it has no required dependencies)::

    .venv/bin/pip install --no-deps sanafe==2.2.9
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/energy_sanafe.py            # 128 steps
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
from toolchain.energy.placement import INPUT, place
from toolchain.energy.targets import load_target
from toolchain.loihi_numbers import WEIGHT_MAX, WEIGHT_MIN

CHALLENGE = "dvs_challenge.npz"
LAYERS = ("conv1", "conv2", "conv3", "conv4", "dense1")
STRIDES = (2, 1, 1, 1)
#: SANA-FE's DVS tutorial (tutorial/tutorial_5_dvs.ipynb): cores per layer, input first
TUTORIAL_CORES = (1, 4, 16, 16, 4, 1)
PROFILES = ("loihi", "loihi-sanafe")
#: SANA-FE 2.2.9 loihi.yaml, soma loihi_lif (J): access every step, update, spike out; axon_out (J)
SF_ACCESS_J, SF_UPDATE_J, SF_SPIKE_OUT_J, SF_MESSAGE_OUT_J = 51.2e-12, 21.6e-12, 69.3e-12, 111.0e-12
#: SANA-FE 2.2.9 loihi.yaml, synapse loihi_dense_synapse (J per synaptic event)
SF_SYNAPSE_J = 35.5e-12


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


def sanafe_run(weights, biases, thresholds, steps):
    """SANA-FE's tutorial network, mapped as the tutorial maps it, run for ``steps`` steps."""
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
    # the tutorial's map_layer_to_cores: len // count neurons per core, the last core the rest
    cores, used = arch.cores(), 0
    for group, count in zip(groups, TUTORIAL_CORES, strict=True):
        per_core = len(group) // count
        for index, neuron in enumerate(group):
            neuron.map_to_core(cores[used + min(index // per_core, count - 1)])
        used += count
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
    neurons = sum(len(group) for group in groups)
    return result, spikes_in, input_updates, neurons


def fanout_all(layer: ir.SynapticLayer) -> np.ndarray:
    """Synapses leaving each source neuron, zero weights included (what SANA-FE processes per spike)."""
    if isinstance(layer, ir.Dense):
        return np.full(layer.weight.shape[1], layer.weight.shape[0], dtype=np.int64)
    per_axis = []
    for size, out, k, s, p in zip(
        layer.in_shape[1:], layer.out_shape[1:], layer.kernel_size, layer.stride, layer.padding, strict=True
    ):
        count = np.zeros(size, dtype=np.int64)
        for o in range(out):
            lo, hi = max(o * s - p, 0), min(o * s - p + k, size)
            count[lo:hi] += 1
        per_axis.append(count)
    taps = np.multiply.outer(*per_axis) if len(per_axis) == 2 else per_axis[0]
    c_in = layer.in_shape[0]
    return np.broadcast_to(taps * layer.weight.shape[0], (c_in, *taps.shape)).reshape(-1)


def events_with_zero_weights(
    network: ir.Network, spikes_in: np.ndarray, spikes: dict[str, np.ndarray]
) -> int:
    """Synaptic events counting zero weights: each source spike times the synapses it leaves by."""
    total, source = 0, spikes_in.sum(axis=(0, 1)).reshape(-1)
    for layer in network.synaptic_layers():
        total += int((source * fanout_all(layer)).sum())
        source = spikes[layer.name].sum(axis=(0, 1)).reshape(-1).astype(np.int64)
    return total


def without_core_limits(target):
    """A profile without the per-core axon and synapse-memory limits, which SANA-FE does not enforce."""
    drop = (
        "topology.max_fan_in_axons_per_core",
        "topology.max_fan_out_axons_per_core",
        "topology.max_synapse_bits_per_core",
    )
    return replace(target, values={k: v for k, v in target.values.items() if k not in drop})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=128, help="time steps (default 128)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    import sanafe

    from toolchain.sim.reference import simulate

    T = args.steps
    weights, biases, thresholds, clipped = load_weights()
    network = toolchain_network(weights, thresholds, T)
    result, spikes_in, input_updates, sf_neurons = sanafe_run(weights, biases, thresholds, T)
    start = time.perf_counter()
    sim = simulate(network, spikes_in, record_spikes=True)
    sim_s = time.perf_counter() - start
    activity = sim.activity
    assert sim.spikes is not None
    cores = dict(zip((INPUT, *LAYERS), TUTORIAL_CORES, strict=True))
    start = time.perf_counter()
    estimates = {}
    for name in PROFILES:
        target = without_core_limits(load_target(name))
        placement = place(network, target, order="c", cores_per_layer=cores, tile_order="columns")
        estimates[name] = estimate(network, activity, target, placement=placement)
    model_s = time.perf_counter() - start

    perf, energy = result["perf_trace"], result["energy"]
    input_spikes = float(spikes_in.sum())
    total_weights = sum(w.size for w in weights.values())
    zero_weights = sum(int((w == 0).sum()) for w in weights.values())
    calibrated = estimates["loihi-sanafe"]
    print(
        f"SANA-FE {getattr(sanafe, '__version__', '2.2.9')}, {T} steps, the tutorial's mapping "
        f"({sum(TUTORIAL_CORES)} cores: {', '.join(map(str, TUTORIAL_CORES))} per layer); {clipped} of "
        f"{total_weights} weights set to {WEIGHT_MIN} in both; {zero_weights} zero weights "
        f"({zero_weights / total_weights:.2%}).\nWall time: SANA-FE {result['wall_s']:.2f} s, reference "
        f"simulator {sim_s:.2f} s, placement and estimate on {len(PROFILES)} profiles {model_s:.2f} s.\n"
    )
    active_updates = ours_updates = sum(c.active_updates_per_sample for c in activity.layers)
    counts = [
        ("spikes (non-input)", sum(result["perf_trace"]["fired"]) - input_spikes, activity.spikes_per_sample),
        ("input spikes", input_spikes, float(activity.layers[0].input_events_per_sample)),
        ("neuron updates (non-input)", result["neurons_updated"] - input_updates * T, ours_updates),
        (
            "synaptic events, zero weights included",
            result["spikes"],
            events_with_zero_weights(network, spikes_in, sim.spikes),
        ),
        ("synaptic events, non-zero weights", math.nan, activity.synops_per_sample),
        (
            "messages (spike, destination core)",
            result["packets_sent"],
            sum(x.messages for x in calibrated.layers),
        ),
        (
            "tile hops",
            sum(perf["hops"]),
            sum(x.east_west_hops + x.north_south_hops for x in calibrated.layers),
        ),
    ]
    print(f"Event counts over {T} steps:\n")
    print("| quantity | SANA-FE | toolchain | toolchain / SANA-FE |")
    print("|---|---|---|---|")
    for key, sf, us in counts:
        ratio = us / sf if sf else math.nan
        sf_text = "—" if math.isnan(sf) else f"{sf:,.0f}"
        print(f"| {key} | {sf_text} | {us:,.0f} | {'—' if math.isnan(ratio) else f'{ratio:.4f}'} |")

    # SANA-FE's energy re-composed from its own counts and loihi.yaml's costs (a check of what it charges)
    sf_input_j = 32 * 32 * T * SF_ACCESS_J + input_updates * T * SF_UPDATE_J + input_spikes * SF_SPIKE_OUT_J
    recomposed = {  # term -> (SANA-FE's count, its energy at loihi.yaml's cost)
        "synaptic operations": (result["spikes"], result["spikes"] * SF_SYNAPSE_J),
        "neuron access": (sf_neurons * T, sf_neurons * T * SF_ACCESS_J),
        "neuron updates": (result["neurons_updated"], result["neurons_updated"] * SF_UPDATE_J),
        "spikes out": (result["neurons_fired"], result["neurons_fired"] * SF_SPIKE_OUT_J),
        "messages out": (result["packets_sent"], result["packets_sent"] * SF_MESSAGE_OUT_J),
    }
    rows = [
        ("synaptic", energy["synapse"], "synaptic"),
        ("neuron", energy["soma"], "neuron"),
        ("routing", energy["network"], "routing"),
        ("total", energy["total"], None),
    ]
    print(f"\nEnergy over {T} steps (µJ):\n")
    header = "| component | SANA-FE |" + "".join(f" {p} | {p} / SANA-FE |" for p in PROFILES)
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for label, sf_j, key in rows:
        cells = ""
        for name in PROFILES:
            e = estimates[name]
            ours = e.energy_per_inference_j if key is None else e.breakdown_j[key]
            cells += f" {ours * 1e6:.2f} | {ours / sf_j:.3f} |"
        print(f"| {label} | {sf_j * 1e6:.2f} |{cells}")
    sf_without_input = energy["total"] - sf_input_j
    cells, latency = "", ""
    for name in PROFILES:
        e_j, e_s = estimates[name].energy_per_inference_j, estimates[name].latency_per_inference_s
        cells += f" {e_j * 1e6:.2f} | {e_j / sf_without_input:.3f} |"
        latency += f" {e_s * 1e6:.1f} | {e_s / result['sim_time']:.3f} |"
    print(f"| total without SANA-FE's input-layer neurons | {sf_without_input * 1e6:.2f} |{cells}")
    print(f"| latency (µs, not energy) | {result['sim_time'] * 1e6:.1f} |{latency}")

    print(
        "\nThe loihi-sanafe estimate by term, and SANA-FE's charges from its own counts x loihi.yaml's "
        f"costs (µJ over {T} steps):\n"
    )
    print("| term | toolchain count | toolchain | SANA-FE count | SANA-FE count x cost |")
    print("|---|---|---|---|---|")
    for term in calibrated.terms:
        count = active_updates if term.name == "neuron updates" else term.count
        ours = "not included" if term.energy_j is None else f"{term.energy_j * 1e6:.2f}"
        sf_count, sf_j = recomposed.get(term.name, (None, None))
        sf_cells = "| | |" if sf_count is None else f"| {sf_count:,.0f} | {sf_j * 1e6:.2f} |"
        print(f"| {term.name} | {count:,.0f} | {ours} {sf_cells}")
    print(
        f"| tile hops and within-tile messages together (SANA-FE: its network energy - messages out) "
        f"| | | | {(energy['network'] - recomposed['messages out'][1]) * 1e6:.2f} |"
    )
    print(
        "\n(Neuron updates: the toolchain's count is its active updates, the ones it charges "
        "neuron_active_pj; SANA-FE's includes its input neurons, updated every step they have a bias.)"
    )
    print(
        f"\nSANA-FE's input layer (1,024 LIF neurons driven by biases; the toolchain's input is spike "
        f"generators, not priced): access {32 * 32 * T * SF_ACCESS_J * 1e6:.2f} µJ + updates "
        f"{input_updates * T * SF_UPDATE_J * 1e6:.2f} µJ + spikes out "
        f"{input_spikes * SF_SPIKE_OUT_J * 1e6:.2f} µJ "
        f"= {sf_input_j * 1e6:.2f} µJ ({sf_input_j / energy['total']:.1%} of SANA-FE's total)."
    )
    for name in PROFILES:
        e = estimates[name]
        print(
            f"{name}: {e.energy_per_inference_j * 1e6:.2f} µJ against SANA-FE's "
            f"{energy['total'] * 1e6:.2f} µJ: "
            f"ratio {e.energy_per_inference_j / energy['total']:.3f} "
            f"({e.energy_per_inference_j / energy['total'] - 1:+.1%})"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "steps": T,
                    "sanafe": {"energy_j": dict(energy), "latency_s": result["sim_time"]},
                    "counts": {key: {"sanafe": sf, "toolchain": us} for key, sf, us in counts},
                    "toolchain": {name: e.to_dict() for name, e in estimates.items()},
                    "sanafe_input_layer_j": sf_input_j,
                },
                handle,
                indent=2,
                default=float,
            )


if __name__ == "__main__":
    main()
