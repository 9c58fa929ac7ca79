"""Blocks: the layers of a network as small modules an exporter can walk, in order.

Every block has a ``name`` (``conv1``, ``pool1``, ``flatten``, ``dense1``, ``output``), a ``kind``
(``"dense"``, ``"conv"``, ``"pool"``, ``"flatten"``), the per-sample ``in_shape``/``out_shape``
and its :class:`~toolchain.snn.architectures.LayerSpec` as ``spec``. Tensors are time-major
``[T, B, ...]``; the ANN twin feeds them with ``T = 1``.

- :class:`SynapticBlock` (dense, conv): ``synapse`` (no bias) -> optional ``norm`` (BatchNorm of
  the current) -> ``neuron`` (a CUBA-LIF population, or ReLU in the ANN twin) -> ``dropout`` of
  the output (applied by the network after recording the spikes; ``None`` when not used).
- :class:`PoolBlock`: ``pool``, sum or average pooling of the previous layer's spikes.
- :class:`FlattenBlock`: ``[T, B, C, ...]`` -> ``[T, B, C * ...]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from toolchain.loihi_numbers import CubaRegisters, Population, neuron_registers, readout_registers
from toolchain.snn.architectures import LayerSpec
from toolchain.snn.layers import (
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    Pool,
    fold_batchnorm,
    pool_layer,
)
from toolchain.snn.loihi import bias_grid, scale_exponent, weight_grid
from toolchain.snn.neurons import CubaLIF, delay


@dataclass(frozen=True)
class LoihiLayer:
    """A synaptic layer as Loihi holds it, in the model's units times ``2^scale_exp``.

    ``weight``: batch norm folded in, scaled, on the 8-bit grid (``w_int / 64``); ``bias``: the
    folded per-channel bias, scaled, on the ``1/64`` grid (``None`` without batch norm); both
    straight-through (their gradients are the float ones). ``registers``: the population's, with
    the threshold scaled alike. Spikes do not depend on the scale; a potential readout's voltage is
    ``2^scale_exp`` times the model's.
    """

    scale_exp: int
    weight: torch.Tensor
    bias: torch.Tensor | None
    registers: CubaRegisters


class Block(nn.Module):
    """Base of all blocks: ``name``, ``kind``, ``in_shape``, ``out_shape`` and ``spec``."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.in_shape = spec.in_shape
        self.out_shape = spec.out_shape

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, in_shape={self.in_shape}, out_shape={self.out_shape}"


class SynapticBlock(Block):
    """A population of neurons and the synapses into it (kind ``"dense"`` or ``"conv"``).

    ``synapse`` is a :class:`~toolchain.snn.layers.Dense`, ``Conv1d`` or ``Conv2d`` without bias,
    ``norm`` an optional :class:`~toolchain.snn.layers.BatchNorm` of the synaptic current,
    ``neuron`` the nonlinearity made by ``make_neuron`` (a ``CubaLIF`` population, or ``nn.ReLU``
    in the ANN twin), ``dropout`` a :class:`~toolchain.snn.layers.Dropout` of the block's output or
    ``None``.
    """

    synapse: Dense | Conv1d | Conv2d
    norm: BatchNorm | None
    dropout: Dropout | None

    def __init__(self, spec: LayerSpec, make_neuron: Callable[[], nn.Module]) -> None:
        super().__init__(spec)
        if not spec.synaptic:
            raise ValueError(f"{spec.name}: a {spec.kind!r} layer has no synapses")
        fan_out = spec.out_shape[0]
        if spec.kind == "dense":
            self.synapse = Dense(spec.in_shape[0], fan_out)
        else:
            conv = Conv2d if spec.spatial_dims == 2 else Conv1d
            self.synapse = conv(spec.in_shape[0], fan_out, spec.kernel_size, spec.stride, spec.padding)
        self.norm = BatchNorm(fan_out, spec.spatial_dims) if spec.batch_norm else None
        self.neuron = make_neuron()
        self.dropout = Dropout(spec.dropout) if spec.dropout > 0 else None
        #: steps the block delays the synaptic sum by itself, before batch norm (see :meth:`current`)
        self.delay_steps = 0
        #: fixed-point training of a layer with batch norm: compute as :meth:`loihi_layer` (set by
        #: :func:`toolchain.snn.numerics.apply_numerics`)
        self.folded_fixed_point = False
        if self.norm is not None and getattr(self.neuron, "delay_steps", 0) > 0:
            self.delay_steps, self.neuron.delay_steps = self.neuron.delay_steps, 0

    @property
    def input_delay_steps(self) -> int:
        """How many steps later the synaptic input reaches the neurons (block's plus neuron's delay)."""
        return self.delay_steps + int(getattr(self.neuron, "delay_steps", 0))

    @property
    def weight(self) -> nn.Parameter:
        """The synapse's weight: dense ``[out, in]``, conv ``[C_out, C_in, *kernel]``."""
        return self.synapse.weight

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """The synaptic current ``[T, B, *out_shape]`` for input ``[T, B, *in_shape]``.

        With batch norm and a synapse delay the block delays the synaptic sum *before* the norm, so
        that the norm's shift (a neuron bias once folded) acts from step 0 on, as Loihi adds a bias
        to the voltage at every step while only the synaptic input arrives a step late; without
        batch norm the population delays its input (the same thing, the synapse being linear).
        """
        current = self.synapse(x)
        if self.delay_steps:
            current = delay(current, self.delay_steps)
        return self.norm(current) if self.norm is not None else current

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The neurons' output (spikes in the SNN) ``[T, B, *out_shape]``; dropout not applied."""
        if self.folded_fixed_point:
            return self._loihi_forward(x)
        return self.neuron(self.current(x))

    def loihi_layer(self, steps: int) -> LoihiLayer:
        """This layer as the exporter puts it on Loihi's registers, differentiable (straight-through).

        Batch norm (its running statistics: Loihi has no batch) is folded into the weights and a
        per-channel bias (:func:`~toolchain.snn.layers.fold_batchnorm`), the layer is scaled by
        ``2^k`` (:func:`toolchain.snn.loihi.scale_exponent`: weights, bias and threshold together,
        which leaves the spikes unchanged), the weights and the bias are rounded onto their grids,
        the neuron parameters onto their registers. ``steps``: the time steps the layer runs (the
        potential readout's voltage must not saturate over them). Fixed-point training of a layer
        with batch norm computes with exactly these numbers, and the exporter writes them.
        """
        population = self.neuron
        if not isinstance(population, CubaLIF):
            kind = type(population).__name__
            raise TypeError(f"layer {self.name!r}: {kind} neurons have no Loihi registers")
        weight, bias = (self.weight, None) if self.norm is None else fold_batchnorm(self.weight, self.norm)
        bias_values = None if bias is None else bias.detach().double().cpu().numpy()
        k = scale_exponent(
            weight.detach().double().cpu(), bias_values, Population.of(population), self.name, steps
        )
        factor = 2.0**k
        decays = (population.current_decay, population.voltage_decay)
        registers = (
            neuron_registers(*decays, population.threshold * factor)[0]
            if population.spiking
            else readout_registers(*decays)
        )
        return LoihiLayer(
            scale_exp=k,
            weight=weight_grid(weight * factor),
            bias=None if bias is None else bias_grid(bias * factor),
            registers=registers,
        )

    def _loihi_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on the numbers of :meth:`loihi_layer`: the synaptic sum delayed, the bias
        added from step 0 (Loihi adds it to the voltage every step, which equals a current bias when
        the current keeps nothing: ``current_decay = 1``, checked at export), Loihi's arithmetic."""
        layer = self.loihi_layer(len(x))
        current = self.synapse.with_weight(x, layer.weight)
        if self.delay_steps:
            current = delay(current, self.delay_steps)
        if layer.bias is not None:
            current = current + layer.bias.reshape(-1, *([1] * (current.dim() - 3)))
        out = self.neuron(current, registers=layer.registers)
        return out if self.neuron.spiking else out / 2.0**layer.scale_exp

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """The block's dropout applied to its output ``x`` (identity when none or in eval mode)."""
        return self.dropout(x) if self.dropout is not None else x

    def folded_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The synapse weight with eval-mode BatchNorm folded in, and the bias it leaves (or None).

        The bias ``[C_out]`` is per output channel, in units of the synaptic current; see
        :func:`toolchain.snn.layers.fold_batchnorm`.
        """
        if self.norm is None:
            return self.weight.detach(), None
        with torch.no_grad():
            return fold_batchnorm(self.weight, self.norm)


class PoolBlock(Block):
    """Non-overlapping sum or average pooling (kind ``"pool"``); ``pool`` holds the layer."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec)
        self.pool: Pool = pool_layer(spec.mode, spec.spatial_dims, spec.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class FlattenBlock(Block):
    """``[T, B, *in_shape]`` -> ``[T, B, prod(in_shape)]`` (kind ``"flatten"``)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec)
        self.flatten = Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)


def shape_input(x: torch.Tensor, shape: tuple[int, ...], *, time_major: bool) -> torch.Tensor:
    """``x`` as ``[T, B, *shape]`` (``[B, *shape]`` when not ``time_major``), or a ``ValueError``.

    A sample of another shape is reshaped when it has as many elements and either shape is flat
    (an MLP fed images, a conv net fed flat vectors); anything else names both shapes.
    """
    lead = 2 if time_major else 1
    got = tuple(x.shape[lead:])
    if got == shape:
        return x
    if (len(got) == 1 or len(shape) == 1) and math.prod(got) == math.prod(shape):
        return x.reshape(*x.shape[:lead], *shape)
    axes = "[T, B, ...]" if time_major else "[B, ...]"
    raise ValueError(f"the network expects inputs {axes} with sample shape {shape}, got {tuple(x.shape)}")


def build_blocks(specs: list[LayerSpec], make_neuron: Callable[[], nn.Module]) -> nn.ModuleList:
    """One block per spec, in order; ``make_neuron`` makes each synaptic block's nonlinearity."""
    blocks: list[Block] = []
    for spec in specs:
        if spec.synaptic:
            blocks.append(SynapticBlock(spec, make_neuron))
        elif spec.kind == "pool":
            blocks.append(PoolBlock(spec))
        elif spec.kind == "flatten":
            blocks.append(FlattenBlock(spec))
        else:
            raise ValueError(f"{spec.name}: unknown layer kind {spec.kind!r}")
    return nn.ModuleList(blocks)


__all__ = [
    "Block",
    "FlattenBlock",
    "LoihiLayer",
    "PoolBlock",
    "SynapticBlock",
    "build_blocks",
    "shape_input",
]
