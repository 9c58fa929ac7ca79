"""Loihi's number formats: how float parameters map onto its registers, and the rounding rules.

The equations that use these numbers are in :mod:`toolchain.snn.dynamics`; this module says how a
float model's weights, decays and threshold become Loihi integers (and back), following lava-dl's
slayer (``w_scale = 64``, ``p_scale = 4096``) and Lava's bit-accurate process models:

- **Weights**: ``w_int = 2 * round(w * 64 / 2)``, even integers in ``[-256, 254]``: 8-bit signed
  mantissas whose least significant bit Lava drops for mixed-sign matrices
  (``lava/utils/weightutils.py: truncate_weights``), so only even values survive. A weight of 1.0
  is 64. Outside the range is an error at export, never a silent clip.
- **Decays**: ``iDecay = round(current_decay * 4096)`` in ``[1, 4096]`` (Lava holds
  ``du = iDecay - 1`` in 12 bits and adds 1 back), ``vDecay = round(voltage_decay * 4096)`` in
  ``[0, 4095]`` (12 bits, no offset).
- **Threshold**: ``vThMant = round(threshold * 64)`` in ``[1, 2^17 - 1]``; Lava compares
  ``v > vThMant << 6``.
- **Non-spiking populations** (a readout that integrates, slayer's ``Affine`` block, netx's dense
  layer without a ``neuron`` group): ``vThMant`` of at least ``2^17`` (:data:`NEVER_SPIKE_VTH_MANT`;
  slayer writes ``2^18 - 1``) puts the threshold at or above ``2^23``, which the 24-bit voltage
  (saturated at ``2^23 - 1``) never exceeds. netx's neuron-less default also holds ``iDecay = 0``
  (the current keeps everything) and ``vDecay = 4096`` (the voltage keeps nothing): Lava simulates
  both (``du = -1``), so the registers accept them; recipes never produce them.
- **Graded input** (the analog input of ``direct`` encoding): an 8-bit payload
  ``round(x * 255)`` per input, and the first synapse's weight exponent ``-8`` (an arithmetic right
  shift, i.e. a floor) brings the sum back to the weights' scale: the input is seen as
  ``round(x * 255) / 256``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from toolchain.errors import QuantizationError
from toolchain.snn.dynamics import (
    ACTIVATION_SHIFT,
    CURRENT_DECAY_OFFSET,
    DECAY_UNITY,
    STATE_LIMIT,
    STATE_SCALE,
    THRESHOLD_SHIFT,
    current_may_wrap,
)

#: a float weight of 1.0 is this integer (lava-dl slayer's ``w_scale``)
WEIGHT_SCALE = 64
WEIGHT_MIN = -256
WEIGHT_MAX = 254
#: threshold mantissa register (17 bits, unsigned here)
VTH_MANT_MAX = 2**17 - 1
#: a threshold mantissa at or above this never fires (``vth << 6 >= 2^23`` > any saturated voltage)
NEVER_SPIKE_VTH_MANT = 2**17
#: the largest threshold mantissa a file may hold (slayer's ``Affine`` writes ``2^18 - 1``)
VTH_MANT_FILE_MAX = 2**18 - 1
#: graded input payload bits and the first synapse's matching right shift
INPUT_PAYLOAD_MAX = 255
INPUT_SHIFT = 8
#: the bias mantissa register (signed 13 bits)
BIAS_MANT_BITS = 13
BIAS_MANT_MAX = 2 ** (BIAS_MANT_BITS - 1) - 1
BIAS_MANT_MIN = -(2 ** (BIAS_MANT_BITS - 1))
#: the bias exponent of every exported neuron: lava-dl's netx sets ``bias_exp = 6`` for every
#: neuron (``lava/lib/dl/netx/hdf5.py:158``), i.e. a bias on the ``1/64`` grid of the synaptic input
BIAS_EXP = 6
#: the largest power of two by which a layer is scaled onto the registers (see :func:`scale_exponent`)
MAX_SCALE_EXP = 12
#: the smallest: a layer whose (batch-norm folded) weights overflow the grid may be scaled down this far
MIN_SCALE_EXP = -4


@dataclass(frozen=True)
class CubaRegisters:
    """The integer parameters of a Loihi CUBA population, as netx's ``neuron`` group holds them."""

    i_decay: int
    v_decay: int
    vth_mant: int

    def __post_init__(self) -> None:
        _check_range("iDecay (current decay x 4096)", self.i_decay, 0, DECAY_UNITY)
        _check_range("vDecay (voltage decay x 4096)", self.v_decay, 0, DECAY_UNITY)
        _check_range("vThMant (threshold x 64)", self.vth_mant, 1, VTH_MANT_FILE_MAX)

    @property
    def spiking(self) -> bool:
        """False for a population that can never fire (``vth_mant >= 2^17``): a potential readout."""
        return self.vth_mant < NEVER_SPIKE_VTH_MANT

    @property
    def du_lava(self) -> int:
        """The current decay register Lava's LIF holds (netx passes ``iDecay - 1``)."""
        return self.i_decay - CURRENT_DECAY_OFFSET

    @property
    def current_decay(self) -> float:
        return self.i_decay / DECAY_UNITY

    @property
    def voltage_decay(self) -> float:
        return self.v_decay / DECAY_UNITY

    @property
    def threshold(self) -> float:
        return self.vth_mant / 2**THRESHOLD_SHIFT


@dataclass(frozen=True)
class RoundingReport:
    """One parameter's float value, the value its register holds, and the difference."""

    name: str
    requested: float
    quantized: float

    @property
    def abs_error(self) -> float:
        return abs(self.quantized - self.requested)

    def to_dict(self) -> dict[str, float | str]:
        return {**asdict(self), "abs_error": self.abs_error}


def neuron_registers(
    current_decay: float, voltage_decay: float, threshold: float
) -> tuple[CubaRegisters, list[RoundingReport]]:
    """The registers nearest to float neuron parameters, and what rounding changed.

    Raises :class:`QuantizationError` naming the parameter when it has no register value on the
    chip (a current decay of 0, a voltage decay of 1, a threshold beyond ``(2^17 - 1) / 64``): the
    wider values :class:`CubaRegisters` accepts from files are Lava's, not the hardware's.
    """
    i_decay = round(current_decay * DECAY_UNITY)
    v_decay = round(voltage_decay * DECAY_UNITY)
    vth_mant = round(threshold * 2**THRESHOLD_SHIFT)
    _check_range("iDecay (current decay x 4096)", i_decay, 1, DECAY_UNITY)
    _check_range("vDecay (voltage decay x 4096)", v_decay, 0, DECAY_UNITY - 1)
    _check_range("vThMant (threshold x 64)", vth_mant, 1, VTH_MANT_MAX)
    registers = CubaRegisters(i_decay=i_decay, v_decay=v_decay, vth_mant=vth_mant)
    report = [
        RoundingReport("current_decay", current_decay, registers.current_decay),
        RoundingReport("voltage_decay", voltage_decay, registers.voltage_decay),
        RoundingReport("threshold", threshold, registers.threshold),
    ]
    return registers, report


def readout_registers(current_decay: float, voltage_decay: float) -> CubaRegisters:
    """The registers of a population that integrates and never fires (a potential readout)."""
    return CubaRegisters(
        i_decay=round(current_decay * DECAY_UNITY),
        v_decay=round(voltage_decay * DECAY_UNITY),
        vth_mant=NEVER_SPIKE_VTH_MANT,
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


def bias_registers(bias: np.ndarray, layer: str) -> tuple[np.ndarray, int, float]:
    """A float bias (units of the voltage, per neuron) as 13-bit mantissas and their exponent.

    Loihi adds ``bias_mant << bias_exp`` to the voltage every step, in state units (a voltage of
    1.0 is ``2^12``). The exponent is :data:`BIAS_EXP` (6): lava-dl's netx gives every neuron that
    exponent, so the mantissas ``round(bias * 2^12 / 2^6) = round(bias * 64)`` (the ``1/64`` grid of
    the synaptic input) load in netx as they are. Returns ``(bias_mant, bias_exp, max_abs_error)``,
    the error in float units (at most ``1/128``); raises
    :class:`~toolchain.errors.QuantizationError` naming ``layer`` when a mantissa does not fit the
    signed 13-bit register (``|bias| > 4095 / 64``).
    """
    if not np.isfinite(bias).all():
        raise QuantizationError(f"layer {layer!r}: the folded bias contains NaN or infinite values")
    scaled = np.asarray(bias, dtype=np.float64) * STATE_SCALE
    mant = np.round(scaled / 2.0**BIAS_EXP)
    if mant.size == 0 or (mant.min() >= BIAS_MANT_MIN and mant.max() <= BIAS_MANT_MAX):
        error = float(np.abs(mant * 2.0**BIAS_EXP - scaled).max(initial=0.0)) / STATE_SCALE
        return mant.astype(np.int64), BIAS_EXP, error
    largest = BIAS_MANT_MAX * 2**BIAS_EXP / STATE_SCALE
    raise QuantizationError(
        f"layer {layer!r}: the folded batch-norm bias spans [{bias.min():.4f}, {bias.max():.4f}], "
        f"beyond Loihi's bias register (13-bit mantissa, bias_exp = {BIAS_EXP} as netx uses it: "
        f"|bias| <= {largest:.2f})"
    )


@dataclass(frozen=True)
class Population:
    """What :func:`scale_exponent` needs of a layer's neurons (float parameters, model units)."""

    current_decay: float
    voltage_decay: float
    threshold: float
    spiking: bool = True

    @classmethod
    def of(cls, population: Any) -> Population:
        """The parameters of a CUBA population (:class:`toolchain.snn.neurons.CubaLIF`)."""
        return cls(
            population.current_decay, population.voltage_decay, population.threshold, population.spiking
        )


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


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise QuantizationError(f"{name} = {value} is outside Loihi's register range [{low}, {high}]")
