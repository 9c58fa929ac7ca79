"""``parallel_rows``: pieces claimed by the threads, each row once, errors raised to the caller."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future

import pytest
import torch

from toolchain.snn import compiled


@pytest.fixture
def three_threads(monkeypatch: pytest.MonkeyPatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    monkeypatch.setattr(compiled, "PARALLEL_ROWS_MIN", 10)
    yield
    torch.set_num_threads(threads)


def _ranges(rows: int, **options: int) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(first: int, stop: int) -> None:
        with lock:
            seen.append((first, stop))

    compiled.parallel_rows(rows, work, **options)
    return sorted(seen)


def test_every_row_once_in_pieces_that_depend_on_the_threads_only(three_threads):
    ranges = _ranges(1000)
    assert len(ranges) == 3 * compiled.PIECES_PER_THREAD
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert _ranges(1000) == ranges
    assert _ranges(25) == [(0, 12), (12, 25)]  # two pieces of at least PARALLEL_ROWS_MIN
    assert _ranges(19) == [(0, 19)]  # too few rows for two: one call
    assert _ranges(1000, pieces_per_thread=1) == [(0, 333), (333, 666), (666, 1000)]


def test_the_calling_thread_does_the_pieces_a_busy_pool_does_not_take(three_threads, monkeypatch):
    class NeverRuns:  # a pool whose threads another process keeps off the cores
        def submit(self, *args: object) -> Future:
            return Future()

    monkeypatch.setattr(compiled, "_pool", lambda workers: NeverRuns())
    callers = set()

    def work(first: int, stop: int) -> None:
        callers.add(threading.get_ident())

    compiled.parallel_rows(1000, work)  # returns: it does not wait for pieces nobody claimed
    assert callers == {threading.get_ident()}
    assert _ranges(1000)[-1][1] == 1000


def test_an_error_in_a_piece_is_raised_to_the_caller(three_threads):
    def work(first: int, stop: int) -> None:
        if first > 0:
            raise ValueError(f"rows {first} to {stop}")

    with pytest.raises(ValueError, match="rows"):
        compiled.parallel_rows(1000, work)
