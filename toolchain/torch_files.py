"""Torch weight files: written atomically, read back safely (tensors and plain containers only).

Apart from :mod:`toolchain.io` so that the file formats and run folders, which use that module,
load no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolchain.errors import ToolchainError
from toolchain.io import atomic_write, one_line


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically. Load such files with ``torch.load(..., weights_only=True)``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str | Path, problem: str = "not a readable weights file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain containers only.

    A file that is not such a weights file (truncated, corrupt, a pickle naming a callable) raises a
    one-line :class:`ToolchainError` ``"<path>: <problem> (<reason>)"``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's unpickler can raise anything on a corrupt file
        raise ToolchainError(f"{path}: {problem} ({one_line(exc)})") from None


__all__ = ["load_torch", "save_torch"]
