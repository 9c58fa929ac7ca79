"""NIR files: atomic writing, and reading untrusted files without a traceback from h5py or nir.

A NIR file is HDF5 as ``nir.write`` lays it out: ``/version`` and a ``/node`` group holding the
graph (``type = "NIRGraph"``, ``nodes/<name>/...``, ``edges``, ``metadata``). Before ``nir.read``
parses a file, :func:`load_graph` checks with h5py alone that it is HDF5, has that layout, names
only node types NIR knows, holds only numbers and strings, links to no other file, and is small
enough to load (every dataset's size is read from its header, so a gigantic or decompression-bomb
dataset is refused before a byte of it is allocated). Whatever still goes wrong inside ``nir.read``
(a missing field, a wrong type) becomes a :class:`NirError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import h5py
import nir

from toolchain.formats.hdf5 import file_links
from toolchain.formats.nir.convention import NirError
from toolchain.io import atomic_write
from toolchain.ir import MAX_LAYER_WEIGHTS
from toolchain.isolation import CAN_ISOLATE, memory_limit, run_isolated

#: HDF5 objects (groups, datasets) a NIR file may hold: far beyond any network the toolchain builds
MAX_OBJECTS = 100_000
#: numbers in all datasets together: the largest single layer the IR accepts
MAX_ELEMENTS = MAX_LAYER_WEIGHTS
#: bytes of one fixed-length string (a node type, a name, metadata); the header alone declares it,
#: so a small file could otherwise make the reader allocate gigabytes for a never-written string
MAX_STRING_BYTES = 2**20
#: bytes of all datasets together, as their headers declare them (8 bytes per number: float64)
MAX_BYTES = 8 * MAX_ELEMENTS
#: what reading one variable-length string dataset may allocate beyond four times the file's size
STRING_READ_SLACK_BYTES = 64 * 2**20
#: strings in one variable-length string dataset (names, edges: two per edge)
MAX_STRINGS = 2 * MAX_OBJECTS
#: subgraphs nested in subgraphs: far beyond any network, low enough that checking stays fast
MAX_GRAPH_DEPTH = 32
#: node types ``nir.read`` can build (nir 1.0.8)
NODE_TYPES = frozenset(nir.ir.__all__) - {"NIRNode", "str2NIRNode", "dict2NIRNode"}


def save_graph(graph: nir.NIRGraph, path: str | Path) -> Path:
    """``nir.write`` ``graph`` to ``path`` atomically (serialized in memory, then renamed into place)."""
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


#: the longest reading one file (checks and ``nir.read``) may take before it is stopped as a hang
READ_TIMEOUT_S = 120.0


def load_graph(path: str | Path, *, isolated: bool = True) -> nir.NIRGraph:
    """The ``nir.NIRGraph`` in ``path``; any problem with the file is a :class:`NirError` naming it.

    ``isolated`` (the default where ``os.fork`` exists) reads in a forked child process
    (:func:`toolchain.isolation.run_isolated`): libhdf5 runs the reading, and a crash of it or a
    read longer than :data:`READ_TIMEOUT_S` (libhdf5 can spin forever on a corrupt file) becomes a
    one-line :class:`NirError` naming the file instead of killing or hanging the process.
    """
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such NIR file")
    if isolated and CAN_ISOLATE:
        return run_isolated(
            lambda: _load_graph(path), path, timeout_s=READ_TIMEOUT_S, what="NIR file", error=NirError
        )
    return _load_graph(path)


def _load_graph(path: Path) -> nir.NIRGraph:
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise NirError(f"{path}: cannot read ({exc})") from None
    if not is_hdf5:
        raise NirError(f"{path}: not an HDF5 file (a NIR file is the HDF5 that nir.write produces)")
    try:
        with h5py.File(path, "r") as handle:
            _check_layout(handle, path)
    except NirError:
        raise
    except Exception as exc:  # h5py reports corrupt files as OSError, KeyError, RuntimeError, ...
        raise NirError(f"{path}: corrupt HDF5 file ({_describe(exc)})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                graph = nir.read(path)
            except ValueError as exc:
                if "type mismatch" not in str(exc):
                    raise
                # Norse's and sinabs's Input node holds the traced sample's batch or time axis, which
                # nir's type check rejects; the readers check every shape themselves (sample_shape)
                graph = nir.read(path, type_check=False)
    except Exception as exc:  # nir.read asserts, indexes and converts without checks of its own
        raise NirError(f"{path}: not a valid NIR graph ({_describe(exc)})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"{path}: the top node is a {type(graph).__name__}, expected a NIRGraph")
    return graph


def _check_layout(handle: h5py.File, path: Path) -> None:
    top = handle.get("node", getlink=True)
    if not isinstance(top, h5py.HardLink) or not isinstance(handle["node"], h5py.Group):
        raise NirError(f"{path}: no /node group (not a NIR file)")
    _check_contents(handle, path)
    _check_graph(handle["node"], path, "node")


def _check_contents(handle: h5py.File, path: Path) -> None:
    # every name UTF-8 text (h5py gives others as bytes, mixed with str), at most MAX_OBJECTS
    links = file_links(handle, path, limit=MAX_OBJECTS, error=NirError)
    elements = declared = 0
    for name, kind in links:
        if kind != "HardLink":
            raise NirError(f"{path}: /{name} is a {kind}; links to other objects are refused")
        item = handle[name]
        if not isinstance(item, h5py.Dataset):
            continue
        if item.external:
            raise NirError(f"{path}: /{name} stores its data in another file; refused")
        if item.dtype.kind not in "biufSOU" or item.dtype.names is not None:
            raise NirError(f"{path}: /{name} has dtype {item.dtype}, expected numbers or strings")
        if item.dtype.kind == "O" and h5py.check_string_dtype(item.dtype) is None:
            raise NirError(f"{path}: /{name} holds objects that are not strings")
        if item.dtype.kind == "O":  # variable-length: libhdf5 allocates the length the file states
            _read_bounded(item, path, name)
        if item.dtype.kind in "SU" and item.dtype.itemsize > MAX_STRING_BYTES:
            raise NirError(
                f"{path}: /{name} declares strings of {item.dtype.itemsize} bytes each, beyond the "
                f"{MAX_STRING_BYTES} any NIR field needs; refused before reading"
            )
        elements += int(item.size or 0)
        declared += int(item.size or 0) * item.dtype.itemsize
        if elements > MAX_ELEMENTS:
            raise NirError(
                f"{path}: /{name} {item.shape} brings the file beyond {MAX_ELEMENTS} numbers, "
                "more than any network the toolchain handles"
            )
        if declared > MAX_BYTES:
            raise NirError(
                f"{path}: /{name} brings the datasets' declared size beyond {MAX_BYTES} bytes, more "
                "than any network the toolchain handles; refused before reading"
            )


def _read_bounded(item: h5py.Dataset, path: Path, name: str) -> None:
    """Read a variable-length string dataset allocating at most :data:`STRING_READ_SLACK_BYTES`
    plus four times the file's size (libhdf5 allocates each string's length, read from the file,
    before reading it), so that ``nir.read`` reads it again only when it is sane."""
    if item.size is not None and item.size > MAX_STRINGS:
        raise NirError(f"{path}: /{name} holds {item.size} strings, beyond any NIR field")
    try:
        with memory_limit(STRING_READ_SLACK_BYTES + 4 * path.stat().st_size):
            item[()]
    except (MemoryError, OSError) as exc:
        raise NirError(
            f"{path}: /{name} declares strings longer than the file, or is unreadable ({_describe(exc)})"
        ) from None


def _check_graph(group: h5py.Group, path: Path, where: str, depth: int = 0) -> None:
    """``group`` is a NIRGraph with ``nodes`` and ``edges`` whose nodes all have a known type, and
    subgraphs nested at most :data:`MAX_GRAPH_DEPTH` deep."""
    if depth > MAX_GRAPH_DEPTH:
        raise NirError(f"{path}: subgraphs nested more than {MAX_GRAPH_DEPTH} deep (at /{where}); refused")
    kind = _read_type(group, path, where)
    if kind != "NIRGraph":
        raise NirError(f"{path}: /{where} has type {kind!r}, expected 'NIRGraph'")
    for key in ("nodes", "edges"):
        if key not in group:
            raise NirError(f"{path}: /{where} has no {key!r}")
    nodes = group["nodes"]
    if not isinstance(nodes, h5py.Group):
        raise NirError(f"{path}: /{where}/nodes is not a group")
    for name, node in nodes.items():
        if not isinstance(node, h5py.Group):
            raise NirError(f"{path}: node {name!r} is not a group")
        node_type = _read_type(node, path, f"{where}/nodes/{name}")
        if node_type not in NODE_TYPES:
            raise NirError(
                f"{path}: node {name!r} has unknown type {node_type!r} "
                f"(nir {nir.version} knows {', '.join(sorted(NODE_TYPES))})"
            )
        if node_type == "NIRGraph":
            _check_graph(node, path, f"{where}/nodes/{name}", depth + 1)


def _read_type(group: h5py.Group, path: Path, where: str) -> str:
    item = group.get("type")
    if not isinstance(item, h5py.Dataset) or item.shape != ():
        raise NirError(f"{path}: /{where} has no scalar 'type' string")
    value = item[()]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise NirError(f"{path}: /{where}/type is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise NirError(f"{path}: /{where}/type is {type(value).__name__}, expected a string")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
