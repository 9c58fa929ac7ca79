"""Numba compilation of the toolchain's scalar kernels, in one place.

The kernels are plain Python functions on numpy arrays (readable and testable as they are);
:func:`compile_kernel` compiles one with numba where numba is installed. Callers keep a tensor
fallback for where it is not (the tensors give the same values).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


def compile_kernel(
    function: Callable[..., Any], warm_up: list[tuple[Any, ...]], ieee_division: bool = False
) -> Any:
    """``function`` compiled by numba (its machine code cached on disk, released GIL), or ``None``
    without numba. It is called once with each argument tuple of ``warm_up`` so that the
    compilation (or the load from the cache) for those argument types happens here, once per
    process, rather than inside the caller's first timed steps. ``ieee_division``: a division by
    zero gives what IEEE 754 (and numpy, and torch) gives instead of raising ``ZeroDivisionError``
    as Python does; without the check on each divisor a loop with a division can vectorize."""
    try:
        import numba
    except ImportError:
        return None
    error_model = "numpy" if ieee_division else "python"
    compiled = numba.njit(cache=True, nogil=True, error_model=error_model)(function)
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


def channels_last_permutation(x: torch.Tensor) -> tuple[int, ...] | None:
    """The axes of ``x`` ``[N, C, *spatial]`` (one or two spatial axes) in their memory order,
    ``(0, 2, ..., 1)``, where ``x`` lies with its channels last and not also in the default order
    (a 2-D convolution's output on the CPU, or a 1-D one computed as a 2-D one); ``None``
    otherwise. For four axes it is :func:`channels_last`'s order."""
    if x.dim() not in (3, 4) or x.is_contiguous():
        return None
    order = (0, *range(2, x.dim()), 1)
    return order if x.permute(order).is_contiguous() else None


def steps_channels_last_permutation(sequence: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation of ``sequence`` ``[T, B, C, *spatial]`` (one or two spatial axes) to
    ``[T, B, *spatial, C]`` where its first step lies with its channels last
    (:func:`channels_last_permutation`); ``None`` otherwise, and for no steps."""
    if sequence.dim() not in (4, 5) or sequence.shape[0] == 0:
        return None
    step_order = channels_last_permutation(sequence[0])
    return None if step_order is None else (0, *(axis + 1 for axis in step_order))


def inverse_permutation(order: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes ``order`` (``x.permute(order).permute(inverse) is x``'s layout)."""
    return tuple(order.index(axis) for axis in range(len(order)))


#: the fewest rows worth a piece of their own
PARALLEL_ROWS_MIN = 256
#: the most pieces per thread: more pieces let the threads on free cores take over the rows of one
#: that waits for its core, at a claim (a few microseconds) per piece
PIECES_PER_THREAD = 4


def parallel_rows(
    rows: int, work: Callable[[int, int], None], pieces_per_thread: int = PIECES_PER_THREAD
) -> None:
    """Run ``work(first, stop)`` over ``[0, rows)`` on up to ``torch.get_num_threads()`` threads
    (the kernels release the GIL); one call on the calling thread where that is one thread or the
    rows are too few for two pieces of :data:`PARALLEL_ROWS_MIN`.

    The rows are cut into up to ``pieces_per_thread`` pieces per thread, which the threads claim
    one after the other (1 where each piece costs a buffer of its own, as the event synapse's
    partial weight gradients do); the calling thread claims too and waits only for pieces already
    claimed. So a thread that another process keeps off its core costs at most the piece it holds,
    not its share of the rows, and the pieces (their bounds, and so the order of any sums across
    them) depend on the number of threads only, not on which thread ran which.

    ``work`` must call no torch operator, not even a factory such as ``torch.zeros`` (numpy is
    fine): on a pool thread an operator large enough for a parallel region starts an OpenMP team of
    that thread's own, whose threads then spin beside torch's team on the same cores and slow every
    later operator of the process. An exception in ``work`` is raised here once the claimed pieces
    are done.
    """
    threads = min(torch.get_num_threads(), rows // PARALLEL_ROWS_MIN)
    if threads <= 1:
        work(0, rows)
        return
    pieces = min(rows // PARALLEL_ROWS_MIN, threads * max(1, pieces_per_thread))
    bounds = [rows * piece // pieces for piece in range(pieces + 1)]
    claims = itertools.count()  # next() on it is atomic: each piece is claimed once
    lock = threading.Lock()
    all_done = threading.Event()
    done = [0]
    errors: list[BaseException] = []

    def run_pieces() -> None:
        while (piece := next(claims)) < pieces:
            try:
                work(bounds[piece], bounds[piece + 1])
            except BaseException as error:  # raised again on the calling thread
                errors.append(error)
            with lock:
                done[0] += 1
                if done[0] == pieces:
                    all_done.set()

    pool = _pool(threads - 1)
    for _ in range(threads - 1):
        pool.submit(run_pieces)
    run_pieces()
    all_done.wait()
    if errors:
        raise errors[0]


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
