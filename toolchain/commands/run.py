"""``toolchain run``: the whole job for a recipe (train; export, simulate and energy as they land)."""

from __future__ import annotations

import argparse

from toolchain.commands.train import add_training_arguments, cmd_train


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="the whole job for a recipe: train, evaluate (export, simulate, energy as they land)",
        description="Run every available stage for a recipe and print a summary. In this version: "
        "train and evaluate. Export, simulation and energy join as they are implemented.",
    )
    add_training_arguments(run)
    run.set_defaults(handler=cmd_train)
