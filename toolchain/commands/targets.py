"""``toolchain targets``: list the hardware target profiles (deploy/targets/*.toml) with their cited costs."""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub, "targets", "list the hardware target profiles (deploy/targets/*.toml) with their cited costs"
    )
