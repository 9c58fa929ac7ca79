"""A deployment graph (:class:`toolchain.ir.Network`) as a NIR graph, in float units.

Every synaptic layer becomes a weight node (``Linear`` for dense layers, ``Conv1d``/``Conv2d``)
followed by a ``CubaLIF`` node named ``<layer>.neurons`` (for a potential readout, a population
that never fires: NIR's integrator ``I``, or ``CubaLI`` when it leaks); sum/average 2-D pooling becomes
``SumPool2d``/``AvgPool2d``, flattening ``Flatten``; the graph starts at ``input`` and ends at
``output`` (``input.io``/``output.io`` when a layer has that name). Values are the float meaning
of the Loihi integers (:func:`toolchain.ir.weight_float`,
``vth_mant / 64``, ``iDecay / 4096`` ...) mapped to NIR's continuous-time parameters by
:mod:`toolchain.formats.nir.convention`. What NIR has no field for (the integers themselves, the
synapse delay, the input encoding, Loihi's rounding) is kept in metadata, so that
:func:`toolchain.formats.nir.reader.from_nir_graph` restores the network bit-exactly.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import nir
import numpy as np

from toolchain import ir
from toolchain.formats.nir.convention import (
    DEFAULT_DT_S,
    DISCRETIZATION,
    DiscreteCuba,
    NirError,
    cuba_to_nir,
)
from toolchain.formats.nir.files import save_graph
from toolchain.loihi_numbers import DECAY_UNITY, STATE_SCALE, scaled_bias

#: identifies graphs written by this module, and the layout of their metadata
FORMAT_NAME = "toolchain-nir"
FORMAT_VERSION = 1
#: where the network-level data lives in ``NIRGraph.metadata``
TOOLCHAIN_KEY = "toolchain"
NEURONS_SUFFIX = ".neurons"
INPUT_NODE, OUTPUT_NODE = "input", "output"

#: what Loihi computes beyond the float equations, written into the graph's metadata
LOIHI_ROUNDING = (
    "Loihi (Lava's fixed-point CUBA) holds u and v as 24-bit integers in units of 1/4096: "
    "u = trunc(u * (4096 - iDecay) / 4096) + a_in * 64, v = trunc(v * (4096 - vDecay) / 4096) + u "
    "+ (bias_mant << bias_exp), trunc rounding toward zero; a_in = (w_int @ s) shifted by weight_exp "
    "(an arithmetic shift: floor); spike iff v > vThMant * 64. The float values of this graph are "
    "these integers' exact float meaning; the per-node 'loihi' metadata holds the integers."
)

#: what the graph's Input carries at each step, per input encoding
INPUT_MEANING = {
    "spikes": "binary spikes (0 or 1) at every step",
    "graded": (
        "the 8-bit payload round(x * 255) of an analog sample x in [0, 1], the same at every step; "
        "the first layer's weights carry the 1/256 (weight_exp = -8) and Loihi floors the product"
    ),
}


def to_nir_graph(network: ir.Network, dt: float = DEFAULT_DT_S) -> nir.NIRGraph:
    """``network`` as a ``nir.NIRGraph`` (see the module docstring), Euler time step ``dt`` seconds.

    Refuses (``NirError`` naming the layer) what NIR cannot hold exactly: 1-D pooling (NIR has
    only ``SumPool2d``/``AvgPool2d``: fold it into the next layer with
    ``toolchain.formats.lower.lower_pooling`` first), neurons without a voltage leak, and grouped
    convolutions (which nir's own type check rejects).
    """
    if not dt > 0:
        raise NirError(f"network {network.name!r}: dt must be positive, got {dt}")
    if network.input_layer is not None:
        raise NirError(
            f"network {network.name!r}: input layer {network.input_layer.name!r} has neurons driven by the "
            "sample itself (lava-dl's Input block), which no NIR node holds; export it to netx"
        )
    layer_nodes = [(layer, name, node) for layer in network.layers for name, node in _layer_nodes(layer, dt)]
    taken = {name for _, name, _ in layer_nodes}
    input_name, output_name = _free_name(INPUT_NODE, taken), _free_name(OUTPUT_NODE, taken)
    nodes: dict[str, nir.NIRNode] = {input_name: nir.Input(input_type=np.array(network.input_shape))}
    chain = [input_name]
    for layer, name, node in layer_nodes:
        if name in nodes:
            raise NirError(f"layer {layer.name!r}: NIR node name {name!r} is used twice")
        if "/" in name or not name:
            raise NirError(f"layer {layer.name!r}: a NIR node name cannot be empty or contain '/'")
        nodes[name] = node
        chain.append(name)
    nodes[output_name] = nir.Output(output_type=np.array(network.layers[-1].out_shape))
    chain.append(output_name)
    edges = list(itertools.pairwise(chain))
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=_graph_metadata(network, dt))
    except (ValueError, AssertionError) as exc:  # nir's type check: a bug here, not the user's
        raise NirError(f"network {network.name!r}: nir rejected the graph ({exc})") from exc
    return graph


def write_nir(network: ir.Network, path: str | Path, dt: float = DEFAULT_DT_S) -> Path:
    """Write ``network`` as a NIR HDF5 file (``nir.write``'s layout) atomically; returns the path."""
    return save_graph(to_nir_graph(network, dt), path)


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name.io`` (``name.io2``, ...) when a layer's node already has it."""
    candidate, index = name, 1
    while candidate in taken:
        candidate = f"{name}.io" if index == 1 else f"{name}.io{index}"
        index += 1
    return candidate


def is_toolchain_graph(metadata: Any) -> bool:
    """Whether a graph's metadata says this module wrote it (and so holds its exact data)."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get(TOOLCHAIN_KEY), dict):
        return False
    mark = metadata[TOOLCHAIN_KEY].get("format")
    return isinstance(mark, str) and mark == FORMAT_NAME


def _layer_nodes(layer: ir.Layer, dt: float) -> list[tuple[str, nir.NIRNode]]:
    if isinstance(layer, ir.Dense | ir.Conv):
        meta = {"layer": layer.name, "kind": layer.kind, "loihi": {"weight_exp": layer.weight_exp}}
        synapse = _synapse_node(layer, meta)
        neurons = _neuron_node(layer, dt)
        return [(layer.name, synapse), (layer.name + NEURONS_SUFFIX, neurons)]
    if isinstance(layer, ir.Pool):
        if len(layer.in_shape) != 3:
            raise NirError(
                f"layer {layer.name!r}: NIR has no 1-D pooling node (only SumPool2d/AvgPool2d); fold the "
                "pooling into the next layer first (toolchain.formats.lower.lower_pooling)"
            )
        pool = nir.SumPool2d if layer.mode == "sum" else nir.AvgPool2d
        k = layer.kernel_size
        node = pool(
            kernel_size=np.array([k, k]),
            stride=np.array([k, k]),
            padding=np.array([0, 0]),
            metadata={"layer": layer.name, "kind": "pool"},
        )
        return [(layer.name, node)]
    node = nir.Flatten(
        input_type={"input": np.array(layer.in_shape)},
        start_dim=0,
        end_dim=-1,
        metadata={"layer": layer.name, "kind": "flatten"},
    )
    return [(layer.name, node)]


def _synapse_node(layer: ir.SynapticLayer, meta: dict[str, Any]) -> nir.NIRNode:
    # float32 holds w_int / 64 * 2**weight_exp exactly (an 8-bit mantissa times a power of two)
    weight = ir.weight_float(layer).astype(np.float32)
    if isinstance(layer, ir.Dense):
        return nir.Linear(weight=weight, metadata=meta)
    if layer.groups != 1:
        raise NirError(
            f"layer {layer.name!r}: groups = {layer.groups}: nir {nir.version} types a convolution's input "
            "as weight.shape[1] channels, so its type check rejects grouped convolutions"
        )
    bias = np.zeros(weight.shape[0], dtype=np.float32)  # the neurons' bias is a voltage bias
    if weight.ndim == 3:
        return nir.Conv1d(
            input_shape=int(layer.in_shape[1]),
            weight=weight,
            stride=int(layer.stride[0]),
            padding=int(layer.padding[0]),
            dilation=1,
            groups=layer.groups,
            bias=bias,
            metadata=meta,
        )
    return nir.Conv2d(
        input_shape=tuple(int(size) for size in layer.in_shape[1:]),
        weight=weight,
        stride=tuple(int(s) for s in layer.stride),
        padding=tuple(int(p) for p in layer.padding),
        dilation=(1, 1),
        groups=layer.groups,
        bias=bias,
        metadata=meta,
    )


def _neuron_node(layer: ir.SynapticLayer, dt: float) -> nir.NIRNode:
    neurons = layer.neurons
    shape = layer.out_shape
    bias_state = np.zeros(shape, dtype=np.int64)
    if neurons.bias_mant is not None:
        # what Lava adds to v each step, in state units (a right shift floors for bias_exp < 0)
        bias_state = scaled_bias(neurons.bias_mant, neurons.bias_exp)
    params = DiscreteCuba(
        current_decay=np.full(shape, neurons.i_decay / DECAY_UNITY),
        voltage_decay=np.full(shape, neurons.v_decay / DECAY_UNITY),
        threshold=np.full(shape, neurons.threshold),
        bias=bias_state.astype(np.float64) / STATE_SCALE,
        input_scale=np.ones(shape),
    )
    node = cuba_to_nir(params, dt, f"layer {layer.name!r}", spiking=neurons.spiking)
    loihi: dict[str, Any] = {
        "iDecay": neurons.i_decay,
        "vDecay": neurons.v_decay,
        "vThMant": neurons.vth_mant,
        "refDelay": neurons.ref_delay,
        "bias_exp": neurons.bias_exp,
    }
    if neurons.bias_mant is not None:
        loihi["bias_mant"] = neurons.bias_mant.astype(np.int64)
    node.metadata = {"layer": layer.name, "kind": "neurons", "loihi": loihi}
    return node


def _graph_metadata(network: ir.Network, dt: float) -> dict[str, Any]:
    try:
        provenance = json.dumps(network.metadata, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise NirError(f"network {network.name!r}: metadata is not JSON-serializable ({exc})") from None
    return {
        "dt": float(dt),
        "discretization": DISCRETIZATION,
        "time_steps": network.time_steps,
        "readout": network.readout,
        "input_encoding": network.input_encoding,
        "input_meaning": INPUT_MEANING[network.input_encoding],
        "synapse_delay_steps": network.synapse_delay_steps,
        "loihi_rounding": LOIHI_ROUNDING,
        TOOLCHAIN_KEY: {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "network": network.name,
            "provenance": provenance,
        },
    }
