"""Spiking networks built from a recipe's ``[model]`` and ``[neuron]`` tables."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from toolchain.config import ModelConfig, NeuronConfig
from toolchain.errors import RecipeError
from toolchain.snn.layers import TimeDistributed
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.surrogate import spike_function


@dataclass
class SNNOutput:
    """What a forward pass returns.

    ``logits`` ``[B, classes]``: the readout (spike counts of the output layer, summed over time).
    ``spikes``: every spiking layer's spikes ``[T, B, neurons]`` by layer name, still attached to the
    graph so that activity regularizers can use them.
    """

    logits: torch.Tensor
    spikes: dict[str, torch.Tensor]

    def spike_counts_per_sample(self) -> dict[str, torch.Tensor]:
        """Spikes per sample ``[B]`` of each layer (detached)."""
        return {name: s.detach().flatten(2).sum(dim=(0, 2)) for name, s in self.spikes.items()}


class SpikingMLP(nn.Module):
    """``inputs -> Dense -> CUBA -> ... -> Dense -> CUBA (classes)``; the readout counts output spikes.

    Dense layers have no bias: Loihi adds a neuron's bias to its voltage, not to its current, so a
    bias belongs to the neuron (not yet trainable here).
    """

    def __init__(self, num_inputs: int, hidden: list[int], num_classes: int, neuron: NeuronConfig) -> None:
        super().__init__()
        spike_fn = spike_function(neuron.surrogate, neuron.surrogate_scale)
        sizes = [num_inputs, *hidden, num_classes]
        self.synapses = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.layer_names: list[str] = []
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            self.synapses.append(TimeDistributed(nn.Linear(fan_in, fan_out, bias=False)))
            self.neurons.append(
                CubaLIF(neuron.current_decay, neuron.voltage_decay, neuron.threshold, spike_fn)
            )
            self.layer_names.append("output" if index == len(sizes) - 2 else f"dense{index + 1}")
        self.layer_sizes = sizes[1:]

    def forward(self, x: torch.Tensor) -> SNNOutput:
        """``x``: ``[T, B, ...]`` input current (encoded); flattened per step."""
        h = x.flatten(2)
        spikes: dict[str, torch.Tensor] = {}
        for name, synapse, neuron in zip(self.layer_names, self.synapses, self.neurons, strict=True):
            h = neuron(synapse(h))
            spikes[name] = h
        return SNNOutput(logits=h.sum(dim=0), spikes=spikes)


def build_model(model: ModelConfig, neuron: NeuronConfig, num_inputs: int, num_classes: int) -> SpikingMLP:
    """The network a recipe describes, for ``num_inputs`` features and ``num_classes`` outputs."""
    if model.architecture == "mlp":
        return SpikingMLP(num_inputs, list(model.hidden), num_classes, neuron)
    raise RecipeError(f"[model].architecture: unknown architecture {model.architecture!r}")
