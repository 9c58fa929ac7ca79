"""Which format an exported file is, from its content, and the deployment graph a netx or NIR file holds.

The one place every command (``simulate``, ``energy``, ``inspect``) detects a model file's format
and reads it; the name of the file never decides. netx and NIR are both HDF5 (signature
``\\x89HDF\\r\\n\\x1a\\n``, at offset 0 or after a user block): netx files hold a ``layer`` group
(lava-dl's ``netx.hdf5``), NIR files a ``node`` group (``nir.write``). Anything else whose first
byte is ``0x08`` (protobuf field 1, ``ir_version``, which ONNX writers put first) or whose name
ends in ``.onnx`` is ONNX.

:func:`detect_format` names any of the three; :func:`read_graph` reads a netx or NIR file with its
reader (:func:`toolchain.export.netx.read_netx`, :func:`toolchain.export.nir.read_nir`) and
refuses anything else. Both raise :class:`ModelFileError` naming the file and what it holds.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from toolchain import ir
from toolchain.errors import FormatError, ToolchainError, one_line

#: every format ``toolchain export`` writes and ``toolchain inspect`` describes
FORMATS: tuple[str, ...] = ("netx", "nir", "onnx")
#: the formats that hold a deployment graph (:class:`toolchain.ir.Network`)
GRAPH_FORMATS: tuple[str, ...] = ("netx", "nir")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: where HDF5 looks for its signature (a user block shifts it by a power of two >= 512)
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)
#: the first byte of a protobuf message whose field 1 is a varint (ONNX's ``ir_version``)
PROTOBUF_VARINT_FIELD1 = 0x08


class ModelFileError(FormatError):
    """A model file is missing, of an unknown format, not of a format the caller takes, or unreadable."""


def detect_format(path: str | Path) -> str:
    """``"netx"``, ``"nir"`` or ``"onnx"`` from the content of ``path``; :class:`ModelFileError` otherwise."""
    path = Path(path)
    head = _head(path)
    if not head:
        raise ModelFileError(f"{path}: the file is empty")
    if _is_hdf5(head):
        return _hdf5_format(path)
    if _looks_onnx(path, head):
        return "onnx"
    raise ModelFileError(
        f"{path}: unknown format (expected a netx or NIR HDF5 file or an ONNX model; "
        f"the file starts with {head[:8]!r})"
    )


def graph_format(path: str | Path) -> str:
    """``"netx"`` or ``"nir"`` from the content of ``path``; :class:`ModelFileError` naming what the
    file is when it is missing or holds no deployment graph (not HDF5, an ONNX model, other HDF5)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file (expected a netx or NIR file from `toolchain export`)")
    head = _head(path)
    if not _is_hdf5(head):
        what = (
            "the file is empty"
            if not head
            else "an ONNX model: export with --format netx or nir"
            if _looks_onnx(path, head)
            else f"the file starts with {head[:8]!r}"
        )
        raise ModelFileError(f"{path}: not an HDF5 file (netx or NIR expected; {what})")
    return _hdf5_format(path)


def read_graph(path: str | Path) -> tuple[ir.Network, str]:
    """The deployment graph in the netx or NIR file ``path`` and its format (see :func:`graph_format`).

    A reader's own :class:`~toolchain.errors.ToolchainError` passes through; anything else it raises
    becomes a :class:`ModelFileError` naming the file, so no file can crash a command.
    """
    path = Path(path)
    fmt = graph_format(path)
    reader = getattr(importlib.import_module(f"toolchain.export.{fmt}"), f"read_{fmt}")
    try:
        network = reader(path)
    except ToolchainError:
        raise
    except Exception as exc:  # a reader must fail cleanly; never let a file crash a command
        raise ModelFileError(f"{path}: cannot read the {fmt} file ({one_line(exc)})") from None
    if not isinstance(network, ir.Network):
        raise ModelFileError(f"{path}: the {fmt} reader returned {type(network).__name__}, not ir.Network")
    return network, fmt


def _head(path: Path) -> bytes:
    """The first bytes of ``path``: enough to find an HDF5 signature at any of :data:`HDF5_OFFSETS`."""
    try:
        with path.open("rb") as handle:
            return handle.read(HDF5_OFFSETS[-1] + len(HDF5_SIGNATURE))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def _is_hdf5(head: bytes) -> bool:
    return any(head[o : o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in HDF5_OFFSETS)


def _looks_onnx(path: Path, head: bytes) -> bool:
    return (bool(head) and head[0] == PROTOBUF_VARINT_FIELD1) or path.suffix.lower() == ".onnx"


def _hdf5_format(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = set(handle.keys())
            groups = {key for key in keys if isinstance(handle[key], h5py.Group)}
    except Exception as exc:  # h5py reports corrupt files as OSError, sometimes as others
        raise ModelFileError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None
    if "layer" in groups and "node" not in groups:
        return "netx"
    if "node" in groups and "layer" not in groups:
        return "nir"
    raise ModelFileError(
        f"{path}: an HDF5 file that is neither netx (a 'layer' group) nor NIR (a 'node' group); "
        f"top-level keys: {sorted(keys)}"
    )


__all__ = [
    "FORMATS",
    "GRAPH_FORMATS",
    "ModelFileError",
    "detect_format",
    "graph_format",
    "read_graph",
]
