"""The CLI as a user runs it, for the tests that go through the real entry point.

``pyproject.toml`` puts ``tests/`` (and ``benchmarks/``) on ``sys.path``
(``[tool.pytest.ini_options].pythonpath``), so test modules import :func:`toolchain` from here
(``from cli_runner import toolchain``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "toolchain"


def toolchain(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout_s: float = 900,
    module: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``toolchain ARGS`` in a subprocess (the console script, or ``python -m toolchain`` when
    pip wrote none or ``module`` is set), one thread, unbuffered, ``env`` added to the environment;
    returns its exit status, stdout and stderr (text) without raising."""
    command = [str(SCRIPT)] if SCRIPT.exists() and not module else [sys.executable, "-m", "toolchain"]
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
