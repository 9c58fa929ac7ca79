"""NIR export of a TTFS run: exact round trip, and what a consumer reading only the nodes computes.

Exports ``RUN`` with ``toolchain.export.ttfs.export_ttfs_nir``, reads it back with
``read_ttfs_nir`` (must be bit-exact) and runs the graph from its nodes alone
(``run_ttfs_nir_graph``: folded weights, kernel metadata), on the whole test split
(``docs/ttfs.md#nir``). Prints one markdown table row.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ttfs_nir.py runs/digits-ttfs [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a TTFS run folder (toolchain train --out RUN)")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from toolchain.data import as_float, load_dataset
    from toolchain.export.ttfs import export_ttfs_nir, read_ttfs_nir, run_ttfs_nir_graph
    from toolchain.formats.nir import load_graph
    from toolchain.train.ttfs import load_ttfs_run

    with tempfile.TemporaryDirectory() as tmp:
        from toolchain.config import load_recipe

        recipe = load_recipe(args.run / "recipe.toml")
        data = load_dataset(recipe.data.dataset, args.data_dir, recipe.data.options)
        _, model = load_ttfs_run(args.run, data.sample_shape, data.num_classes)
        path = export_ttfs_nir(model, recipe, Path(tmp) / "ttfs.nir")
        size = path.stat().st_size
        _, restored = read_ttfs_nir(path)
        graph = load_graph(path)
        x = torch.from_numpy(as_float(data.test.x))
        with torch.no_grad():
            reference = torch.cat([model.run(b).logits for b in x.split(1000)])
            back = torch.cat([restored.run(b).logits for b in x.split(1000)])
            nodes = torch.cat([run_ttfs_nir_graph(graph, b) for b in x.split(1000)])
    y = torch.as_tensor(data.test.y)
    print(
        "| run | test samples | file (bytes) | restored logits bit-exact | nodes-only: predictions agree "
        "| nodes-only: max abs logit difference | accuracy surrogate / nodes-only |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {recipe.name} | {len(x)} | {size} | {torch.equal(reference, back)} "
        f"| {float((reference.argmax(1) == nodes.argmax(1)).float().mean()):.4f} "
        f"| {float((reference - nodes).abs().max()):.2g} "
        f"| {float((reference.argmax(1) == y).float().mean()):.4f} / "
        f"{float((nodes.argmax(1) == y).float().mean()):.4f} |"
    )


if __name__ == "__main__":
    main()
