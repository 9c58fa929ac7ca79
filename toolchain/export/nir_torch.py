"""Any float NIR graph (snnTorch's ``export_to_nir``, or ours) as a torch module of the toolchain's own.

:func:`nir_to_torch` builds :class:`NirNetwork`: the graph's chain of nodes (ordered by the edges,
:func:`toolchain.formats.nir.reader.chain`) as time-major ``[T, B, ...]`` layers: weight nodes as
torch layers applied to all steps at once (:class:`toolchain.snn.layers.TimeDistributed`), neuron
nodes as :class:`NirCuba` populations stepped by :func:`toolchain.snn.neurons.cuba_float_sequence`
(:func:`toolchain.snn.dynamics.cuba_step` each step, as :class:`toolchain.snn.neurons.CubaLIF`) with the
per-neuron parameters that :func:`toolchain.formats.nir.convention.nir_to_cuba` derives from NIR's
(forward Euler, ``dt`` from the argument, else the graph's metadata, else snnTorch's 1e-4 s with a
warning; Norse's and sinabs's graphs with ``convention="norse"`` / ``"sinabs"``). snnTorch's ``Leaky``
(a ``LIF`` node) and ``Synaptic`` (a ``CubaLIF`` node) come out as the CUBA forms of
:mod:`toolchain.snn.lif`: ``voltage_decay = 1 - beta``, ``current_decay = 1 - alpha`` (and 1 for
``Leaky``), zero reset. The module returns the last population's spikes ``[T, B, n]``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from toolchain.formats.nir.convention import (
    CONVENTION_DT,
    CONVENTIONS,
    DiscreteCuba,
    NirError,
    float_array,
    nir_to_cuba,
    scalar,
    show,
)
from toolchain.formats.nir.files import load_graph
from toolchain.formats.nir.reader import chain, sample_shape
from toolchain.formats.nir.writer import is_toolchain_graph
from toolchain.snn.layers import Flatten, TimeDistributed
from toolchain.snn.neurons import cuba_float_sequence, delay


class NirCuba(nn.Module):
    """A population of float CUBA-LIF neurons with per-neuron parameters: current ``[T, B, ...]`` -> spikes.

    Each step is :func:`toolchain.snn.dynamics.cuba_step` (zero reset, strict ``v > threshold``)
    on ``input_scale * current`` delayed by ``delay_steps``; state starts at zero for every call.
    """

    def __init__(self, params: DiscreteCuba, delay_steps: int = 0) -> None:
        super().__init__()
        self.delay_steps = delay_steps
        self.scaled = not bool(np.all(params.input_scale == 1.0))
        for name in ("current_decay", "voltage_decay", "threshold", "bias", "input_scale"):
            value = np.ascontiguousarray(getattr(params, name), dtype=np.float32)
            self.register_buffer(name, torch.from_numpy(value))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        current = delay(current, self.delay_steps)
        if self.scaled:
            current = current * self.input_scale
        return cuba_float_sequence(
            current, self.current_decay, self.voltage_decay, self.threshold, self.bias, reset="zero"
        )


class NirNetwork(nn.Module):
    """The layers of a NIR chain in order: ``[T, B, *input_shape]`` -> last spikes ``[T, B, n]``."""

    def __init__(self, names: list[str], layers: list[nn.Module], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.names = names
        self.layers = nn.ModuleList(layers)
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_shape:
            raise NirError(f"input of shape {tuple(x.shape)}: expected [T, B, *{self.input_shape}]")
        for layer in self.layers:
            x = layer(x)
        return x.flatten(2)


def nir_to_torch(
    graph_or_path: nir.NIRGraph | str | Path,
    *,
    dt: float | None = None,
    convention: str = "nir",
    synapse_delay_steps: int | None = None,
) -> NirNetwork:
    """A torch module that runs a float NIR graph (see the module docstring).

    ``dt`` (seconds; steps for sinabs) overrides the graph's metadata; without either, the
    convention's time step is used (:data:`~toolchain.formats.nir.convention.CONVENTION_DT`:
    snnTorch's 1e-4 s, Norse's 1e-3 s, one step for sinabs) and, except for sinabs, whose time
    constants are in steps, a ``UserWarning`` names it once per call. A ``dt`` that is not a
    positive finite number is a :class:`NirError`. ``convention`` reads a library's graph as that
    library means it (:data:`~toolchain.formats.nir.convention.CONVENTIONS`: ``"nir"`` for
    snnTorch, SpikingJelly and this toolchain, ``"norse"``, ``"sinabs"``). ``synapse_delay_steps``
    delays every neuron node's input (default: the graph's metadata for a graph this toolchain
    wrote, else 0: NIR's edges are instantaneous).
    Supported nodes: ``Input``, ``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``, ``SumPool2d``,
    ``AvgPool2d``, ``Flatten``, ``CubaLIF``, ``LIF``, ``IF``, ``Output`` in one chain ending in a
    neuron node; anything else is a :class:`NirError` naming the node.
    """
    if synapse_delay_steps is not None and synapse_delay_steps < 0:
        raise NirError(f"synapse_delay_steps = {synapse_delay_steps}: expected 0 or more")
    if isinstance(graph_or_path, nir.NIRGraph):
        return _build(graph_or_path, dt, convention, synapse_delay_steps)
    graph = load_graph(graph_or_path)
    try:
        return _build(graph, dt, convention, synapse_delay_steps)
    except NirError as exc:
        raise NirError(f"{graph_or_path}: {exc}") from None


def _build(graph: nir.NIRGraph, dt: float | None, convention: str, delay: int | None) -> NirNetwork:
    if convention not in CONVENTIONS:
        raise NirError(f"convention = {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    step = _meta_float(dt if dt is not None else meta.get("dt", CONVENTION_DT[convention]))
    if not (step > 0 and math.isfinite(step)):
        raise NirError(f"dt = {step}: expected a positive, finite time step in seconds")
    delay_steps = 0
    if delay is not None:
        delay_steps = delay
    elif is_toolchain_graph(meta):
        delay_steps = _meta_int(meta.get("synapse_delay_steps", 0), "metadata.synapse_delay_steps")
    nodes = chain(graph)
    input_shape, _ = sample_shape(graph, nodes)
    shape = input_shape
    names, layers = [], []
    for key in nodes[1:-1]:
        node = graph.nodes[key]
        layer = _layer(key, node, shape, step, delay_steps, convention)
        shape = _out_shape(layer, shape)
        names.append(key)
        layers.append(layer)
    if not layers or not isinstance(layers[-1], NirCuba):
        raise NirError("the graph must end in a neuron node (CubaLIF, LIF, IF): nir_to_torch returns spikes")
    if dt is None and "dt" not in meta and convention != "sinabs":
        source = "Norse's to_nir default" if convention == "norse" else "snnTorch's and SpikingJelly's"
        warnings.warn(
            f"the NIR graph states no time step (no dt in its metadata): nir_to_torch reads its neurons "
            f"with dt = {step:g} s ({source}); pass dt=SECONDS if it was exported with another, and "
            "convention='norse' or 'sinabs' for those libraries' graphs",
            UserWarning,
            stacklevel=3,
        )
    return NirNetwork(names, layers, input_shape)


def _layer(
    key: str, node: Any, shape: tuple[int, ...], dt: float, delay_steps: int, convention: str
) -> nn.Module:
    where = f"node {key!r}"
    if isinstance(node, nir.Linear | nir.Affine):
        weight = float_array(node.weight, f"{where}: weight", ndim=2)
        if (math.prod(shape),) != (weight.shape[1],) or len(shape) != 1:
            raise NirError(f"{where}: weights {weight.shape} do not take input of shape {shape}")
        bias = float_array(node.bias, f"{where}: bias", ndim=1) if isinstance(node, nir.Affine) else None
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        _load(linear, weight, bias)
        return TimeDistributed(linear)
    if isinstance(node, nir.Conv1d | nir.Conv2d):
        dims = 1 if isinstance(node, nir.Conv1d) else 2
        groups = scalar(node.groups, f"{where}: groups", int)
        if groups < 1:
            raise NirError(f"{where}: groups = {groups}: expected a positive integer")
        weight = float_array(node.weight, f"{where}: weight", ndim=dims + 2)
        bias = float_array(node.bias, f"{where}: bias", ndim=1)
        conv_type = nn.Conv1d if dims == 1 else nn.Conv2d
        try:
            conv = conv_type(
                int(weight.shape[1]) * groups,
                int(weight.shape[0]),
                tuple(weight.shape[2:]),
                stride=_ints(node.stride),
                padding=node.padding if isinstance(node.padding, str) else _ints(node.padding),
                dilation=_ints(node.dilation),
                groups=groups,
            )
        except (TypeError, ValueError) as exc:
            raise NirError(f"{where}: invalid convolution ({exc})") from None
        _load(conv, weight, bias)
        return TimeDistributed(conv)
    if isinstance(node, nir.SumPool2d | nir.AvgPool2d):
        try:
            pool = nn.AvgPool2d(
                _ints(node.kernel_size),
                _ints(node.stride),
                _ints(node.padding),
                divisor_override=1 if isinstance(node, nir.SumPool2d) else None,
            )
        except (TypeError, ValueError) as exc:
            raise NirError(f"{where}: invalid pooling ({exc})") from None
        return TimeDistributed(pool)
    if isinstance(node, nir.Flatten):
        start = scalar(node.start_dim, f"{where}: start_dim", int)
        end = scalar(node.end_dim, f"{where}: end_dim", int)
        if not (-len(shape) <= start < len(shape) and -len(shape) <= end < len(shape)):
            raise NirError(f"{where}: Flatten dims {start}..{end} do not fit input of shape {shape}")
        if start == 0 and end in (-1, len(shape) - 1):
            return Flatten()
        # NIR's dims exclude the batch; [T * B, ...] in TimeDistributed adds one in front
        return TimeDistributed(nn.Flatten(start + 1, end if end < 0 else end + 1))
    if isinstance(node, nir.CubaLIF | nir.LIF | nir.IF):
        params = nir_to_cuba(node, dt, where, convention)
        try:
            broadcast = np.broadcast_shapes(params.shape, shape)
        except ValueError:
            broadcast = None
        if broadcast != shape:
            raise NirError(f"{where}: neuron parameters of shape {params.shape} do not fit input {shape}")
        return NirCuba(params, delay_steps)
    raise NirError(
        f"{where}: {type(node).__name__} is not supported by nir_to_torch (supported: Affine, Linear, "
        "Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, CubaLIF, LIF, IF)"
    )


def _out_shape(layer: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample output shape of ``layer`` for input ``shape`` (one zero sample through it)."""
    if isinstance(layer, NirCuba):
        return shape
    try:
        with torch.no_grad():
            out = layer(torch.zeros(1, 1, *shape))
    except (RuntimeError, ValueError) as exc:
        raise NirError(f"a layer does not take input of shape {shape} ({exc})") from None
    return tuple(out.shape[2:])


def _load(module: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> None:
    with torch.no_grad():
        if tuple(module.weight.shape) != weight.shape:
            raise NirError(f"weights of shape {weight.shape}, expected {tuple(module.weight.shape)}")
        module.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            if module.bias is None or tuple(module.bias.shape) != bias.shape:
                raise NirError(f"bias of shape {bias.shape} does not fit weights {weight.shape}")
            module.bias.copy_(torch.from_numpy(bias))


def _ints(value: Any) -> int | tuple[int, ...]:
    array = np.asarray(value)
    if (
        array.dtype.kind not in "iuf"
        or not np.all(np.isfinite(array))
        or not np.all(array == np.round(array))
        or np.any(np.abs(array) > 2**31)
    ):
        raise NirError(f"expected integer sizes, got {show(value)}")
    return int(array) if array.ndim == 0 else tuple(int(v) for v in array.reshape(-1))


def _meta_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise NirError(f"dt = {show(value)}: expected a number of seconds") from None


def _meta_int(value: Any, what: str) -> int:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or not 0 <= value <= 2**20
    ):
        raise NirError(f"{what} = {show(value)}: expected a non-negative integer")
    return int(value)
