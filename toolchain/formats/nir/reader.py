"""A NIR graph back into a deployment graph (:class:`toolchain.ir.Network`), exactly or not at all.

``nir.read`` returns a graph's nodes in alphabetical order; :func:`chain` orders them by the edges,
from the ``Input`` node to the ``Output`` node, and refuses anything that is not one chain (branches,
recurrence, subgraphs). Each weight node followed by a neuron node becomes a :class:`~toolchain.ir.Dense`
or :class:`~toolchain.ir.Conv` layer; every float value must lie on Loihi's grid (a weight times
``64 / 2**weight_exp`` an integer, a decay times 4096, a threshold times 64, a unit input scale), or
the graph is refused with a pointer to :func:`toolchain.export.nir_torch.nir_to_torch`, which
runs any float graph. A graph this toolchain wrote also carries the Loihi integers in each node's
``loihi`` metadata: they supply what NIR has no field for (weight and bias exponents, bias
mantissas under a negative exponent) and must agree with the float values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np

from toolchain import ir
from toolchain.errors import ToolchainError
from toolchain.formats.nir.convention import (
    DEFAULT_DT_S,
    NirError,
    float_array,
    nir_to_cuba,
    scalar,
    shape_of,
    show,
)
from toolchain.formats.nir.files import load_graph
from toolchain.formats.nir.writer import TOOLCHAIN_KEY, is_toolchain_graph
from toolchain.loihi_numbers import DECAY_UNITY, NEVER_SPIKE_VTH_MANT, STATE_SCALE, WEIGHT_SCALE, scaled_bias

#: relative tolerance for "a float on the integer grid": float32 storage of an on-grid value
#: (relative error <= 2^-24 per operation) passes; the grid's spacing is far above it
GRID_RTOL = 1e-6

#: a file's time steps (and synapse delay) beyond this are refused: absurd, and a simulation would hang
MAX_TIME_STEPS = 2**20

SYNAPSE_NODES = (nir.Linear, nir.Affine, nir.Conv1d, nir.Conv2d)
NEURON_NODES = (nir.CubaLIF, nir.LIF, nir.IF)
#: integrators without a threshold: allowed after the last synaptic node, as a potential readout
READOUT_NODES = (nir.CubaLI, nir.LI, nir.I)
OFF_GRID_HINT = "toolchain.formats.nir.nir_to_torch runs float graphs"


def read_nir(
    path: str | Path,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding | None = None,
    dt: float | None = None,
) -> ir.Network:
    """The deployment graph in a NIR file (see :func:`from_nir_graph`); errors name the file."""
    graph = load_graph(path)
    try:
        return from_nir_graph(
            graph, time_steps=time_steps, input_encoding=input_encoding, dt=dt, name=Path(path).stem
        )
    except ToolchainError as exc:
        raise NirError(f"{path}: {exc}") from None


def from_nir_graph(
    graph: nir.NIRGraph,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding | None = None,
    dt: float | None = None,
    name: str | None = None,
) -> ir.Network:
    """The :class:`~toolchain.ir.Network` a NIR graph describes, bit-exactly.

    ``time_steps``, ``input_encoding`` and ``dt`` (seconds) default to the graph's metadata (this
    toolchain writes all three; given, they take precedence over it). A foreign graph states no
    time steps, so ``time_steps`` is needed (on the command line ``--time-steps``, the flag the
    error names); without metadata it is read with binary spike input, a synapse delay of 0 steps
    (NIR's edges are instantaneous) and snnTorch's ``dt = 1e-4`` s
    (:data:`~toolchain.formats.nir.convention.DEFAULT_DT_S`). A ``dt`` that is not positive, or that
    is so small against a time constant that a decay ``dt / tau`` rounds to 0 on Loihi's 1/4096
    grid (the neurons would never leak: a ``dt`` in the wrong unit), is refused.
    """
    _refuse_ttfs(graph)
    meta = _plain(graph.metadata if isinstance(graph.metadata, dict) else {})
    ours = is_toolchain_graph(meta)
    dt_source = "dt (--dt)" if dt is not None else "metadata.dt"
    dt = scalar(dt if dt is not None else meta.get("dt", DEFAULT_DT_S), dt_source, float)
    if not dt > 0:
        raise NirError(f"{dt_source} = {dt}: expected a positive time step in seconds")
    steps = time_steps if time_steps is not None else meta.get("time_steps")
    if steps is None:
        raise NirError("the graph states no time steps (no time_steps in its metadata): give --time-steps N")
    encoding = str(input_encoding if input_encoding is not None else meta.get("input_encoding", "spikes"))
    delay = scalar(meta.get("synapse_delay_steps", 1 if ours else 0), "metadata.synapse_delay_steps", int)
    provenance: dict[str, Any] = {}
    network_name = name or "nir"
    if ours:
        network_name = str(meta[TOOLCHAIN_KEY].get("network", network_name))
        try:
            provenance = json.loads(meta[TOOLCHAIN_KEY].get("provenance", "{}"))
        except (TypeError, ValueError, RecursionError):
            raise NirError("metadata.toolchain.provenance is not JSON") from None
        if not isinstance(provenance, dict):
            raise NirError("metadata.toolchain.provenance is not a JSON object")

    def exact_layer(
        key: str, node: Any, neuron_key: str, neuron: Any, in_shape: tuple[int, ...], first: bool
    ) -> ir.SynapticLayer:
        weight_exp = _weight_exp(node, key, encoding, first)
        return _synaptic_layer(key, node, neuron_key, neuron, in_shape, weight_exp, dt)

    layers, input_shape = walk(graph, exact_layer)
    steps = scalar(steps, "time_steps", int)
    for what, value in (("time_steps", steps), ("synapse_delay_steps", delay)):
        if value > MAX_TIME_STEPS:
            raise NirError(f"{what} = {value}: more than {MAX_TIME_STEPS} steps is not a plausible network")
    return ir.Network(
        name=network_name,
        input_shape=input_shape,
        input_encoding=encoding,  # type: ignore[arg-type]  # ir.Network validates it
        time_steps=steps,
        layers=tuple(layers),
        synapse_delay_steps=delay,
        metadata=provenance,
        readout=ir.implied_readout(layers),
    )


#: builds one synaptic layer of a chain: ``(key, node, neuron_key, neuron, in_shape, first)``,
#: ``first`` True for the chain's first synaptic node
SynapticBuilder = Callable[[str, Any, str, Any, tuple[int, ...], bool], ir.SynapticLayer]


def walk(graph: nir.NIRGraph, synaptic: SynapticBuilder) -> tuple[list[ir.Layer], tuple[int, ...]]:
    """The layers of ``graph``'s chain and its per-sample input shape.

    Each weight node and the neuron node after it become one layer by ``synaptic`` (exactly, for
    :func:`from_nir_graph`, or rounded onto Loihi's registers, for
    :func:`toolchain.export.nir_quantize.quantize_nir_graph`); pooling and flatten nodes become
    :class:`~toolchain.ir.Pool` and :class:`~toolchain.ir.Flatten`; anything else is a
    :class:`NirError` naming the node.
    """
    nodes = chain(graph)
    input_shape, leading = sample_shape(graph, nodes)
    shape = input_shape
    layers: list[ir.Layer] = []
    body = nodes[1:-1]
    index = 0
    first_synapse = True
    while index < len(body):
        key = body[index]
        node = graph.nodes[key]
        if isinstance(node, SYNAPSE_NODES):
            last = index + 2 == len(body)
            accepted = NEURON_NODES + READOUT_NODES if last else NEURON_NODES
            if index + 1 >= len(body) or not isinstance(graph.nodes[body[index + 1]], accepted):
                follower = type(graph.nodes[body[index + 1]]).__name__ if index + 1 < len(body) else "nothing"
                raise NirError(
                    f"node {key!r}: a {type(node).__name__} must be followed by a neuron node "
                    "(CubaLIF, LIF, IF; an integrator CubaLI, LI or I only as the last, non-spiking "
                    "readout), "
                    f"got {follower}: Loihi has neurons after every synaptic layer"
                )
            neuron_key = body[index + 1]
            layer = synaptic(key, node, neuron_key, graph.nodes[neuron_key], shape, first_synapse)
            first_synapse = False
            index += 2
        elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            layer = _pool(key, node, shape)
            index += 1
        elif isinstance(node, nir.Flatten):
            layer = _flatten(key, node, shape)
            index += 1
        elif isinstance(node, NEURON_NODES + READOUT_NODES):
            raise NirError(f"node {key!r}: a {type(node).__name__} without a weight node before it")
        else:
            raise NirError(
                f"node {key!r}: {type(node).__name__} has no counterpart in the deployment graph "
                "(supported: Linear, Affine, Conv1d, Conv2d, CubaLIF, LIF, IF, SumPool2d, AvgPool2d, Flatten)"
            )
        layers.append(layer)
        shape = layer.out_shape
    output = graph.nodes[nodes[-1]]
    out_shape = shape_of(output.output_type.get("output"), f"node {nodes[-1]!r}: shape")
    if leading and len(out_shape) > len(leading) and out_shape[: len(leading)] == leading:
        out_shape = out_shape[len(leading) :]
    if math.prod(out_shape) != math.prod(shape):
        raise NirError(f"node {nodes[-1]!r}: output shape {out_shape}, the last layer gives {shape}")
    return layers, input_shape


def _refuse_ttfs(graph: nir.NIRGraph) -> None:
    """A time-to-first-spike graph (``toolchain.export.ttfs``) is no CUBA network: refuse it."""
    from toolchain.formats.nir.ttfs_marks import is_ttfs_nir_graph, ttfs_kernel_nodes

    if not is_ttfs_nir_graph(graph):
        return
    kernels = ttfs_kernel_nodes(graph)
    what = (
        f"node {kernels[0]!r} is a TTFS temporal kernel, metadata.toolchain_node = 'ttfs_kernel'"
        if kernels
        else "its metadata says coding = 'ttfs'"
    )
    raise NirError(
        f"the graph is a time-to-first-spike (TTFS) network ({what}): its neurons fire once against a "
        "threshold that decays within each window, so it cannot be read as Loihi CUBA neurons; read "
        "it with toolchain.export.ttfs.read_ttfs_nir (see docs/ttfs.md#nir)"
    )


def chain(graph: nir.NIRGraph) -> list[str]:
    """The node names of ``graph`` from its one ``Input`` to its one ``Output``, following the edges."""
    inputs = [key for key, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [key for key, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"expected one Input and one Output node, got inputs {inputs} and outputs {outputs}")
    successors: dict[str, list[str]] = {key: [] for key in graph.nodes}
    for source, target in graph.edges:
        if source not in successors or target not in successors:
            raise NirError(f"edge ({source!r}, {target!r}) names a node the graph does not have")
        successors[source].append(target)
    for key, node in graph.nodes.items():
        if not isinstance(node, nir.NIRNode):  # Norse's to_nir writes None for a layer it cannot map
            raise NirError(
                f"node {key!r} is empty ({type(node).__name__}): the exporting library wrote no NIR node "
                "for that layer (Norse 1.1.0's to_nir does so for pooling and Flatten), so the graph "
                "does not describe the network"
            )
        if isinstance(node, nir.NIRGraph):
            what = "a recurrent subgraph (its edges form a loop)" if _loop(node) else "a subgraph"
            raise NirError(f"node {key!r} is {what}: only a flat chain of layers is supported")
    loop = _loop(graph)
    if loop:
        raise NirError(
            f"nodes {loop} form a loop: a recurrent layer (e.g. snnTorch's RLeaky or RSynaptic) is not "
            "supported, only a feed-forward chain of layers"
        )
    order = [inputs[0]]
    while order[-1] != outputs[0]:
        after = successors[order[-1]]
        if len(after) != 1:
            raise NirError(
                f"node {order[-1]!r} has {len(after)} successors {after}: only a chain of layers "
                "(no branches or dead ends) is supported"
            )
        if after[0] in order:
            raise NirError(f"edge ({order[-1]!r}, {after[0]!r}) closes a loop: recurrence is not supported")
        order.append(after[0])
    if len(order) != len(graph.nodes) or len(graph.edges) != len(order) - 1:
        extra = sorted(set(graph.nodes) - set(order))
        raise NirError(
            f"nodes {extra} (or extra edges) are off the chain from {inputs[0]!r} to {outputs[0]!r}"
        )
    return order


def _loop(graph: nir.NIRGraph) -> list[str]:
    """The nodes of one loop of ``graph``'s edges (a recurrent connection), or ``[]`` when it has none."""
    successors: dict[Any, list[Any]] = {}
    for source, target in graph.edges:
        successors.setdefault(source, []).append(target)
    state: dict[Any, int] = {}  # 1: on the current path, 2: done
    for start in successors:
        if start in state:
            continue
        path, stack = [start], [iter(successors.get(start, ()))]
        state[start] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(target) == 1:
                return [str(key) for key in path[path.index(target) :]]
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(successors.get(target, ())))
    return []


def sample_shape(graph: nir.NIRGraph, nodes: list[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The per-sample shape of the chain ``nodes``' ``Input`` node, and the leading axes dropped from it.

    Leading axes that the first layer does not take are the sample axes a library recorded from the
    sample it traced (Norse's ``to_nir`` keeps the batch axis, sinabs's the time axis of a
    ``[B, T, ...]`` sample): they are dropped (and from the ``Output`` node's shape, where it has them).
    """
    shape = shape_of(graph.nodes[nodes[0]].input_type.get("input"), f"node {nodes[0]!r}: shape")
    first = graph.nodes[nodes[1]] if len(nodes) > 2 else None
    takes = {nir.Linear: 1, nir.Affine: 1, nir.Conv1d: 2, nir.Conv2d: 3, nir.SumPool2d: 3, nir.AvgPool2d: 3}
    ndim = next((n for kind, n in takes.items() if type(first) is kind), len(shape))
    extra = max(0, len(shape) - ndim)
    return shape[extra:], shape[:extra]


def _synaptic_layer(
    key: str,
    node: Any,
    neuron_key: str,
    neuron: Any,
    in_shape: tuple[int, ...],
    weight_exp: int,
    dt: float,
) -> ir.SynapticLayer:
    weight = float_array(getattr(node, "weight", None), f"node {key!r}: weight")
    name = _layer_name(node, key)
    bias = getattr(node, "bias", None)
    if bias is not None and np.any(float_array(bias, f"node {key!r}: bias") != 0):
        raise NirError(
            f"node {key!r}: a non-zero synaptic bias has no Loihi counterpart (the neuron's bias is "
            f"v_leak); {OFF_GRID_HINT}"
        )
    w_int = _on_grid(weight * WEIGHT_SCALE / 2.0**weight_exp, f"node {key!r}: weight x 64 / 2^{weight_exp}")
    params = nir_to_cuba(neuron, dt, f"node {neuron_key!r}")
    for what, decay in (("current", params.current_decay), ("voltage", params.voltage_decay)):
        negligible = (decay > 0) & (decay * DECAY_UNITY < 0.5)
        if np.any(negligible):
            raise NirError(
                f"node {neuron_key!r}: dt = {dt:g} s gives a {what} decay dt/tau = "
                f"{decay[negligible].min():.3g}, below Loihi's step of 1/{DECAY_UNITY}: the neurons would "
                "never leak; is dt (the graph's "
                "metadata.dt, or --dt) in seconds?"
            )
    if not _close(params.input_scale, 1.0):
        raise NirError(
            f"node {neuron_key!r}: input scale (dt/tau_syn) w_in (dt/tau_mem) r = "
            f"{params.input_scale.min():.6g}..{params.input_scale.max():.6g} with dt = {dt:g} s, "
            f"Loihi's is 1; the graph was written for another dt, or is off Loihi's grid: {OFF_GRID_HINT}"
        )
    geometry = conv_geometry(key, node, w_int.shape, in_shape)
    if geometry is None:
        out_shape: tuple[int, ...] = (int(w_int.shape[0]),)
        neurons = _neurons(neuron_key, neuron, params, out_shape)
        return ir.Dense(name=name, weight=w_int, neurons=neurons, weight_exp=weight_exp)
    probe = ir.Conv(name, w_int, PLACEHOLDER_NEURONS, weight_exp=weight_exp, **geometry)
    return dataclasses.replace(probe, neurons=_neurons(neuron_key, neuron, params, probe.out_shape))


#: registers for a layer built only to learn its output shape (any valid values)
PLACEHOLDER_NEURONS = ir.CubaNeurons(i_decay=DECAY_UNITY, v_decay=0, vth_mant=1)


def conv_geometry(
    key: str, node: Any, weight_shape: tuple[int, ...], in_shape: tuple[int, ...]
) -> dict[str, Any] | None:
    """A weight node's convolution as :class:`~toolchain.ir.Conv` keywords (``in_shape``, ``stride``,
    ``padding``, ``groups``), or ``None`` for a dense node (``Linear``, ``Affine``); its weights'
    rank is checked, dilation other than 1 refused."""
    if isinstance(node, nir.Linear | nir.Affine):
        if len(weight_shape) != 2:
            raise NirError(f"node {key!r}: dense weights must be 2-D, got shape {tuple(weight_shape)}")
        return None
    dims = 1 if isinstance(node, nir.Conv1d) else 2
    if len(weight_shape) != dims + 2:
        kind = type(node).__name__
        raise NirError(f"node {key!r}: {kind} weights must be {dims + 2}-D, got {tuple(weight_shape)}")
    padding = 0 if isinstance(node.padding, str) and node.padding == "valid" else node.padding
    if _per_axis(node.dilation, dims, f"node {key!r}: dilation") != (1,) * dims:
        raise NirError(f"node {key!r}: dilation {show(node.dilation)} is not supported (only 1)")
    return {
        "in_shape": in_shape,
        "stride": _per_axis(node.stride, dims, f"node {key!r}: stride"),
        "padding": _per_axis(padding, dims, f"node {key!r}: padding"),
        "groups": scalar(node.groups, f"node {key!r}: groups", int),
    }


def _neurons(key: str, node: Any, params: Any, out_shape: tuple[int, ...]) -> ir.CubaNeurons:
    if params.shape not in (out_shape, (math.prod(out_shape),)) and math.prod(params.shape) != 1:
        raise NirError(f"node {key!r}: {params.shape} neurons, the layer before gives {out_shape}")
    i_decay = _uniform(
        _on_grid(params.current_decay * DECAY_UNITY, f"node {key!r}: current decay x 4096"), key
    )
    v_decay = _uniform(
        _on_grid(params.voltage_decay * DECAY_UNITY, f"node {key!r}: voltage decay x 4096"), key
    )
    if np.all(np.isinf(params.threshold)):  # an integrator (a potential readout): it never fires
        vth = NEVER_SPIKE_VTH_MANT
    else:
        vth = _uniform(_on_grid(params.threshold * WEIGHT_SCALE, f"node {key!r}: v_threshold x 64"), key)
    bias_state = _on_grid(
        np.broadcast_to(params.bias, params.shape).reshape(-1) * STATE_SCALE, f"node {key!r}: bias x 4096"
    )
    loihi = _loihi_meta(node, key)
    bias_mant, bias_exp = _bias_registers(bias_state, loihi, key, out_shape)
    for field, value in (("iDecay", i_decay), ("vDecay", v_decay), ("vThMant", vth)):
        if field in loihi and scalar(loihi[field], f"node {key!r}: metadata.loihi.{field}", int) != value:
            raise NirError(
                f"node {key!r}: metadata.loihi.{field} = {show(loihi[field])}, the node's values give {value}"
            )
    return ir.CubaNeurons(
        i_decay=i_decay, v_decay=v_decay, vth_mant=vth, bias_mant=bias_mant, bias_exp=bias_exp
    )


def _bias_registers(
    bias_state: np.ndarray, loihi: dict[str, Any], key: str, out_shape: tuple[int, ...]
) -> tuple[np.ndarray | None, int]:
    """Bias mantissas and exponent whose effective bias (Lava's ``scale_bias``) is ``bias_state``."""
    exp = scalar(loihi.get("bias_exp", 0), f"node {key!r}: metadata.loihi.bias_exp", int)
    if not ir.BIAS_EXP_MIN <= exp <= ir.BIAS_EXP_MAX:
        raise NirError(
            f"node {key!r}: metadata.loihi.bias_exp = {exp} is outside [{ir.BIAS_EXP_MIN}, {ir.BIAS_EXP_MAX}]"
        )
    if "bias_mant" in loihi:
        mant = loihi["bias_mant"]
        if not isinstance(mant, np.ndarray) or mant.dtype.kind not in "iu":
            raise NirError(f"node {key!r}: metadata.loihi.bias_mant must be an integer array")
        if mant.size != math.prod(out_shape):
            raise NirError(
                f"node {key!r}: metadata.loihi.bias_mant has {mant.size} values, expected {out_shape}"
            )
        effective = scaled_bias(mant.astype(np.int64).reshape(-1), exp)
        if not np.array_equal(np.broadcast_to(bias_state, effective.shape), effective):
            raise NirError(f"node {key!r}: metadata.loihi.bias_mant disagrees with v_leak")
        return mant.astype(np.int64).reshape(out_shape), exp
    if not np.any(bias_state):
        return None, 0
    # no metadata: the smallest non-negative exponent whose mantissas fit the 13-bit register
    full = np.broadcast_to(bias_state, (math.prod(out_shape),)).astype(np.int64)
    for exp in range(0, ir.BIAS_EXP_MAX + 1):
        mant = full >> exp
        if (
            np.array_equal(mant << exp, full)
            and mant.min() >= ir.BIAS_MANT_MIN
            and mant.max() <= ir.BIAS_MANT_MAX
        ):
            return mant.reshape(out_shape), exp
    raise NirError(
        f"node {key!r}: bias x 4096 spans [{full.min()}, {full.max()}], beyond Loihi's bias registers"
    )


def _weight_exp(node: Any, key: str, encoding: str, first: bool) -> int:
    loihi = _loihi_meta(node, key)
    if "weight_exp" not in loihi:
        return -8 if encoding == "graded" and first else 0
    exp = scalar(loihi["weight_exp"], f"node {key!r}: metadata.loihi.weight_exp", int)
    if not ir.WEIGHT_EXP_MIN <= exp <= ir.WEIGHT_EXP_MAX:
        raise NirError(
            f"node {key!r}: metadata.loihi.weight_exp = {exp} is outside "
            f"[{ir.WEIGHT_EXP_MIN}, {ir.WEIGHT_EXP_MAX}]"
        )
    return exp


def _pool(key: str, node: Any, in_shape: tuple[int, ...]) -> ir.Pool:
    kernel = _per_axis(node.kernel_size, 2, f"node {key!r}: kernel_size")
    stride = _per_axis(node.stride, 2, f"node {key!r}: stride")
    padding = _per_axis(node.padding, 2, f"node {key!r}: padding")
    if kernel[0] != kernel[1] or stride != kernel or padding != (0, 0):
        raise NirError(
            f"node {key!r}: pooling kernel {kernel}, stride {stride}, padding {padding}: only square "
            "non-overlapping windows (stride = kernel, no padding) have a Loihi counterpart"
        )
    mode = "sum" if isinstance(node, nir.SumPool2d) else "avg"
    return ir.Pool(name=_layer_name(node, key), mode=mode, kernel_size=kernel[0], in_shape=in_shape)


def _flatten(key: str, node: Any, in_shape: tuple[int, ...]) -> ir.Flatten:
    start = scalar(node.start_dim, f"node {key!r}: start_dim", int)
    end = scalar(node.end_dim, f"node {key!r}: end_dim", int)
    if start != 0 or end not in (-1, len(in_shape) - 1):
        raise NirError(f"node {key!r}: Flatten over dims {start}..{end}; only a full flatten is supported")
    return ir.Flatten(name=_layer_name(node, key), in_shape=in_shape)


def _layer_name(node: Any, key: str) -> str:
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    layer = meta.get("layer", key)
    return layer if isinstance(layer, str) and layer else key


def _loihi_meta(node: Any, key: str) -> dict[str, Any]:
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    loihi = meta.get("loihi", {})
    if not isinstance(loihi, dict):
        raise NirError(f"node {key!r}: metadata.loihi must be a group")
    return loihi


def _on_grid(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as ``int64`` if every one is an integer to within :data:`GRID_RTOL`, else refuse."""
    if not np.all(np.isfinite(values)):
        raise NirError(f"{what}: not finite")
    rounded = np.round(values)
    off = np.abs(values - rounded) > GRID_RTOL * np.maximum(1.0, np.abs(values))
    if np.any(off):
        worst = values[off].flat[0]
        raise NirError(f"{what} = {show(worst)} is off Loihi's integer grid; {OFF_GRID_HINT}")
    if rounded.size and np.abs(rounded).max() > 2**62:
        raise NirError(f"{what} is beyond any Loihi register")
    return rounded.astype(np.int64)


def _uniform(values: np.ndarray, key: str) -> int:
    if values.size == 0:
        raise NirError(f"node {key!r}: empty neuron parameters")
    if np.any(values != values.flat[0]):
        raise NirError(
            f"node {key!r}: per-neuron decays and thresholds differ; Loihi's CUBA layer shares one value"
        )
    return int(values.flat[0])


def _close(values: np.ndarray, target: float) -> bool:
    return bool(np.all(np.abs(values - target) <= GRID_RTOL * abs(target)))


def _per_axis(value: Any, dims: int, what: str) -> tuple[int, ...]:
    if isinstance(value, str):
        raise NirError(f"{what} = {show(value)}: expected integers")
    array = float_array(
        np.atleast_1d(np.asarray(value)) if not isinstance(value, np.ndarray) else value, what
    )
    array = np.atleast_1d(array)
    if array.size == 1:
        array = np.repeat(array, dims)
    if array.shape != (dims,) or np.any(array != np.round(array)) or np.any(np.abs(array) > 2**31):
        raise NirError(f"{what} = {show(value)}: expected {dims} integer(s)")
    return tuple(int(v) for v in array)


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """h5py's bytes as text, nested groups as dicts (what ``nir.read`` leaves in metadata)."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            out[key] = _plain(value)
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="replace")
        else:
            out[key] = value
    return out
