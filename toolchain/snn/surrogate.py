"""Surrogate gradients: a Heaviside spike forward, a smooth derivative backward.

Each surrogate is named in recipes (``[neuron].surrogate``) and takes a ``scale`` (steepness).
Derivatives, with ``x = v - threshold``:

- ``sigmoid``: ``scale * sig(scale*x) * (1 - sig(scale*x))`` (SpikingJelly's ``Sigmoid``, alpha = scale;
  integrates to 1).
- ``fast_sigmoid``: ``1 / (scale*|x| + 1)^2`` (Zenke & Ganguli's SuperSpike, snnTorch's
  ``fast_sigmoid``, slope = scale; peak 1).
- ``triangle``: ``scale * max(0, 1 - scale*|x|)`` (a triangle of half-width ``1/scale`` that
  integrates to 1; Esser et al. 2016, Bellec et al. 2018 use this shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from toolchain.errors import RecipeError
from toolchain.snn.dynamics import heaviside

DerivativeFn = Callable[[torch.Tensor, float], torch.Tensor]


def _sigmoid_derivative(x: torch.Tensor, scale: float) -> torch.Tensor:
    # scale * sig * (1 - sig) by torch's own kernel for it (one pass instead of three)
    sig = torch.mul(x, scale).sigmoid_()
    return torch.ops.aten.sigmoid_backward(torch.tensor(scale, dtype=sig.dtype), sig)


def _fast_sigmoid_derivative(x: torch.Tensor, scale: float) -> torch.Tensor:
    return 1.0 / (scale * x.abs() + 1.0) ** 2


def _triangle_derivative(x: torch.Tensor, scale: float) -> torch.Tensor:
    return scale * torch.clamp(1.0 - scale * x.abs(), min=0.0)


SURROGATES: dict[str, DerivativeFn] = {
    "sigmoid": _sigmoid_derivative,
    "fast_sigmoid": _fast_sigmoid_derivative,
    "triangle": _triangle_derivative,
}


class _SurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, derivative: DerivativeFn, scale: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        ctx.scale = scale
        return heaviside(x)

    @staticmethod
    @once_differentiable  # the derivatives compute in place: values, not a graph
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x, ctx.scale), None, None


@dataclass(frozen=True)
class SurrogateSpike:
    """The spike function with surrogate ``name`` and ``scale``: forward ``x > 0``, backward its derivative.

    A named value rather than a closure, so that fused kernels (:mod:`toolchain.snn.fused`) can
    recognise it and compute the same derivative themselves.
    """

    name: str
    scale: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SurrogateSpike.apply(x, SURROGATES[self.name], self.scale)


def spike_function(name: str, scale: float) -> SurrogateSpike:
    """The spike function with surrogate ``name`` (validated; errors name the recipe key)."""
    if name not in SURROGATES:
        raise RecipeError(
            f"[neuron].surrogate: unknown surrogate {name!r}; expected one of: {', '.join(SURROGATES)}"
        )
    if not scale > 0:
        raise RecipeError(f"[neuron].surrogate_scale: expected a number > 0, got {scale!r}")
    return SurrogateSpike(name, float(scale))
