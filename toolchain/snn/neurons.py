"""Neuron populations: thin torch modules around the pure step functions of :mod:`toolchain.snn.dynamics`.

Tensors are time-major ``[T, B, ...]``; state starts at zero for every call (every sample).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from toolchain.snn.dynamics import CubaState, cuba_step


class CubaLIF(nn.Module):
    """A population of CUBA-LIF neurons stepped over time: input current ``[T, B, ...]`` -> spikes.

    State starts at zero for every call (every sample), so samples never leak into each other.
    ``current_decay``, ``voltage_decay`` are fractions lost per step; ``threshold`` is in the same
    units as the input current.
    """

    def __init__(
        self,
        current_decay: float,
        voltage_decay: float,
        threshold: float,
        spike_fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        super().__init__()
        self.current_decay = current_decay
        self.voltage_decay = voltage_decay
        self.threshold = threshold
        self.spike_fn = spike_fn

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        state = CubaState.zeros_like(current[0])
        spikes = []
        for x_t in current:
            s_t, state = cuba_step(
                state,
                x_t,
                self.current_decay,
                self.voltage_decay,
                self.threshold,
                spike_fn=self.spike_fn,
            )
            spikes.append(s_t)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return (
            f"current_decay={self.current_decay}, voltage_decay={self.voltage_decay}, "
            f"threshold={self.threshold}"
        )
