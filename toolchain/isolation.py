"""Reading an untrusted file where a crash or a hang of a C library can be stopped: a forked child.

libhdf5 can crash (a segmentation fault) or loop forever on a corrupt file (both found by the fuzz
benchmarks, ``benchmarks/fuzz_formats.py``); no ``except`` catches either. :func:`run_isolated` runs
the reading in a forked child process: the child's result comes back pickled through a pipe, and
the child's death or a read longer than the time limit becomes one line naming the file (a
:class:`~toolchain.errors.FormatError`, or the subclass the caller names). The netx reader
(:func:`toolchain.formats.netx.read_netx`) and the NIR reader
(:func:`toolchain.formats.nir.files.load_graph`) share it.

Inside such a child, :func:`memory_limit` bounds what one step of the reading may allocate (the
process's address-space limit, raised back afterwards): libhdf5 allocates a variable-length
string's declared length before it reads the string, and that length sits in the file, where one
corrupt byte made it 932.8 MiB. Where ``os.fork`` does not exist (Windows) the reading runs
in-process, without either bound.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from toolchain.errors import FormatError, ToolchainError

T = TypeVar("T")

#: whether reads can be isolated here (``os.fork`` exists)
CAN_ISOLATE = hasattr(os, "fork")
#: set in a child of :func:`run_isolated`, where :func:`memory_limit` may lower the process's limits
_in_isolated_child = False


def run_isolated(
    read: Callable[[], T],
    path: str | Path,
    *,
    timeout_s: float,
    what: str,
    error: type[FormatError] = FormatError,
    library: str = "the HDF5 library",
) -> T:
    """``read()`` in a forked child; its result (or its error's message) comes back pickled.

    A :class:`~toolchain.errors.ToolchainError` the child raises comes back as ``error`` with the
    same message; any other exception as ``error("PATH: corrupt WHAT (Type: first line)")``; the
    child's death by a signal as ``error("PATH: LIBRARY crashed (SIGSEGV) reading this file ...")``;
    a read longer than ``timeout_s`` seconds is killed and becomes
    ``error("PATH: reading took longer than N s and was stopped")``. The pickle is written by the
    caller's own code in the child (what ``read`` returns, or a message), never taken from the file.
    """
    path = Path(path)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, send, and leave without running the parent's exit handlers
        global _in_isolated_child
        _in_isolated_child = True
        status = 0
        try:
            faulthandler.disable()  # a crash is reported by the parent in one line, not dumped here
            os.close(read_fd)
            try:
                result: tuple[str, Any] = ("ok", read())
            except ToolchainError as exc:
                result = ("error", str(exc))
            except BaseException as exc:  # MemoryError, RecursionError ...
                result = ("error", f"{path}: corrupt {what} ({type(exc).__name__}: {first_line(exc)})")
            try:
                blob = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a result that cannot be pickled is the reader's bug: say so
                blob = pickle.dumps(("error", f"{path}: the reader's result cannot be sent back ({exc})"))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(blob)
        except BaseException:  # nothing may escape a forked child
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                remaining = deadline - time.monotonic()
                ready = select.select([pipe], [], [], remaining)[0] if remaining > 0 else []
                if not ready:
                    raise error(f"{path}: reading took longer than {timeout_s:g} s and was stopped")
                chunk = os.read(pipe.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:  # a timeout, or the caller interrupted (Ctrl-C): the child must not outlive it
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise error(f"{path}: {library} crashed ({name}) reading this file: it is corrupt")
    if not chunks:
        raise error(f"{path}: the reader process ended without a result (exit status {status})")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise error(value)
    return value


@contextlib.contextmanager
def memory_limit(extra_bytes: int) -> Iterator[bool]:
    """Within the block, the process may allocate at most ``extra_bytes`` more address space
    (``RLIMIT_AS``); an allocation beyond fails (``MemoryError``, or libhdf5's own error) instead
    of taking the memory. Yields whether the limit applies: only in a child of
    :func:`run_isolated` (single-threaded, so no other thread's allocation can fail meanwhile);
    elsewhere the block runs unbounded.
    """
    if not _in_isolated_child or not os.path.exists("/proc/self/statm"):
        yield False
        return
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + max(int(extra_bytes), 0)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name if it has none), at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


__all__ = ["CAN_ISOLATE", "first_line", "memory_limit", "run_isolated"]
