"""Neuron populations: thin torch modules around the pure step functions of :mod:`toolchain.snn.dynamics`.

Tensors are time-major ``[T, B, ...]``; state starts at zero for every call (every sample).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from toolchain.loihi_numbers import CubaRegisters
from toolchain.snn.compiled import inverse_permutation, steps_channels_last_permutation
from toolchain.snn.dynamics import (
    CubaState,
    SpikeFn,
    cuba_step,
    cuba_step_quantized,
    cuba_subthreshold,
    cuba_subthreshold_quantized,
    heaviside,
)
from toolchain.snn.fused import cuba_sequence
from toolchain.snn.loihi import synaptic_input_grid
from toolchain.snn.surrogate import SurrogateSpike


class CubaLIF(nn.Module):
    """A population of CUBA-LIF neurons stepped over time: input current ``[T, B, ...]`` -> spikes.

    State starts at zero for every call (every sample), so samples never leak into each other.
    ``current_decay``, ``voltage_decay`` are fractions lost per step; ``threshold`` is in the same
    units as the input current; ``reset`` is ``"zero"`` (Loihi) or ``"subtract"``.
    ``delay_steps`` delays the input current (Lava's Dense delivers a spike's current one step
    later). After :meth:`use_fixed_point` the population computes Loihi's integer arithmetic
    exactly (straight-through gradients): see :func:`toolchain.snn.dynamics.cuba_step_quantized`.
    In float mode with a surrogate spike function the whole sequence runs as one autograd node
    (:func:`toolchain.snn.fused.cuba_sequence`: the same values and gradients, several times faster).

    ``spiking=False`` makes a population that integrates and never fires (a potential readout): its
    output is the voltage ``v[t]`` ``[T, B, ...]`` after each step instead of spikes; in fixed point
    its registers are :func:`toolchain.loihi_numbers.readout_registers` (a threshold no voltage reaches).
    """

    def __init__(
        self,
        current_decay: float,
        voltage_decay: float,
        threshold: float,
        spike_fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        delay_steps: int = 0,
        reset: str = "zero",
        spiking: bool = True,
    ) -> None:
        super().__init__()
        self.spiking = spiking
        self.current_decay = current_decay
        self.voltage_decay = voltage_decay
        self.threshold = threshold
        self.spike_fn = spike_fn
        self.delay_steps = delay_steps
        self.reset = reset
        self.registers: CubaRegisters | None = None

    def use_fixed_point(self, registers: CubaRegisters) -> None:
        """Compute with Loihi's registers from now on (their float values replace the float ones)."""
        self.registers = registers
        self.current_decay = registers.current_decay
        self.voltage_decay = registers.voltage_decay
        self.threshold = registers.threshold

    def forward(self, current: torch.Tensor, registers: CubaRegisters | None = None) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` (a potential readout: voltages) for the input ``current``.

        ``registers`` replace the population's own for this call (fixed-point arithmetic with the
        registers of a rescaled layer, :meth:`toolchain.snn.blocks.SynapticBlock.loihi_layer`).
        """
        current = delay(current, self.delay_steps)
        regs = registers if registers is not None else self.registers
        if not self.spiking:
            return self.potentials(current, regs)
        if regs is None and isinstance(self.spike_fn, SurrogateSpike):
            return cuba_sequence(
                current,
                self.current_decay,
                self.voltage_decay,
                self.threshold,
                self.spike_fn.name,
                self.spike_fn.scale,
                self.reset,
            )
        if regs is None:
            return cuba_float_sequence(
                current,
                self.current_decay,
                self.voltage_decay,
                self.threshold,
                spike_fn=self.spike_fn,
                reset=self.reset,
            )
        state = CubaState.zeros_like(current[0])
        spikes = []
        for x_t in synaptic_input_grid(current):
            s_t, state = cuba_step_quantized(
                state, x_t, regs.du_lava, regs.v_decay, regs.vth_mant, spike_fn=self.spike_fn
            )
            spikes.append(s_t)
        return torch.stack(spikes)

    def potentials(self, current: torch.Tensor, registers: CubaRegisters | None = None) -> torch.Tensor:
        """The voltage ``[T, B, ...]`` after each step, without spikes (already delayed ``current``),
        in float or with ``registers`` (default: the population's own, if any) in fixed point."""
        state = CubaState.zeros_like(current[0])
        voltages = []
        regs = registers if registers is not None else self.registers
        if regs is None:
            for x_t in current:
                state = cuba_subthreshold(state, x_t, self.current_decay, self.voltage_decay)
                voltages.append(state.v)
        else:
            for x_t in synaptic_input_grid(current):
                state = cuba_subthreshold_quantized(state, x_t, regs.du_lava, regs.v_decay)
                voltages.append(state.v)
        return torch.stack(voltages)

    def extra_repr(self) -> str:
        numeric = "float" if self.registers is None else f"fixed point {self.registers}"
        threshold = self.threshold if self.spiking else "none (never fires)"
        return (
            f"current_decay={self.current_decay}, voltage_decay={self.voltage_decay}, "
            f"threshold={threshold}, reset={self.reset}, delay_steps={self.delay_steps}, {numeric}"
        )


def cuba_float_sequence(
    current: torch.Tensor,
    current_decay: float | torch.Tensor,
    voltage_decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    bias: float | torch.Tensor = 0.0,
    *,
    spike_fn: SpikeFn = heaviside,
    reset: str = "zero",
) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of float CUBA-LIF neurons driven by ``current`` ``[T, B, ...]``: one
    :func:`toolchain.snn.dynamics.cuba_step` a step from zero state (parameters scalars or tensors
    broadcast against one step, e.g. per neuron)."""
    state = CubaState.zeros_like(current[0])
    spikes = []
    for x_t in current:
        s_t, state = cuba_step(
            state, x_t, current_decay, voltage_decay, threshold, bias, spike_fn=spike_fn, reset=reset
        )
        spikes.append(s_t)
    return torch.stack(spikes)


def delay(sequence: torch.Tensor, steps: int) -> torch.Tensor:
    """``sequence`` ``[T, ...]`` shifted ``steps`` later in time, zeros first, same length."""
    if steps == 0:
        return sequence
    if steps >= len(sequence):
        return torch.zeros_like(sequence)
    order = steps_channels_last_permutation(sequence)
    if order is not None:  # a convolution's output: delayed in its memory order, so that the
        # neurons step it in that order (cuba_sequence)
        return delay(sequence.permute(order), steps).permute(inverse_permutation(order))
    return torch.cat([torch.zeros_like(sequence[:steps]), sequence[:-steps]])
