"""Neurons onto a target's cores, and the spike traffic that placement implies.

**Placement** (:func:`place`): the input population first, then every synaptic layer in order, each
on its own run of cores (a core never holds two layers), filled with at most ``neurons_per_core``
neurons, fewer where a per-core limit of the profile requires it. The neurons of a ``(C, *spatial)``
population (an image input, a convolution) go position by position with all their channels
(``order="spatial"``, the default: a core holds a patch of the feature map, as compilers tile
convolutions) or in C-order index, channel by channel (``order="c"``); dense layers in index order.
The limits:

- ``max_fan_in_axons_per_core``: distinct source neurons with a synapse into the core's neurons;
- ``max_fan_out_axons_per_core``: (source neuron, destination core) routes out of one core;
- ``max_synapse_bits_per_core``: the synapse memory the core's incoming synapses take, in
  NengoLoihi's format of Loihi's synapse memory (``SynapseConfig.bits_per_axon``, dense
  compression): per source neuron reaching the core, its ``n`` synapses there in groups of up to 64,
  each group ``n_g * weight_bits + 10`` bits (a 4-bit format index and a 6-bit count) rounded up to
  a 64-bit word; ``weight_bits`` is the layer's weight precision
  (:func:`toolchain.loihi_numbers.weight_precision_bits`). Every synapse is stored: weight sharing of
  convolutions is not modelled, so a convolution's core count is an upper bound.

The first violated limit (in network order) shrinks that layer's neurons per core in proportion
(the destination layer's for fan-in, the source population's for fan-out; by at least one) and
everything is placed again, until every core fits; a layer that does not fit with one neuron per
core (a dense layer whose input alone exceeds the fan-in limit) is refused with its name.
Core ``k`` sits in tile ``k // cores_per_tile``; tiles fill a mesh row by row,
``mesh_width_tiles`` per row (x east-west, y north-south), chip after chip (or column by column,
``tile_order="columns"``, as SANA-FE numbers its tiles). A mapping made by hand
(``cores_per_layer``) spreads the populations it names over the cores it gives.

**Traffic** (:class:`Traffic`): a spike of a source neuron is sent **once to every destination core**
holding at least one of its targets (Loihi's multicast-by-core; the core fans it out to its
synapses). A message whose destination core is in the source's tile is a *within-tile* spike;
otherwise it travels ``|dx|`` east-west and ``|dy|`` north-south tile hops (dimension-ordered
routing on the mesh) and pays the hops only. Pooling and flattening between two synaptic layers are
folded into the connectivity (the source is the previous synaptic layer's neuron, as after
:func:`toolchain.formats.lower.lower_pooling`). The figures are per source spike, averaged over the
source neurons (the activity counts hold per-layer totals, not per-neuron ones: every neuron of a
layer is assumed to fire equally often).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from toolchain import ir
from toolchain.energy.targets import Target, TargetError
from toolchain.loihi_numbers import weight_precision_bits

INPUT = "input"
#: cores processed together when a convolution's reach is computed (bounds the memory used)
_CORE_CHUNK = 32


@dataclass(frozen=True)
class LayerPlacement:
    """One population on the cores ``first_core .. first_core + cores - 1``.

    Neurons are placed in *rank* order, ``neurons_per_core`` ranks per core. With ``channels == 1``
    the rank is the neuron's C-order index; otherwise (spatial-major order of a ``(C, *spatial)``
    population) rank ``r`` holds the neuron of channel ``r % C`` at position ``r // C``: a core
    holds a patch of the map with all its channels.
    """

    name: str
    neurons: int
    first_core: int
    cores: int
    neurons_per_core: int
    channels: int = 1

    def rank_of(self, index: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return index
        positions = self.neurons // self.channels
        return (index % positions) * self.channels + index // positions

    def neuron_of(self, rank: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return rank
        positions = self.neurons // self.channels
        return (rank % self.channels) * positions + rank // self.channels

    def core_of(self, index: np.ndarray) -> np.ndarray:
        return self.first_core + self.rank_of(index) // self.neurons_per_core

    def neurons_on(self, core: int) -> int:
        local = core - self.first_core
        return max(0, min(self.neurons_per_core, self.neurons - local * self.neurons_per_core))


@dataclass(frozen=True)
class Traffic:
    """Spike messages into one synaptic layer, per spike of its source population.

    ``fan_in_axons_max`` is the largest number of source neurons reaching one of the layer's cores,
    ``fan_out_axons_max`` the largest number of routes out of one source core (into this layer).
    """

    layer: str
    source: str
    messages_per_spike: float
    within_tile_per_spike: float
    east_west_hops_per_spike: float
    north_south_hops_per_spike: float
    fan_in_axons_max: int
    fan_out_axons_max: int
    synapse_bits_max: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """Where every population sits, and the traffic between them."""

    target: str
    layers: tuple[LayerPlacement, ...]
    traffic: tuple[Traffic, ...]
    cores_per_tile: int
    mesh_width_tiles: int
    cores_per_chip: int
    #: how tiles are numbered on the mesh: ``"rows"`` or ``"columns"`` (see :func:`place`)
    tile_order: str = "rows"

    @property
    def cores(self) -> int:
        last = self.layers[-1]
        return last.first_core + last.cores

    @property
    def tiles(self) -> int:
        return math.ceil(self.cores / self.cores_per_tile)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.cores_per_chip)

    def layer(self, name: str) -> LayerPlacement:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def traffic_into(self, name: str) -> Traffic:
        for traffic in self.traffic:
            if traffic.layer == name:
                return traffic
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "cores": self.cores,
            "tiles": self.tiles,
            "chips": self.chips,
            "tile_order": self.tile_order,
            "layers": [asdict(layer) for layer in self.layers],
            "traffic": [traffic.to_dict() for traffic in self.traffic],
        }


ORDERS = ("spatial", "c")
TILE_ORDERS = ("rows", "columns")


def place(
    network: ir.Network,
    target: Target,
    order: str = "spatial",
    cores_per_layer: Mapping[str, int] | None = None,
    tile_order: str = "rows",
) -> Placement:
    """Place ``network`` (its input included) on ``target``'s cores; see the module docstring.

    ``order``: ``"spatial"`` places the neurons of a ``(C, *spatial)`` population (an image input,
    a convolution) position by position with all channels together (as compilers tile feature
    maps); ``"c"`` in their C-order index (channel by channel). Dense layers are in index order.
    ``cores_per_layer``: a mapping made by hand, population name (``"input"`` or a synaptic layer's)
    -> the number of cores it is spread over evenly (``ceil(neurons / count)`` per core, the last
    core holding the rest; as SANA-FE's DVS tutorial maps its network); the other populations are
    placed as above. A per-core limit that such a population breaks is an error, not a shrink.
    ``tile_order``: ``"rows"`` numbers the tiles of the mesh row by row (``mesh_width_tiles`` per
    row), ``"columns"`` column by column (``cores_per_chip / cores_per_tile / mesh_width_tiles``
    per column, as SANA-FE numbers its tiles).
    """
    if order not in ORDERS:
        raise TargetError(f"placement order must be one of {ORDERS}, got {order!r}")
    if tile_order not in TILE_ORDERS:
        raise TargetError(f"tile order must be one of {TILE_ORDERS}, got {tile_order!r}")
    if target.kind != "neuromorphic":
        raise TargetError(
            f"{target.path}: target {target.name!r} is {target.kind}: it has no cores to place on"
        )
    height = None
    if tile_order == "columns":
        height = max(1, target.cores_per_chip // target.cores_per_tile // target.mesh_width_tiles)
    populations = _populations(network, order)
    caps = {name: target.neurons_per_core for name, _, _ in populations}
    fixed = dict(cores_per_layer or {})
    sizes = {name: neurons for name, neurons, _ in populations}
    for name, count in fixed.items():
        if name not in sizes:
            raise TargetError(f"cores_per_layer: no population {name!r}; known: {', '.join(sizes)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= sizes[name]:
            raise TargetError(
                f"cores_per_layer[{name!r}]: expected an integer from 1 to its {sizes[name]} neurons, "
                f"got {count!r}"
            )
        caps[name] = math.ceil(sizes[name] / count)
        if caps[name] > target.neurons_per_core:
            raise TargetError(
                f"cores_per_layer[{name!r}] = {count}: {caps[name]} neurons per core, beyond the "
                f"{target.neurons_per_core} of target {target.name!r}"
            )
    reaches = _reach_functions(network)
    fan_in_limit = target.limit("max_fan_in_axons_per_core")
    fan_out_limit = target.limit("max_fan_out_axons_per_core")
    memory_limit = target.limit("max_synapse_bits_per_core")
    while True:
        layers = _layout(populations, caps)
        by_name = {layer.name: layer for layer in layers}
        traffic: list[Traffic] = []
        violation = None
        for (source, dest), reach in reaches.items():
            t = _traffic(by_name[source], by_name[dest], reach, target, height)
            traffic.append(t)
            if violation is None and fan_in_limit is not None and t.fan_in_axons_max > fan_in_limit:
                violation = (dest, t.fan_in_axons_max, fan_in_limit, "input axons")
            if violation is None and fan_out_limit is not None and t.fan_out_axons_max > fan_out_limit:
                violation = (source, t.fan_out_axons_max, fan_out_limit, "output axons")
            if violation is None and memory_limit is not None and t.synapse_bits_max > memory_limit:
                violation = (dest, t.synapse_bits_max, memory_limit, "bits of synapse memory")
        if violation is not None:
            # the first violation in network order: shrink that layer's neurons per core in
            # proportion (at least by one), then place everything again
            name, observed, limit, what = violation
            if name in fixed:
                raise TargetError(
                    f"cores_per_layer[{name!r}] = {fixed[name]}: a core needs {observed} {what}, beyond "
                    f"the limit of {limit} of target {target.name!r} ({target.path}); give it more cores"
                )
            if caps[name] == 1 or by_name[name].neurons_per_core == 1:
                raise TargetError(
                    f"layer {name!r} does not fit target {target.name!r}: even one neuron per core needs "
                    f"{observed} {what}, beyond the limit of {limit} ({target.path})"
                )
            current = by_name[name].neurons_per_core
            caps[name] = max(1, min(current - 1, current * limit // observed))
        else:
            return Placement(
                target=target.name,
                layers=tuple(layers),
                traffic=tuple(traffic),
                cores_per_tile=target.cores_per_tile,
                mesh_width_tiles=target.mesh_width_tiles,
                cores_per_chip=target.cores_per_chip,
                tile_order=tile_order,
            )


def tile_xy(
    core: np.ndarray | int, cores_per_tile: int, mesh_width_tiles: int, mesh_height_tiles: int | None = None
) -> tuple[Any, Any]:
    """The mesh position ``(x, y)`` of the tile holding ``core``: tiles numbered row by row, or column
    by column when ``mesh_height_tiles`` is given (``x = tile // height``, as SANA-FE numbers them)."""
    tile = np.asarray(core) // cores_per_tile
    if mesh_height_tiles is not None:
        return tile // mesh_height_tiles, tile % mesh_height_tiles
    return tile % mesh_width_tiles, tile // mesh_width_tiles


def _populations(network: ir.Network, order: str) -> list[tuple[str, int, int]]:
    """``(name, neurons, channels)`` of the input and every synaptic layer (channels 1: index order)."""

    def channels(shape: tuple[int, ...]) -> int:
        return shape[0] if order == "spatial" and len(shape) > 1 else 1

    shape = network.input_shape
    populations = [(INPUT, math.prod(shape), channels(shape))]
    for layer in network.synaptic_layers():
        populations.append((layer.name, math.prod(layer.out_shape), channels(layer.out_shape)))
    return populations


def _layout(populations: list[tuple[str, int, int]], caps: dict[str, int]) -> list[LayerPlacement]:
    layers, core = [], 0
    for name, neurons, channel_count in populations:
        per_core = min(caps[name], neurons)
        cores = math.ceil(neurons / per_core)
        layers.append(LayerPlacement(name, neurons, core, cores, per_core, channel_count))
        core += cores
    return layers


# --- connectivity ---------------------------------------------------------------------------------


class _Reach:
    """For one synaptic layer: which source neurons reach a given set of destination neurons.

    ``__call__(masks)`` takes boolean masks ``[n, *out_shape]`` (one per destination core) and returns
    ``[n, n_source]`` counts (> 0: the source neuron has a synapse into that core).
    """

    def __init__(self, layer: ir.SynapticLayer, structural: list[ir.Layer], source_shape: tuple[int, ...]):
        self.layer = layer
        self.structural = structural
        self.source_shape = source_shape
        self.weight_bits = weight_precision_bits(layer.weight)
        if isinstance(layer, ir.Dense):
            self.nonzero = sp.csr_matrix(layer.weight != 0, dtype=np.float32)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        n = masks.shape[0]
        if isinstance(self.layer, ir.Dense):
            rows = sp.csr_matrix(masks.reshape(n, -1).astype(np.float32))
            reach = np.asarray((rows @ self.nonzero).todense()).reshape(n, *self.layer.in_shape)
        else:
            reach = _conv_reach(self.layer, masks)
        for structural in reversed(self.structural):
            reach = _pull_back(structural, reach)
        return reach.reshape(n, -1)


def _conv_reach(layer: ir.Conv, masks: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    dims = len(layer.kernel_size)
    out_shape, in_shape = layer.out_shape, layer.in_shape
    output_padding = tuple(
        size - ((out - 1) * s - 2 * p + k)
        for size, out, s, p, k in zip(
            in_shape[1:], out_shape[1:], layer.stride, layer.padding, layer.kernel_size, strict=True
        )
    )
    weight = torch.from_numpy((layer.weight != 0).astype(np.float32))
    transpose = F.conv_transpose1d if dims == 1 else F.conv_transpose2d
    # a dropped input remainder (stride does not divide the size) gives output_padding >= stride;
    # pad the result instead of passing it to torch
    extra = tuple(max(0, op - (s - 1)) for op, s in zip(output_padding, layer.stride, strict=True))
    output_padding = tuple(op - e for op, e in zip(output_padding, extra, strict=True))
    with torch.no_grad():
        out = transpose(
            torch.from_numpy(masks.astype(np.float32)),
            weight,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=output_padding,
            groups=layer.groups,
        ).numpy()
    if any(extra):
        out = np.pad(out, [(0, 0), (0, 0), *[(0, e) for e in extra]])
    return out


def _pull_back(layer: ir.Layer, reach: np.ndarray) -> np.ndarray:
    """Reach over a structural layer's output -> reach over its input."""
    n = reach.shape[0]
    if isinstance(layer, ir.Flatten):
        return reach.reshape(n, *layer.in_shape)
    if isinstance(layer, ir.Pool):
        k = layer.kernel_size
        up = reach
        for axis in range(2, reach.ndim):
            up = np.repeat(up, k, axis=axis)
        pad = [(0, 0), (0, 0)] + [(0, size - up.shape[i + 2]) for i, size in enumerate(layer.in_shape[1:])]
        return np.pad(up, pad)
    raise TypeError(f"layer {layer.name!r}: {type(layer).__name__} is not structural")


def _reach_functions(network: ir.Network) -> dict[tuple[str, str], _Reach]:
    reaches: dict[tuple[str, str], _Reach] = {}
    source, source_shape, structural = INPUT, network.input_shape, []
    for layer in network.layers:
        if isinstance(layer, ir.Dense | ir.Conv):
            reaches[(source, layer.name)] = _Reach(layer, structural, source_shape)
            source, source_shape, structural = layer.name, layer.out_shape, []
        else:
            structural.append(layer)
    return reaches


def _traffic(
    source: LayerPlacement, dest: LayerPlacement, reach: _Reach, target: Target, height: int | None
) -> Traffic:
    out_shape = reach.layer.out_shape
    per_core, width = target.cores_per_tile, target.mesh_width_tiles
    src_core = source.core_of(np.arange(source.neurons))
    sx, sy = tile_xy(src_core, per_core, width, height)
    src_tile = src_core // per_core
    messages = within = hops_ew = hops_ns = 0.0
    fan_in_max = bits_max = 0
    routes_per_source_core = np.zeros(source.cores, dtype=np.int64)
    for start in range(0, dest.cores, _CORE_CHUNK):
        cores = np.arange(start, min(start + _CORE_CHUNK, dest.cores))
        masks = np.zeros((len(cores), dest.neurons), dtype=bool)
        for row, local in enumerate(cores):
            ranks = np.arange(
                local * dest.neurons_per_core, min((local + 1) * dest.neurons_per_core, dest.neurons)
            )
            masks[row, dest.neuron_of(ranks)] = True
        synapses = reach(masks.reshape(len(cores), *out_shape))  # [cores, source neurons]
        hit = synapses > 0
        fan_in_max = max(fan_in_max, int(hit.sum(axis=1).max()))
        bits_max = max(bits_max, int(synapse_memory_bits(synapses, reach.weight_bits).max()))
        dest_core = dest.first_core + cores
        dx, dy = tile_xy(dest_core, per_core, width, height)
        same_tile = (dest_core // per_core)[:, None] == src_tile[None, :]
        messages += float(hit.sum())
        within += float((hit & same_tile).sum())
        hops_ew += float((hit * np.abs(dx[:, None] - sx[None, :])).sum())
        hops_ns += float((hit * np.abs(dy[:, None] - sy[None, :])).sum())
        routes_per_source_core += np.bincount(
            src_core - source.first_core, weights=hit.sum(axis=0), minlength=source.cores
        ).astype(np.int64)
    n = source.neurons
    return Traffic(
        layer=dest.name,
        source=source.name,
        messages_per_spike=messages / n,
        within_tile_per_spike=within / n,
        east_west_hops_per_spike=hops_ew / n,
        north_south_hops_per_spike=hops_ns / n,
        fan_in_axons_max=fan_in_max,
        fan_out_axons_max=int(routes_per_source_core.max()),
        synapse_bits_max=bits_max,
    )


#: synapses of one source neuron stored together in a core's synapse memory (NengoLoihi: a 6-bit count)
SYNAPSES_PER_GROUP = 64
#: bits a group of synapses adds: a 4-bit format index and a 6-bit synapse count (NengoLoihi)
GROUP_HEADER_BITS = 10
#: synapse memory comes in 64-bit words
MEMORY_WORD_BITS = 64


def synapse_memory_bits(synapses: np.ndarray, weight_bits: int) -> np.ndarray:
    """The synapse memory per core, from the synapses each source neuron has there (``synapses``
    ``[cores, sources]``), in NengoLoihi's format (the module docstring): per source, full groups of
    64 and one partial group, each rounded up to 64-bit words."""

    def words(n: np.ndarray) -> np.ndarray:
        bits = n * weight_bits + GROUP_HEADER_BITS
        return -(-bits // MEMORY_WORD_BITS) * MEMORY_WORD_BITS

    counts = np.rint(np.asarray(synapses)).astype(np.int64)
    full, rest = np.divmod(counts, SYNAPSES_PER_GROUP)
    per_source = full * words(np.int64(SYNAPSES_PER_GROUP)) + np.where(rest > 0, words(rest), 0)
    return per_source.sum(axis=-1)


__all__ = ["INPUT", "LayerPlacement", "Placement", "Traffic", "place", "synapse_memory_bits", "tile_xy"]
