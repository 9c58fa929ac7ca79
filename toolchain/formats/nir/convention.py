"""The mapping between the toolchain's discrete CUBA-LIF neuron and NIR's continuous-time nodes.

NIR's nodes are continuous-time ODEs without a time step. Frameworks discretize them with forward
Euler and ``dt = 1e-4`` s (snnTorch's ``export_to_nir``/``import_from_nir``, the NIR paper's
scripts); this module fixes that convention for both directions. NIR's ``CubaLIF``::

    tau_syn dI/dt = -I + w_in S
    tau_mem dv/dt = (v_leak - v) + r I          spike iff v > v_threshold, then v = v_reset

one Euler step of ``dt``, the voltage integrating the current of the same step (snnTorch's order)::

    I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in S[t]
    v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + r I[t])

and the toolchain's CUBA step (:func:`toolchain.snn.dynamics.cuba_step`, float units)::

    u[t] = (1 - current_decay) u[t-1] + x[t]
    v[t] = (1 - voltage_decay) v[t-1] + u[t] + bias       spike iff v > threshold, then v = 0

are the same equations with ``u = (dt/tau_mem) r I`` and

    current_decay = dt / tau_syn          voltage_decay = dt / tau_mem
    x = input_scale * S,  input_scale = (dt/tau_syn) w_in (dt/tau_mem) r
    bias = (dt / tau_mem) v_leak          threshold = v_threshold,  v_reset = 0

Writing, the toolchain picks ``w_in = tau_syn / dt`` and ``r = tau_mem / dt`` (snnTorch's choice)
so that ``input_scale = 1`` and ``I = u``. ``LIF`` (no synaptic current) is the case
``current_decay = 1``, ``input_scale = (dt/tau) r``; ``IF`` (``dv/dt = r I``) the case
``current_decay = 1``, ``voltage_decay = 0``, ``input_scale = dt r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from toolchain.errors import FormatError
from toolchain.ir import MAX_LAYER_NEURONS

#: the de facto NIR time step (snnTorch's export_to_nir / import_from_nir), in seconds
DEFAULT_DT_S = 1e-4

#: how a library's NIR export means a neuron node's values (docs/formats.md#nir, "Foreign float
#: graphs"): ``"nir"`` is NIR's equations under forward Euler with ``dt`` in seconds (snnTorch,
#: SpikingJelly, this toolchain); ``"norse"`` is Norse 1.1.0's ``to_nir`` (it writes ``tau = dt /
#: tau_inv``, a current that jumps by ``w_in S`` and an ``IF`` that adds ``r I`` whatever ``dt``);
#: ``"sinabs"`` is sinabs 3.1.3's ``to_nir`` (time constants in steps, exact exponential decay)
CONVENTIONS = ("nir", "norse", "sinabs")

#: the time step each convention reads a graph with when neither the graph nor the caller states
#: one: snnTorch's 1e-4 s, Norse's ``to_nir`` default 1e-3 s, and one step for sinabs
CONVENTION_DT = {"nir": DEFAULT_DT_S, "norse": 1e-3, "sinabs": 1.0}

#: the discretization written into every graph's metadata
DISCRETIZATION = (
    "forward Euler with time step dt; the voltage integrates the current of the same step: "
    "I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in S[t]; "
    "v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + r I[t]); "
    "spike iff v[t] > v_threshold, then v[t] = v_reset (snnTorch's export_to_nir convention)"
)


class NirError(FormatError):
    """A NIR file or graph is unreadable, inconsistent, or holds what the toolchain cannot represent.

    The message is always one line (values read from a file may hold newlines).
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def show(value: Any) -> str:
    """A short one-line description of a value read from a file, for error messages."""
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"<array {value.shape} {value.dtype}>"
    text = np.array2string(value, separator=", ") if isinstance(value, np.ndarray) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class DiscreteCuba:
    """One population's discrete CUBA parameters, per neuron (``float64`` arrays of one shape).

    ``input_scale`` multiplies the population's input current (fold it into the incoming weights).
    """

    current_decay: np.ndarray
    voltage_decay: np.ndarray
    threshold: np.ndarray
    bias: np.ndarray
    input_scale: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.threshold.shape)


def cuba_to_nir(params: DiscreteCuba, dt: float, where: str, *, spiking: bool = True) -> nir.NIRNode:
    """The NIR node whose Euler step of ``dt`` is the discrete population ``params``: ``CubaLIF``
    (``IF`` when neither state decays: current decay 1, voltage decay 0, no bias), or for a
    population that never fires (``spiking=False``, a potential readout) the integrator ``I``
    (current decay 1, voltage decay 0, no bias: ``v[t] = v[t-1] + dt r I[t]``, ``r = 1 / dt``) or,
    when it leaks, ``CubaLI``.

    Refuses (``NirError`` naming ``where``) a voltage decay of 0 otherwise: ``tau_mem =
    dt / 0`` is infinite and ``r = tau_mem / dt`` with it, which no NIR reader can evaluate.
    """
    if not np.all(params.input_scale == 1.0):
        raise NirError(f"{where}: input_scale must be 1 when writing (fold it into the weights)")
    if not spiking and np.all(params.current_decay == 1.0) and np.all(params.voltage_decay == 0.0):
        if np.any(params.bias != 0):
            raise NirError(
                f"{where}: a non-leaky readout with a bias has no NIR node (I has no bias); export it to netx"
            )
        return nir.I(r=np.full(params.shape, 1.0 / dt))
    if not spiking and (np.any(params.voltage_decay <= 0) or np.any(params.current_decay <= 0)):
        raise NirError(
            f"{where}: a readout with a decay of 0 and the other not 1 has no finite NIR CubaLI "
            "(an infinite time constant)"
        )
    if spiking and np.all(params.current_decay == 1.0) and np.all(params.voltage_decay == 0.0):
        if np.any(params.bias != 0):
            raise NirError(
                f"{where}: an integrate-and-fire population with a bias has no NIR node (IF has no bias)"
            )
        return nir.IF(
            r=np.full(params.shape, 1.0 / dt),
            v_threshold=params.threshold.astype(np.float64),
            v_reset=np.zeros(params.shape),
        )
    if np.any(params.voltage_decay <= 0):
        raise NirError(
            f"{where}: a voltage decay of 0 (no leak) has no finite NIR CubaLIF "
            "(tau_mem = dt / voltage_decay is infinite); give the neurons a leak"
        )
    if np.any(params.current_decay <= 0):
        raise NirError(f"{where}: a current decay of 0 has no finite NIR CubaLIF (tau_syn is infinite)")
    tau_syn = dt / params.current_decay
    tau_mem = dt / params.voltage_decay
    common = {
        "tau_syn": tau_syn,
        "tau_mem": tau_mem,
        "r": tau_mem / dt,
        "v_leak": params.bias / params.voltage_decay,
        "w_in": tau_syn / dt,
    }
    if not spiking:
        return nir.CubaLI(**common)
    return nir.CubaLIF(
        **common, v_threshold=params.threshold.astype(np.float64), v_reset=np.zeros(params.shape)
    )


def nir_to_cuba(node: Any, dt: float, where: str, convention: str = "nir") -> DiscreteCuba:
    """The discrete population that one Euler step of ``dt`` of a NIR neuron node computes.

    ``convention`` (one of :data:`CONVENTIONS`) reads a library's graph as that library means it:
    ``"norse"`` divides the time constants by ``dt``, does not scale the input of a ``CubaLIF``'s
    current by ``dt / tau_syn`` and takes an ``IF``'s input scale as ``r``; ``"sinabs"`` decays by
    ``1 - exp(-dt / tau)`` (``dt`` in steps) instead of ``dt / tau``.

    ``node`` is a ``CubaLIF``, ``LIF`` or ``IF``, or one of the integrators without a threshold
    that a potential readout uses (``CubaLI``, ``LI``, ``I``: their ``threshold`` is infinite);
    every parameter must be finite, with positive time constants, and ``v_reset`` must be 0 (the
    CUBA neuron resets to zero). Anything else is a ``NirError`` naming ``where`` and the parameter.
    """
    if isinstance(node, nir.CubaLIF):
        names = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    elif isinstance(node, nir.LIF):
        names = ("tau", "r", "v_leak", "v_threshold", "v_reset")
    elif isinstance(node, nir.IF):
        names = ("r", "v_threshold", "v_reset")
    elif isinstance(node, nir.CubaLI):
        names = ("tau_syn", "tau_mem", "r", "v_leak", "w_in")
    elif isinstance(node, nir.LI):
        names = ("tau", "r", "v_leak")
    elif isinstance(node, nir.I):
        names = ("r",)
    else:
        raise NirError(
            f"{where}: {type(node).__name__} is not a neuron node "
            "(CubaLIF, LIF, IF; CubaLI, LI, I as a readout)"
        )
    if convention not in CONVENTIONS:
        raise NirError(f"convention = {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    values = {name: float_array(getattr(node, name, None), f"{where}.{name}") for name in names}
    values.setdefault("v_threshold", np.asarray(np.inf))  # an integrator never fires
    values.setdefault("v_reset", np.asarray(0.0))
    try:
        shape = np.broadcast_shapes(*(value.shape for value in values.values()))
    except ValueError:
        shapes = {name: value.shape for name, value in values.items()}
        raise NirError(f"{where}: parameter shapes {shapes} do not broadcast to one population") from None
    values = {name: np.broadcast_to(value, shape) for name, value in values.items()}
    for name in ("tau_syn", "tau_mem", "tau"):
        if name in values and np.any(values[name] <= 0):
            raise NirError(f"{where}.{name}: time constants must be positive, got min {values[name].min()}")
    if np.any(values["v_reset"] != 0):
        raise NirError(
            f"{where}.v_reset: the CUBA neuron resets to 0, got values in "
            f"[{values['v_reset'].min()}, {values['v_reset'].max()}]"
        )
    ones = np.ones(shape)
    if convention == "norse":  # Norse's to_nir writes tau = dt / tau_inv, i.e. dt times the time constant
        values.update({name: values[name] / dt for name in ("tau_syn", "tau_mem", "tau") if name in values})

    def step(tau: np.ndarray) -> np.ndarray:  # the fraction of a state that decays in one step
        return -np.expm1(-dt / tau) if convention == "sinabs" else dt / tau

    if isinstance(node, nir.CubaLIF | nir.CubaLI):
        current_decay = step(values["tau_syn"])
        voltage_decay = step(values["tau_mem"])
        current_gain = ones if convention == "norse" else current_decay  # Norse: I jumps by w_in S
        scale = current_gain * values["w_in"] * voltage_decay * values["r"]
        bias = voltage_decay * values["v_leak"]
    elif isinstance(node, nir.LIF | nir.LI):
        current_decay = ones
        voltage_decay = step(values["tau"])
        scale = voltage_decay * values["r"]
        bias = voltage_decay * values["v_leak"]
    else:  # IF, I: Norse's IAF adds its input unscaled, whatever dt
        gain = 1.0 if convention == "norse" else dt
        current_decay, voltage_decay, scale, bias = ones, np.zeros(shape), gain * values["r"], np.zeros(shape)
    for name, decay in (("current", current_decay), ("voltage", voltage_decay)):
        if np.any(decay > 1):
            raise NirError(
                f"{where}: the {name} decay dt/tau = {decay.max():.4g} exceeds 1 "
                f"(a time constant below dt = {dt}); forward Euler is unstable there"
            )
    return DiscreteCuba(current_decay, voltage_decay, values["v_threshold"], bias, scale)


def float_array(value: Any, where: str, ndim: int | None = None) -> np.ndarray:
    """``value`` (an array, a number or a torch tensor) as a finite ``float64`` array, else a ``NirError``.

    ``ndim``: the number of dimensions it must have.
    """
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        value = np.asarray(value)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()  # snnTorch leaves tensors in graphs it has not written yet
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise NirError(f"{where}: expected a numeric array, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise NirError(f"{where}: expected {ndim} dimension(s), got shape {value.shape}")
    array = value.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise NirError(f"{where}: holds NaN or infinite values")
    return array


def shape_of(value: Any, what: str) -> tuple[int, ...]:
    """A node's shape as positive integers, at most :data:`toolchain.ir.MAX_LAYER_NEURONS` in all."""
    array = float_array(value, what, ndim=1)
    if array.size == 0 or np.any(array < 1) or np.any(array != np.round(array)):
        raise NirError(f"{what} = {show(value)}: expected positive integer sizes")
    if float(np.prod(array)) > MAX_LAYER_NEURONS:
        raise NirError(f"{what} = {show(value)}: more than {MAX_LAYER_NEURONS} values per sample")
    return tuple(int(v) for v in array)


def scalar(value: Any, what: str, kind: type) -> Any:
    """``value`` (a number or a 0-d array) as a finite ``kind`` (``int`` or ``float``), or a NirError."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise NirError(f"{what} = {show(value)}: expected a number")
    if not math.isfinite(float(value)):
        raise NirError(f"{what} = {show(value)}: expected a finite number")
    if kind is int:
        if float(value) != round(float(value)) or abs(float(value)) > 2**62:
            raise NirError(f"{what} = {show(value)}: expected an integer")
        return int(value)
    return float(value)
