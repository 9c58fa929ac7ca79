"""Freed memory kept for reuse: glibc's malloc thresholds at their highest, once per process.

glibc's ``malloc`` maps a block above its *mmap threshold* afresh (and unmaps it when it is freed),
and gives the top of its heap back to the system once more than its *trim threshold* is free
there. Memory mapped or taken back afresh is paged in at its first use, one minor page fault per
4 KiB page, a few microseconds each on a virtual machine. Both thresholds start at 128 KiB and rise
when a mapped block is freed: the mmap threshold to that block's size, up to 32 MiB on 64-bit
systems, the trim threshold to twice that (``mallopt(3)``, ``M_MMAP_THRESHOLD``). A training step
or a simulation chunk whose tensors are a few MiB each, with a peak of more than twice its largest
tensor, so gives part of its memory back at every step and pages it in again at the next:
``benchmarks/sim_speed.py`` reports the page faults per sample-step, and the training benchmarks
time every framework with the thresholds fixed by ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` for that reason.

:func:`keep_freed_memory` maps and frees one block just under the 32 MiB ceiling, the first time
it is called in a process, so that both thresholds stand where any process that once freed such a
block has them: tensors under 32 MiB come from the heap, and up to 64 MiB of freed heap is kept.
Some paging in remains while the heap grows to the loop's size: torch aligns its blocks to 64
bytes (``posix_memalign``), and the small remainders that alignment leaves keep some freed blocks
from merging, so the first steps still take new memory.

It changes no setting of the allocator (no ``mallopt``: glibc's own adjustment stays on, and
thresholds fixed in the environment stay as they are); it does nothing where the C library is not
glibc, or where the environment sets ``TOOLCHAIN_KEEP_FREED_MEMORY=0``.
:func:`toolchain.train.trainer.fit` and :func:`toolchain.sim.reference.simulate` call it;
``benchmarks/heap.py`` measures what it changes.
"""

from __future__ import annotations

import ctypes
import os

#: glibc's largest dynamic mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``)
GLIBC_MMAP_THRESHOLD_MAX_BYTES = 32 * 2**20
#: the block mapped and freed: under the ceiling by more than a block's header and page rounding
RAISING_BLOCK_BYTES = GLIBC_MMAP_THRESHOLD_MAX_BYTES - 2**16

#: the environment variable that turns :func:`keep_freed_memory` off (value ``0``)
OPT_OUT_VARIABLE = "TOOLCHAIN_KEEP_FREED_MEMORY"

_raised = False


def is_glibc() -> bool:
    """Whether this process's C library is glibc (whose thresholds this module raises)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (musl, macOS)
        return False
    return bool(version) and version.startswith("glibc")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to their dynamic maximum (once per process; see the
    module docstring). Returns whether a block was mapped and freed by this call: ``False`` when
    already done, where the C library is not glibc, or when :data:`OPT_OUT_VARIABLE` is ``0``."""
    global _raised
    if _raised or os.environ.get(OPT_OUT_VARIABLE) == "0" or not is_glibc():
        return False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(RAISING_BLOCK_BYTES)  # mapped, never touched: no page is faulted in
    if block is None:  # no memory for it: nothing raised, the next call tries again
        return False
    libc.free(block)
    _raised = True
    return True


__all__ = [
    "GLIBC_MMAP_THRESHOLD_MAX_BYTES",
    "OPT_OUT_VARIABLE",
    "RAISING_BLOCK_BYTES",
    "is_glibc",
    "keep_freed_memory",
]
