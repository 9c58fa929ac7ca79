"""``toolchain run``: the whole job for a recipe: train, export, simulate (reference and Lava), energy."""

from __future__ import annotations

import argparse

from toolchain.commands.train import add_training_arguments


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="the whole job for a recipe: train, export (netx, NIR, ONNX), simulate, energy report",
        description="Train the recipe's SNN, export it to netx, NIR and ONNX, run the netx file in the "
        "reference simulator (whole test set) and in Lava (a sample, compared spike for spike with the "
        "reference simulator and the fixed-point torch model), and write the energy report for the "
        "recipe's [target]. Stages finished in RUN are skipped, so an interrupted run resumes; the run "
        "folder is tied to its recipe (RUN/pipeline.json).",
    )
    add_training_arguments(run, resume_flag=False)
    run.add_argument(
        "--lava-samples",
        type=int,
        default=None,
        metavar="N",
        help="test samples Lava runs and compares (default 100; 0 skips Lava)",
    )
    run.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help="test samples of the reference simulator (default: the whole test set)",
    )
    run.add_argument(
        "--skip",
        default="",
        metavar="STAGES",
        help="comma-separated stages not to run: export, simulate, lava, energy",
    )
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from toolchain.commands.train import resolve_recipe
    from toolchain.io import write_json
    from toolchain.pipeline import DEFAULT_LAVA_SAMPLES, RunOptions, format_summary, run_pipeline
    from toolchain.run_folder import default_run_dir

    recipe = resolve_recipe(args)
    out = args.out if args.out is not None else default_run_dir(recipe.name)
    options = RunOptions(
        data_dir=args.data_dir,
        lava_samples=DEFAULT_LAVA_SAMPLES if args.lava_samples is None else args.lava_samples,
        sim_samples=args.samples,
        skip=tuple(stage.strip() for stage in args.skip.split(",") if stage.strip()),
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    summary = run_pipeline(recipe, out, options)
    print(format_summary(summary))
    if args.json is not None:
        write_json(args.json, summary)
    return 0 if summary.get("mismatched_spikes") in (None, 0) else 1
