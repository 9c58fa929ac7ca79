"""Spiking networks built from a recipe's ``[model]`` and ``[neuron]`` tables.

:class:`SpikingNetwork` runs an ordered list of blocks (:mod:`toolchain.snn.blocks`) planned by
:func:`toolchain.snn.architectures.plan_layers`: every dense or conv layer feeds a population of
CUBA-LIF neurons (:class:`toolchain.snn.neurons.CubaLIF`), pooling and flatten are structural. The
readout (``[model].readout``) is either the spike count of the output layer summed over time
(``spike_count``), or ``potential``: the output layer never fires and integrates its synaptic input
(current decay 1, voltage decay 0, so ``v[t] = v[t-1] + x[t]``); the logits are its voltage after
the last step divided by ``T``, i.e. the time-mean of the output layer's synaptic input (a
non-spiking linear readout averaged over time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from toolchain.config import ModelConfig, NeuronConfig
from toolchain.ir import READOUTS
from toolchain.snn.architectures import LayerSpec, plan_layers
from toolchain.snn.blocks import Block, SynapticBlock, build_blocks, shape_input
from toolchain.snn.dynamics import SpikeFn
from toolchain.snn.hooks import TrainingHooks
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.surrogate import spike_function


@dataclass
class SNNOutput:
    """What a forward pass returns.

    ``logits`` ``[B, classes]``: the readout (spike counts of the output layer summed over time, or
    the potential readout's final voltage / ``T``). ``potentials``: the potential readout's voltage
    ``[T, B, classes]`` after each step (``None`` for a spike-count readout).
    ``spikes``: every spiking layer's spikes ``[T, B, *layer shape]`` by layer name (``conv1``:
    ``[T, B, C, H, W]``, ``dense1``: ``[T, B, neurons]``), before dropout, still attached to the graph
    so that activity regularizers can use them.
    """

    logits: torch.Tensor
    spikes: dict[str, torch.Tensor]
    potentials: torch.Tensor | None = None

    def spike_counts_per_sample(self) -> dict[str, torch.Tensor]:
        """Spikes per sample ``[B]`` of each layer (detached)."""
        return {name: s.detach().flatten(2).sum(dim=(0, 2)) for name, s in self.spikes.items()}


class SpikingNetwork(TrainingHooks, nn.Module):
    """An SNN from layer specs: ``[T, B, *input_shape]`` -> :class:`SNNOutput`.

    ``blocks`` lists every layer in order (each with ``name``, ``kind``, shapes and parameters);
    ``layer_names`` and ``layer_sizes`` list the spiking layers and their neurons (flattened count).
    Synapses have no bias: Loihi adds a neuron's bias to its voltage, so a bias belongs to the
    neuron (batch norm's folds into one at export).
    """

    def __init__(
        self, specs: Sequence[LayerSpec], neuron: NeuronConfig, readout: str = "spike_count"
    ) -> None:
        super().__init__()
        if not specs or specs[-1].kind != "dense":
            raise ValueError("a spiking network ends with a dense output layer")
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {READOUTS}, got {readout!r}")
        spike_fn = spike_function(neuron.surrogate, neuron.surrogate_scale)
        synaptic = [spec for spec in specs if spec.synaptic]
        populations = iter(
            [
                readout_population(neuron, spike_fn)
                if readout == "potential" and spec is synaptic[-1]
                else neuron_population(neuron, spike_fn)
                for spec in synaptic
            ]
        )
        self.readout = readout
        self.blocks = build_blocks(list(specs), lambda: next(populations))
        self.input_shape: tuple[int, ...] = specs[0].in_shape
        self.num_classes: int = specs[-1].out_shape[0]
        self.layer_names: list[str] = [spec.name for spec in specs if spec.synaptic]
        self.layer_sizes: list[int] = [spec.neurons for spec in specs if spec.synaptic]

    def synaptic_blocks(self) -> list[SynapticBlock]:
        """The blocks with neurons, in order (their names are :attr:`layer_names`)."""
        return [block for block in self.blocks if isinstance(block, SynapticBlock)]

    def block(self, name: str) -> Block:
        """The block called ``name`` (``KeyError`` if there is none)."""
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def forward(self, x: torch.Tensor) -> SNNOutput:
        """``x``: input current or spikes ``[T, B, *input_shape]`` (encoded), or any ``[T, B, ...]``
        with the same number of elements per sample when either shape is flat."""
        h = shape_input(x, self.input_shape, time_major=True)
        spikes: dict[str, torch.Tensor] = {}
        *hidden, output = self.blocks
        for block in hidden:
            h = block(h)
            if isinstance(block, SynapticBlock):
                spikes[block.name] = h
                h = block.drop(h)
        h = output(h)
        if self.readout == "potential":
            return SNNOutput(logits=h[-1] / h.shape[0], spikes=spikes, potentials=h)
        spikes[output.name] = h
        return SNNOutput(logits=h.sum(dim=0), spikes=spikes)


def neuron_population(neuron: NeuronConfig, spike_fn: SpikeFn) -> CubaLIF:
    """One layer's CUBA-LIF population from ``[neuron]``: the one place a network makes neurons."""
    return CubaLIF(
        neuron.current_decay,
        neuron.voltage_decay,
        neuron.threshold,
        spike_fn,
        delay_steps=neuron.synapse_delay,
        reset=neuron.reset,
    )


def readout_population(neuron: NeuronConfig, spike_fn: SpikeFn) -> CubaLIF:
    """The output population of a ``potential`` readout: integrates (current decay 1, voltage decay
    0) and never fires; its input is delayed as every synapse's."""
    return CubaLIF(1.0, 0.0, neuron.threshold, spike_fn, delay_steps=neuron.synapse_delay, spiking=False)


def network_input_shape(sample_shape: Sequence[int] | int, scheme: str = "direct") -> tuple[int, ...]:
    """The shape of one time step of the network's input for a dataset's ``sample_shape``.

    The sample's own shape, except with encoding ``spikes``, whose samples are spike trains
    ``(T, ...)``: then one step is ``sample_shape[1:]``. An int ``n`` means one step of ``n`` inputs,
    ``(n,)``, whatever the scheme.
    """
    if isinstance(sample_shape, int):
        return (sample_shape,)
    shape = tuple(int(s) for s in sample_shape)
    return shape[1:] if scheme == "spikes" else shape


def build_model(
    model: ModelConfig, neuron: NeuronConfig, input_shape: Sequence[int] | int, num_classes: int
) -> SpikingNetwork:
    """The SNN a recipe describes, for inputs shaped ``input_shape`` per step and ``num_classes``.

    ``input_shape`` is one step of the encoded input (:func:`network_input_shape`), e.g. ``(64,)``,
    ``(1, 28, 28)``, ``(3, 32, 32)``, ``(features, frames)``; an int ``n`` means ``(n,)``. Raises
    :class:`~toolchain.errors.RecipeError` naming the ``[model]`` key when the architecture does not
    fit the shape.
    """
    shape = network_input_shape(input_shape)
    return SpikingNetwork(plan_layers(model, shape, num_classes), neuron, model.readout)


__all__ = [
    "SNNOutput",
    "SpikingNetwork",
    "build_model",
    "network_input_shape",
    "neuron_population",
    "readout_population",
]
