"""Learning-rate schedules: the rate of each epoch as a pure function of the epoch.

Being a function of the epoch alone (no scheduler state), a resumed run continues on the same curve,
and the student and its ANN teacher share the same rule.
"""

from __future__ import annotations

import math

import torch


def epoch_learning_rate(base: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (1-based) of ``epochs``: ``base`` (``constant``), or cosine
    annealing towards 0 (``cosine``: ``base * (1 + cos(pi * (epoch - 1) / epochs)) / 2``, torch's
    ``CosineAnnealingLR`` stepped once per epoch). A function of the epoch alone, so a resumed run
    continues on the same curve without a scheduler state."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs, 1))) / 2.0
    raise ValueError(f"schedule: expected 'constant' or 'cosine', got {schedule!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Give every parameter group of ``optimizer`` this learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


__all__ = ["epoch_learning_rate", "set_learning_rate"]
