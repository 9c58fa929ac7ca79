"""Lower pooling into the next synaptic layer, exactly: netx (and Loihi) have no pooling layer.

Sum pooling (kernel ``k`` = stride, remainder dropped) is linear, so a pool followed by a synaptic
layer is one synaptic layer over the un-pooled input:

- **pool -> conv** (``K`` kernel, stride ``s``, padding ``p``, per spatial axis) is a convolution
  with kernel ``k K``, stride ``k s`` and padding ``k p`` whose weight ``w'[.., k a + u] = w[.., a]``
  (every weight repeated over its ``k x k`` window). Proof, per axis: the conv reads pooled row
  ``m = s i + a - p``, the sum of input rows ``k m + u`` (``u < k``), i.e. row ``k s i - k p + A``
  with ``A = k a + u < k K``. Pooled rows outside ``[0, H_p)`` are the conv's zero padding; their
  input rows ``k m + u`` are outside ``[0, k H_p)``: the composite's zero padding when the pool
  drops no remainder (``H = k H_p``). With a remainder ``r = H - k H_p > 0``, the composite would
  read the dropped rows ``[k H_p, H)`` exactly when the conv's last window reaches its right
  padding (``s (H_out - 1) - p + K > H_p``): that case is refused; otherwise it never reads them.
  The output sizes agree: ``(k X + r) // (k s) == X // s`` for ``X = H_p + 2 p - K``, ``r < k``.
- **pool -> [flatten] -> dense** is a dense layer over the flattened un-pooled input whose column
  of input ``(c, h, w)`` is the column of pooled input ``(c, h // k, w // k)``, and zero for the
  rows and columns the pool drops.
- **pool -> pool** composes into one pool of kernel ``k1 k2`` (``(H // k1) // k2 == H // (k1 k2)``).
- **average** pooling is the sum times ``1 / k^d``: the folded weights ``w / k^d`` must be even
  integers in ``[-256, 254]`` (Loihi's grid); otherwise :class:`~toolchain.errors.QuantizationError`
  names the layer (nothing is rounded).

A pool that ends the network (no synaptic layer after it) is refused with :class:`LoweringError`.

:func:`factor_pooling` finds the fold in a convolution read from a file: a sum pool and the
smaller convolution after it, which a simulator may compute instead (the same sums, a fraction of
the multiply-adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from toolchain import ir
from toolchain.errors import QuantizationError, ToolchainError
from toolchain.loihi_numbers import WEIGHT_MAX, WEIGHT_MIN


class LoweringError(ToolchainError):
    """A pooling layer cannot be folded exactly into the synaptic layer after it."""


@dataclass(frozen=True)
class _PoolChain:
    """One or more consecutive pools as one: ``kernel`` per spatial axis, times ``scale``."""

    names: tuple[str, ...]
    in_shape: tuple[int, ...]
    kernel: int
    scale: Fraction

    @property
    def label(self) -> str:
        return " -> ".join(repr(name) for name in self.names)

    @property
    def dims(self) -> int:
        return len(self.in_shape) - 1

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.in_shape[0], *(size // self.kernel for size in self.in_shape[1:]))


def lower_pooling(network: ir.Network) -> ir.Network:
    """``network`` with every :class:`~toolchain.ir.Pool` folded into the next synaptic layer.

    The result computes exactly the same synaptic input ``a_in`` for every neuron at every step
    (so the same spikes). The folded layer keeps its name; ``metadata["lowered_pooling"]`` lists
    what was folded into what. A network without pooling is returned unchanged.
    """
    layers = list(network.layers)
    if not any(isinstance(layer, ir.Pool) for layer in layers):
        return network
    lowered: list[ir.Layer] = []
    folded: list[dict[str, object]] = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        if not isinstance(layer, ir.Pool):
            lowered.append(layer)
            index += 1
            continue
        chain, index = _pool_chain(layers, index)
        flattens: list[ir.Flatten] = []
        while index < len(layers) and isinstance(layers[index], ir.Flatten):
            flattens.append(layers[index])  # type: ignore[arg-type]
            index += 1
        if index == len(layers):
            raise LoweringError(
                f"pooling {chain.label} is not followed by a dense or conv layer to fold it into"
            )
        target = layers[index]
        if isinstance(target, ir.Conv) and not flattens:
            lowered.append(_fold_into_conv(chain, target))
        elif isinstance(target, ir.Dense):
            flat = math.prod(chain.in_shape)
            for position, flatten in enumerate(flattens):
                lowered.append(ir.Flatten(flatten.name, chain.in_shape if position == 0 else (flat,)))
            lowered.append(_fold_into_dense(chain, target))
        else:
            raise LoweringError(
                f"pooling {chain.label} feeds layer {target.name!r} ({target.kind}) through a flatten: "
                "only dense layers can follow a flatten"
            )
        folded.append({"pools": list(chain.names), "into": target.name})
        index += 1
    metadata = {
        **network.metadata,
        "lowered_pooling": [*network.metadata.get("lowered_pooling", []), *folded],
    }
    return replace(network, layers=tuple(lowered), metadata=metadata)


def _pool_chain(layers: list[ir.Layer], start: int) -> tuple[_PoolChain, int]:
    """The consecutive pools from ``start`` composed into one, and the index after them."""
    first = layers[start]
    assert isinstance(first, ir.Pool)
    names, kernel, scale = [first.name], first.kernel_size, Fraction(1)
    dims = len(first.in_shape) - 1
    index = start
    while index < len(layers) and isinstance(layers[index], ir.Pool):
        pool = layers[index]
        assert isinstance(pool, ir.Pool)
        if index > start:
            names.append(pool.name)
            kernel *= pool.kernel_size
        if pool.mode == "avg":
            scale /= pool.kernel_size**dims
        index += 1
    return _PoolChain(tuple(names), first.in_shape, kernel, scale), index


def _fold_into_conv(chain: _PoolChain, conv: ir.Conv) -> ir.Conv:
    k = chain.kernel
    pooled = chain.out_shape[1:]
    for axis, (size, size_p, kernel, stride, pad, size_out) in enumerate(
        zip(
            chain.in_shape[1:],
            pooled,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.out_shape[1:],
            strict=True,
        )
    ):
        remainder = size - k * size_p
        if remainder and stride * (size_out - 1) - pad + kernel > size_p:
            raise LoweringError(
                f"pooling {chain.label} drops the last {remainder} of {size} inputs along spatial axis "
                f"{axis} ({size} is not a multiple of {k}), and conv {conv.name!r} (kernel {kernel}, "
                f"stride {stride}, padding {pad}) reaches into its padding there: the folded "
                f"convolution would read the dropped inputs; make the size a multiple of {k}"
            )
    weight = _scaled(conv.weight, chain, conv.name)
    for axis in range(2, weight.ndim):
        weight = np.repeat(weight, k, axis=axis)
    return ir.Conv(
        name=conv.name,
        weight=weight,
        neurons=conv.neurons,
        in_shape=chain.in_shape,
        stride=tuple(k * s for s in conv.stride),
        padding=tuple(k * p for p in conv.padding),
        groups=conv.groups,
        weight_exp=conv.weight_exp,
    )


def _fold_into_dense(chain: _PoolChain, dense: ir.Dense) -> ir.Dense:
    k = chain.kernel
    pooled = chain.out_shape
    weight = _scaled(dense.weight, chain, dense.name).reshape(dense.weight.shape[0], *pooled)
    for axis in range(2, weight.ndim):
        weight = np.repeat(weight, k, axis=axis)
    full = np.zeros((dense.weight.shape[0], *chain.in_shape), dtype=dense.weight.dtype)
    full[(slice(None), slice(None), *(slice(0, k * size) for size in pooled[1:]))] = weight
    return ir.Dense(
        name=dense.name,
        weight=full.reshape(full.shape[0], -1),
        neurons=dense.neurons,
        weight_exp=dense.weight_exp,
    )


def _scaled(weight: np.ndarray, chain: _PoolChain, layer: str) -> np.ndarray:
    """``weight * chain.scale`` when every product is an even integer on Loihi's grid; else refused."""
    if chain.scale == 1:
        return weight
    numerator, denominator = chain.scale.numerator, chain.scale.denominator
    product = weight.astype(np.int64) * numerator
    exact = product % denominator == 0
    scaled = product // denominator
    bad = ~exact | (scaled % 2 != 0) | (scaled < WEIGHT_MIN) | (scaled > WEIGHT_MAX)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = Fraction(int(weight[where]) * numerator, denominator)
        raise QuantizationError(
            f"layer {layer!r}: folding average pooling {chain.label} multiplies its weights by "
            f"{chain.scale}, and {int(bad.sum())} of them leave Loihi's grid (even integers in "
            f"[{WEIGHT_MIN}, {WEIGHT_MAX}]), e.g. weight {int(weight[where])} at {where} becomes {value}; "
            "use sum pooling or train with weights that are multiples of "
            f"{2 * denominator // math.gcd(2 * denominator, numerator)}"
        )
    return scaled.astype(weight.dtype)


def factor_pooling(conv: ir.Conv) -> tuple[int, ir.Conv] | None:
    """A sum pool of kernel ``k`` and a convolution ``c`` whose fold (:func:`lower_pooling`) is
    ``conv``, with the largest such ``k > 1``; ``None`` where there is none.

    ``conv`` is a fold of kernel ``k`` exactly when, along every spatial axis, ``k`` divides its
    stride, padding, kernel and input size (so the pool drops no remainder), and its weight is
    constant over every aligned ``k x k`` block of taps: then ``c`` has that block's weight, stride,
    padding and kernel divided by ``k``, and ``c``'s synaptic sum over the pooled input is
    ``conv``'s over the input, for every input (the fold's proof, read backwards).
    """
    sizes = (*conv.stride, *conv.padding, *conv.kernel_size, *conv.in_shape[1:])
    common = math.gcd(*sizes)
    for k in sorted((d for d in range(2, common + 1) if common % d == 0), reverse=True):
        block = conv.weight[(slice(None), slice(None), *(slice(None, None, k),) * (conv.weight.ndim - 2))]
        repeated = block
        for axis in range(2, block.ndim):
            repeated = np.repeat(repeated, k, axis=axis)
        if np.array_equal(repeated, conv.weight):
            factor = ir.Conv(
                name=conv.name,
                weight=np.ascontiguousarray(block),
                neurons=conv.neurons,
                in_shape=(conv.in_shape[0], *(size // k for size in conv.in_shape[1:])),
                stride=tuple(s // k for s in conv.stride),
                padding=tuple(p // k for p in conv.padding),
                groups=conv.groups,
                weight_exp=conv.weight_exp,
            )
            return k, factor
    return None


__all__ = ["LoweringError", "factor_pooling", "lower_pooling"]
