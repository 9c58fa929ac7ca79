"""Accuracy, activity and energy per inference of trained runs on every neuromorphic target.

A TTFS run (``[ttfs].enabled``) runs in the event-driven TTFS simulator (:mod:`toolchain.sim.ttfs`)
and is priced through its placement graph (:func:`toolchain.sim.ttfs.placement_network`); a
rate-coded run is quantized (:func:`toolchain.export.quantize.quantize_model`) and run in the
reference simulator. Both on the recipe's whole test split. Prints a markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ttfs_energy.py runs/digits-demo runs/digits-ttfs \
        [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch


def measure(run_dir: Path, data_dir: Path | None) -> dict[str, Any]:
    from toolchain.config import load_recipe
    from toolchain.data import as_float, load_dataset
    from toolchain.energy.model import estimate
    from toolchain.energy.targets import list_targets

    recipe = load_recipe(run_dir / "recipe.toml")
    dataset = load_dataset(recipe.data.dataset, data_dir, recipe.data.options)
    x = as_float(dataset.test.x)
    if recipe.ttfs.enabled:
        from toolchain.sim.ttfs import placement_network, simulate_ttfs
        from toolchain.train.ttfs import load_ttfs_run

        _, model = load_ttfs_run(run_dir, dataset.sample_shape, dataset.num_classes)
        sim = simulate_ttfs(model, torch.from_numpy(x), network_name=recipe.name)
        activity, predictions = sim.activity, sim.predictions
        network = placement_network(model, recipe.name, activity.time_steps)
        kind = "TTFS (sim.ttfs)"
    else:
        from toolchain.export.quantize import quantize_model
        from toolchain.export.run_loader import load_run
        from toolchain.sim.reference import simulate

        run = load_run(run_dir, data_dir)
        network, _ = quantize_model(run.model, run.recipe)
        result = simulate(network, x)
        activity, predictions = result.activity, result.predictions
        kind = "rate, fixed point (sim.reference)"
    energies, breakdowns = {}, {}
    for target in list_targets():
        if target.kind == "neuromorphic":
            result = estimate(network, activity, target)
            energies[target.name] = result.to_dict()["energy_per_inference_j"]
            breakdowns[target.name] = dict(result.breakdown_j)
    hidden = [layer for layer in activity.layers if layer.name != "output"]
    return {
        "run": str(run_dir),
        "kind": kind,
        "accuracy": float(np.mean(predictions == dataset.test.y)),
        "spikes": activity.spikes_per_sample,
        "hidden_spikes_per_neuron": sum(h.spikes_per_sample for h in hidden)
        / max(sum(h.neurons for h in hidden), 1),
        "synops": activity.synops_per_sample,
        "time_steps": activity.time_steps,
        "energy_j": energies,
        "breakdown_j": breakdowns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--breakdown", action="store_true", help="also the synaptic/neuron/routing split")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(run, args.data_dir) for run in args.runs]
    targets = sorted({name for row in rows for name in row["energy_j"]})
    print(
        "| run | simulated as | test accuracy | spikes/sample | hidden spikes/neuron | synops/sample | T |"
        + "".join(f" {t} (µJ) |" for t in targets)
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(targets))
    for row in rows:
        energy = "".join(f" {row['energy_j'].get(t, float('nan')) * 1e6:.3f} |" for t in targets)
        print(
            f"| `{row['run']}` | {row['kind']} | {row['accuracy']:.4f} | {row['spikes']:.1f} | "
            f"{row['hidden_spikes_per_neuron']:.3f} | {row['synops']:.0f} | {row['time_steps']} |{energy}"
        )
    if args.breakdown:
        print("\n| run | target | synaptic (µJ) | neuron updates (µJ) | routing (µJ) | neuron share |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            for target, parts in row["breakdown_j"].items():
                total = sum(parts.values())
                print(
                    f"| `{row['run']}` | {target} | {parts['synaptic'] * 1e6:.3f} | "
                    f"{parts['neuron'] * 1e6:.3f} | "
                    f"{parts['routing'] * 1e6:.4f} | {parts['neuron'] / total:.2f} |"
                )


if __name__ == "__main__":
    main()
