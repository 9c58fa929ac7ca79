"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

No torch: torch's weight files are :mod:`toolchain.torch_files`.

A run killed at any moment leaves either the previous file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from toolchain.errors import ToolchainError


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ToolchainError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp's files are private; give the usual mode
        os.replace(tmp_name, path)
    except OSError as exc:
        raise ToolchainError(f"{path}: write failed ({exc.strerror or exc})") from None
    except Exception as exc:
        cause = _os_error_in(exc)  # torch.save wraps a full disk's OSError in a RuntimeError
        if cause is None:
            raise
        raise ToolchainError(f"{path}: write failed ({cause.strerror or cause})") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError that ``exc`` was raised from or while handling, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s message on one line for an error message (torch's are often paragraphs).

    For a pickle torch's weights-only loader refused: what it refused, without torch's advice to
    load the file with ``weights_only=False``; else the whole message with its whitespace
    collapsed, cut at ``limit`` characters.
    """
    text = str(exc) or type(exc).__name__
    if text.startswith("Weights only load failed"):  # torch's safe loader refused the pickle
        return _refused_pickle(text)
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _refused_pickle(text: str) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file unsafely
    (which is wrong advice for a file that may be hostile)."""
    reasons = [
        line.strip()
        for line in text.splitlines()[1:]
        if line.strip()
        and "weights_only" not in line
        and not line.startswith(("Please file an issue", "Check the documentation"))
    ]
    detail = " ".join(reasons)[:200] or "an object that is not a tensor or a plain container"
    return f"the file holds what a weights file never does, so it was not loaded: {detail}"


def check_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it is writable now, before hours of work depend on it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ToolchainError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    return path
