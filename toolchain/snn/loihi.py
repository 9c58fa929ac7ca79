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

import torch

from toolchain.errors import QuantizationError
from toolchain.snn.dynamics import CURRENT_DECAY_OFFSET, DECAY_UNITY, THRESHOLD_SHIFT

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


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise QuantizationError(f"{name} = {value} is outside Loihi's register range [{low}, {high}]")
