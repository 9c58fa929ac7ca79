"""Architectures: a recipe's ``[model]`` table as an ordered list of layer specifications.

:func:`plan_layers` turns ``[model]``, the shape of one input step and the number of classes into
:class:`LayerSpec` s, independent of the neuron model. The spiking network
(:mod:`toolchain.snn.models`) and its ANN twin (:mod:`toolchain.snn.ann`) are both built from the
same list, so they have the same topology, layer names and weight shapes by construction.

Layer names are stable: ``conv1``, ``conv2``, ... for convolutions, ``pool1``, ``pool2``, ... for
pooling, ``flatten``, ``dense1``, ``dense2``, ... for hidden dense layers and ``output`` for the last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from toolchain.config import ModelConfig
from toolchain.errors import RecipeError
from toolchain.snn.layers import conv_output_size

#: kinds of layer that hold neurons (a synapse into a population)
SYNAPTIC_KINDS = ("dense", "conv")
#: structural kinds: no neurons, no trainable weights
STRUCTURAL_KINDS = ("pool", "flatten")
#: the sample rank (without batch and time) each convolutional architecture expects
CONV_SAMPLE_RANK = {"conv1d": 2, "vgg": 3}


@dataclass(frozen=True)
class LayerSpec:
    """One layer: what it computes and the per-sample shapes around it (no time, no batch axis).

    ``kind`` is ``"dense"``, ``"conv"`` (synapses into a population of neurons), ``"pool"`` or
    ``"flatten"`` (structural). ``kernel_size``, ``stride``, ``padding`` describe convolutions and
    pooling (pooling: kernel = stride, no padding); ``mode`` is the pooling (``"sum"``, ``"avg"``);
    ``batch_norm`` and ``dropout`` (a probability) apply to synaptic layers.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    mode: str = ""
    batch_norm: bool = False
    dropout: float = 0.0

    @property
    def synaptic(self) -> bool:
        """Whether the layer has synapses and neurons (dense, conv)."""
        return self.kind in SYNAPTIC_KINDS

    @property
    def spatial_dims(self) -> int:
        """Spatial axes of the layer's input: 0 for dense and flatten, 1 or 2 for conv and pool."""
        return 0 if self.kind in ("dense", "flatten") else len(self.in_shape) - 1

    @property
    def neurons(self) -> int:
        """Neurons of a synaptic layer (its flattened output size); 0 for structural layers."""
        return math.prod(self.out_shape) if self.synaptic else 0


def plan_layers(model: ModelConfig, input_shape: Sequence[int], num_classes: int) -> list[LayerSpec]:
    """The layers of ``model`` for inputs shaped ``input_shape`` per step and ``num_classes`` outputs.

    ``input_shape`` is one sample's shape as the network sees it at each time step: ``(64,)``,
    ``(1, 28, 28)``, ``(3, 32, 32)``, ``(features, frames)``. Raises :class:`RecipeError` naming the
    ``[model]`` key when the architecture does not fit the shape (wrong rank, a map that shrinks
    below one element).
    """
    shape = tuple(int(size) for size in input_shape)
    if not shape or min(shape) < 1:
        raise RecipeError(f"[model]: input shape {shape} has no features")
    if num_classes < 1:
        raise RecipeError(f"[model]: need at least one class, got {num_classes}")
    layers: list[LayerSpec] = []
    if model.architecture in CONV_SAMPLE_RANK:
        layers += _conv_stack(model, shape)
        shape = layers[-1].out_shape
    elif model.architecture != "mlp":
        raise RecipeError(f"[model].architecture: unknown architecture {model.architecture!r}")
    if len(shape) > 1:
        layers.append(LayerSpec("flatten", "flatten", shape, (math.prod(shape),)))
        shape = layers[-1].out_shape
    for index, width in enumerate(model.hidden, start=1):
        layers.append(
            LayerSpec(
                f"dense{index}", "dense", shape, (width,), batch_norm=model.batch_norm, dropout=model.dropout
            )
        )
        shape = (width,)
    layers.append(LayerSpec("output", "dense", shape, (num_classes,), batch_norm=model.batch_norm))
    for spec in layers:
        _check_size(spec)
    return layers


#: the largest layer a recipe may describe (the deployment graph's limits, toolchain.ir)
MAX_NEURONS = 2**24
MAX_WEIGHTS = 2**28


def _check_size(spec: LayerSpec) -> None:
    """Refuse a layer too large to build, naming it, before torch tries to allocate it."""
    if not spec.synaptic:
        return
    fan_in = spec.in_shape[0] * (spec.kernel_size**spec.spatial_dims if spec.kind == "conv" else 1)
    weights = (
        fan_in * spec.out_shape[0] if spec.kind == "conv" else math.prod(spec.in_shape) * spec.out_shape[0]
    )
    if spec.neurons > MAX_NEURONS or weights > MAX_WEIGHTS:
        raise RecipeError(
            f"[model]: layer {spec.name!r} would have {spec.neurons} neurons and {weights} weights, beyond "
            f"the {MAX_NEURONS} neurons / {MAX_WEIGHTS} weights per layer the toolchain handles"
        )


def _conv_stack(model: ModelConfig, shape: tuple[int, ...]) -> list[LayerSpec]:
    rank = CONV_SAMPLE_RANK[model.architecture]
    if len(shape) != rank:
        expected = "(channels, length), e.g. (features, frames)" if rank == 2 else "(channels, height, width)"
        raise RecipeError(
            f"[model].architecture: {model.architecture!r} expects samples shaped {expected}, got {shape}"
        )
    k, stride = model.kernel_size, model.stride
    padding = k // 2 if model.padding == "same" else 0
    layers: list[LayerSpec] = []
    for index, channels in enumerate(model.channels, start=1):
        spatial = tuple(conv_output_size(size, k, stride, padding) for size in shape[1:])
        if min(spatial) < 1:
            raise RecipeError(
                f"[model].kernel_size: conv{index} gets a {shape} input, too small for kernel_size {k} "
                f"with padding {model.padding!r}; use fewer layers or pools, or padding = 'same'"
            )
        out = (channels, *spatial)
        layers.append(
            LayerSpec(
                f"conv{index}",
                "conv",
                shape,
                out,
                kernel_size=k,
                stride=stride,
                padding=padding,
                batch_norm=model.batch_norm,
                dropout=model.dropout,
            )
        )
        shape = out
        if index in model.pool_after:
            pool_number = model.pool_after.index(index) + 1
            pooled = (shape[0], *(size // model.pool_size for size in shape[1:]))
            if min(pooled) < 1:
                raise RecipeError(
                    f"[model].pool_after: pool{pool_number} after conv{index} gets a {shape} input, "
                    f"smaller than pool_size {model.pool_size}"
                )
            layers.append(
                LayerSpec(
                    f"pool{pool_number}",
                    "pool",
                    shape,
                    pooled,
                    kernel_size=model.pool_size,
                    stride=model.pool_size,
                    mode=model.pool,
                )
            )
            shape = pooled
    return layers


__all__ = ["CONV_SAMPLE_RANK", "STRUCTURAL_KINDS", "SYNAPTIC_KINDS", "LayerSpec", "plan_layers"]
