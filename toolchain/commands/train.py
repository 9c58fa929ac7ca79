"""``toolchain train`` and ``toolchain run``: train a recipe's SNN (``run`` will chain every stage)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.commands.common import EXIT_USAGE
from toolchain.errors import ToolchainError

if TYPE_CHECKING:
    from toolchain.config import Recipe


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train the SNN of a recipe (writes RUN/model.pt, recipe.toml, metrics.json)",
        description="Train the spiking network a recipe describes with surrogate gradients. "
        "Writes RUN/model.pt, RUN/recipe.toml (the resolved recipe) and RUN/metrics.json.",
    )
    add_training_arguments(train)
    train.set_defaults(handler=cmd_train)


def add_training_arguments(parser: argparse.ArgumentParser, *, resume_flag: bool = True) -> None:
    """The recipe and training options ``train`` and ``run`` share (``run`` always resumes)."""
    parser.add_argument("recipe", type=Path, help="a recipe.toml, or the folder models/<name> holding one")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding one folder per dataset (mnist/, fashion-mnist/, cifar10/, gsc/); "
        "default: $TOOLCHAIN_DATA, else ./data",
    )
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--epochs", type=int, default=None, help="override [train].epochs")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="override [train].batch_size (per process under torchrun: a step takes this many "
        "samples on each of the N processes)",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda", "auto"], default=None, help="override [train].device"
    )
    parser.add_argument("--seed", type=int, default=None, help="override [train].seed")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe key, VALUE in TOML syntax (e.g. --set neuron.numeric='\"fixed_point\"' "
        "or --set neuron.numeric=fixed_point, --set model.hidden=[256,256]); repeatable",
    )
    if resume_flag:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in RUN from its last checkpoint (the recipe must be the same, "
            "except [train].fixed_point_epochs and keys that do not change the weights)",
        )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run RUN holds (its weights, checkpoint, metrics and later stages' outputs); "
        "without it a folder holding a run is refused",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe of ``args.recipe`` with the command line's overrides applied."""
    from toolchain.config import load_recipe, parse_assignments, with_overrides

    return with_overrides(
        load_recipe(args.recipe),
        **{
            "train.epochs": args.epochs,
            "train.batch_size": args.batch_size,
            "train.device": args.device,
            "train.seed": args.seed,
            **parse_assignments(args.set),
        },
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``train`` / ``run``; under ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` set) one
    rank of a DistributedDataParallel run, where rank 0 alone prints and writes files.

    Errors every rank raises together (a bad recipe, diverged training, a peer's failure) are
    printed by rank 0 only; an error of one rank is printed by that rank, as ``rank R: ...``.
    """
    import os

    from toolchain.data import load_dataset
    from toolchain.errors import RecipeError
    from toolchain.io import write_json
    from toolchain.run_folder import default_run_dir
    from toolchain.train import TrainingDivergedError, fit_recipe
    from toolchain.train import distributed as ddp

    ctx: ddp.DistributedContext | None = None
    try:
        recipe = resolve_recipe(args)
        ctx = ddp.init_from_env(recipe.train.device)
        main = ddp.is_main(ctx)
        out = args.out if args.out is not None else default_run_dir(recipe.name)
        with ddp.agreed(ctx, "while loading the dataset"):
            dataset = load_dataset(recipe.data.dataset, args.data_dir, recipe.data.options)
        if main:
            print(
                f"recipe {recipe.name}: {recipe.data.dataset} "
                f"({len(dataset.train)} train / {len(dataset.test)} test), "
                f"{recipe.encoding.scheme} encoding, T = {recipe.encoding.time_steps} steps",
                file=sys.stderr,
            )
        if main and ctx is not None:
            batch = recipe.train.batch_size
            print(
                f"distributed: {ctx.world_size} processes ({ctx.backend}, {ctx.device.type}), "
                f"{batch} samples per process and step ({batch * ctx.world_size} per step)",
                file=sys.stderr,
            )
        options: dict[str, Any] = {
            "resume": args.resume,
            "overwrite": args.overwrite,
            "progress": not args.no_progress,
        }
        options["distributed"] = ctx
        result = fit_recipe(recipe, dataset, out, **options)  # CUBA, or TTFS (docs/ttfs.md)
        if main:
            metrics = result.metrics(recipe)
            _print_summary(metrics, out)
            if args.json is not None:
                write_json(args.json, {**metrics, "run_dir": str(out)})
        return 0
    except ToolchainError as exc:
        rank = str(ctx.rank) if ctx is not None else os.environ.get("RANK", "0")
        if rank == "0":
            raise
        if isinstance(exc, RecipeError | TrainingDivergedError | ddp.PeerFailedError):
            return EXIT_USAGE  # rank 0 says the same
        raise ToolchainError(f"rank {rank}: {exc}") from None
    finally:
        ddp.cleanup(ctx)


def _print_summary(metrics: dict[str, Any], out: Path) -> None:
    print(f"test accuracy     {metrics['test_accuracy']:.4f}  ({metrics['test_samples']} samples)")
    print(f"spikes per sample {metrics['spikes_per_sample']:.1f}")
    width = max(len(layer["name"]) for layer in metrics["layers"])
    for layer in metrics["layers"]:
        per_neuron = layer["spikes_per_sample"] / layer["neurons"]
        print(
            f"  {layer['name']:<{width}}  {layer['neurons']:>6} neurons  "
            f"{layer['spikes_per_sample']:>9.1f} spikes/sample  {per_neuron:.3f} per neuron"
        )
    sim = metrics.get("ttfs", {}).get("simulator")
    if sim is not None:  # a TTFS run: the event-driven SNN's figures (toolchain.sim.ttfs)
        match = sim["agreement_with_surrogate"]
        print(
            f"TTFS SNN          accuracy {sim['test_accuracy']:.4f}, "
            f"{sim['spikes_per_sample']:.1f} spikes/sample "
            f"(+{sim['input_spikes_per_sample']:.1f} input), {sim['synops_per_sample']:.0f} synops/sample; "
            f"vs surrogate: {match['spike_mismatches']} of {match['neurons']} spike times differ, "
            f"predictions agree {match['prediction_agreement']:.4f}"
        )
    print(f"run folder        {out}")
