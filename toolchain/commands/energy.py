"""``toolchain energy``:
estimate energy and latency per inference on a neuromorphic target from measured activity.
"""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub,
        "energy",
        "estimate energy and latency per inference on a neuromorphic target from measured activity",
    )
