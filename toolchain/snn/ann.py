"""ANN twins: the same topology as a recipe's SNN with ReLU instead of spiking neurons.

:func:`build_ann` plans the layers exactly as :func:`toolchain.snn.models.build_model` does, so the
twin has the same blocks, layer names and parameter names and shapes as the SNN: state dicts load
into each other (``ann.load_state_dict(snn.state_dict())``). It reads the static sample
``[B, *sample_shape]`` (no time steps) and returns logits ``[B, classes]``: the output layer's
synaptic current (after batch norm, if any), without ReLU. It is the teacher for knowledge
distillation and a source of weights for ANN-to-SNN conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolchain.config import ModelConfig
from toolchain.snn.architectures import LayerSpec, plan_layers
from toolchain.snn.blocks import SynapticBlock, build_blocks, shape_input
from toolchain.snn.models import network_input_shape


class AnnNetwork(nn.Module):
    """A ReLU network from layer specs: ``[B, *input_shape]`` -> logits ``[B, classes]``.

    Has the same ``blocks``, ``layer_names`` and ``layer_sizes`` as the spiking network built from
    the same specs. Internally each block sees a time-major ``[1, B, ...]`` tensor, so the layers,
    batch norms (over the ``B`` samples) and dropout are the SNN's own modules.
    """

    def __init__(self, specs: Sequence[LayerSpec]) -> None:
        super().__init__()
        if not specs or specs[-1].kind != "dense":
            raise ValueError("a network ends with a dense output layer")
        self.blocks = build_blocks(list(specs), nn.ReLU)
        self.input_shape: tuple[int, ...] = specs[0].in_shape
        self.num_classes: int = specs[-1].out_shape[0]
        self.layer_names: list[str] = [spec.name for spec in specs if spec.synaptic]
        self.layer_sizes: list[int] = [spec.neurons for spec in specs if spec.synaptic]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: a batch of static samples ``[B, *input_shape]`` -> logits ``[B, classes]``."""
        h = shape_input(x, self.input_shape, time_major=False).unsqueeze(0)
        *hidden, output = self.blocks
        for block in hidden:
            h = block(h)
            if isinstance(block, SynapticBlock):
                h = block.drop(h)
        assert isinstance(output, SynapticBlock)
        return output.current(h).squeeze(0)


def build_ann(model: ModelConfig, sample_shape: Sequence[int] | int, num_classes: int) -> AnnNetwork:
    """The ANN twin of the SNN ``[model]`` describes, for samples ``sample_shape`` and ``num_classes``.

    ``sample_shape`` is one static sample's shape (``Dataset.sample_shape``; an int ``n`` means
    ``(n,)``). Raises :class:`~toolchain.errors.RecipeError` as :func:`~toolchain.snn.models.build_model`.
    """
    return AnnNetwork(plan_layers(model, network_input_shape(sample_shape), num_classes))


__all__ = ["AnnNetwork", "build_ann"]
