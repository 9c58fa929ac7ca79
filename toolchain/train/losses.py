"""The training loss and its terms: cross-entropy, knowledge distillation, activity and logits penalties.

Pure functions of tensors (no recipe, no model), each returning the **sum over the batch's samples**
of its per-sample value, so that the trainer can divide by the batch size (one process) or scale by
``processes / global batch size`` (DistributedDataParallel) and get the mean over the global batch
either way. With ``B`` samples, ``C`` classes, student logits ``s`` and teacher logits ``t``:

- :func:`cross_entropy_sum`: ``sum_b -log softmax(s_b)[y_b]``.
- :func:`kd_kl_sum`: ``tau^2 * sum_b KL(softmax(t_b / tau) || softmax(s_b / tau))``, Hinton et al.'s
  response-based distillation; the ``tau^2`` keeps its gradient on the scale of the cross-entropy's.
- :func:`kd_mse_sum`: ``sum_b mean_c (s_bc - t_bc)^2``.
- :func:`activation_sum`: per layer ``l`` the firing rate of each neuron ``r_bi = (1/T) sum_t s_tbi``
  (spikes normalized per time step, in [0, 1]), then ``sum_l w_l * sum_b mean_i r_bi`` (L1) or
  ``... mean_i r_bi^2`` (L2): normalized per neuron, so a layer's weight does not depend on its size.
- :func:`logits_l2_sum`: ``sum_b mean_c s_bc^2``, a penalty on the student's logit magnitude.

The logits of this project's SNNs are output spike counts summed over the ``T`` steps (``docs/training.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [B, C]`` with integer ``labels [B]``, summed over the batch."""
    return functional.cross_entropy(logits, labels, reduction="sum")


def kd_kl_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(teacher / tau) || softmax(student / tau))`` summed over the batch ``[B, C]``."""
    _check_pair(student, teacher)
    if temperature <= 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature}")
    log_q = functional.log_softmax(student / temperature, dim=1)
    log_p = functional.log_softmax(teacher.detach() / temperature, dim=1)
    kl = functional.kl_div(log_q, log_p, reduction="sum", log_target=True)
    return kl * temperature**2


def kd_mse_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the classes of ``(student - teacher)^2``, summed over the batch ``[B, C]``."""
    _check_pair(student, teacher)
    return ((student - teacher.detach()) ** 2).mean(dim=1).sum()


def firing_rates(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, B, *shape]`` as each neuron's rate per time step ``[B, neurons]``, in [0, 1]."""
    if spikes.dim() < 3:
        raise ValueError(f"spikes: expected [T, B, *shape], got shape {tuple(spikes.shape)}")
    return spikes.flatten(2).mean(dim=0)


def activation_sum(
    spikes: Mapping[str, torch.Tensor], weights: Mapping[str, float], norm: str
) -> torch.Tensor:
    """``sum_l weights[l] * sum_b mean_i r_bi^p`` over the layers named in ``weights``.

    ``spikes``: each layer's spikes ``[T, B, *shape]``; ``norm``: ``"l1"`` (p = 1) or ``"l2"``
    (p = 2); a layer with weight 0 is skipped. Raises ``KeyError`` for a non-zero weight of a layer
    without spikes.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm: expected 'l1' or 'l2', got {norm!r}")
    total: torch.Tensor | None = None
    for name, weight in weights.items():
        if weight == 0:
            continue  # e.g. the output layer, or a readout that never fires (no spikes recorded)
        if name not in spikes:
            raise KeyError(name)
        rates = firing_rates(spikes[name])
        per_sample = rates.mean(dim=1) if norm == "l1" else (rates**2).mean(dim=1)
        term = per_sample.sum() * weight
        total = term if total is None else total + term
    if total is None:
        first = next(iter(spikes.values()))
        return first.new_zeros(())
    return total


def logits_l2_sum(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the classes of ``logits^2`` ``[B, C]``, summed over the batch."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected [B, C], got shape {tuple(logits.shape)}")
    return (logits**2).mean(dim=1).sum()


@dataclass
class Objective:
    """The training loss of a recipe's ``[distill]`` and ``[regularization]`` (resolved by the trainer)::

        loss = (1 - alpha) * CE + alpha * KD + activation_weight * A + logits_weight * L

    without the KD term (and without ``1 - alpha``) when there is no teacher, without ``A`` when
    ``activation`` is ``None``, without ``L`` when ``logits_weight`` is 0. ``teacher`` gives the
    teacher's logits of training samples by index. ``layer_weights``: the weight of each layer in
    ``A`` (every layer the network has, by name).
    """

    alpha: float = 0.0
    distill: str | None = None  # "kl" or "mse"; None: no teacher
    temperature: float = 1.0
    teacher: Callable[[np.ndarray], torch.Tensor] | None = None
    activation: str | None = None  # "l1" or "l2"; None: no activation term
    activation_weight: float = 0.0
    layer_weights: dict[str, float] = field(default_factory=dict)
    logits_weight: float = 0.0

    @property
    def term_names(self) -> list[str]:
        """The logged terms, in order: ``cross_entropy`` then those configured."""
        names = ["cross_entropy"]
        if self.distill is not None:
            names.append(f"distillation_{self.distill}")
        if self.activation is not None:
            names.append(f"activation_{self.activation}")
        if self.logits_weight > 0:
            names.append("logits_l2")
        return names

    def weights(self) -> dict[str, float]:
        """Each term's weight in the loss, by :attr:`term_names`."""
        kd = self.distill is not None
        weights = {"cross_entropy": 1.0 - self.alpha if kd else 1.0}
        if kd:
            weights[f"distillation_{self.distill}"] = self.alpha
        if self.activation is not None:
            weights[f"activation_{self.activation}"] = self.activation_weight
        if self.logits_weight > 0:
            weights["logits_l2"] = self.logits_weight
        return weights

    def __call__(
        self,
        logits: torch.Tensor,
        spikes: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: np.ndarray,
        scale: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(scale * weighted sum of the terms' batch sums, each term's batch sum)``.

        ``scale`` is ``1 / batch size`` in one process (the loss is then the batch mean).
        """
        sums = {"cross_entropy": cross_entropy_sum(logits, labels)}
        if self.distill is not None:
            if self.teacher is None:
                raise ValueError("an Objective with distillation needs a teacher")
            target = self.teacher(indices).to(logits.device)
            kd = (
                kd_kl_sum(logits, target, self.temperature)
                if self.distill == "kl"
                else kd_mse_sum(logits, target)
            )
            sums[f"distillation_{self.distill}"] = kd
        if self.activation is not None:
            sums[f"activation_{self.activation}"] = activation_sum(
                spikes, self.layer_weights, self.activation
            )
        if self.logits_weight > 0:
            sums["logits_l2"] = logits_l2_sum(logits)
        weights = self.weights()
        total = sum((weights[name] * value for name, value in sums.items()), logits.new_zeros(()))
        return total * scale, {name: float(value.detach()) for name, value in sums.items()}


def _check_pair(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher logits: expected the same shape [B, C], got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)}"
        )


__all__ = [
    "Objective",
    "activation_sum",
    "cross_entropy_sum",
    "firing_rates",
    "kd_kl_sum",
    "kd_mse_sum",
    "logits_l2_sum",
]
