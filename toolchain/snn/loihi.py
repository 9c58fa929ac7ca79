"""Loihi's number formats on tensors: rounding float weights, inputs and biases onto the grids of
:mod:`toolchain.loihi_numbers` (straight-through for training), and the scale of a layer.

The formats themselves (register widths, scales, :class:`CubaRegisters`, the bias registers) are
numpy-only, in :mod:`toolchain.loihi_numbers`, re-exported here; this module adds what needs torch:
:func:`weight_grid`, :func:`weights_to_int`, :func:`graded_input`, :func:`synaptic_input_grid`,
:func:`bias_grid`, :func:`scale_exponent` and :func:`may_overflow`.
"""

from __future__ import annotations

import numpy as np
import torch

from toolchain.errors import QuantizationError
from toolchain.loihi_numbers import (
    ACTIVATION_SHIFT,
    BIAS_EXP,
    CURRENT_DECAY_OFFSET,
    DECAY_UNITY,
    INPUT_PAYLOAD_MAX,
    INPUT_SHIFT,
    MAX_SCALE_EXP,
    MIN_SCALE_EXP,
    STATE_LIMIT,
    STATE_SCALE,
    WEIGHT_MAX,
    WEIGHT_MIN,
    WEIGHT_SCALE,
    Population,
    bias_registers,
    current_may_wrap,
    neuron_registers,
)


def weight_grid(weight: torch.Tensor) -> torch.Tensor:
    """Weights projected onto Loihi's grid (``even integers / 64`` in ``[-4, 3.97]``), straight-through.

    Used in fixed-point training: the forward pass sees exactly the weights the chip will hold,
    the gradient passes unchanged. Values beyond the range are clamped (a training-time projection;
    the exporter refuses weights off the grid instead).
    """
    steps = torch.clamp(_grid_steps(weight), WEIGHT_MIN // 2, WEIGHT_MAX // 2)
    on_grid = steps * 2 / WEIGHT_SCALE
    return weight + (on_grid - weight).detach()


def weights_to_int(weight: torch.Tensor, layer: str) -> torch.Tensor:
    """The integer weights of ``layer`` (``int64``), refusing anything Loihi cannot hold.

    Raises :class:`QuantizationError` naming the layer for a weight outside ``[-4, 3.97]`` (which
    Lava would silently clip or, at 255, zero the whole layer: lava-dl issue 170) or non-finite.
    """
    if not bool(torch.isfinite(weight).all()):
        raise QuantizationError(f"layer {layer!r}: weights contain NaN or infinite values")
    scaled = _grid_steps(weight.detach().double()) * 2
    if float(scaled.min()) < WEIGHT_MIN or float(scaled.max()) > WEIGHT_MAX:
        low, high = float(weight.min()), float(weight.max())
        raise QuantizationError(
            f"layer {layer!r}: weights span [{low:.4f}, {high:.4f}], "
            f"beyond Loihi's 8-bit grid [{WEIGHT_MIN / WEIGHT_SCALE}, {WEIGHT_MAX / WEIGHT_SCALE}] "
            "(weight x 64 must be an even integer in [-256, 254]); scale the layer or train in "
            "fixed-point mode"
        )
    return scaled.to(torch.int64)


def _grid_steps(weight: torch.Tensor) -> torch.Tensor:
    """The nearest multiple of the grid step ``2/64``, in steps: ``round(w * 32)``."""
    return torch.round(weight * (WEIGHT_SCALE // 2))


def graded_input(x: torch.Tensor) -> torch.Tensor:
    """Analog input in [0, 1] as Loihi sees it: ``round(x * 255) / 256``, straight-through."""
    quantized = torch.round(x * INPUT_PAYLOAD_MAX) / 2**INPUT_SHIFT
    return x + (quantized - x).detach()


def synaptic_input_grid(current: torch.Tensor) -> torch.Tensor:
    """A synapse's output floored onto the ``1/64`` grid, straight-through.

    With binary spikes and weights on the grid this changes nothing; with graded input it is the
    arithmetic right shift of Lava's weight exponent.
    """
    floored = torch.floor(current * WEIGHT_SCALE) / WEIGHT_SCALE
    return current + (floored - current).detach()


def bias_grid(bias: torch.Tensor) -> torch.Tensor:
    """A bias (units of the voltage) on the grid :func:`bias_registers` puts it on (``1/64``),
    straight-through: what the chip adds every step."""
    on_grid = torch.round(bias * (STATE_SCALE / 2**BIAS_EXP)) / (STATE_SCALE / 2**BIAS_EXP)
    return bias + (on_grid - bias).detach()


def scale_exponent(
    weight: torch.Tensor, bias: np.ndarray | None, population: Population, name: str, steps: int
) -> int:
    """The largest ``k`` in ``[MIN_SCALE_EXP, MAX_SCALE_EXP]`` at which the layer scaled by 2^k fits.

    Scaling a layer's weights, bias and threshold by the same positive factor leaves its spikes
    unchanged (the CUBA dynamics are linear in ``u``, ``v``, input, bias and threshold, and the
    reset is to zero), so the float model is the same; on Loihi's fixed grid the weights' relative
    rounding error shrinks by ``2^k``. ``k`` is the largest at which every weight stays on the
    8-bit grid, the threshold in its 17-bit register, the bias in its registers, and the current
    cannot wrap even if every input fires with the largest weight sum of any neuron (for a potential
    readout, which never fires, the voltage summed over the ``steps`` cannot saturate:
    :func:`may_overflow`). A negative ``k`` (the layer scaled down) only when the layer does not fit
    as it is, e.g. batch norm folded into weights beyond the grid's ``[-4, 3.97]``; 0 when nothing
    fits (the export then refuses the layer, naming it).

    The exporter scales a float layer by this rule, and fixed-point training of a layer with batch
    norm computes with the same scaled registers (:func:`toolchain.snn.numerics.loihi_layer`).
    """

    def fitted(k: int) -> torch.Tensor | None:
        """The integer weights at scale ``2^k``, or None if a register cannot hold the layer."""
        factor = 2.0**k
        try:
            if population.spiking:
                neuron_registers(
                    population.current_decay, population.voltage_decay, population.threshold * factor
                )
            w_int = weights_to_int(weight * factor, name)
            if bias is not None:
                bias_registers(bias * factor, name)
        except QuantizationError:
            return None
        return w_int

    for k in range(MAX_SCALE_EXP, 0, -1):
        w_int = fitted(k)
        if w_int is not None and not may_overflow(w_int, population, steps):
            return k
    if fitted(0) is not None:
        return 0
    for k in range(-1, MIN_SCALE_EXP - 1, -1):  # the layer does not fit as it is: scale it down
        if fitted(k) is not None:
            return k
    return 0


def may_overflow(w_int: torch.Tensor, population: Population, steps: int) -> bool:
    """Whether a 24-bit state register could leave its range with integer weights ``w_int``: the
    current of a spiking population, every input firing with the largest weight sum of any neuron
    (:func:`toolchain.snn.dynamics.current_may_wrap`; a graded payload is at most 255/256 of a
    spike), or the voltage of a potential readout, which integrates every step's input:
    ``steps * sum |w_int| << 6 / current_decay >= 2^23``."""
    fan_in_sum = int(w_int.abs().flatten(1).sum(dim=1).max())
    if population.spiking:
        i_decay = round(population.current_decay * DECAY_UNITY)
        return current_may_wrap(fan_in_sum, i_decay - CURRENT_DECAY_OFFSET)
    return steps * fan_in_sum * 2**ACTIVATION_SHIFT / max(population.current_decay, 1e-12) >= STATE_LIMIT


__all__ = [
    "bias_grid",
    "graded_input",
    "may_overflow",
    "scale_exponent",
    "synaptic_input_grid",
    "weight_grid",
    "weights_to_int",
]
