"""The deployment graph: a trained network as Loihi holds it, the data every later stage shares.

:class:`Network` is what ``export`` produces from a trained run (:mod:`toolchain.export.quantize`),
what the netx and NIR readers return, what the reference simulator and Lava execute and what the
energy model counts. It holds integers only, in Loihi's units (:mod:`toolchain.snn.loihi`):

- a synaptic layer (:class:`Dense`, :class:`Conv`) holds integer weights ``w_int`` (a float weight
  ``w`` is ``w_int / 64 * 2**weight_exp``) and the :class:`CubaNeurons` it feeds;
- :class:`Pool` (sum or average, kernel = stride) and :class:`Flatten` are structural: no neurons,
  their output is the next synaptic layer's input;
- the input is ``"graded"`` (an analog sample ``x`` in [0, 1] becomes the 8-bit payload
  ``round(x * 255)`` and the first synaptic layer has ``weight_exp = -8``) or ``"spikes"`` (0/1).

Semantics of one time step ``t`` (the same as :mod:`toolchain.snn.dynamics` and Lava's
``Dense`` -> ``LIF`` under ``Loihi2SimCfg(select_tag="fixed_pt")``), for every synaptic layer in
order, with ``s_prev`` the previous synaptic layer's spikes (or the input) through any structural
layers between them::

    a_in[t] = shift(w_int @ s_prev[t - synapse_delay_steps], weight_exp)   # arithmetic shift (floor)
    s[t], state = cuba_step_fixed(state, a_in[t], i_decay - 1, v_decay, vth_mant, bias_mant, bias_exp)

The readout (``Network.readout``) is either ``"spike_count"``, the output layer's spike count summed
over the ``time_steps``, or ``"potential"``: the output layer never fires (``vth_mant >= 2^17``,
:data:`toolchain.loihi_numbers.NEVER_SPIKE_VTH_MANT`) and the scores are its voltage ``v`` after the last
step (Lava's integer, ``2^12`` per float unit; divided by ``time_steps`` it is the trained model's
logit). The class is the argmax (first maximum). Every dataclass validates itself on construction:
a wrong shape, an integer outside its Loihi register or a layer that does not fit the previous one
raises :class:`IRError` naming the layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from toolchain.errors import QuantizationError, ToolchainError
from toolchain.loihi_numbers import (
    BIAS_EXP_MAX,
    BIAS_EXP_MIN,
    BIAS_MANT_MAX,
    BIAS_MANT_MIN,
    INPUT_SHIFT,
    STATE_SCALE,
    WEIGHT_EXP_MAX,
    WEIGHT_EXP_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
    WEIGHT_SCALE,
    CubaRegisters,
)

#: layers larger than this are refused (a reader must not allocate a 10^9-neuron layer)
MAX_LAYER_NEURONS = 2**24
MAX_LAYER_WEIGHTS = 2**28

InputEncoding = Literal["graded", "spikes"]
INPUT_ENCODINGS: tuple[str, ...] = ("graded", "spikes")
Readout = Literal["spike_count", "potential"]
READOUTS: tuple[str, ...] = ("spike_count", "potential")


class IRError(ToolchainError):
    """A deployment graph (built, or read from a file) is inconsistent or outside Loihi's registers."""


@dataclass(frozen=True)
class CubaNeurons:
    """One population of Loihi CUBA-LIF neurons (the registers of netx's ``neuron`` group).

    ``i_decay`` in ``[0, 4096]`` (the current keeps ``(4096 - i_decay) / 4096`` per step; Lava holds
    ``du = i_decay - 1``), ``v_decay`` in ``[0, 4096]``, ``vth_mant`` in ``[1, 2^18 - 1]`` (spike
    iff ``v > vth_mant << 6``; from ``2^17`` on, never: :attr:`spiking` is False), ``bias_mant`` a
    per-neuron ``int64`` array shaped like the layer's output (or ``None``: no bias) with one
    ``bias_exp``. ``ref_delay`` is 1 (no refractory period
    beyond the reset step), ``graded_spike`` is False (binary spikes).
    """

    i_decay: int
    v_decay: int
    vth_mant: int
    bias_mant: np.ndarray | None = None
    bias_exp: int = 0
    ref_delay: int = 1
    graded_spike: bool = False

    def __post_init__(self) -> None:
        for name, value in (("iDecay", self.i_decay), ("vDecay", self.v_decay), ("vThMant", self.vth_mant)):
            _check_int(name, value, -(2**31), 2**31)
        try:
            self.registers  # noqa: B018 - CubaRegisters validates the register ranges
        except QuantizationError as exc:
            raise IRError(str(exc)) from None
        _check_int("bias_exp", self.bias_exp, BIAS_EXP_MIN, BIAS_EXP_MAX)
        if self.ref_delay != 1:
            raise IRError(f"refDelay = {self.ref_delay}: only 1 (Lava's CUBA neuron) is supported")
        if self.graded_spike:
            raise IRError("gradedSpike = True: only binary spikes are supported")
        if self.bias_mant is not None:
            bias = np.asarray(self.bias_mant)
            if bias.dtype.kind not in "iu":
                raise IRError(f"bias mantissas must be integers, got dtype {bias.dtype}")
            if bias.size and (bias.min() < BIAS_MANT_MIN or bias.max() > BIAS_MANT_MAX):
                raise IRError(
                    f"bias mantissas span [{bias.min()}, {bias.max()}], beyond the 13-bit register "
                    f"[{BIAS_MANT_MIN}, {BIAS_MANT_MAX}]"
                )
            object.__setattr__(self, "bias_mant", bias.astype(np.int64))

    @property
    def registers(self) -> CubaRegisters:
        """The decays and threshold as :class:`toolchain.loihi_numbers.CubaRegisters` (validated there)."""
        return CubaRegisters(int(self.i_decay), int(self.v_decay), int(self.vth_mant))

    @property
    def spiking(self) -> bool:
        """False when no voltage can reach the threshold (``vth_mant >= 2^17``): a potential readout."""
        return self.registers.spiking

    @property
    def du_lava(self) -> int:
        """The current decay register Lava's LIF holds (``i_decay - 1``)."""
        return self.registers.du_lava

    @property
    def current_decay(self) -> float:
        return self.registers.current_decay

    @property
    def voltage_decay(self) -> float:
        return self.registers.voltage_decay

    @property
    def threshold(self) -> float:
        """The threshold in float units of the synaptic current (a weight of 1.0 is 64)."""
        return self.registers.threshold

    def bias_float(self) -> np.ndarray | None:
        """The per-neuron bias added to the voltage every step, in float units (``None``: no bias)."""
        if self.bias_mant is None:
            return None
        return self.bias_mant.astype(np.float64) * 2.0**self.bias_exp / STATE_SCALE


@dataclass(frozen=True)
class Dense:
    """All-to-all synapses ``w_int`` ``[out, in]`` into a population of ``out`` CUBA neurons."""

    name: str
    weight: np.ndarray
    neurons: CubaNeurons
    weight_exp: int = 0
    kind: str = field(default="dense", init=False)

    def __post_init__(self) -> None:
        _check_weight(self.name, self.weight, 2)
        _check_int(f"layer {self.name!r}: weight_exp", self.weight_exp, WEIGHT_EXP_MIN, WEIGHT_EXP_MAX)
        _check_bias_shape(self.name, self.neurons, self.out_shape)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (int(self.weight.shape[1]),)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (int(self.weight.shape[0]),)


@dataclass(frozen=True)
class Conv:
    """A convolution ``w_int`` ``[C_out, C_in, *kernel]`` (1-D or 2-D) into CUBA neurons.

    ``in_shape`` is ``(C_in, *spatial)``; ``stride`` and ``padding`` (zeros at both ends) per
    spatial axis; ``groups`` as torch's. The output shape follows torch's formula (dilation 1).
    """

    name: str
    weight: np.ndarray
    neurons: CubaNeurons
    in_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    groups: int = 1
    weight_exp: int = 0
    kind: str = field(default="conv", init=False)

    def __post_init__(self) -> None:
        _check_weight(self.name, self.weight, None)
        dims = self.weight.ndim - 2
        if dims not in (1, 2):
            raise IRError(f"layer {self.name!r}: conv weights must be 3-D or 4-D, got {self.weight.shape}")
        object.__setattr__(self, "in_shape", _shape(self.name, "in_shape", self.in_shape, dims + 1))
        object.__setattr__(self, "stride", _shape(self.name, "stride", self.stride, dims))
        object.__setattr__(self, "padding", _shape(self.name, "padding", self.padding, dims, minimum=0))
        if self.groups < 1 or self.in_shape[0] != self.weight.shape[1] * self.groups:
            raise IRError(
                f"layer {self.name!r}: {self.in_shape[0]} input channels do not match weights "
                f"{tuple(self.weight.shape)} with groups = {self.groups}"
            )
        if min(self.out_shape) < 1:
            raise IRError(f"layer {self.name!r}: input {self.in_shape} is smaller than its kernel")
        _check_int(f"layer {self.name!r}: weight_exp", self.weight_exp, WEIGHT_EXP_MIN, WEIGHT_EXP_MAX)
        _check_bias_shape(self.name, self.neurons, self.out_shape)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def out_shape(self) -> tuple[int, ...]:
        spatial = (
            (size + 2 * pad - k) // s + 1
            for size, k, s, pad in zip(
                self.in_shape[1:], self.kernel_size, self.stride, self.padding, strict=True
            )
        )
        return (int(self.weight.shape[0]), *spatial)


@dataclass(frozen=True)
class Pool:
    """Non-overlapping sum or average pooling (kernel = stride, no padding, remainder dropped)."""

    name: str
    mode: Literal["sum", "avg"]
    kernel_size: int
    in_shape: tuple[int, ...]
    kind: str = field(default="pool", init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("sum", "avg"):
            raise IRError(f"layer {self.name!r}: pooling mode must be 'sum' or 'avg', got {self.mode!r}")
        object.__setattr__(self, "in_shape", _shape(self.name, "in_shape", self.in_shape, None))
        if len(self.in_shape) not in (2, 3):
            raise IRError(f"layer {self.name!r}: pooling needs (C, L) or (C, H, W), got {self.in_shape}")
        if self.kernel_size < 1 or min(self.out_shape) < 1:
            raise IRError(f"layer {self.name!r}: kernel {self.kernel_size} does not fit {self.in_shape}")

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.in_shape[0], *(size // self.kernel_size for size in self.in_shape[1:]))


@dataclass(frozen=True)
class Flatten:
    """``(C, ...)`` -> ``(C * ...,)`` in C order (torch's ``flatten``)."""

    name: str
    in_shape: tuple[int, ...]
    kind: str = field(default="flatten", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", _shape(self.name, "in_shape", self.in_shape, None))

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (math.prod(self.in_shape),)


Layer = Dense | Conv | Pool | Flatten
SynapticLayer = Dense | Conv


@dataclass(frozen=True)
class InputNeurons:
    """Neurons that take the sample itself as their input current: lava-dl's ``Input`` block.

    slayer's ``block.cuba.Input`` feeds ``x * weight + bias`` into a CUBA population, whose spikes
    are the network's input; netx builds it as a LIF process whose ``a_in`` the sample drives
    (lava-dl's tutorials connect their input to ``net.in_layer.neuron.a_in``). Here the population
    is ``neurons`` (shaped like the network's input), ``scale_mant`` and ``offset_mant`` are the
    file's ``weight`` and ``bias`` (units of 1/64: 64 is 1.0), and the input current of step ``t``
    is :meth:`current` of the sample, with no synapse and no delay; the first synaptic layer
    receives the population's spikes (after the network's ``synapse_delay_steps``).
    """

    name: str
    neurons: CubaNeurons
    scale_mant: int = 64
    offset_mant: int = 0
    kind: str = field(default="input", init=False)

    def __post_init__(self) -> None:
        _check_int(f"input layer {self.name!r}: weight", self.scale_mant, -(2**16), 2**16)
        _check_int(f"input layer {self.name!r}: bias", self.offset_mant, -(2**16), 2**16)
        if self.neurons.bias_mant is not None:
            raise IRError(f"input layer {self.name!r}: its neurons take no per-neuron bias (netx gives none)")
        if not self.neurons.spiking:
            raise IRError(
                f"input layer {self.name!r}: its neurons never fire, so nothing reaches the network"
            )

    def current(self, x: np.ndarray, graded: bool) -> np.ndarray:
        """The integer input current ``a_in`` (``int64``, the units of a synaptic input) of samples ``x``.

        Spikes (0/1): ``x * scale_mant + offset_mant``. Graded input: the 8-bit payloads
        ``p = round(x * 255)`` (as into a first synaptic layer, ``weight_exp = -8``):
        ``floor(p * scale_mant / 256) + offset_mant``.
        """
        values = np.asarray(x).astype(np.int64)
        if graded:
            return ((values * self.scale_mant) >> INPUT_SHIFT) + self.offset_mant
        return values * self.scale_mant + self.offset_mant


@dataclass(frozen=True)
class Network:
    """A whole deployable network: input, ordered layers, time steps, readout and provenance.

    ``input_shape`` is one time step of the input per sample (and the shape of the ``input_layer``
    of neurons that take it, when the network has one: :class:`InputNeurons`, lava-dl's ``Input``
    block; without one the input goes straight into the first synaptic layer); ``time_steps`` the steps of one
    inference; ``synapse_delay_steps`` the delay of every synapse (1: Lava's Dense); ``metadata``
    free-form provenance (recipe, numeric mode, encoding, class names), kept by every format that
    can hold it. The last layer must be synaptic: its spike counts (``readout="spike_count"``) or its
    final voltage (``readout="potential"``, a population that never fires) are the readout.
    """

    name: str
    input_shape: tuple[int, ...]
    input_encoding: InputEncoding
    time_steps: int
    layers: tuple[Layer, ...]
    synapse_delay_steps: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    readout: Readout = "spike_count"
    input_layer: InputNeurons | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.name, "input_shape", self.input_shape, None))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.input_encoding not in INPUT_ENCODINGS:
            raise IRError(f"network {self.name!r}: input_encoding must be one of {INPUT_ENCODINGS}")
        if self.time_steps < 1:
            raise IRError(f"network {self.name!r}: time_steps must be >= 1, got {self.time_steps}")
        if self.synapse_delay_steps < 0:
            raise IRError(f"network {self.name!r}: synapse_delay_steps must be >= 0")
        if not self.layers or not isinstance(self.layers[-1], Dense | Conv):
            raise IRError(f"network {self.name!r}: the last layer must be dense or conv (the readout)")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise IRError(f"network {self.name!r}: layer names must be unique, got {names}")
        shape = self.input_shape
        for layer in self.layers:
            if math.prod(layer.in_shape) != math.prod(shape) or (
                not isinstance(layer, Dense | Flatten) and layer.in_shape != shape
            ):
                raise IRError(
                    f"layer {layer.name!r} expects input {layer.in_shape}, the layer before gives {shape}"
                )
            shape = layer.out_shape
        output = self.layers[-1].neurons
        if self.readout not in READOUTS:
            raise IRError(f"network {self.name!r}: readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout == "potential" and output.spiking:
            raise IRError(
                f"layer {self.layers[-1].name!r}: a potential readout needs an output layer that never fires "
                f"(vth_mant >= 2^17), got vth_mant = {output.vth_mant}"
            )
        if self.readout == "spike_count" and not output.spiking:
            raise IRError(
                f"layer {self.layers[-1].name!r}: the output layer never fires "
                f"(vth_mant = {output.vth_mant}); its readout is its potential (readout 'potential'), "
                "not its spike count"
            )
        if self.input_layer is not None and not isinstance(self.input_layer, InputNeurons):
            raise IRError(f"network {self.name!r}: input_layer must be InputNeurons")
        first = self.synaptic_layers()[0]
        expected_exp = -INPUT_SHIFT if self.graded_payloads else None
        if expected_exp is not None and first.weight_exp != expected_exp:
            raise IRError(
                f"layer {first.name!r}: graded 8-bit input needs weight_exp = {expected_exp}, "
                f"got {first.weight_exp}"
            )

    @property
    def graded_payloads(self) -> bool:
        """Whether the first synaptic layer receives 8-bit graded payloads (graded input and no input
        neurons; input neurons pass on 0/1 spikes), and so has ``weight_exp = -8``."""
        return self.input_encoding == "graded" and self.input_layer is None

    @property
    def num_classes(self) -> int:
        return math.prod(self.layers[-1].out_shape)

    def synaptic_layers(self) -> list[SynapticLayer]:
        """The layers with neurons, in order."""
        return [layer for layer in self.layers if isinstance(layer, Dense | Conv)]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)


def implied_readout(layers: tuple[Layer, ...] | list[Layer]) -> Readout:
    """The readout a file's last layer implies when the file does not state one: its potential when
    it never fires (netx's dense layer without neurons, slayer's ``Affine``, a NIR integrator), else
    its spike count."""
    last = layers[-1] if layers else None
    if isinstance(last, Dense | Conv) and not last.neurons.spiking:
        return "potential"
    return "spike_count"


def weight_float(layer: SynapticLayer) -> np.ndarray:
    """A synaptic layer's weights in float units: ``w_int / 64 * 2**weight_exp``."""
    return layer.weight.astype(np.float64) / WEIGHT_SCALE * 2.0**layer.weight_exp


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IRError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise IRError(f"{name} = {value} is outside Loihi's register range [{low}, {high}]")


def _check_weight(name: str, weight: np.ndarray, ndim: int | None) -> None:
    if not isinstance(weight, np.ndarray):
        raise IRError(f"layer {name!r}: weights must be a numpy array, got {type(weight).__name__}")
    if ndim is not None and weight.ndim != ndim:
        raise IRError(f"layer {name!r}: weights must be {ndim}-D, got shape {weight.shape}")
    if weight.dtype.kind not in "iu":
        raise IRError(f"layer {name!r}: weights must be integers (Loihi units), got dtype {weight.dtype}")
    if weight.size > MAX_LAYER_WEIGHTS or (weight.ndim and weight.shape[0] > MAX_LAYER_NEURONS):
        raise IRError(f"layer {name!r}: {weight.shape} weights are beyond what the toolchain handles")
    if weight.size == 0:
        raise IRError(f"layer {name!r}: weights are empty ({weight.shape})")
    low, high = int(weight.min()), int(weight.max())
    if low < WEIGHT_MIN or high > WEIGHT_MAX:
        raise IRError(
            f"layer {name!r}: weights span [{low}, {high}], "
            f"beyond Loihi's 8-bit grid [{WEIGHT_MIN}, {WEIGHT_MAX}]"
        )


def _check_bias_shape(name: str, neurons: CubaNeurons, out_shape: tuple[int, ...]) -> None:
    if neurons.bias_mant is not None and tuple(neurons.bias_mant.shape) != tuple(out_shape):
        raise IRError(
            f"layer {name!r}: bias has shape {tuple(neurons.bias_mant.shape)}, the layer's output {out_shape}"
        )
    if math.prod(out_shape) > MAX_LAYER_NEURONS:
        raise IRError(f"layer {name!r}: {math.prod(out_shape)} neurons are beyond what the toolchain handles")


def _shape(name: str, key: str, value: Any, length: int | None, minimum: int = 1) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise IRError(f"layer {name!r}: {key} must be a tuple of integers, got {value!r}") from None
    if length is not None and len(shape) != length:
        raise IRError(f"layer {name!r}: {key} must have {length} entries, got {shape}")
    if not shape or min(shape) < minimum or math.prod(shape) > MAX_LAYER_NEURONS * 16:
        raise IRError(f"layer {name!r}: {key} = {shape} is not a valid size")
    return shape


__all__ = [
    "READOUTS",
    "Conv",
    "CubaNeurons",
    "Dense",
    "Flatten",
    "IRError",
    "InputNeurons",
    "Layer",
    "Network",
    "Pool",
    "Readout",
    "SynapticLayer",
    "implied_readout",
    "weight_float",
]
