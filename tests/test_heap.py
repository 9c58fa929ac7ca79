"""glibc's malloc thresholds raised once per process (toolchain.heap): freed memory is reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from toolchain import heap

needs_glibc = pytest.mark.skipif(not heap.is_glibc(), reason="the thresholds are glibc's")

#: a loop that mallocs, fills and frees 8, 8 and 4 MiB five times; prints the minor page faults of
#: the last four rounds (the first one grows the heap in any case)
_LOOP = textwrap.dedent(
    """
    import ctypes, json, resource, sys
    from toolchain import heap
    raised = heap.keep_freed_memory() if sys.argv[1] == "raise" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    sizes = (8 << 20, 8 << 20, 4 << 20)
    faults = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(size) for size in sizes]
        for block, size in zip(blocks, sizes):
            libc.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"raised": raised, "faults": faults[1:]}))
    """
)


def _loop(mode: str, **env: str) -> dict:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _LOOP, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_glibc
def test_raised_thresholds_keep_freed_blocks_for_the_next_round() -> None:
    # with glibc's defaults each round's 8 MiB blocks are mapped afresh (2 x 2048 pages at least)
    assert min(_loop("defaults")["faults"]) >= 4096
    raised = _loop("raise")
    assert raised["raised"] is True
    assert max(raised["faults"]) < 64  # the same heap pages every round


@needs_glibc
def test_the_environment_turns_it_off() -> None:
    off = _loop("raise", **{heap.OPT_OUT_VARIABLE: "0"})
    assert off["raised"] is False
    assert min(off["faults"]) >= 4096


def test_it_raises_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_raised", False)
    monkeypatch.delenv(heap.OPT_OUT_VARIABLE, raising=False)
    assert heap.keep_freed_memory() is heap.is_glibc()
    assert heap.keep_freed_memory() is False


def test_is_glibc_reads_the_c_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    assert heap.is_glibc()

    def unknown(name: str) -> str:
        raise ValueError("unrecognized configuration name")

    monkeypatch.setattr(os, "confstr", unknown)
    assert not heap.is_glibc()
    monkeypatch.setattr(heap, "_raised", False)
    assert heap.keep_freed_memory() is False  # not glibc: nothing mapped


def test_simulate_and_fit_keep_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolchain import ir
    from toolchain.sim import reference

    calls: list[str] = []
    monkeypatch.setattr(reference, "keep_freed_memory", lambda: calls.append("simulate"))
    neurons = ir.CubaNeurons(i_decay=1024, v_decay=128, vth_mant=256)
    network = ir.Network("tiny", (3,), "spikes", 2, (ir.Dense("output", np.ones((2, 3), np.int64), neurons),))
    reference.simulate(network, np.zeros((2, 1, 3), np.uint8))
    assert calls == ["simulate"]

    from toolchain.train import trainer

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    monkeypatch.setattr(trainer, "keep_freed_memory", stop)
    with pytest.raises(Stop):
        trainer.fit(None, None)  # type: ignore[arg-type]  # stops before it reads either
