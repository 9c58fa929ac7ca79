"""Numba compilation of the toolchain's scalar kernels, in one place.

The kernels are plain Python functions on numpy arrays (readable and testable as they are);
:func:`compile_kernel` compiles one with numba where numba is installed. Callers keep a tensor
fallback for where it is not (the tensors give the same values).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


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


def compile_for_floats(
    kernels: Sequence[tuple[Callable[..., Any], Callable[[Any], tuple[Any, ...]]]],
) -> list[Any] | None:
    """Each ``(function, arguments)`` of ``kernels`` compiled by :func:`compile_kernel`, warmed up
    with ``arguments(dtype)`` for float32 and float64; ``None`` without numba."""
    compiled = []
    for function, arguments in kernels:
        kernel = compile_kernel(function, [arguments(dtype) for dtype in (np.float32, np.float64)])
        if kernel is None:
            return None
        compiled.append(kernel)
    return compiled


def channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` ``[N, C, H, W]`` lies in channels-last memory order (``[N, H, W, C]``, as a 2-D
    convolution on the CPU leaves it) and not also in the default one (shapes with one channel or
    one pixel are both): the order in which kernels on its memory must then walk it."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def parallel_rows(rows: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(first, stop)`` over ``[0, rows)`` split into ``torch.get_num_threads()`` ranges of
    rows, on that many threads (the kernels release the GIL); one call on the calling thread where
    that is one thread or the rows are few."""
    threads = min(torch.get_num_threads(), rows // PARALLEL_ROWS_MIN)
    if threads <= 1:
        work(0, rows)
        return
    bounds = [rows * part // threads for part in range(threads + 1)]
    pending = [_pool(threads - 1).submit(work, bounds[p], bounds[p + 1]) for p in range(1, threads)]
    work(bounds[0], bounds[1])
    for future in pending:
        future.result()


#: the fewest rows worth a thread of their own
PARALLEL_ROWS_MIN = 256
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads, made anew after a fork (a child has none of its parent's
    threads) or when the number changes."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="compiled-kernels"))
    return _POOL[2]
