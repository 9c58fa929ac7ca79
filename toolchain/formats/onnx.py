"""ONNX files read without trusting them, and run with onnxruntime on the CPU; no torch.

ONNX holds float torch models (a network's ANN twin, its SNN unrolled over time, a teacher), not the
deployment graph: :mod:`toolchain.export.onnx` writes them from torch, and everything that reads
one (``toolchain inspect``, a distillation teacher, the tests that run a written file) goes
through here:

- :func:`read_onnx`: the ``onnx.ModelProto`` of a file, its size checked before reading, parsed
  from bytes, tensors stored as external data never followed (their paths could point anywhere);
- :func:`onnx_session`: an onnxruntime session on the CPU, the same size check first;
- :func:`run_onnx`: one call of a single-input model, outputs by name.

Every failure is a one-line :class:`OnnxFormatError` (or :class:`~toolchain.errors.ToolchainError`
for a model that fails on the given inputs) naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import FormatError, ToolchainError, one_line

#: the largest file :func:`read_onnx` and :func:`onnx_session` open by default (1 GiB)
MAX_READ_BYTES = 1 << 30


class OnnxFormatError(FormatError):
    """A file is not a readable ONNX model (missing, truncated, corrupt, too large)."""


def _checked_size(path: Path, max_bytes: int) -> int:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise OnnxFormatError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise OnnxFormatError(f"{path}: {size} bytes is beyond the {max_bytes}-byte limit for ONNX files")
    return size


def read_onnx(path: str | Path, *, max_bytes: int = MAX_READ_BYTES) -> Any:
    """Load the ONNX model in ``path`` (an ``onnx.ModelProto``) without trusting the file.

    The size is checked before reading (at most ``max_bytes``); tensors stored as external data
    are never loaded. A file that protobuf cannot parse, or that holds no graph, raises
    :class:`OnnxFormatError` naming the file.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    _checked_size(path, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OnnxFormatError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise OnnxFormatError(f"{path}: not a valid ONNX file (protobuf: {one_line(exc)})") from None
    except Exception as exc:  # protobuf's C++ parser reports some corruptions as other types
        raise OnnxFormatError(f"{path}: not a valid ONNX file ({one_line(exc)})") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise OnnxFormatError(f"{path}: not an ONNX model (no graph or no IR version)")
    return model


def onnx_session(path: str | Path, *, threads: int | None = 1, max_bytes: int = MAX_READ_BYTES) -> Any:
    """An onnxruntime ``InferenceSession`` of the model in ``path`` on the CPU, with ``threads``
    intra- and inter-op threads (``None``: onnxruntime's defaults); :class:`OnnxFormatError` for a
    missing, oversized or unloadable file."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise OnnxFormatError(f"{path}: no such file")
    _checked_size(path, max_bytes)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise OnnxFormatError(f"{path}: onnxruntime cannot load the model ({one_line(exc)})") from None


def run_onnx(path: str | Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run the single-input model in ``path`` with onnxruntime (CPU, one thread) on ``inputs``;
    outputs by name."""
    session = onnx_session(path)
    feeds = session.get_inputs()
    if len(feeds) != 1:
        raise OnnxFormatError(f"{path}: expected a model with one input, got {[f.name for f in feeds]}")
    names = [output.name for output in session.get_outputs()]
    try:
        results = session.run(names, {feeds[0].name: inputs})
    except Exception as exc:
        raise ToolchainError(
            f"{path}: onnxruntime failed on inputs {inputs.shape} ({one_line(exc)})"
        ) from None
    return dict(zip(names, results, strict=True))


__all__ = ["MAX_READ_BYTES", "OnnxFormatError", "onnx_session", "read_onnx", "run_onnx"]
