"""``toolchain sweep``: train a grid of recipe settings and tabulate accuracy against spiking activity."""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub, "sweep", "train a grid of recipe settings and tabulate accuracy against spiking activity"
    )
