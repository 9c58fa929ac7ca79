"""Which format an exported file is, from its content, and the deployment graph a netx or NIR file holds.

The one place every command (``simulate``, ``energy``, ``inspect``) detects a model file's format
and reads it; the name of the file never decides. netx and NIR are both HDF5 (signature
``\\x89HDF\\r\\n\\x1a\\n``, at offset 0 or after a user block): netx files hold a ``layer`` group
(lava-dl's ``netx.hdf5``), NIR files a ``node`` group (``nir.write``). Anything else whose first
byte is ``0x08`` (protobuf field 1, ``ir_version``, which ONNX writers put first) or whose name
ends in ``.onnx`` is ONNX.

:func:`detect_format` names any of the three; :func:`read_graph` reads a netx or NIR file with its
reader (:func:`toolchain.formats.netx.read_netx`, :func:`toolchain.formats.nir.read_nir`) and
refuses anything else. Both raise :class:`ModelFileError` naming the file and what it holds.

:func:`open_graph` reads the same files and also tells what the file itself states of how it runs
(:data:`SETTINGS`: time steps, input encoding, and NIR's time step ``dt``). A file the toolchain
wrote states them all; one written by another library may state none (slayer's ``export_hdf5``
writes no time steps or input encoding, a NIR graph from snnTorch no time steps or ``dt``): the
caller gives them (on the command line ``--time-steps``, ``--input-encoding``, ``--dt``), or,
to describe the file only, has placeholders filled in and marked as such.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
#: how a graph runs, beyond its layers: what a file may state, and the caller gives where it does not
SETTINGS: tuple[str, ...] = ("time_steps", "input_encoding", "dt")
#: what :func:`open_graph` fills in, with ``placeholders=True``, for a setting nobody gave
PLACEHOLDERS: dict[str, Any] = {"time_steps": 1, "input_encoding": "spikes"}


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


def read_graph(
    path: str | Path,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding | None = None,
    dt: float | None = None,
) -> tuple[ir.Network, str]:
    """The deployment graph in the netx or NIR file ``path`` and its format (see :func:`graph_format`).

    ``time_steps``, ``input_encoding`` and ``dt`` are what the file does not state (see
    :func:`open_graph`, which this is). A reader's own :class:`~toolchain.errors.ToolchainError`
    passes through; anything else it raises becomes a :class:`ModelFileError` naming the file, so no
    file can crash a command.
    """
    graph = open_graph(path, time_steps=time_steps, input_encoding=input_encoding, dt=dt)
    return graph.network, graph.format


@dataclass(frozen=True)
class GraphFile:
    """A netx or NIR file's deployment graph and what the file itself states of how it runs.

    ``stated``: the :data:`SETTINGS` the file states (a netx file's ``/toolchain`` group holds the
    time steps and the input encoding, a NIR graph's metadata any of the three); ``dt``: the time
    step in seconds a NIR graph was read with (``None`` for netx, which holds integer decays);
    ``placeholders``: the settings neither the file nor the caller gave, filled with
    :data:`PLACEHOLDERS` (``open_graph(..., placeholders=True)`` only: the layers are the file's,
    those values are not); ``notes``: one-line warnings for the user (a NIR graph read with the
    default ``dt``, a ``dt`` under which no neuron keeps any state).
    """

    network: ir.Network
    format: str
    stated: frozenset[str]
    dt: float | None = None
    placeholders: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


def open_graph(
    path: str | Path,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding | None = None,
    dt: float | None = None,
    placeholders: bool = False,
) -> GraphFile:
    """The deployment graph in the netx or NIR file ``path``, with what the file states (:class:`GraphFile`).

    ``time_steps`` and ``dt`` (NIR only, seconds) take precedence over the file's values;
    ``input_encoding`` applies to a file that does not state one, and must agree with one that
    does (a different encoding would change the first layer's weight exponent). A setting neither
    the file nor the caller gives is an error naming its command-line flag (``--time-steps``,
    ``--input-encoding``), or, with ``placeholders=True`` (to describe the file), filled with
    :data:`PLACEHOLDERS`. A NIR graph without an input encoding takes binary spikes and one without
    ``dt`` snnTorch's 1e-4 s (a note says so). Raises :class:`ModelFileError` (or the reader's
    :class:`~toolchain.errors.FormatError`) naming the file.
    """
    path = Path(path)
    fmt = graph_format(path)
    notes: list[str] = []
    graph_dt: float | None = None
    graph: Any = None
    meta: dict[str, Any] = {}
    if fmt == "netx":
        if dt is not None:
            raise ModelFileError(
                f"{path}: a netx file holds Loihi's integer decays and no time step: "
                "--dt applies to NIR files only"
            )
        stated = frozenset(("time_steps", "input_encoding")) if _netx_has_sidecar(path) else frozenset()
    else:
        from toolchain.formats.nir import DEFAULT_DT_S, load_graph

        graph = load_graph(path)
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        stated = frozenset(key for key in SETTINGS if key in meta)
        if dt is None and "dt" not in stated:
            notes.append(
                f"{path}: the graph states no time step (no dt in its metadata): its neurons are read "
                f"with dt = {DEFAULT_DT_S:g} s (snnTorch's convention); give --dt SECONDS if it was "
                "exported with another"
            )
    given = {"time_steps": time_steps, "input_encoding": input_encoding}
    filled = frozenset()
    if placeholders:
        optional = {"input_encoding"} if fmt == "nir" else set()  # NIR's default: binary spikes
        filled = frozenset(
            key for key, value in given.items() if value is None and key not in stated and key not in optional
        )
        given.update({key: PLACEHOLDERS[key] for key in filled})
    # a stated encoding is read from the file, then checked against the one asked for
    encoding = None if "input_encoding" in stated else given["input_encoding"]
    network = _read(path, fmt, graph, given["time_steps"], encoding, dt)
    if input_encoding is not None and input_encoding != network.input_encoding:
        raise ModelFileError(
            f"{path}: the file states {network.input_encoding} input; --input-encoding {input_encoding} "
            "contradicts it (leave --input-encoding out for this file)"
        )
    if fmt == "nir":
        from toolchain.formats.nir import DEFAULT_DT_S

        graph_dt = float(dt if dt is not None else meta.get("dt", DEFAULT_DT_S))
        notes += _nir_dt_notes(path, network, graph_dt)
    return GraphFile(network, fmt, stated, graph_dt, filled, tuple(notes))


def _read(
    path: Path, fmt: str, graph: Any, time_steps: int | None, input_encoding: str | None, dt: float | None
) -> ir.Network:
    """The reader's network; anything but a :class:`~toolchain.errors.ToolchainError` it raises
    becomes a :class:`ModelFileError` naming the file."""
    try:
        if fmt == "netx":
            reader = importlib.import_module("toolchain.formats.netx").read_netx
            network = reader(path, time_steps=time_steps, input_encoding=input_encoding)
        else:
            from toolchain.formats.nir import NirError, from_nir_graph

            try:
                network = from_nir_graph(
                    graph, time_steps=time_steps, input_encoding=input_encoding, dt=dt, name=path.stem
                )
            except ToolchainError as exc:
                raise NirError(f"{path}: {exc}") from None
    except ToolchainError:
        raise
    except Exception as exc:  # a reader must fail cleanly; never let a file crash a command
        raise ModelFileError(f"{path}: cannot read the {fmt} file ({one_line(exc)})") from None
    if not isinstance(network, ir.Network):
        raise ModelFileError(f"{path}: the {fmt} reader returned {type(network).__name__}, not ir.Network")
    return network


def _nir_dt_notes(path: Path, network: ir.Network, dt: float) -> list[str]:
    """A warning when, under ``dt``, every neuron forgets its current and voltage within one step."""
    from toolchain.loihi_numbers import DECAY_UNITY

    layers = network.synaptic_layers()
    if layers and all(
        layer.neurons.i_decay == DECAY_UNITY and layer.neurons.v_decay == DECAY_UNITY for layer in layers
    ):
        return [
            f"{path}: with dt = {dt:g} s every neuron forgets its current and voltage within one step "
            "(dt/tau = 1 for every time constant): if the graph's dt is smaller, give it with --dt SECONDS"
        ]
    return []


def _netx_has_sidecar(path: Path) -> bool:
    """Whether the netx file ``path`` has the ``/toolchain`` group (its links are only listed here;
    :func:`toolchain.formats.netx.read_netx` reads and checks the group)."""
    import h5py

    from toolchain.formats.netx import SIDECAR

    try:
        with h5py.File(path, "r") as handle:
            return handle.get(SIDECAR, getlink=True) is not None
    except Exception as exc:  # h5py reports corrupt files as OSError, sometimes as others
        raise ModelFileError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None


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
    "PLACEHOLDERS",
    "SETTINGS",
    "GraphFile",
    "ModelFileError",
    "detect_format",
    "graph_format",
    "open_graph",
    "read_graph",
]
