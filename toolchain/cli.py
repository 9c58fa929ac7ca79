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
    _interrupt_on_signals()
    try:
        return int(args.handler(args))
    except ToolchainError as exc:
        print(error_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("toolchain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


#: characters of an error message printed (the rest on request: TOOLCHAIN_FULL_ERRORS=1)
ERROR_LINE_LIMIT = 1000


def error_line(exc: BaseException) -> str:
    """``toolchain: error: MESSAGE`` on one line, cut at :data:`ERROR_LINE_LIMIT` characters
    unless the environment sets ``TOOLCHAIN_FULL_ERRORS=1`` (a message quoting a huge value stays
    readable)."""
    import os

    message = " ".join(str(exc).split("\n"))
    if len(message) > ERROR_LINE_LIMIT and os.environ.get("TOOLCHAIN_FULL_ERRORS") != "1":
        cut = len(message) - ERROR_LINE_LIMIT
        message = (
            f"{message[:ERROR_LINE_LIMIT]}... ({cut} more characters; TOOLCHAIN_FULL_ERRORS=1 prints them)"
        )
    return f"toolchain: error: {message}"


#: seconds a command may take to clean up after Ctrl-C or SIGTERM before it exits regardless
INTERRUPT_GRACE_S = 10.0


def _interrupt_on_signals() -> None:
    """SIGTERM (``kill``, a batch system's time limit) stops a command as Ctrl-C does: files being
    written are discarded, Lava's runtime is asked to stop, and the exit code is 130, not a silent
    death. Cleaning up may not take more than :data:`INTERRUPT_GRACE_S` (a Lava runtime whose
    actors were interrupted can wait for ever); a second signal exits at once. Ctrl-C (SIGINT) gets
    the same grace period, unless the shell that started the command ignores it. Lava's processes die
    with this one in any case (:func:`toolchain.lava_compat.install`)."""
    import os
    import signal
    import threading

    def leave() -> None:
        print("toolchain: interrupted", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)

    def interrupt(signum: int, frame: object) -> None:
        if getattr(interrupt, "fired", False):
            leave()
        interrupt.fired = True  # type: ignore[attr-defined]
        # the KeyboardInterrupt may be lost (raised inside a fork hook, whose errors Python ignores)
        # or its clean-up may hang: the watchdog ends the process then
        watchdog = threading.Timer(INTERRUPT_GRACE_S, leave)
        watchdog.daemon = True
        watchdog.start()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored by the shell
            signal.signal(signal.SIGINT, interrupt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
