"""Input encoders: turn a batch of static inputs into time-major spike (or current) tensors.

Every encoder is a pure torch function taking a float batch ``x`` shaped ``[B, ...]`` (values in
[0, 1] for ``rate`` and ``latency``; see :func:`toolchain.data.as_float`) and returning a tensor
shaped ``[T, B, ...]`` (time first) of ``x``'s dtype and device:

- ``direct``: the analog input itself, fed as a constant current at every step;
- ``rate``: Bernoulli spikes with probability ``x`` per step (a discrete Poisson rate code);
- ``latency``: one spike per input at ``t = round((1 - x) * (T - 1))`` (time to first spike);
- ``spikes``: the batch is already made of spike trains ``[B, T, ...]`` (the synthetic dataset);
  only the time axis is moved to the front.

:func:`encode` dispatches on the recipe's ``[encoding].scheme``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toolchain.errors import DataError, RecipeError

#: the encoding schemes :func:`encode` accepts
SCHEMES = ("direct", "rate", "latency", "spikes")


def direct(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``x`` repeated over ``time_steps`` steps: ``[B, ...]`` -> ``[T, B, ...]``, same values.

    Any range is accepted (audio features are not in [0, 1]). The result is a broadcast view of
    ``x`` (no copy): call ``.contiguous()`` before writing into it.
    """
    _check_time_steps(time_steps)
    return x.unsqueeze(0).expand(time_steps, *x.shape)


def rate(x: torch.Tensor, time_steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate code: at each of ``time_steps`` steps, input ``i`` spikes with probability ``x[i]``.

    ``x`` must be floating point with every value in [0, 1] (values outside are an error, never
    clipped). Returns 0/1 spikes ``[T, B, ...]`` of ``x``'s dtype; the expected spike count of an
    input is ``x * T``. Pass a seeded ``generator`` (on ``x``'s device) for reproducible spikes.
    """
    _check_time_steps(time_steps)
    _check_unit_range(x, "rate")
    probabilities = x.unsqueeze(0).expand(time_steps, *x.shape)
    return torch.bernoulli(probabilities, generator=generator)


def latency(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Latency (time-to-first-spike) code: each input spikes exactly once, earlier when larger.

    Input ``x`` in [0, 1] spikes at step ``t = round((1 - x) * (T - 1))``: ``x = 1`` at step 0,
    small ``x`` near step ``T - 1``; ``torch.round`` rounds halves to even (``x = 0.5``, ``T = 4``
    gives ``t = round(1.5) = 2``). Inputs equal to 0 never spike. Values outside [0, 1] are an
    error. Returns 0/1 spikes ``[T, B, ...]`` of ``x``'s dtype, at most one spike per input.
    """
    _check_time_steps(time_steps)
    _check_unit_range(x, "latency")
    fire_step = torch.round((1.0 - x) * (time_steps - 1))
    steps = torch.arange(time_steps, device=x.device, dtype=x.dtype).view(time_steps, *([1] * x.dim()))
    return ((steps == fire_step.unsqueeze(0)) & (x > 0).unsqueeze(0)).to(x.dtype)


def spikes(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Pass through a batch that is already spike trains: ``[B, T, ...]`` -> ``[T, B, ...]``.

    For datasets whose samples are spike rasters shaped ``[T, inputs]`` (the synthetic dataset).
    The values are unchanged (the result is a view of ``x``, time axis moved to the front). Checks
    that ``x.shape[1] == time_steps`` and that the values are 0 or 1.
    """
    _check_time_steps(time_steps)
    if x.dim() < 2 or x.shape[1] != time_steps:
        raise DataError(
            f"[encoding].scheme = 'spikes' expects a batch of spike trains shaped [B, T={time_steps}, ...], "
            f"got shape {tuple(x.shape)}"
        )
    if x.numel() and not bool(((x == 0) | (x == 1)).all()):
        raise DataError(
            "[encoding].scheme = 'spikes' expects 0/1 spike trains, got other values; use 'direct', "
            "'rate' or 'latency' for analog inputs"
        )
    return x.movedim(1, 0)


_ENCODERS: dict[str, Callable[..., torch.Tensor]] = {
    "direct": direct,
    "rate": rate,
    "latency": latency,
    "spikes": spikes,
}


def encode(
    name: str, x: torch.Tensor, time_steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode batch ``x`` ``[B, ...]`` with scheme ``name`` into ``[T, B, ...]``.

    ``name`` is one of :data:`SCHEMES`; ``generator`` is used by ``rate`` only. Raises
    :class:`RecipeError` naming ``[encoding].scheme`` for an unknown scheme.
    """
    if name not in _ENCODERS:
        raise RecipeError(
            f"[encoding].scheme: unknown encoding {name!r}; expected one of: {', '.join(SCHEMES)}"
        )
    if name == "rate":
        return rate(x, time_steps, generator=generator)
    return _ENCODERS[name](x, time_steps)


def _check_time_steps(time_steps: int) -> None:
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise RecipeError(f"[encoding].time_steps: expected a positive integer, got {time_steps!r}")


def _check_unit_range(x: torch.Tensor, scheme: str) -> None:
    """Rate and latency codes read ``x`` as a probability/intensity: it must lie in [0, 1]."""
    if not torch.is_floating_point(x):
        raise DataError(
            f"[encoding].scheme = {scheme!r} expects a floating-point batch in [0, 1], got {x.dtype}; "
            "scale the data first (toolchain.data.as_float turns uint8 pixels into [0, 1])"
        )
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):  # NaN fails too
        low, high = float(x.min()), float(x.max())
        raise DataError(
            f"[encoding].scheme = {scheme!r} needs inputs in [0, 1], got values in [{low:g}, {high:g}]; "
            "scale the data to [0, 1] first or use the 'direct' scheme"
        )
