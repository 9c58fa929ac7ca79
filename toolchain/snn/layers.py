"""Synapse and structural layers of spiking networks; tensors are time-major ``[T, B, ...]``.

Every layer here takes and returns ``[T, B, ...]`` tensors and is a thin wrapper around torch's
own per-sample layer, applied to the ``T * B`` samples at once (:class:`TimeDistributed`):

- synapses without bias: :class:`Dense` (event-driven where its input is mostly zeros:
  :mod:`toolchain.snn.event_synapses`), :class:`Conv1d` (matrix products over the unfolded input:
  :mod:`toolchain.snn.unfolded_conv1d`), :class:`Conv2d`. Loihi adds a neuron's
  bias to its voltage, not to its synaptic current, so a bias belongs to the neuron;
- :class:`BatchNorm` of the synaptic current, per channel over the ``T * B`` samples;
  :func:`fold_batchnorm` folds it into the preceding synapse's weights for export;
- pooling: :class:`SumPool1d`, :class:`SumPool2d` (a strided convolution with weights of ones,
  which is how export lowers it to a netx convolution; computed by :mod:`toolchain.snn.sum_pool`)
  and :class:`AvgPool1d`, :class:`AvgPool2d` (the same with weights ``1 / kernel_size**dims``);
- :class:`Flatten` and :class:`Dropout` (one mask per sample, shared by all its time steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from toolchain.snn.compiled import inverse_permutation, steps_channels_last_permutation
from toolchain.snn.event_synapses import dense_synapse
from toolchain.snn.sum_pool import sum_pool
from toolchain.snn.unfolded_conv1d import conv1d_synapse


class TimeDistributed(nn.Module):
    """Apply a per-sample module (``nn.Linear``, a convolution) to all ``T`` steps at once.

    ``[T, B, *in]`` -> ``module([T * B, *in])`` -> ``[T, B, *out]``.

    A synapse (:attr:`once_for_constant_input`) given an input that is the same at every step as a
    view (stride 0 over time, as :func:`toolchain.data.encoding.direct` makes it) computes its
    output once, ``module(x[0])``, and returns it as such a view: the same values, ``T`` times
    less work forward and backward (autograd sums the gradient over the steps before the one
    backward of the module). An input that merely holds equal steps is computed step by step.
    """

    #: compute an input that is constant over time (a stride-0 view) once (per-sample modules only:
    #: not batch statistics, which count every step)
    once_for_constant_input = False

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._over_time(x, self.module)

    def with_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with ``weight`` in place of the module's own (e.g. the weight Loihi holds)."""
        module = self.module
        if isinstance(module, nn.Linear):
            return self._over_time(x, lambda flat: dense_synapse(flat, weight))
        if isinstance(module, nn.Conv1d) and _plain_conv1d(module):
            stride, padding = module.stride[0], module.padding[0]
            return self._over_time(x, lambda flat: conv1d_synapse(flat, weight, stride, padding))
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            return self._over_time(x, lambda flat: module._conv_forward(flat, weight, None))
        raise TypeError(f"{type(module).__name__} has no weight to replace")

    def _over_time(self, x: torch.Tensor, per_sample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        steps, batch = x.shape[:2]
        if self.once_for_constant_input and constant_over_time(x):
            return _RepeatOverTime.apply(per_sample(x[0]), steps)
        y = per_sample(x.reshape(steps * batch, *x.shape[2:]))
        return y.reshape(steps, batch, *y.shape[1:])


class _RepeatOverTime(torch.autograd.Function):
    """``y`` ``[B, ...]`` as the same step ``steps`` times, a view (stride 0 over time); the gradient
    is the sum over the steps, taken in ``y``'s memory order (channels-last after a 2-D convolution
    on the CPU: torch's sum over the first axis of such a gradient reads it across its strides,
    several times slower), so that it comes back in that order."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, steps: int) -> torch.Tensor:
        return y.unsqueeze(0).expand(steps, *y.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        order = steps_channels_last_permutation(grad)
        if order is not None:  # summed over time as [T, B, *spatial, C]: [B, *spatial, C] is left
            step_order = tuple(axis - 1 for axis in order[1:])
            return grad.permute(order).sum(0).permute(inverse_permutation(step_order)), None
        return grad.sum(0), None


def _plain_conv1d(module: nn.Conv1d) -> bool:
    """Whether ``module`` is a convolution :func:`conv1d_synapse` computes: zero padding given as a
    number, dilation 1, one group."""
    return (
        module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and module.dilation == (1,)
        and module.groups == 1
    )


def constant_over_time(x: torch.Tensor) -> bool:
    """Whether ``x`` ``[T, B, ...]`` is one step repeated as a view (stride 0 over time, ``T > 1``),
    outside tracing (an exported graph computes every step)."""
    return x.dim() >= 2 and x.shape[0] > 1 and x.stride(0) == 0 and not torch.jit.is_tracing()


class Dense(TimeDistributed):
    """All-to-all synapses without bias: ``[T, B, in_features]`` -> ``[T, B, out_features]``.

    ``weight`` is ``[out_features, in_features]`` (torch's ``nn.Linear`` layout, as netx stores it).
    """

    module: nn.Linear
    once_for_constant_input = True

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The synaptic sums, from the input's events where few are non-zero
        (:func:`~toolchain.snn.event_synapses.dense_synapse`)."""
        return self.with_weight(x, self.module.weight)

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight


class Conv1d(TimeDistributed):
    """1-D convolution synapses without bias: ``[T, B, C_in, L]`` -> ``[T, B, C_out, L_out]``.

    ``weight`` is ``[C_out, C_in, kernel_size]``; ``padding`` zeros are added at each end.
    """

    module: nn.Conv1d
    once_for_constant_input = True

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__(nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The synaptic sums, as matrix products over the unfolded input
        (:func:`~toolchain.snn.unfolded_conv1d.conv1d_synapse`)."""
        return self.with_weight(x, self.module.weight)

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight


class Conv2d(TimeDistributed):
    """2-D convolution synapses without bias: ``[T, B, C_in, H, W]`` -> ``[T, B, C_out, H', W']``.

    ``weight`` is ``[C_out, C_in, kernel_size, kernel_size]``; ``padding`` zeros on each side.
    """

    module: nn.Conv2d
    once_for_constant_input = True

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._over_time(x, lambda flat: self._convolve(flat, self.module.weight))

    def with_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self._over_time(x, lambda flat: self._convolve(flat, weight))

    def _convolve(self, flat: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The convolution of ``flat`` ``[N, C, H, W]``: on the CPU in channels-last memory order
        (oneDNN's convolution and its backward are faster there, ``benchmarks/conv2d_layout.py``;
        the same sums, to float rounding), so its output is channels-last too, which the layers
        after it keep (the fused neurons, sum pooling); under tracing as it comes."""
        if flat.device.type == "cpu" and not torch.jit.is_tracing():
            flat = flat.contiguous(memory_format=torch.channels_last)
            weight = weight.contiguous(memory_format=torch.channels_last)
        return self.module._conv_forward(flat, weight, None)


class BatchNorm(TimeDistributed):
    """Batch normalisation of the synaptic current, per channel, over the ``T * B`` samples.

    ``spatial_dims`` is 0 after a dense layer (``[T, B, features]``), 1 after a 1-D convolution
    (``[T, B, C, L]``) and 2 after a 2-D one (``[T, B, C, H, W]``); ``num_features`` is the number of
    channels (features). In eval mode it is an affine map per channel, which
    :func:`fold_batchnorm` folds into the synapse's weights and a per-neuron bias.
    """

    module: nn.BatchNorm1d | nn.BatchNorm2d

    def __init__(self, num_features: int, spatial_dims: int = 0) -> None:
        if spatial_dims not in (0, 1, 2):
            raise ValueError(f"BatchNorm: spatial_dims must be 0, 1 or 2, got {spatial_dims}")
        norm = nn.BatchNorm2d(num_features) if spatial_dims == 2 else nn.BatchNorm1d(num_features)
        super().__init__(norm)
        self.spatial_dims = spatial_dims


def fold_batchnorm(
    weight: torch.Tensor, bn: BatchNorm | nn.BatchNorm1d | nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode batch normalisation into the synapse before it: ``(weight', bias')``.

    ``weight`` is the synapse's ``[C_out, ...]`` weight (dense ``[out, in]``, conv
    ``[C_out, C_in, *kernel]``); ``bn`` normalises its ``C_out`` channels with its running
    statistics. Then ``bn(synapse(x)) == synapse'(x) + bias'`` with ``weight' = weight * s`` and
    ``bias' = beta - running_mean * s`` per output channel, ``s = gamma / sqrt(running_var + eps)``.
    ``bias'`` (``[C_out]``, in units of the synaptic current) becomes a per-neuron bias at export.
    Loihi adds a bias to the voltage; that equals adding it to the current when the current has no
    memory (``current_decay = 1``). With ``current_decay < 1`` a constant current bias ``b`` settles
    at ``b / current_decay``, which the exporter must account for.
    """
    norm = bn.module if isinstance(bn, BatchNorm) else bn
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("fold_batchnorm: the batch norm keeps no running statistics to fold")
    if weight.shape[0] != norm.num_features:
        raise ValueError(
            f"fold_batchnorm: weight has {weight.shape[0]} output channels, "
            f"the batch norm {norm.num_features}"
        )
    gamma = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    beta = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = gamma / torch.sqrt(norm.running_var + norm.eps)
    folded = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return folded, beta - norm.running_mean * scale


class Pool(nn.Module):
    """Non-overlapping pooling (kernel = stride, no padding, remainder dropped) over ``dims`` axes."""

    mode: str = ""
    dims: int = 0

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"pooling: kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.stride = kernel_size

    def conv_weight(self, channels: int) -> torch.Tensor:
        """The equivalent convolution's weight ``[C, C, *kernel]`` (stride = kernel_size, no padding).

        Channel ``c`` reads only channel ``c``, with every kernel weight 1 (sum pooling) or
        ``1 / kernel_size**dims`` (average pooling): the dense weight export writes to netx.
        """
        kernel = (self.kernel_size,) * self.dims
        value = 1.0 if self.mode == "sum" else 1.0 / self.kernel_size**self.dims
        weight = torch.zeros(channels, channels, *kernel)
        weight[torch.arange(channels), torch.arange(channels)] = value
        return weight

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for a per-sample input shape ``(C, *spatial)``."""
        channels, *spatial = shape
        return (channels, *(size // self.kernel_size for size in spatial))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class _SumPool(Pool):
    mode = "sum"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, *spatial]`` -> ``[T, B, C, *spatial // kernel_size]``, sums of each window."""
        steps, batch, channels, *spatial = x.shape
        y = sum_pool(x.reshape(steps * batch, channels, *spatial), self.kernel_size, self.dims)
        return y.reshape(steps, batch, *y.shape[1:])


class SumPool1d(_SumPool):
    """Sum pooling over windows of ``kernel_size`` (stride ``kernel_size``): ``[T, B, C, L]``.

    The sums of the depthwise strided convolution with weights of ones, in its order, so it is
    exactly the convolution :meth:`conv_weight` describes (bit for bit on spikes).
    """

    dims = 1


class SumPool2d(_SumPool):
    """Sum pooling over ``kernel_size x kernel_size`` windows (stride ``kernel_size``):
    ``[T, B, C, H, W]`` -> ``[T, B, C, H // k, W // k]``.

    The sums of the depthwise strided convolution with weights of ones, in its order, so it is
    exactly the convolution :meth:`conv_weight` describes (bit for bit on spikes).
    """

    dims = 2


class _AvgPool(Pool):
    mode = "avg"

    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size)
        pool = nn.AvgPool2d if self.dims == 2 else nn.AvgPool1d
        self.pool = TimeDistributed(pool(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, *spatial]`` -> ``[T, B, C, *spatial // kernel_size]``, means of each window."""
        return self.pool(x)


class AvgPool1d(_AvgPool):
    """Average pooling over windows of ``kernel_size`` (stride ``kernel_size``): ``[T, B, C, L]``."""

    dims = 1


class AvgPool2d(_AvgPool):
    """Average pooling over ``kernel_size x kernel_size`` windows: ``[T, B, C, H, W]``."""

    dims = 2


def pool_layer(mode: str, dims: int, kernel_size: int) -> Pool:
    """The pooling layer for ``mode`` (``"sum"`` or ``"avg"``) over ``dims`` (1 or 2) spatial axes."""
    layers: dict[tuple[str, int], type[Pool]] = {
        ("sum", 1): SumPool1d,
        ("sum", 2): SumPool2d,
        ("avg", 1): AvgPool1d,
        ("avg", 2): AvgPool2d,
    }
    if (mode, dims) not in layers:
        raise ValueError(f"pooling: no {mode!r} pooling over {dims} dimensions")
    return layers[mode, dims](kernel_size)


class Flatten(nn.Module):
    """``[T, B, *shape]`` -> ``[T, B, prod(shape)]`` (C-order, as ``torch.flatten``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class Dropout(nn.Module):
    """Dropout with one mask per sample shared by all its time steps: ``[T, B, ...]`` -> same.

    In training, each unit of a sample is zeroed with probability ``p`` at every step or at none,
    and the kept ones are scaled by ``1 / (1 - p)``: a dropped neuron is silent for the whole sample,
    as if removed. In eval mode (or with ``p = 0``) it is the identity.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = functional.dropout(torch.ones_like(x[0]), self.p, training=True)
        return x * mask.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (torch's formula, dilation 1)."""
    return math.floor((size + 2 * padding - kernel_size) / stride) + 1


__all__ = [
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm",
    "Conv1d",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "SumPool1d",
    "SumPool2d",
    "TimeDistributed",
    "conv_output_size",
    "fold_batchnorm",
    "pool_layer",
]
