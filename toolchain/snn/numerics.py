"""Put a built network into the numeric mode its recipe asks for: float, or Loihi fixed point.

In ``fixed_point`` mode :func:`apply_numerics` walks any network (whatever its architecture) and
gives every CUBA population Loihi's registers (decays x 4096, threshold x 64), puts every dense/conv
weight on Loihi's 8-bit grid through a parametrization (straight-through), or, in a layer with batch
norm, computes as the exporter will hold it (batch norm folded with its running statistics, the layer
scaled by a power of two, weights and bias on their grids:
:meth:`toolchain.snn.blocks.SynapticBlock.loihi_layer`), quantizes analog
(``direct``) input to 8-bit graded spikes, and switches the network to float64 so that every
integer of Lava's arithmetic is exact (float32 holds integers exactly only below 2^24, which a
784-input graded sum can exceed). It returns what rounding changed, for ``metrics.json`` and the
export report.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from toolchain.config import NeuronConfig
from toolchain.errors import QuantizationError, RecipeError
from toolchain.loihi_numbers import RoundingReport, neuron_registers, readout_registers
from toolchain.snn.blocks import SynapticBlock
from toolchain.snn.loihi import graded_input, weight_grid
from toolchain.snn.neurons import CubaLIF

#: encodings whose input is analog (graded spikes on Loihi) rather than binary spikes
GRADED_ENCODINGS = ("direct",)


class _WeightGrid(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight_grid(weight)


def apply_numerics(model: nn.Module, neuron: NeuronConfig, encoding_scheme: str) -> list[RoundingReport]:
    """Put ``model`` into ``neuron.numeric`` mode in place; returns the rounding of neuron parameters.

    Delays and resets are the populations' own (set when the network is built); a reset other than
    ``zero`` is refused in fixed-point mode.
    """
    populations = [m for m in model.modules() if isinstance(m, CubaLIF)]
    if neuron.numeric != "fixed_point":
        return []
    if neuron.reset != "zero":
        raise RecipeError(
            f"[neuron].reset = {neuron.reset!r} in fixed_point mode: Loihi's CUBA neuron resets to zero"
        )
    try:
        registers, report = neuron_registers(neuron.current_decay, neuron.voltage_decay, neuron.threshold)
    except QuantizationError as exc:
        raise RecipeError(f"[neuron] in fixed_point mode: {exc}") from None
    for population in populations:
        population.use_fixed_point(
            registers
            if population.spiking
            else readout_registers(population.current_decay, population.voltage_decay)
        )
    folded: set[nn.Module] = set()
    for block in model.modules():
        if isinstance(block, SynapticBlock) and block.norm is not None:
            block.folded_fixed_point = True
            folded.add(block.synapse.module)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module not in folded:
            parametrize.register_parametrization(module, "weight", _WeightGrid())
    hook = _graded_input_hook if encoding_scheme in GRADED_ENCODINGS else _float64_input_hook
    model.register_forward_pre_hook(hook)
    model.double()
    return report


def _graded_input_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (graded_input(args[0].to(torch.float64)), *args[1:])


def _float64_input_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (args[0].to(torch.float64), *args[1:])
