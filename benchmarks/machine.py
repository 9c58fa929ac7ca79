"""What the benchmark tables say about the CPU that produced them."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_description() -> str:
    """The CPU's model name and the instruction set of torch's CPU kernels (``AVX2``, ``AVX512``):
    both change the speeds, and the instruction set changes float rounding (so float training's
    results) too."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, torch's CPU kernels {torch.backends.cpu.get_cpu_capability()}"
