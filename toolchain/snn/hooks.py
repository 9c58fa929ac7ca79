"""What the trainer asks of any network it trains: :class:`TrainableNetwork`, and neutral defaults.

The rate-coded SNN (:class:`toolchain.snn.models.SpikingNetwork`) and the TTFS surrogate DNN
(:class:`toolchain.snn.ttfs_model.TTFSNetwork`) both take ``[T, B, ...]`` input and return an
object with ``logits`` and ``spike_counts_per_sample()``; a training method's own schedule and
regularizers are the two hooks below, which :class:`TrainingHooks` gives a network that has none.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TrainableNetwork(Protocol):
    """A network :func:`toolchain.train.trainer.train` can train."""

    #: True when a training step may leave some parameters out of the loss (DDP must look for them)
    may_skip_parameters: bool

    def __call__(self, x: torch.Tensor) -> Any:
        """``[T, B, *input_shape]`` -> an output with ``logits`` ``[B, classes]`` and
        ``spike_counts_per_sample()``."""

    def begin_epoch(self, epoch: int) -> None:
        """Called before every training epoch (1-based)."""

    def training_penalty(self, epoch: int) -> torch.Tensor | None:
        """A term added to every training step's loss, or ``None``."""


class TrainingHooks:
    """The hooks of :class:`TrainableNetwork` doing nothing: mixed into a network without a
    training schedule or regularizers of its own."""

    may_skip_parameters: bool = False

    def begin_epoch(self, epoch: int) -> None:
        """No per-epoch schedule."""

    def training_penalty(self, epoch: int) -> torch.Tensor | None:
        """No extra loss term."""
        return None


__all__ = ["TrainableNetwork", "TrainingHooks"]
