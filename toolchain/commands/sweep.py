"""``toolchain sweep``: train a grid of recipe settings and tabulate accuracy against spiking activity."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from toolchain.errors import ToolchainError


def register(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="train a grid of recipe settings and tabulate accuracy against spiking activity",
        description="Train RECIPE once per configuration and seed (each run a `toolchain train` process, "
        "--jobs at a time) and write OUT/summary.md, summary.csv, runs.csv, sweep.json and pareto.png "
        "(test accuracy against spikes per sample). Configurations: every --variant (or one unnamed) "
        "times the Cartesian product of the --grid lists. A run folder OUT/runs/<configuration>-seed<S> "
        "that already holds the same resolved recipe and metrics.json is reused.",
        epilog="example: toolchain sweep models/digits-demo --variant baseline "
        "--variant kd distill.teacher=ann --grid distill.alpha=0.3,0.7 --seeds 0,1,2 --jobs 2 "
        "--out runs/sweep",
    )
    sweep.add_argument("recipe", type=Path, help="a recipe.toml, or the folder models/<name> holding one")
    sweep.add_argument(
        "--variant",
        action="append",
        nargs="+",
        default=[],
        metavar="LABEL [KEY=VALUE ...]",
        help="a named configuration and its recipe overrides (as --set); repeatable",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="train every value of KEY (TOML values; commas inside [...] or quotes do not split); "
        "repeatable: the product of all grids, applied to every variant",
    )
    sweep.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (default 0,1,2)")
    sweep.add_argument("--jobs", type=int, default=1, help="training processes at a time (default 1)")
    sweep.add_argument("--out", type=Path, required=True, help="the sweep's folder")
    sweep.add_argument(
        "--baseline", default=None, help="the configuration the changes refer to (default: the first)"
    )
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every run (e.g. --set train.epochs=5); repeatable",
    )
    sweep.add_argument("--data-dir", type=Path, default=None, help="as for `toolchain train`")
    sweep.add_argument("--title", default=None, help="the Pareto plot's title (default: the recipe's name)")
    sweep.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from toolchain.config import load_recipe
    from toolchain.io import check_writable_dir
    from toolchain.train.sweep import (
        SweepError,
        parse_grid,
        parse_seeds,
        plan_configurations,
        run_sweep,
        summarize,
        write_outputs,
    )

    if args.jobs < 1:
        raise SweepError(f"--jobs {args.jobs}: expected an integer >= 1")
    check_writable_dir(args.out)
    recipe = load_recipe(args.recipe)
    seeds = parse_seeds(args.seeds)
    configs = plan_configurations(args.variant, parse_grid(args.grid))
    baseline = args.baseline if args.baseline is not None else configs[0].label
    if baseline not in [c.label for c in configs]:
        raise SweepError(
            f"--baseline {baseline!r}: no configuration of that label; the sweep has "
            f"{', '.join(c.label for c in configs)}"
        )
    command = "toolchain " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["sweep"] else _rebuild(args)
    outcomes = run_sweep(
        args.recipe,
        configs,
        seeds,
        args.out,
        jobs=args.jobs,
        data_dir=args.data_dir,
        extra=args.set,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    rows = summarize(configs, outcomes, args.recipe, baseline, args.set, args.data_dir)
    paths = write_outputs(
        args.out, rows, outcomes, command=command, baseline=baseline, title=args.title or recipe.name
    )
    print(paths["summary.md"].read_text(encoding="utf-8"))
    print("sweep outputs: " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise ToolchainError(
            f"{len(failed)} of {len(outcomes)} runs failed (first: {failed[0].label} seed {failed[0].seed}: "
            f"{failed[0].error}; its log: {failed[0].run_dir}/train.log)"
        )
    return 0


def _rebuild(args: argparse.Namespace) -> str:
    parts = ["toolchain", "sweep", str(args.recipe)]
    for variant in args.variant:
        parts += ["--variant", *variant]
    for grid in args.grid:
        parts += ["--grid", grid]
    parts += ["--seeds", args.seeds, "--jobs", str(args.jobs), "--out", str(args.out)]
    return shlex.join(parts)
