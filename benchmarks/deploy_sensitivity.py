"""How much of a model's float -> Loihi deploy loss each step of quantization causes, and the noise floor.

For each trained run folder (``toolchain train --out RUN``, a float model) this script evaluates the
whole test split:

- the float model (the accuracy training reports);
- the float model fed its input as Loihi sees it (8-bit graded: ``round(x * 255) / 256``);
- the float model with one synaptic layer at a time on Loihi's fixed point (batch norm folded, the
  layer scaled and rounded onto its registers, Loihi's integer arithmetic: what the export writes),
  the input graded;
- every layer in training's fixed-point mode (the model as ``[train].fixed_point_epochs`` trains it);
- the deployed network: the graph the export writes (``export.pipeline.quantize_run``) run by the
  reference simulator on the recipe's evaluation inputs (``toolchain run``'s fixed-point figure).
  The two rows differ where the export rounds onto another scale than training's fixed-point mode
  (the export may scale a layer up to use more of the 8-bit weight grid);
- the noise floor: the float model on inputs jittered by uniform noise of half an 8-bit step
  (``--jitter-draws`` draws), a perturbation no smaller than what 8-bit input already applies.

Each row gives the accuracy and the agreement (the share of test samples whose predicted class is
the float model's). Above the table: the dataset's description (its scaling, and how many values it
clipped) and how much of [0, 1] the input uses (each feature channel's standard deviation over the
test split, smallest and largest). Usage, from the repository root::

    .venv/bin/python benchmarks/deploy_sensitivity.py runs/paper/gsc-paper/sweep/runs/baseline-seed0 \\
        runs/paper/gsc-paper/sweep/runs/baseline-seed1 --data-dir DATA --out runs/deploy-sensitivity

It writes ``OUT/sensitivity.json`` and ``OUT/sensitivity.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from toolchain.export.pipeline import quantize_run
from toolchain.export.run_loader import load_run
from toolchain.loihi_numbers import INPUT_PAYLOAD_MAX
from toolchain.sim.backends import simulate_backends
from toolchain.sim.inputs import network_inputs
from toolchain.snn.loihi import graded_input
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.numerics import GRADED_ENCODINGS, apply_numerics

BATCH = 256


def predict(model: SpikingNetwork, x: torch.Tensor, steps: int) -> np.ndarray:
    """Predicted classes of ``x`` ``[N, ...]`` (the same analog input every step)."""
    out = []
    with torch.no_grad():
        for first in range(0, len(x), BATCH):
            chunk = x[first : first + BATCH]
            out.append(model(chunk.unsqueeze(0).expand(steps, *chunk.shape)).logits.argmax(dim=1).numpy())
    return np.concatenate(out)


def sensitivity(run_dir: Path, data_dir: str | None, jitter_draws: int, seed: int) -> dict:
    run = load_run(run_dir, data_dir)
    recipe, model = run.recipe, run.model.eval()
    if recipe.trained_numeric != "float" or recipe.encoding.scheme not in GRADED_ENCODINGS:
        raise SystemExit(f"{run_dir}: needs a float model with direct (graded) input")
    steps = recipe.encoding.time_steps
    x = torch.from_numpy(run.dataset.test.x).to(torch.float64)
    y = run.dataset.test.y
    float_model = copy.deepcopy(model).double()
    base = predict(float_model, x, steps)
    rows: list[dict] = []

    def row(name: str, predicted: np.ndarray) -> None:
        rows.append(
            {
                "step": name,
                "accuracy": float((predicted == y).mean()),
                "agreement": float((predicted == base).mean()),
            }
        )

    row("float model", base)
    graded = graded_input(x)
    row("8-bit graded input", predict(float_model, graded, steps))
    fixed = copy.deepcopy(model)
    apply_numerics(fixed, replace(recipe.neuron, numeric="fixed_point"), recipe.encoding.scheme)
    fixed.eval()
    for index, block in enumerate(fixed.blocks):
        if block.name not in fixed.layer_names:
            continue
        mixed = copy.deepcopy(float_model)
        mixed.blocks[index] = block
        row(f"8-bit input + {block.name} in fixed point", predict(mixed, graded, steps))
    row("every layer in training's fixed-point mode", predict(fixed, x, steps))
    network, _ = quantize_run(run)
    inputs = network_inputs(network, run.dataset.test, recipe.encoding)
    deployed = simulate_backends(network, inputs).results["reference"].predictions
    row("deployed (the exported graph, reference simulator)", deployed)
    generator = torch.Generator().manual_seed(seed)
    half_step = 0.5 / INPUT_PAYLOAD_MAX
    jitter = []
    for _ in range(jitter_draws):
        noise = (torch.rand(x.shape, generator=generator, dtype=torch.float64) * 2 - 1) * half_step
        predicted = predict(float_model, (x + noise).clamp(0, 1), steps)
        jitter.append(((predicted == y).mean(), (predicted == base).mean()))
    accuracies = [float(a) for a, _ in jitter]
    channel_std = x.transpose(0, 1).reshape(x.shape[1], -1).std(dim=1, correction=0)
    return {
        "run": str(run_dir),
        "dataset": run.dataset.source,
        "input_channel_std": [float(channel_std.min()), float(channel_std.max())],
        "test_samples": len(y),
        "rows": rows,
        "jitter": {
            "draws": jitter_draws,
            "amplitude": half_step,
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "accuracy_min": min(accuracies),
            "accuracy_max": max(accuracies),
            "agreement_mean": statistics.mean(float(g) for _, g in jitter),
        },
    }


def markdown(results: list[dict]) -> str:
    lines = []
    for result in results:
        low, high = result["input_channel_std"]
        lines += [f"### {result['run']} ({result['test_samples']} test samples)", ""]
        lines += [
            f"data: {result['dataset']}",
            "",
            f"input: per-channel standard deviation over the test split {low:.3f} to {high:.3f} of [0, 1]",
            "",
        ]
        lines += ["| step | accuracy | agreement with the float model |", "|---|---|---|"]
        lines += [f"| {r['step']} | {r['accuracy']:.4f} | {r['agreement']:.4f} |" for r in result["rows"]]
        j = result["jitter"]
        lines += [
            f"| float model, input ± {j['amplitude']:.5f} uniform noise ({j['draws']} draws) | "
            f"{j['accuracy_mean']:.4f} ± {j['accuracy_std']:.4f} (min {j['accuracy_min']:.4f}, max "
            f"{j['accuracy_max']:.4f}) | {j['agreement_mean']:.4f} |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of float models")
    parser.add_argument("--data-dir", default=None, help="where the recipe's dataset lives")
    parser.add_argument("--out", type=Path, required=True, help="folder for sensitivity.json/.md")
    parser.add_argument("--jitter-draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [sensitivity(run, args.data_dir, args.jitter_draws, args.seed) for run in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sensitivity.json").write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results)
    (args.out / "sensitivity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
