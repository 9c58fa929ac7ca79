"""Synapse and structural layers of spiking networks; tensors are time-major ``[T, B, ...]``."""

from __future__ import annotations

import torch
from torch import nn


class TimeDistributed(nn.Module):
    """Apply a per-step module (``nn.Linear``, a convolution) to all ``T`` steps at once."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[:2]
        y = self.module(x.reshape(steps * batch, *x.shape[2:]))
        return y.reshape(steps, batch, *y.shape[1:])
