"""The temporal kernel of time-to-first-spike (TTFS) coding: the one place its equations live.

After Park & Yoon, "Training Energy-Efficient Deep Spiking Neural Networks with Time-to-First-Spike
Coding" (2021, arXiv 2106.02568). A layer's kernel has a time constant ``tau`` (steps), a delay
``t_d`` (steps) and a window ``T_w`` (steps). A non-negative value ``x`` is carried by the time of
one spike:

- **encode**: ``t = ReLU(t_d - tau * ln(ReLU(x) + eps))``: larger values spike earlier, values
  above ``x_0 = exp(t_d / tau)`` at ``t = 0``. :func:`encode_time` leaves ``t`` continuous,
  rounds it with a straight-through gradient (training) or takes its ceiling (inference: a neuron
  fires at the first whole step at which its potential reaches the decaying threshold);
- **decode**: ``x_hat = exp((t_d - t) / tau)`` (the kernel's value at the spike time, what the
  spike adds to each postsynaptic potential, times the weight), and 0 when ``t > T_w``: no spike
  inside the window. On whole steps that is the issue's ``x_hat < x_T = exp((t_d - T_w) / tau)``;
  the comparison is made on ``t`` (exact on integers), so spike times ``0, 1, ..., T_w`` are valid
  (the authors' clip ``x >= x_T`` admits ``t = T_w`` too).

The representable range of a layer is ``[x_T, x_0]`` (:func:`window_bounds`): a pre-activation
below ``x_T`` makes no spike, one above ``x_0`` spikes at ``t = 0`` and decodes to ``x_0``.

Regularizers (plain functions of the parameters; the training loop multiplies by the recipe's
coefficients):

- :func:`kernel_regularization`: ``sum_l (tau_l - tau_0)**2 + (t_d,l - t_d,0)**2``;
- :func:`expected_spikes_bn`: the kernel-aware batch-norm penalty. In training mode a batch norm
  makes the pre-activations of channel ``c`` have batch mean ``beta_c`` and standard deviation
  ``|gamma_c|``. Modelling them as normal, ``N(beta_c, gamma_c**2)``, a neuron of that channel
  fires (its value reaches ``x_T``) with probability ``Phi((beta_c - x_T) / |gamma_c|)``, so the
  expected number of spikes of a layer per sample is ``sum_c m_c * Phi((beta_c - x_T) / |gamma_c|)``
  with ``m_c`` neurons per channel (1 after a dense layer, ``H * W`` after a convolution).
  Penalising it lowers the expected spike count: its gradient lowers ``beta_c`` and, for a channel
  whose mean lies below ``x_T``, ``|gamma_c|`` (see ``docs/ttfs.md``).
- :func:`relaxation_probability`: the schedule of the stochastically relaxed activation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: default ``eps`` of the encoding: keeps ``ln`` finite at ``x = 0`` (such an input never spikes)
DEFAULT_EPSILON = 1e-30
#: encoding modes of :func:`encode_time`
ENCODE_MODES = ("continuous", "round", "ceil", "ceil_st")


def kernel_value(t: torch.Tensor, tau: torch.Tensor | float, t_d: torch.Tensor | float) -> torch.Tensor:
    """``exp((t_d - t) / tau)``: the kernel at time ``t`` (decoded value, and the firing threshold)."""
    return torch.exp((t_d - t) / tau)


def encode_time(
    x: torch.Tensor,
    tau: torch.Tensor | float,
    t_d: torch.Tensor | float,
    *,
    mode: str = "ceil",
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """Spike times ``ReLU(t_d - tau * ln(ReLU(x) + epsilon))`` of values ``x`` (any shape).

    ``mode``: ``"continuous"`` (no rounding), ``"round"`` (nearest whole step in the forward pass,
    identity gradient: straight-through), ``"ceil"`` (inference) or ``"ceil_st"`` (the ceiling
    in the forward pass with the straight-through gradient: training on inference's times). A time
    beyond the window means "no spike"; :func:`decode_time` applies the window.
    """
    if mode not in ENCODE_MODES:
        raise ValueError(f"encode_time: mode must be one of {ENCODE_MODES}, got {mode!r}")
    t = torch.relu(t_d - tau * torch.log(torch.relu(x) + epsilon))
    if mode == "round":
        return t + (torch.round(t) - t).detach()
    if mode == "ceil":
        return torch.ceil(t)
    if mode == "ceil_st":
        return t + (torch.ceil(t) - t).detach()
    return t


def decode_time(
    t: torch.Tensor, tau: torch.Tensor | float, t_d: torch.Tensor | float, window_steps: int
) -> torch.Tensor:
    """Values ``exp((t_d - t) / tau)`` of spike times ``t``, 0 where ``t > window_steps`` (no spike)."""
    return torch.where(t <= window_steps, kernel_value(t, tau, t_d), torch.zeros_like(t))


def spikes(t: torch.Tensor, window_steps: int) -> torch.Tensor:
    """1 where a spike time ``t`` lies inside the window (``t <= window_steps``), else 0 (float)."""
    return (t <= window_steps).to(t.dtype)


def window_bounds(
    tau: torch.Tensor | float, t_d: torch.Tensor | float, window_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_T, x_0) = (exp((t_d - T_w) / tau), exp(t_d / tau))``: the representable range."""
    tau_t = torch.as_tensor(tau, dtype=torch.get_default_dtype())
    t_d_t = torch.as_tensor(t_d, dtype=tau_t.dtype)
    return kernel_value(torch.as_tensor(float(window_steps)), tau_t, t_d_t), torch.exp(t_d_t / tau_t)


def kernel_regularization(
    taus: Sequence[torch.Tensor], delays: Sequence[torch.Tensor], tau_0: float, t_d_0: float
) -> torch.Tensor:
    """``sum_l (tau_l - tau_0)**2 + (t_d,l - t_d,0)**2`` over the layers' kernel parameters."""
    if len(taus) != len(delays):
        raise ValueError(f"kernel_regularization: {len(taus)} time constants but {len(delays)} delays")
    if not taus:
        return torch.zeros(())
    terms = [
        ((tau - tau_0) ** 2).sum() + ((t_d - t_d_0) ** 2).sum() for tau, t_d in zip(taus, delays, strict=True)
    ]
    return torch.stack(terms).sum()


def expected_spikes_bn(
    gamma: torch.Tensor, beta: torch.Tensor, x_t: torch.Tensor | float, neurons_per_channel: int = 1
) -> torch.Tensor:
    """Expected spikes per sample of a batch-normalised layer: ``m * sum_c Phi((beta_c - x_T) / |gamma_c|)``.

    ``gamma``, ``beta``: the batch norm's scale and shift ``[C]``; ``x_t``: the layer's smallest
    representable value (:func:`window_bounds`); ``neurons_per_channel``: ``m``. A channel with
    ``gamma_c = 0`` has no spread: its term is the step ``beta_c >= x_T`` (``|gamma|`` is floored
    at 1e-12 so that the ratio stays finite).
    """
    spread = gamma.abs().clamp_min(1e-12)
    return neurons_per_channel * torch.special.ndtr((beta - x_t) / spread).sum()


def relaxation_probability(epoch: int, relax_epochs: int) -> float:
    """Probability of using the kernel (not ReLU) in a layer at 1-based ``epoch``: ``min(1, epoch / E)``.

    ``relax_epochs = E = 0`` means the kernel always. Rises linearly from ``1 / E`` at epoch 1 to 1
    at epoch ``E``, as the authors' ``(epoch + 1) / E`` with 0-based epochs.
    """
    if epoch < 1:
        raise ValueError(f"relaxation_probability: epochs count from 1, got {epoch}")
    if relax_epochs < 0:
        raise ValueError(f"relaxation_probability: relax_epochs must be >= 0, got {relax_epochs}")
    return 1.0 if relax_epochs == 0 else min(1.0, epoch / relax_epochs)


__all__ = [
    "DEFAULT_EPSILON",
    "ENCODE_MODES",
    "decode_time",
    "encode_time",
    "expected_spikes_bn",
    "kernel_regularization",
    "kernel_value",
    "relaxation_probability",
    "spikes",
    "window_bounds",
]
