"""Loihi's number formats, without torch: register widths, scales, and the integer parameters of a
CUBA population.

This is the one place the fixed-point format is written down. The deployment graph
(:mod:`toolchain.ir`), the file formats, the quantizer and the equations
(:mod:`toolchain.snn.dynamics`, on tensors) all take their numbers from here; the rounding of
float tensors onto these grids, which needs torch, is :mod:`toolchain.snn.loihi`. The rules, from
lava-dl's slayer (``w_scale = 64``, ``p_scale = 4096``) and Lava's bit-accurate process models:

- **State**: the synaptic current ``u`` and voltage ``v`` are 24-bit registers; a float voltage of
  1.0 is ``2^12`` (:data:`STATE_SCALE`: weights carry ``2^6``, the activation shift another ``2^6``).
- **Weights**: even integers in ``[-256, 254]`` (8-bit signed mantissas whose least significant bit
  Lava drops for mixed-sign matrices); a weight of 1.0 is 64 (:data:`WEIGHT_SCALE`).
- **Decays**: ``iDecay = round(current_decay * 4096)`` in ``[1, 4096]`` (Lava holds
  ``du = iDecay - 1`` in 12 bits and adds 1 back), ``vDecay = round(voltage_decay * 4096)`` in
  ``[0, 4095]``.
- **Threshold**: ``vThMant = round(threshold * 64)`` in ``[1, 2^17 - 1]``; Lava compares
  ``v > vThMant << 6``. A mantissa of at least ``2^17`` never fires (a potential readout).
- **Bias**: a signed 13-bit mantissa with exponent 6 (netx's), i.e. the ``1/64`` grid.
- **Graded input**: an 8-bit payload ``round(x * 255)``, and the first synapse's weight exponent
  ``-8`` brings the sum back to the weights' scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from toolchain.errors import QuantizationError

#: Loihi's decay registers are 12-bit fractions of this unity
DECAY_UNITY = 4096
DECAY_SHIFT = 12
#: synaptic input and thresholds are MSB-aligned by this many bits
ACTIVATION_SHIFT = 6
THRESHOLD_SHIFT = 6
#: u and v are 24-bit registers
STATE_BITS = 24
STATE_LIMIT = 2 ** (STATE_BITS - 1)
#: Lava adds this 1-bit offset to the current decay (``ds_offset``); the voltage offset is 0
CURRENT_DECAY_OFFSET = 1
#: the float value of one unit of Lava's state: u and v are integers scaled by 2^12 relative to
#: the float model (weights carry 2^6, the activation shift another 2^6)
STATE_SCALE = 2 ** (ACTIVATION_SHIFT + 6)

#: a float weight of 1.0 is this integer (lava-dl slayer's ``w_scale``)
WEIGHT_SCALE = 64
WEIGHT_MIN = -256
WEIGHT_MAX = 254
#: weight exponents Lava's Dense accepts (``weight_exp``; -8 for 8-bit graded input)
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
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
#: Loihi's bias exponent range (Lava's ``scale_bias`` shifts left by at most this many bits)
BIAS_EXP_MIN, BIAS_EXP_MAX = -8, 7
#: the largest power of two by which a layer is scaled onto the registers
#: (:func:`toolchain.snn.loihi.scale_exponent`)
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
        check_range("iDecay (current decay x 4096)", self.i_decay, 0, DECAY_UNITY)
        check_range("vDecay (voltage decay x 4096)", self.v_decay, 0, DECAY_UNITY)
        check_range("vThMant (threshold x 64)", self.vth_mant, 1, VTH_MANT_FILE_MAX)

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
    check_range("iDecay (current decay x 4096)", i_decay, 1, DECAY_UNITY)
    check_range("vDecay (voltage decay x 4096)", v_decay, 0, DECAY_UNITY - 1)
    check_range("vThMant (threshold x 64)", vth_mant, 1, VTH_MANT_MAX)
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
    """What :func:`toolchain.snn.loihi.scale_exponent` needs of a layer's neurons (float
    parameters, model units)."""

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


def scaled_bias(bias_mant: np.ndarray, bias_exp: int) -> np.ndarray:
    """``bias_mant << bias_exp`` (``>> -bias_exp`` for a negative exponent), in state units: the bias
    Loihi adds to the voltage every step (Lava's ``scale_bias``; the same rule as
    :func:`toolchain.snn.dynamics.effective_bias` on tensors)."""
    mant = np.asarray(bias_mant, dtype=np.int64)
    return mant << bias_exp if bias_exp >= 0 else mant >> -bias_exp


def signed_bits(low: int, high: int) -> int:
    """The fewest bits of a two's-complement integer holding ``[low, high]``."""
    bits = 1
    while not -(2 ** (bits - 1)) <= low <= high <= 2 ** (bits - 1) - 1:
        bits += 1
    return bits


def weight_precision_bits(weight: np.ndarray) -> int:
    """The bits a synapse stores for integer weights ``weight``: the fewest two's-complement bits of
    ``weight / 2^k`` (``2^k`` the largest power of two dividing every weight; Loihi keeps a layer's
    common factor in its weight exponent, NengoLoihi's ``SynapseConfig.shift_bits``), at least 1."""
    values = np.asarray(weight, dtype=np.int64).reshape(-1)
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return 1
    shift = 0
    while shift < 62 and not np.any(nonzero & ((1 << (shift + 1)) - 1)):
        shift += 1
    return signed_bits(int(nonzero.min()) >> shift, int(nonzero.max()) >> shift)


def current_may_wrap(max_abs_a_in: int, du_lava: int) -> bool:
    """Whether Lava's 24-bit wrap of ``u`` can act, starting from ``u = 0`` with every
    ``|a_in| <= max_abs_a_in``: ``|u[t]| <= keep * |u[t-1]| + X`` with ``X = max_abs_a_in << 6`` and
    ``keep = (4096 - du_lava - 1) / 4096`` bounds ``|u|`` by ``X * 4096 / (du_lava + 1)``; below
    ``2^23`` the wrap never changes ``u`` and the simulators may skip it."""
    if du_lava + CURRENT_DECAY_OFFSET <= 0:  # iDecay = 0: the current keeps everything (no bound)
        return max_abs_a_in > 0
    bound = (max_abs_a_in << ACTIVATION_SHIFT) * DECAY_UNITY // (du_lava + CURRENT_DECAY_OFFSET)
    return bound >= STATE_LIMIT


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise :class:`QuantizationError` naming the register when ``value`` is outside ``[low, high]``."""
    if not low <= value <= high:
        raise QuantizationError(f"{name} = {value} is outside Loihi's register range [{low}, {high}]")


__all__ = [
    "ACTIVATION_SHIFT",
    "BIAS_EXP",
    "BIAS_EXP_MAX",
    "BIAS_EXP_MIN",
    "BIAS_MANT_BITS",
    "BIAS_MANT_MAX",
    "BIAS_MANT_MIN",
    "CURRENT_DECAY_OFFSET",
    "DECAY_SHIFT",
    "DECAY_UNITY",
    "INPUT_PAYLOAD_MAX",
    "INPUT_SHIFT",
    "MAX_SCALE_EXP",
    "MIN_SCALE_EXP",
    "NEVER_SPIKE_VTH_MANT",
    "STATE_BITS",
    "STATE_LIMIT",
    "STATE_SCALE",
    "THRESHOLD_SHIFT",
    "VTH_MANT_FILE_MAX",
    "VTH_MANT_MAX",
    "WEIGHT_EXP_MAX",
    "WEIGHT_EXP_MIN",
    "WEIGHT_MAX",
    "WEIGHT_MIN",
    "WEIGHT_SCALE",
    "CubaRegisters",
    "Population",
    "RoundingReport",
    "bias_registers",
    "check_range",
    "current_may_wrap",
    "neuron_registers",
    "readout_registers",
    "scaled_bias",
    "signed_bits",
    "weight_precision_bits",
]
