"""Describe an exported file (netx, NIR or ONNX): layers, shapes, neuron parameters, quantization.

:func:`describe` detects the format from the file's content, not its name
(:func:`toolchain.formats.detect.detect_format`, the detection every command shares). netx and NIR
files are read by their readers into the deployment graph
(:func:`toolchain.formats.detect.read_graph`) and described by :func:`describe_network`: one code
path for every graph format. ONNX files are read by
:func:`toolchain.formats.onnx.read_onnx` (size-limited, no external data) and described from
their graph: inputs, outputs, operators, initializers and ``metadata_props``.

A netx or NIR file written by another library may not state its time steps, input encoding or
(NIR) time step ``dt``: it is still described (read with :func:`toolchain.formats.detect.open_graph`'s
placeholders), with those values ``None`` and named in ``network.not_stated``; a NIR graph also
shows the ``dt`` its neurons were read with (``network.dt_s``).

The result is plain data (JSON-ready); :func:`format_description` renders it as text tables.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import ir
from toolchain.errors import one_line as _one_line
from toolchain.formats.detect import FORMATS, GraphFile, ModelFileError, detect_format, open_graph
from toolchain.loihi_numbers import WEIGHT_MAX, WEIGHT_MIN, WEIGHT_SCALE, signed_bits

#: values per chunk when an initializer's statistics are computed
STATS_CHUNK = 1 << 22
#: how the text shows a setting the file does not state (time steps, input encoding, NIR's dt)
NOT_STATED = "not stated in the file"


#: a file cannot be described: missing, of an unknown format, or unreadable (the error every
#: command raises for a model file, :class:`toolchain.formats.detect.ModelFileError`)
InspectError = ModelFileError


def describe(path: str | Path, *, dt: float | None = None) -> dict[str, Any]:
    """What the netx, NIR or ONNX file ``path`` holds, as plain data (see the module docstring).

    ``dt``: for a NIR graph, the time step (seconds) to read its neurons with instead of its
    metadata's (:func:`toolchain.formats.detect.open_graph`).
    """
    path = Path(path)
    if not path.exists():
        raise InspectError(f"{path}: no such file")
    if not path.is_file():
        raise InspectError(f"{path}: not a file")
    fmt = detect_format(path)
    head: dict[str, Any] = {"file": str(path), "format": fmt, "size_bytes": path.stat().st_size}
    if fmt == "onnx":
        from toolchain.formats.onnx import read_onnx

        if dt is not None:
            raise InspectError(
                f"{path}: an ONNX model holds no time constants: --dt applies to NIR files only"
            )

        model = read_onnx(path)
        try:
            return {**head, **describe_onnx_model(model)}
        except InspectError as exc:
            raise InspectError(f"{path}: {exc}") from None
    if fmt == "nir":  # a time-to-first-spike graph is no CUBA network: described from its nodes
        from toolchain.export.ttfs import describe_ttfs_nir

        if (ttfs := describe_ttfs_nir(path)) is not None:
            return {**head, **ttfs}
    graph = open_graph(path, dt=dt, placeholders=True)
    return {**head, **_stated(describe_network(graph.network), graph)}


def _stated(description: dict[str, Any], graph: GraphFile) -> dict[str, Any]:
    """``description`` with what the file does not state marked: placeholders as ``None``, the
    settings in ``network.not_stated``, NIR's ``dt`` in ``network.dt_s``, warnings in ``notes``."""
    net = description["network"]
    relevant = ("time_steps", "input_encoding") + (("dt",) if graph.format == "nir" else ())
    for key in graph.placeholders:
        net[key] = None
    net["not_stated"] = [key for key in relevant if key not in graph.stated]
    notes = list(graph.notes)
    if graph.format == "nir":
        net["dt_s"] = graph.dt
    if "input_encoding" in graph.placeholders and graph.network.input_layer is None:
        notes.append(
            "the input encoding is not stated: the first layer is shown as for spike input (weight "
            "exponent 0); for graded input it would be -8, its float weights 256 times smaller"
        )
    description["notes"] = notes
    return description


def describe_network(network: ir.Network) -> dict[str, Any]:
    """A deployment graph's layers, shapes, neuron registers and weight quantization, as plain data."""
    layers = [_describe_layer(layer) for layer in network.layers]
    synaptic = network.synaptic_layers()
    neurons = sum(math.prod(layer.out_shape) for layer in synaptic)
    if network.input_layer is not None:  # lava-dl's Input block: neurons driven by the sample itself
        entry = {
            "name": network.input_layer.name,
            "kind": "input",
            "in_shape": list(network.input_shape),
            "out_shape": list(network.input_shape),
            "transform": {
                "weight_mant": network.input_layer.scale_mant,
                "bias_mant": network.input_layer.offset_mant,
            },
            "neurons": _describe_neurons(network.input_layer.neurons),
        }
        layers.insert(0, entry)
        neurons += math.prod(network.input_shape)
    return {
        "network": {
            "name": network.name,
            "input_shape": list(network.input_shape),
            "input_encoding": network.input_encoding,
            "time_steps": network.time_steps,
            "synapse_delay_steps": network.synapse_delay_steps,
            "classes": network.num_classes,
            "numeric": "integer (Loihi units)",
            "layers": len(network.layers),
            "neurons": neurons,
            "weights": sum(int(layer.weight.size) for layer in synaptic),
            "nonzero_weights": sum(int(np.count_nonzero(layer.weight)) for layer in synaptic),
        },
        "metadata": _plain(dict(network.metadata)),
        "layers": layers,
    }


def describe_onnx_model(model: Any) -> dict[str, Any]:
    """An ONNX ``ModelProto``'s graph as plain data: inputs, outputs, operators, initializers, metadata.

    Raises :class:`InspectError` when an initializer is inconsistent (its shape does not match its
    data, an unknown data type); tensors stored as external data are listed, not read.
    """
    graph = model.graph
    return {
        "ir_version": int(model.ir_version),
        "opset": {_text(entry.domain) or "ai.onnx": int(entry.version) for entry in model.opset_import},
        "producer": f"{_text(model.producer_name)} {_text(model.producer_version)}".strip(),
        "metadata": {_text(entry.key): _json_or_text(_text(entry.value)) for entry in model.metadata_props},
        "graph_name": _text(graph.name),
        "inputs": [_value_info(value) for value in graph.input],
        "outputs": [_value_info(value) for value in graph.output],
        "nodes": len(graph.node),
        "operators": dict(sorted(Counter(_text(node.op_type) for node in graph.node).items())),
        "initializers": [_initializer(tensor) for tensor in graph.initializer],
        "checker": _check(model),
    }


def format_description(description: dict[str, Any]) -> str:
    """The description as text: a header, the metadata and a table of layers (or initializers)."""
    lines = [f"{description['file']}: {description['format']} ({description['size_bytes']} bytes)"]
    if description["format"] == "onnx":
        lines += _format_onnx(description)
    elif description.get("coding") == "ttfs":
        lines += _format_ttfs(description)
    else:
        lines += _format_network(description)
    return "\n".join(lines)


def _describe_layer(layer: ir.Layer) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": layer.name,
        "kind": layer.kind,
        "in_shape": list(layer.in_shape),
        "out_shape": list(layer.out_shape),
    }
    if isinstance(layer, ir.Pool):
        entry.update(mode=layer.mode, kernel_size=layer.kernel_size)
    if isinstance(layer, ir.Conv):
        entry.update(
            kernel_size=list(layer.kernel_size),
            stride=list(layer.stride),
            padding=list(layer.padding),
            groups=layer.groups,
        )
    if isinstance(layer, ir.Dense | ir.Conv):
        entry["neurons"] = _describe_neurons(layer.neurons)
        entry["quantization"] = _describe_weights(layer)
    return entry


def _describe_neurons(neurons: ir.CubaNeurons) -> dict[str, Any]:
    bias = neurons.bias_mant
    return {
        "model": "CUBA-LIF",
        "i_decay": neurons.i_decay,
        "v_decay": neurons.v_decay,
        "vth_mant": neurons.vth_mant,
        "current_decay": neurons.current_decay,
        "voltage_decay": neurons.voltage_decay,
        "threshold": neurons.threshold,
        "ref_delay": neurons.ref_delay,
        "graded_spike": neurons.graded_spike,
        "bias": None
        if bias is None
        else {"mant_min": int(bias.min()), "mant_max": int(bias.max()), "exp": neurons.bias_exp},
    }


def _describe_weights(layer: ir.SynapticLayer) -> dict[str, Any]:
    weight = layer.weight
    low, high = int(weight.min()), int(weight.max())
    floats = ir.weight_float(layer)
    return {
        "weight_shape": list(weight.shape),
        "weight_int_min": low,
        "weight_int_max": high,
        "weight_exp": layer.weight_exp,
        "weight_float_min": float(floats.min()),
        "weight_float_max": float(floats.max()),
        "distinct_values": int(np.unique(weight).size),
        "zero_fraction": float(np.count_nonzero(weight == 0) / weight.size),
        "bits": signed_bits(low, high),
    }


def _value_info(value: Any) -> dict[str, Any]:
    import onnx

    tensor = value.type.tensor_type
    shape: list[int | str] | None = None
    if tensor.HasField("shape"):
        shape = [
            _text(dim.dim_param)
            if dim.HasField("dim_param")
            else int(dim.dim_value)
            if dim.HasField("dim_value")
            else "?"
            for dim in tensor.shape.dim
        ]
    return {"name": _text(value.name), "dtype": _dtype_name(onnx, tensor.elem_type), "shape": shape}


def _dtype_name(onnx: Any, elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"unknown({elem_type})"


def _initializer(tensor: Any) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    entry: dict[str, Any] = {
        "name": _text(tensor.name),
        "dtype": _dtype_name(onnx, tensor.data_type),
        "shape": [int(d) for d in tensor.dims],
    }
    if any(d < 0 for d in tensor.dims):
        raise InspectError(f"initializer {entry['name']!r}: negative dimension in shape {entry['shape']}")
    entry["elements"] = math.prod(entry["shape"])
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        entry["external"] = True  # never followed: its location could be any file
        return entry
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise InspectError(
            f"initializer {entry['name']!r}: unreadable tensor data ({_one_line(exc)})"
        ) from None
    if array.dtype.kind in "iufb" and array.size:
        entry.update(_value_stats(array))
    return entry


def _value_stats(array: np.ndarray) -> dict[str, Any]:
    """Range, non-finite count, integer-ness and Loihi-grid-ness of a numeric array, a chunk of
    :data:`STATS_CHUNK` values at a time (a large tensor is never copied whole as float64)."""
    low, high = math.inf, -math.inf
    non_finite, integer, on_grid = 0, True, array.dtype.kind == "f"
    flat = array.reshape(-1)
    for start in range(0, flat.size, STATS_CHUNK):
        with np.errstate(all="ignore"):
            values = flat[start : start + STATS_CHUNK].astype(np.float64)
            finite = values[np.isfinite(values)]
            non_finite += values.size - finite.size
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            integer = integer and bool(np.all(finite == np.round(finite)))
            if on_grid:
                scaled = finite * WEIGHT_SCALE
                on_grid = bool(np.all(scaled == 2 * np.round(scaled / 2)))
    stats: dict[str, Any] = {
        "min": low if non_finite < flat.size else None,
        "max": high if non_finite < flat.size else None,
        "non_finite": int(non_finite),
        "integer_valued": bool(integer and non_finite == 0),
    }
    if array.dtype.kind == "f":
        in_range = non_finite == 0 and low * WEIGHT_SCALE >= WEIGHT_MIN and high * WEIGHT_SCALE <= WEIGHT_MAX
        stats["on_loihi_grid"] = bool(on_grid and in_range)
    return stats


def _check(model: Any) -> str:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        return f"invalid: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return "ok"


def _text(value: str | bytes) -> str:
    """A protobuf string field as text: protobuf returns ``bytes`` for invalid UTF-8 in proto2."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return lines


def _shape_text(shape: list[Any] | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _format_metadata(metadata: dict[str, Any]) -> list[str]:
    if not metadata:
        return ["metadata: none"]
    return ["metadata:"] + [
        f"  {key}: {value if isinstance(value, str) else json.dumps(value)}"
        for key, value in metadata.items()
    ]


def _format_network(description: dict[str, Any]) -> list[str]:
    net = description["network"]
    unstated = set(net.get("not_stated", ()))
    encoding = net["input_encoding"]
    if encoding is None:
        encoding = f"input encoding {NOT_STATED}"
    elif "input_encoding" in unstated:
        encoding += f": {NOT_STATED}, NIR's default"
    steps = f"{net['time_steps']} time steps" if net["time_steps"] is not None else f"time steps {NOT_STATED}"
    dt = ""
    if "dt_s" in net:
        dt = f", dt {net['dt_s']:g} s" + (f" ({NOT_STATED}: the default)" if "dt" in unstated else "")
    lines = [
        f"network {net['name']!r}: input {_shape_text(net['input_shape'])} ({encoding}), "
        f"{steps}{dt}, synapse delay {net['synapse_delay_steps']}, {net['classes']} classes",
        f"{net['layers']} layers, {net['neurons']} neurons, {net['weights']} weights "
        f"({net['nonzero_weights']} nonzero), integers in Loihi units",
        *_format_metadata(description["metadata"]),
        *(f"note: {note}" for note in description.get("notes", ())),
        "",
    ]
    header = [
        "layer",
        "kind",
        "in",
        "out",
        "weights (int)",
        "exp",
        "bits",
        "iDecay",
        "vDecay",
        "vThMant",
        "bias",
    ]
    rows = []
    for layer in description["layers"]:
        quant, neurons = layer.get("quantization"), layer.get("neurons")
        detail = f"{layer['mode']} {layer['kernel_size']}" if layer["kind"] == "pool" else ""
        if "transform" in layer:  # input neurons: a_in = x * weight + bias, in 1/64
            detail = f"x * {layer['transform']['weight_mant']} + {layer['transform']['bias_mant']}"
        weights = detail
        if quant:
            shape = "x".join(str(s) for s in quant["weight_shape"])
            weights = f"{shape} [{quant['weight_int_min']}, {quant['weight_int_max']}]"
        bias = "-"
        if neurons and neurons["bias"]:
            bias = (
                f"[{neurons['bias']['mant_min']}, {neurons['bias']['mant_max']}] << {neurons['bias']['exp']}"
            )
        rows.append(
            [
                layer["name"],
                layer["kind"],
                _shape_text(layer["in_shape"]),
                _shape_text(layer["out_shape"]),
                weights,
                str(quant["weight_exp"]) if quant else "",
                str(quant["bits"]) if quant else "",
                str(neurons["i_decay"]) if neurons else "",
                str(neurons["v_decay"]) if neurons else "",
                str(neurons["vth_mant"]) if neurons else "",
                bias if neurons else "",
            ]
        )
    return lines + _table(header, rows)


def _format_onnx(description: dict[str, Any]) -> list[str]:
    opsets = ", ".join(f"{domain} {version}" for domain, version in description["opset"].items())
    lines = [
        f"ONNX IR {description['ir_version']}, opset {opsets}, producer {description['producer'] or '?'}, "
        f"checker: {description['checker']}",
        *(
            f"{kind} {v['name']}: {v['dtype']} {_shape_text(v['shape'])}"
            for kind, values in (("input", description["inputs"]), ("output", description["outputs"]))
            for v in values
        ),
        *_format_metadata(description["metadata"]),
        f"{description['nodes']} nodes: "
        + ", ".join(f"{op} {count}" for op, count in description["operators"].items()),
        "",
    ]
    header = ["initializer", "dtype", "shape", "min", "max", "integer", "loihi grid"]
    rows = []
    for tensor in description["initializers"]:
        rows.append(
            [
                tensor["name"],
                tensor["dtype"],
                _shape_text(tensor["shape"]),
                "external" if tensor.get("external") else _number(tensor.get("min")),
                "" if tensor.get("external") else _number(tensor.get("max")),
                _flag(tensor.get("integer_valued")),
                _flag(tensor.get("on_loihi_grid")),
            ]
        )
    return lines + (_table(header, rows) if rows else ["no initializers"])


def _format_ttfs(description: dict[str, Any]) -> list[str]:
    lines = [
        f"time-to-first-spike (TTFS) network {description['network']!r}: not LIF/CubaLIF; "
        f"window {description['time_window']} steps, epsilon {description['epsilon']}, "
        f"rounding {description['rounding']}, {description['time_steps']} time steps pipelined "
        "(see docs/ttfs.md#nir)",
        *_format_metadata(description["metadata"]),
        "",
    ]
    header = ["node", "NIR type", "role", "shape", "weights", "min", "max", "tau", "t_d"]
    rows = [
        [
            node["node"],
            node["type"],
            node["role"],
            _shape_text(node["shape"]),
            str(node.get("weights", "")),
            _number(node["weight_range"][0]) if "weight_range" in node else "",
            _number(node["weight_range"][1]) if "weight_range" in node else "",
            _number(node["tau"]) if "tau" in node else "",
            _number(node["t_d"]) if "t_d" in node else "",
        ]
        for node in description["nodes"]
    ]
    return lines + _table(header, rows)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


__all__ = [
    "FORMATS",
    "InspectError",
    "describe",
    "describe_network",
    "describe_onnx_model",
    "detect_format",
    "format_description",
]
