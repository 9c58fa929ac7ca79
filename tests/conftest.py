"""Fixtures shared by the test modules."""

import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from cli_runner import toolchain
from torch.utils._python_dispatch import TorchDispatchMode

from toolchain.data import Dataset, load_dataset
from toolchain.snn import compiled


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """scikit-learn's digits as the toolchain loads them (1,347 train / 450 test images, flat).

    A dataset is read-only for the tests (training and simulation never write into it), so one load
    serves the whole session."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`cli_runner.toolchain`: ``cli("simulate", "model.net", ...)`` runs a command as a user would."""
    return toolchain


class _NoTorchOperators(TorchDispatchMode):
    """Fails on any torch operator (factory functions included) run while it is active."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        raise AssertionError(f"torch operator {func} on a parallel_rows pool thread")


@pytest.fixture
def torch_free_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every piece of work that :func:`toolchain.snn.compiled.parallel_rows` hands to its pool runs
    under a mode that fails on any torch operator: on a pool thread one would start an OpenMP team of
    its own beside torch's (see ``parallel_rows``)."""
    make_pool = compiled._pool

    class _Checked:
        def __init__(self, pool: ThreadPoolExecutor) -> None:
            self.pool = pool

        def submit(self, work: Callable[..., None], *args: int) -> Future:
            def checked() -> None:
                with _NoTorchOperators():
                    work(*args)

            return self.pool.submit(checked)

    monkeypatch.setattr(compiled, "_pool", lambda workers: _Checked(make_pool(workers)))
