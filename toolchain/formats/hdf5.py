"""What both HDF5 readers (netx, NIR) check of a file before reading it: its links and their names.

HDF5 stores an object's name as bytes; h5py hands back a name that is not UTF-8 as ``bytes`` and
every other name as ``str``, so one corrupt name makes a group's keys a mix of both (sorting or
comparing them raises ``TypeError``, and inside h5py's own visiting callback the error comes out
mangled as a ``SystemError``). :func:`file_links` lists every link with libhdf5's low-level visit,
which hands over the raw bytes, and refuses a name that is not UTF-8 text, naming it, before
anything else reads the file.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from toolchain.errors import FormatError

LINK_KINDS = {
    h5py.h5l.TYPE_HARD: "HardLink",
    h5py.h5l.TYPE_SOFT: "SoftLink",
    h5py.h5l.TYPE_EXTERNAL: "ExternalLink",
}


def file_links(
    handle: h5py.File, path: Path, *, limit: int, error: type[FormatError] = FormatError
) -> list[tuple[str, str]]:
    """Every link in the open file ``handle``: (its name from the root, as text; its kind,
    ``"HardLink"``, ``"SoftLink"``, ``"ExternalLink"`` or ``"user-defined link"``).

    Raises ``error`` naming ``path`` for more than ``limit`` links (the visit stops there) or a
    name that is not UTF-8 text.
    """
    raw: list[tuple[bytes, int]] = []

    def collect(name: bytes, info: h5py.h5l.LinkInfo) -> int | None:
        raw.append((name, info.type))
        return 1 if len(raw) > limit else None  # a result other than None stops the visit

    handle.id.links.visit(collect, info=True)
    if len(raw) > limit:
        raise error(f"{path}: more than {limit} HDF5 objects, beyond any file the toolchain writes")
    links = []
    for name, kind in raw:
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            shown = repr(name) if len(name) <= 80 else repr(name[:80]) + "..."
            raise error(f"{path}: the HDF5 object name {shown} is not UTF-8 text (a corrupt file)") from None
        links.append((text, LINK_KINDS.get(kind, "user-defined link")))
    return links


__all__ = ["file_links"]
