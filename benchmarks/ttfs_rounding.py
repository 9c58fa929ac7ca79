"""Test accuracy of a TTFS run's surrogate DNN with ceiled (inference) and rounded spike times.

Shows what training on rounded spike times and evaluating on ceiled ones costs
(``[ttfs].ceil_from_epoch``, ``docs/ttfs.md``). Prints a markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ttfs_rounding.py runs/mnist-ttfs --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def accuracy(run_dir: Path, data_dir: Path | None, rounding: str) -> float:
    from toolchain.config import load_recipe
    from toolchain.data import as_float, load_dataset
    from toolchain.train.ttfs import load_ttfs_run

    recipe = load_recipe(run_dir / "recipe.toml")
    dataset = load_dataset(recipe.data.dataset, data_dir, recipe.data.options)
    _, model = load_ttfs_run(run_dir, dataset.sample_shape, dataset.num_classes)
    model.eval()
    if rounding == "round":  # the kernels alone in training mode: rounded times, no relaxation
        for kernel in model.kernels().values():
            kernel.train()
            kernel.kernel_probability = 1.0
            kernel.train_rounding = "round"
    x = torch.from_numpy(as_float(dataset.test.x))
    with torch.no_grad():
        predictions = torch.cat([model.run(x[i : i + 1000]).logits.argmax(1) for i in range(0, len(x), 1000)])
    return float(np.mean(predictions.numpy() == dataset.test.y))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| run | ceiled spike times (inference) | rounded spike times |")
    print("|---|---|---|")
    for run in args.runs:
        ceiled, rounded = accuracy(run, args.data_dir, "ceil"), accuracy(run, args.data_dir, "round")
        print(f"| `{run}` | {ceiled:.4f} | {rounded:.4f} |")


if __name__ == "__main__":
    main()
