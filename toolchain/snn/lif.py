"""The LIF neurons of the knowledge-distillation literature, expressed exactly as CUBA-LIF.

Frameworks such as SpikingJelly and snnTorch describe a leaky integrate-and-fire neuron by a time
constant ``tau`` (or a decay ``beta``), a threshold and a reset rule. Each function here returns the
:class:`CubaEquivalent` that :func:`toolchain.snn.dynamics.cuba_step` computes *identically*, or
raises :class:`UnsupportedDynamicsError` where no exact equivalent exists. A plain LIF has no
synaptic current, so the CUBA equivalent has ``current_decay = 1`` (the current is the step's
input). One difference remains everywhere: SpikingJelly fires at ``v >= threshold``, CUBA (and
Lava, and snnTorch) at ``v > threshold``; the two differ only when ``v`` equals the threshold
exactly (a set of measure zero in float training, but see ``docs/neurons.md``).

- SpikingJelly ``LIFNode(tau, decay_input=True, v_reset=0)``:
  ``H = V + (X - V) / tau``, spike, ``V = H * (1 - S)``
  -> ``voltage_decay = 1/tau``, input scaled by ``1/tau`` (fold it into the incoming weights).
  ``decay_input=False``: ``H = V (1 - 1/tau) + X`` -> the same without the input scale.
  ``v_reset=None`` (soft reset ``V = H - V_th * S``) -> ``reset = "subtract"``, exact in the float
  model; Loihi has no such reset. ``v_reset`` other than 0 (or None) has no equivalent.
- snnTorch ``Leaky(beta, reset_mechanism="zero")``: ``mem = beta * (1 - R) * mem + X`` with ``R``
  the previous step's spike -> ``voltage_decay = 1 - beta``, zero reset (snnTorch applies the reset
  one step later, to the same effect). ``reset_mechanism="subtract"`` (``mem = beta*mem + X - R*thr``)
  subtracts the threshold *after* the decay, CUBA before it: no exact equivalent unless
  ``beta = 1``. ``"none"`` is the limit of an unreachable threshold: no equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.errors import UnsupportedDynamicsError


@dataclass(frozen=True)
class CubaEquivalent:
    """CUBA-LIF parameters that reproduce another framework's LIF exactly.

    ``input_scale`` multiplies the neuron's input: fold it into the incoming weights
    (``W_cuba = input_scale * W``).
    """

    current_decay: float
    voltage_decay: float
    threshold: float
    reset: str
    input_scale: float = 1.0


def from_spikingjelly_lif(
    tau: float, v_threshold: float = 1.0, v_reset: float | None = 0.0, decay_input: bool = True
) -> CubaEquivalent:
    """The CUBA form of SpikingJelly's ``LIFNode`` (``spikingjelly.activation_based.neuron``)."""
    if not tau >= 1.0:
        raise UnsupportedDynamicsError(f"SpikingJelly LIF tau = {tau}: expected tau >= 1")
    if v_reset is not None and v_reset != 0.0:
        raise UnsupportedDynamicsError(
            f"SpikingJelly LIF v_reset = {v_reset}: CUBA resets to 0 (or subtracts the threshold)"
        )
    return CubaEquivalent(
        current_decay=1.0,
        voltage_decay=1.0 / tau,
        threshold=v_threshold,
        reset="subtract" if v_reset is None else "zero",
        input_scale=1.0 / tau if decay_input else 1.0,
    )


def from_snntorch_leaky(beta: float, threshold: float = 1.0, reset_mechanism: str = "zero") -> CubaEquivalent:
    """The CUBA form of snnTorch's ``Leaky`` neuron."""
    if not 0.0 <= beta <= 1.0:
        raise UnsupportedDynamicsError(f"snnTorch Leaky beta = {beta}: expected 0 <= beta <= 1")
    if reset_mechanism == "subtract" and beta != 1.0:
        raise UnsupportedDynamicsError(
            "snnTorch Leaky reset_mechanism = 'subtract' subtracts the threshold after the decay; "
            "CUBA has no exact equivalent unless beta = 1 (use reset_mechanism = 'zero')"
        )
    if reset_mechanism not in ("zero", "subtract"):
        raise UnsupportedDynamicsError(
            f"snnTorch Leaky reset_mechanism = {reset_mechanism!r}: expected 'zero' or 'subtract'"
        )
    return CubaEquivalent(
        current_decay=1.0, voltage_decay=1.0 - beta, threshold=threshold, reset=reset_mechanism
    )
