"""How a NIR graph says it is a time-to-first-spike network (``docs/ttfs.md#nir``), read without torch.

The TTFS exporter (:mod:`toolchain.export.ttfs`) writes these marks; the CUBA reader
(:mod:`toolchain.formats.nir.reader`) refuses a graph that carries them, and ``toolchain inspect``
describes it as TTFS.
"""

from __future__ import annotations

from typing import Any

#: ``metadata["coding"]`` of a TTFS graph
NIR_CODING = "ttfs"
#: ``metadata["toolchain_node"]`` of a node that is a TTFS temporal kernel
NIR_KERNEL_TAG = "ttfs_kernel"


def is_ttfs_nir_graph(graph: Any) -> bool:
    """Whether a ``nir.NIRGraph`` is a TTFS graph: its metadata says so, or a node is a TTFS kernel."""
    meta = getattr(graph, "metadata", None)
    if isinstance(meta, dict) and metadata_text(meta.get("coding")) == NIR_CODING:
        return True
    return bool(ttfs_kernel_nodes(graph))


def ttfs_kernel_nodes(graph: Any) -> list[str]:
    """The names of ``graph``'s nodes tagged ``metadata.toolchain_node = 'ttfs_kernel'``."""
    found = []
    for name, node in getattr(graph, "nodes", {}).items():
        meta = getattr(node, "metadata", None)
        if isinstance(meta, dict) and metadata_text(meta.get("toolchain_node")) == NIR_KERNEL_TAG:
            found.append(name)
    return found


def metadata_text(value: Any) -> str | None:
    """A metadata value as text (h5py hands back bytes), ``None`` when it is neither."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


__all__ = ["NIR_CODING", "NIR_KERNEL_TAG", "is_ttfs_nir_graph", "metadata_text", "ttfs_kernel_nodes"]
