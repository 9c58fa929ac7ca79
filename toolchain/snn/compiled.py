"""Numba compilation of the toolchain's scalar kernels, in one place.

The kernels are plain Python functions on numpy arrays (readable and testable as they are);
:func:`compile_kernel` compiles one with numba where numba is installed. Callers keep a tensor
fallback for where it is not (the tensors give the same values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def compile_kernel(function: Callable[..., Any], warm_up: list[tuple[Any, ...]]) -> Any:
    """``function`` compiled by numba (its machine code cached on disk, released GIL), or ``None``
    without numba. It is called once with each argument tuple of ``warm_up`` so that the
    compilation (or the load from the cache) for those argument types happens here, once per
    process, rather than inside the caller's first timed steps."""
    try:
        import numba
    except ImportError:
        return None
    compiled = numba.njit(cache=True, nogil=True)(function)
    for arguments in warm_up:
        compiled(*arguments)
    return compiled
