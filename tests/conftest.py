"""Fixtures shared by the test modules."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from toolchain.data import Dataset, load_dataset


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """scikit-learn's digits as the toolchain loads them (1,347 train / 450 test images, flat).

    A dataset is read-only for the tests (training and simulation never write into it), so one load
    serves the whole session."""
    return load_dataset("digits")


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "toolchain"


def run_toolchain(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout_s: float = 900
) -> subprocess.CompletedProcess:
    """The real entry point (the console script, else ``python -m toolchain``) in a subprocess, one
    thread, unbuffered; its exit status, stdout and stderr."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "toolchain"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=environment,
        check=False,
    )


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`run_toolchain`: ``cli("simulate", "model.net", ...)`` runs a command as a user would."""
    return run_toolchain
