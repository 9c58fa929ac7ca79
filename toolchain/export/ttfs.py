"""Export of a time-to-first-spike (TTFS) network: what each format does with it.

- **ONNX** (:func:`export_ttfs_onnx`): the surrogate DNN in eval mode, which is what the TTFS SNN
  computes (spike times ceiled, the window applied): input ``input`` ``[B, *sample]``, output
  ``logits`` ``[B, classes]``. The kernels are in the graph (``Log``, ``Ceil``, ``Exp``,
  ``Where``) and, with the window and ``epsilon``, in ``metadata_props`` (``toolchain.ttfs``:
  JSON), so nothing is lost.
- **NIR** (:func:`export_ttfs_nir`, read back by :func:`read_ttfs_nir`): weight nodes with the
  batch norm folded in, and after each one the layer's temporal kernel as a ``Scale`` node of NaN
  tagged ``metadata.toolchain_node = "ttfs_kernel"`` with ``tau``, ``t_d``, the window, ``epsilon``
  and the rounding; the graph's metadata says ``coding = "ttfs"``, how to read it
  (:data:`NIR_READING`) and holds the recipe and the unfolded parameters, so nothing is lost. No
  NIR node means "once-firing neuron with a decaying threshold"; NaN makes a consumer that ignores
  the tag fail loudly instead of running a linear network, and the CUBA reader
  (:func:`toolchain.formats.nir.read_nir`) refuses such a graph. :func:`run_ttfs_nir_graph` runs a
  graph from its nodes alone, as a consumer must.
- **netx / the SNN ONNX**: refused (:func:`refuse`). A TTFS neuron fires once, when its potential
  reaches a threshold that decays exponentially within each window; Loihi's CUBA neuron (netx, the
  quantized IR) has a fixed threshold and fires repeatedly, so a one-to-one mapping would silently
  change what the network computes.
"""

from __future__ import annotations

import io
import itertools
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolchain import __version__
from toolchain.config import Recipe
from toolchain.errors import ToolchainError
from toolchain.formats.nir.ttfs_marks import (
    NIR_CODING,
    NIR_KERNEL_TAG,
    is_ttfs_nir_graph,
    metadata_text,
    ttfs_kernel_nodes,
)
from toolchain.io import atomic_write
from toolchain.snn.ttfs_model import TemporalKernel, TTFSNetwork

#: the ONNX operator set of the surrogate DNN's file
OPSET = 17
#: formats that would run a TTFS network as CUBA-LIF neurons: refused
CUBA_FORMATS = ("netx", "onnx-snn")


class TTFSExportError(ToolchainError):
    """A TTFS network cannot be exported to the requested format without changing its meaning."""


def refuse(recipe: Recipe, fmt: str) -> None:
    """Raise :class:`TTFSExportError` when ``recipe`` is a TTFS recipe and ``fmt`` maps onto CUBA.

    The check for ``toolchain export`` (``fmt``: ``netx``, ``onnx-snn``); ``onnx`` of the
    surrogate DNN (:func:`export_ttfs_onnx`) and ``nir`` as a TTFS graph (:func:`export_ttfs_nir`)
    are allowed.
    """
    if not recipe.ttfs.enabled or fmt not in CUBA_FORMATS:
        return
    from toolchain.snn.trained import refusal_message

    raise TTFSExportError(refusal_message(recipe, f"--format {fmt} (Loihi CUBA neurons)"))


class _Logits(nn.Module):
    def __init__(self, model: TTFSNetwork) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.run(x).logits


def ttfs_metadata(model: TTFSNetwork) -> dict[str, Any]:
    """The kernels' parameters and the window: ``metadata_props["toolchain.ttfs"]``."""
    return {
        "coding": "ttfs",
        "time_window": model.config.time_window,
        "epsilon": model.config.epsilon,
        "encode_input": model.input_kernel is not None,
        "kernels": {
            name: {"tau": float(k.tau.detach()), "t_d": float(k.t_d.detach())}
            for name, k in model.kernels().items()
        },
        "encode": "t = ceil(ReLU(t_d - tau * ln(ReLU(x) + epsilon)))",
        "decode": "x = exp((t_d - t) / tau) if t <= time_window else 0",
    }


def export_ttfs_run(
    run_dir: str | Path, fmt: str, out: str | Path, data_dir: str | Path | None = None
) -> Path | None:
    """``toolchain export`` of a TTFS run: the surrogate DNN for ``onnx``, the TTFS graph for ``nir``,
    a refusal for the rest.

    Returns ``None`` when ``run_dir`` is not a TTFS run (its ``recipe.toml`` missing, unreadable or
    ``[ttfs].enabled`` false: the ordinary export handles it and reports such problems).
    """
    from toolchain.config import load_recipe
    from toolchain.data import load_dataset
    from toolchain.errors import RecipeError
    from toolchain.export.onnx import recipe_metadata
    from toolchain.snn.trained import load_ttfs_run

    run = Path(run_dir)
    try:
        recipe = load_recipe(run / "recipe.toml")
    except RecipeError:
        return None
    if not recipe.ttfs.enabled:
        return None
    if fmt not in ("onnx", "nir"):
        try:
            refuse(recipe, fmt if fmt in CUBA_FORMATS else "netx")
        except TTFSExportError as exc:
            raise TTFSExportError(f"{run}: {exc}") from None
    dataset = load_dataset(recipe.data.dataset, data_dir, recipe.data.options)
    _, model = load_ttfs_run(run, dataset.sample_shape, dataset.num_classes)
    provenance = recipe_metadata(recipe, list(dataset.classes))
    if fmt == "nir":
        return export_ttfs_nir(model, recipe, out, provenance=provenance)
    return export_ttfs_onnx(model, out, metadata=provenance)


def export_ttfs_onnx(
    model: TTFSNetwork, path: str | Path, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write the surrogate DNN ``model`` (eval mode) to ``path``; returns the path."""
    import onnx

    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    example = torch.zeros(2, *model.input_shape, dtype=dtype)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Logits(model),
                (example,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:
        raise TTFSExportError(f"{path}: torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    graph = onnx.load_model_from_string(buffer.getvalue())
    graph.producer_name = "toolchain"
    graph.producer_version = __version__
    props = {
        **dict(metadata or {}),
        "toolchain.graph": "ttfs-surrogate",
        "input_shape": list(model.input_shape),
        "layer_names": list(model.layer_names),
        "toolchain.ttfs": ttfs_metadata(model),
    }
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key = str(key)
        entry.value = value if isinstance(value, str) else json.dumps(value)
    try:
        onnx.checker.check_model(graph, full_check=True)
    except Exception as exc:
        raise TTFSExportError(f"{path}: the exported model fails onnx.checker: {exc}") from None
    data = graph.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))


# -- NIR ---------------------------------------------------------------------------------------
#: ``NIRGraph.metadata["toolchain"]["format"]`` of a TTFS graph (not the CUBA ``toolchain-nir``)
NIR_FORMAT = "toolchain-nir-ttfs"
NIR_FORMAT_VERSION = 1
#: ``metadata["coding"]`` of a TTFS graph, and ``metadata["toolchain_node"]`` of a kernel node
KERNEL_SUFFIX = ".kernel"
#: how a consumer must read the graph (written into ``metadata["how_to_read"]``)
NIR_READING = (
    "A time-to-first-spike (TTFS) network, not a LIF/CubaLIF network: run it as the chain Input -> "
    "... -> Output on a static sample. Affine/Linear/Conv nodes hold the weights with batch norm "
    "folded in; SumPool2d/AvgPool2d/Flatten are as defined by NIR (a Conv1d tagged kind = 'pool' is "
    "1-D pooling). Every Scale node whose metadata.toolchain_node = 'ttfs_kernel' is NOT a scale "
    "(its scale is NaN on purpose): it is the layer's temporal kernel, a once-firing neuron with the "
    "decaying threshold exp((t_d - k) / tau) at step k of its window, which computes on a value x "
    "the spike time t = ceil(ReLU(t_d - tau * ln(ReLU(x) + epsilon))) and passes on "
    "exp((t_d - t) / tau) if t <= time_window else 0 (no spike), with tau, t_d, time_window, "
    "epsilon from its metadata. The last weight node's output is the logits (the output neurons "
    "never fire). As a spiking network: layer-pipelined windows of time_window + 1 steps (layer l "
    "integrates while layer l - 1 fires, fires during the next window); see docs/ttfs.md#nir."
)


def to_ttfs_nir_graph(
    model: TTFSNetwork, recipe: Recipe, *, provenance: Mapping[str, Any] | None = None
) -> Any:
    """The surrogate DNN ``model`` of ``recipe`` as a ``nir.NIRGraph`` (``docs/ttfs.md#nir``).

    Weight nodes hold the batch-norm-folded weights and biases; each kernel is a ``Scale`` node of
    NaN (no consumer can run it as a plain scale without noticing) tagged ``ttfs_kernel`` with
    ``tau``, ``t_d``, ``time_window``, ``epsilon`` and ``rounding`` in its metadata. The graph's
    metadata holds the recipe and every trained parameter unfolded (``toolchain.state``), so that
    :func:`read_ttfs_nir` restores ``model`` exactly.
    """
    import nir
    import numpy as np

    from toolchain.config import dump_recipe
    from toolchain.snn.blocks import FlattenBlock, PoolBlock, SynapticBlock

    layer_names = {block.name for block in model.blocks}
    input_name = "input.io" if "input" in layer_names else "input"
    output_name = "output.io" if "output" in layer_names else "output"
    nodes: dict[str, Any] = {input_name: nir.Input(input_type=np.array(model.input_shape))}
    if model.input_kernel is not None:
        nodes["input" + KERNEL_SUFFIX] = _kernel_node(model, "input", model.input_shape)
    for block in model.blocks:
        if isinstance(block, SynapticBlock):
            nodes[block.name] = _weight_node(block)
            if isinstance(block.neuron, TemporalKernel):
                nodes[block.name + KERNEL_SUFFIX] = _kernel_node(model, block.name, block.out_shape)
        elif isinstance(block, PoolBlock):
            nodes[block.name] = _pool_node(block)
        elif isinstance(block, FlattenBlock):
            nodes[block.name] = nir.Flatten(
                input_type={"input": np.array(block.in_shape)},
                start_dim=0,
                end_dim=-1,
                metadata={"layer": block.name, "kind": "flatten"},
            )
        else:  # pragma: no cover - build_blocks makes only these
            raise TTFSExportError(f"layer {block.name!r}: {type(block).__name__} has no NIR node")
        if len(nodes) != _count(model, block) or output_name in nodes:
            raise TTFSExportError(f"layer {block.name!r}: its NIR node name is used twice")
    nodes[output_name] = nir.Output(output_type=np.array([model.num_classes]))
    names = list(nodes)
    state = {
        key: np.atleast_1d(value.detach().cpu().numpy()).copy() for key, value in model.state_dict().items()
    }
    cfg = model.config
    metadata = {
        "coding": NIR_CODING,
        "how_to_read": NIR_READING,
        "time_window": int(cfg.time_window),
        "window_steps": int(cfg.time_window) + 1,
        "time_steps": (len(model.kernels()) + 1) * (int(cfg.time_window) + 1),
        "epsilon": float(cfg.epsilon),
        "rounding": "ceil",
        "docs": "docs/ttfs.md#nir",
        "toolchain": {
            "format": NIR_FORMAT,
            "format_version": NIR_FORMAT_VERSION,
            "network": recipe.name,
            "recipe": dump_recipe(recipe),
            "num_classes": int(model.num_classes),
            "provenance": json.dumps(dict(provenance or {}), sort_keys=True),
            "state": state,
        },
    }
    try:
        return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(names)), metadata=metadata)
    except (ValueError, AssertionError) as exc:  # nir's type check: a bug here, not the user's
        raise TTFSExportError(f"recipe {recipe.name!r}: nir rejected the TTFS graph ({exc})") from exc


def export_ttfs_nir(
    model: TTFSNetwork, recipe: Recipe, path: str | Path, *, provenance: Mapping[str, Any] | None = None
) -> Path:
    """Write :func:`to_ttfs_nir_graph` to ``path`` (``nir.write``'s HDF5) atomically; returns the path."""
    from toolchain.formats.nir.files import save_graph

    return save_graph(to_ttfs_nir_graph(model, recipe, provenance=provenance), path)


def read_ttfs_nir(path: str | Path) -> tuple[Recipe, TTFSNetwork]:
    """The recipe and surrogate DNN (eval mode) of a TTFS NIR file written by :func:`export_ttfs_nir`.

    The model is rebuilt from the recipe and the stored parameters (bit-exact); then every node is
    checked against it (folded weights and biases, kernel parameters, shapes), so a file whose
    nodes were edited is refused, naming the node, rather than read as something else.
    """
    from toolchain.formats.nir.convention import NirError
    from toolchain.formats.nir.files import load_graph

    graph = load_graph(path)
    try:
        return _from_ttfs_graph(graph)
    except (ToolchainError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ToolchainError):
            raise NirError(f"{path}: {exc}") from None
        raise NirError(f"{path}: not a TTFS graph of this toolchain ({type(exc).__name__}: {exc})") from None


def describe_ttfs_nir(path: str | Path) -> dict[str, Any] | None:
    """What a TTFS NIR file holds, as plain data for ``toolchain inspect``; ``None`` if it is not one.

    Read from the nodes as a consumer sees them (``coding``, the window, and per node its NIR
    type, role, output shape, weight range and kernel parameters), not checked against the stored
    parameters (:func:`read_ttfs_nir` does that).
    """
    import numpy as np

    from toolchain.formats.nir.files import load_graph
    from toolchain.formats.nir.reader import chain

    graph = load_graph(path)
    if not is_ttfs_nir_graph(graph):
        return None
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    ours = meta.get("toolchain") if isinstance(meta.get("toolchain"), dict) else {}
    kernels = set(ttfs_kernel_nodes(graph))
    rows = []
    for key in chain(graph):
        node = graph.nodes[key]
        node_meta = node.metadata if isinstance(node.metadata, dict) else {}
        row: dict[str, Any] = {"node": key, "type": type(node).__name__}
        row["role"] = (
            "ttfs kernel" if key in kernels else metadata_text(node_meta.get("kind")) or row["type"].lower()
        )
        shape = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        row["shape"] = None if shape is None else [int(v) for v in np.atleast_1d(shape)]
        weight = getattr(node, "weight", None)
        if weight is not None and key not in kernels:
            row["weights"] = int(np.size(weight))
            row["weight_range"] = [float(np.min(weight)), float(np.max(weight))]
        if key in kernels:
            row["tau"] = float(np.asarray(node_meta.get("tau", np.nan)))
            row["t_d"] = float(np.asarray(node_meta.get("t_d", np.nan)))
        rows.append(row)

    def number(key: str) -> Any:
        value = meta.get(key)
        return None if value is None else np.asarray(value).item()

    try:
        provenance = json.loads(metadata_text(ours.get("provenance")) or "{}")
    except (ValueError, RecursionError):
        provenance = {"provenance": metadata_text(ours.get("provenance"))}
    return {
        "coding": NIR_CODING,
        "network": metadata_text(ours.get("network")),
        "time_window": number("time_window"),
        "epsilon": number("epsilon"),
        "time_steps": number("time_steps"),
        "rounding": metadata_text(meta.get("rounding")),
        "how_to_read": metadata_text(meta.get("how_to_read")),
        "metadata": provenance if isinstance(provenance, dict) else {},
        "nodes": rows,
    }


def run_ttfs_nir_graph(graph: Any, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, classes]`` of a TTFS ``nir.NIRGraph`` on static samples ``x``, from its nodes alone.

    The reading :data:`NIR_READING` prescribes, for a consumer that knows nothing but the file: the
    weight nodes (folded batch norm) and the kernels' metadata; no stored state is used.
    """
    import nir
    import numpy as np
    from torch.nn import functional

    from toolchain.formats.nir.reader import chain
    from toolchain.snn.ttfs import decode_time, encode_time

    meta = graph.metadata
    window = int(meta["time_window"])
    order = chain(graph)
    h = x.reshape(x.shape[0], *[int(v) for v in graph.nodes[order[0]].input_type["input"]])
    for key in order[1:-1]:
        node = graph.nodes[key]
        w = torch.as_tensor(getattr(node, "weight", torch.zeros(0)), dtype=h.dtype)
        if isinstance(node, nir.Scale) and key in ttfs_kernel_nodes(graph):
            k = node.metadata
            tau = torch.tensor(float(k["tau"]), dtype=h.dtype)
            t_d = torch.tensor(float(k["t_d"]), dtype=h.dtype)
            t = encode_time(h, tau, t_d, mode="ceil", epsilon=float(k["epsilon"]))
            h = decode_time(t, tau, t_d, window)
        elif isinstance(node, nir.Affine):
            h = functional.linear(h, w, torch.as_tensor(node.bias, dtype=h.dtype))
        elif isinstance(node, nir.Linear):
            h = functional.linear(h, w)
        elif isinstance(node, nir.Conv1d | nir.Conv2d):
            conv = functional.conv1d if isinstance(node, nir.Conv1d) else functional.conv2d
            stride = tuple(int(s) for s in np.atleast_1d(node.stride))
            padding = tuple(int(p) for p in np.atleast_1d(node.padding))
            h = conv(h, w, torch.as_tensor(node.bias, dtype=h.dtype), stride=stride, padding=padding)
        elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            k = int(np.atleast_1d(node.kernel_size)[0])
            h = functional.avg_pool2d(h, k) * (k * k if isinstance(node, nir.SumPool2d) else 1)
        elif isinstance(node, nir.Flatten):
            h = h.reshape(h.shape[0], -1)
        else:
            raise TTFSExportError(f"node {key!r}: {type(node).__name__} is not part of a TTFS graph")
    return h


def _from_ttfs_graph(graph: Any) -> tuple[Recipe, TTFSNetwork]:
    import tomllib

    import numpy as np

    from toolchain.config import parse_recipe
    from toolchain.formats.nir.reader import chain
    from toolchain.snn.trained import build_for_recipe

    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    ours = meta.get("toolchain") if isinstance(meta.get("toolchain"), dict) else {}
    if metadata_text(ours.get("format")) != NIR_FORMAT:
        raise TTFSExportError(
            f"metadata.toolchain.format is {metadata_text(ours.get('format'))!r}, expected {NIR_FORMAT!r} "
            "(a TTFS graph written by toolchain export --format nir)"
        )
    version = int(np.asarray(ours.get("format_version", -1)).reshape(-1)[0])
    if version != NIR_FORMAT_VERSION:
        raise TTFSExportError(f"metadata.toolchain.format_version = {version}, expected {NIR_FORMAT_VERSION}")
    try:
        table = tomllib.loads(metadata_text(ours["recipe"]))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise TTFSExportError(f"metadata.toolchain.recipe is not a recipe ({type(exc).__name__})") from None
    recipe = parse_recipe(table, source="metadata.toolchain.recipe")
    order = chain(graph)
    input_shape = tuple(int(v) for v in graph.nodes[order[0]].input_type["input"])
    model = build_for_recipe(recipe, input_shape, int(np.asarray(ours["num_classes"]).reshape(-1)[0]))
    expected = model.state_dict()
    stored = ours["state"]
    if set(stored) != set(expected):
        raise TTFSExportError(
            f"metadata.toolchain.state holds {sorted(set(stored) ^ set(expected))} beyond or short of "
            f"the parameters of recipe {recipe.name!r}"
        )
    state = {}
    for key, value in expected.items():
        array = np.asarray(stored[key])
        if array.size != value.numel() or array.dtype != value.detach().numpy().dtype:
            raise TTFSExportError(
                f"metadata.toolchain.state.{key}: {array.dtype} {array.shape}, expected "
                f"{value.dtype} {tuple(value.shape)}"
            )
        state[key] = torch.from_numpy(array.copy()).reshape(value.shape)
    model.load_state_dict(state)
    model.eval()
    # every node must say what the restored model computes: the graph it writes, field by field
    expected_graph = to_ttfs_nir_graph(model, recipe)
    want = list(expected_graph.nodes)
    if order != want:
        raise TTFSExportError(f"the graph's chain {order} is not the recipe's {want}")
    for key in want:
        node, reference = graph.nodes[key], expected_graph.nodes[key]
        if type(node) is not type(reference):
            raise TTFSExportError(
                f"node {key!r}: a {type(node).__name__}, the recipe gives a {type(reference).__name__}"
            )
        _compare(node.to_dict(), reference.to_dict(), f"node {key!r}: ")
    return recipe, model


def _kernel_node(model: TTFSNetwork, name: str, shape: tuple[int, ...]) -> Any:
    import nir
    import numpy as np

    kernel = model.kernels()[name]
    return nir.Scale(
        scale=np.full(shape, np.nan, dtype=np.float32),
        metadata={
            "toolchain_node": NIR_KERNEL_TAG,
            "layer": name,
            "kind": "ttfs_kernel",
            "tau": float(kernel.tau.detach()),
            "t_d": float(kernel.t_d.detach()),
            "time_window": int(kernel.window_steps),
            "epsilon": float(kernel.epsilon),
            "rounding": "ceil",
            "encode": "t = ceil(ReLU(t_d - tau * ln(ReLU(x) + epsilon)))",
            "decode": "x = exp((t_d - t) / tau) if t <= time_window else 0",
            "scale": "NaN on purpose: this node is not a Scale, see the graph's metadata.how_to_read",
        },
    )


def _weight_node(block: Any) -> Any:
    import nir
    import numpy as np

    weight, bias = block.folded_weight_bias()
    w = weight.detach().cpu().numpy().astype(np.float32)
    b = None if bias is None else bias.detach().cpu().numpy().astype(np.float32)
    meta = {"layer": block.name, "kind": block.kind, "batch_norm_folded": int(block.norm is not None)}
    spec = block.spec
    if spec.kind == "dense":
        return (
            nir.Linear(weight=w, metadata=meta) if b is None else nir.Affine(weight=w, bias=b, metadata=meta)
        )
    b = np.zeros(w.shape[0], dtype=np.float32) if b is None else b
    if spec.spatial_dims == 1:
        return nir.Conv1d(
            input_shape=int(spec.in_shape[1]),
            weight=w,
            stride=int(spec.stride),
            padding=int(spec.padding),
            dilation=1,
            groups=1,
            bias=b,
            metadata=meta,
        )
    return nir.Conv2d(
        input_shape=(int(spec.in_shape[1]), int(spec.in_shape[2])),
        weight=w,
        stride=(int(spec.stride),) * 2,
        padding=(int(spec.padding),) * 2,
        dilation=(1, 1),
        groups=1,
        bias=b,
        metadata=meta,
    )


def _pool_node(block: Any) -> Any:
    import nir
    import numpy as np

    k = int(block.pool.kernel_size)
    meta = {"layer": block.name, "kind": "pool", "mode": block.spec.mode, "kernel_size": k}
    if block.pool.dims == 2:
        pool = nir.SumPool2d if block.spec.mode == "sum" else nir.AvgPool2d
        return pool(
            kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]), metadata=meta
        )
    # NIR has no 1-D pooling: the same linear map as a convolution (channel c reads channel c only)
    weight = block.pool.conv_weight(block.in_shape[0]).detach().cpu().numpy().astype(np.float32)
    return nir.Conv1d(
        input_shape=int(block.in_shape[1]),
        weight=weight,
        stride=k,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(weight.shape[0], dtype=np.float32),
        metadata=meta,
    )


def _count(model: TTFSNetwork, upto: Any) -> int:
    """Nodes the graph has after ``upto``'s: Input, the input kernel, each block and its kernel."""
    from toolchain.snn.blocks import SynapticBlock

    count = 1 + (model.input_kernel is not None)
    for block in model.blocks:
        count += 1 + (isinstance(block, SynapticBlock) and isinstance(block.neuron, TemporalKernel))
        if block is upto:
            return count
    raise AssertionError(upto)  # pragma: no cover


def _compare(stored: Any, reference: Any, where: str) -> None:
    """Refuse, naming the field, where ``stored`` (a node's fields) differs from ``reference``."""
    import numpy as np

    if isinstance(reference, dict):
        if not isinstance(stored, dict) or set(stored) != set(reference):
            raise TTFSExportError(f"{where.rstrip(': .')} has other fields than the recipe's graph")
        for key, value in reference.items():
            _compare(stored[key], value, f"{where}{key}." if isinstance(value, dict) else f"{where}{key}")
        return
    if isinstance(reference, str) or isinstance(stored, str | bytes):
        same = metadata_text(stored) == metadata_text(reference)
    else:
        a, b = np.asarray(stored), np.asarray(reference)
        same = a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if not same:
        raise TTFSExportError(
            f"{where} = {_short(stored)} disagrees with the parameters in metadata.toolchain.state "
            f"(which give {_short(reference)})"
        )


def _short(value: Any) -> str:
    import numpy as np

    array = np.asarray(value)
    if array.dtype.kind in "biuf" and array.size > 4:
        return f"{array.dtype} array {array.shape}"
    return " ".join(str(value).split())[:80]


__all__ = [
    "CUBA_FORMATS",
    "NIR_CODING",
    "NIR_FORMAT",
    "NIR_KERNEL_TAG",
    "NIR_READING",
    "OPSET",
    "TTFSExportError",
    "describe_ttfs_nir",
    "export_ttfs_nir",
    "export_ttfs_onnx",
    "export_ttfs_run",
    "is_ttfs_nir_graph",
    "read_ttfs_nir",
    "refuse",
    "run_ttfs_nir_graph",
    "to_ttfs_nir_graph",
    "ttfs_kernel_nodes",
    "ttfs_metadata",
]
