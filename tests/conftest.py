"""Fixtures shared by the test modules."""

import subprocess
from collections.abc import Callable

import pytest
from cli_runner import toolchain

from toolchain.data import Dataset, load_dataset


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
