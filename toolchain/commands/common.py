"""What every command shares: exit codes, and the handler of a command not available yet."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from toolchain.errors import NotImplementedYetError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def register_planned(sub: argparse._SubParsersAction, name: str, text: str) -> None:
    """A command a later milestone provides: ``--help`` works, running it exits 2 with one line."""
    planned = sub.add_parser(name, help=f"{text} (not available yet)", description=f"{text.capitalize()}.")
    planned.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    planned.set_defaults(handler=_planned(name, text))


def _planned(name: str, text: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise NotImplementedYetError(f"`toolchain {name}` is not available in this version yet ({text})")

    return handler
