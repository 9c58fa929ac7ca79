"""``toolchain simulate``: run an exported network in the bit-accurate reference simulator or in Lava."""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub, "simulate", "run an exported network in the bit-accurate reference simulator or in Lava"
    )
