"""The ``toolchain`` command line: one subcommand per stage, and ``run`` for all of them.

Each command lives in its own module of :mod:`toolchain.commands` (``register(sub)`` adds its
parser). Errors a user can cause end as one line on stderr (``toolchain: error: ...``) and exit code
2; commands that produce results write them as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from toolchain import __version__
from toolchain.commands import COMMANDS
from toolchain.commands.common import EXIT_INTERRUPTED, EXIT_USAGE
from toolchain.errors import ToolchainError

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``toolchain CMD: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="toolchain",
        description="Train sparse spiking neural networks, export them for Loihi, simulate them "
        "bit-accurately and estimate their energy on neuromorphic chips.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"toolchain.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ToolchainError as exc:
        print(f"toolchain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("toolchain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
