"""ONNX export of a trained network (its ANN twin, or the SNN unrolled over time) and a safe reader.

- :func:`export_ann_onnx`: the ReLU twin (:mod:`toolchain.snn.ann`), input ``input`` ``[B, *sample]``,
  output ``logits`` ``[B, classes]``.
- :func:`export_snn_onnx`: the spiking network unrolled over its ``T`` time steps (one copy of the
  step per time step, state kept inside the graph, zero at the start of every sample), input
  ``input`` ``[T, B, *input_shape]`` (the *encoded* input, what :class:`SpikingNetwork` takes),
  output ``spike_counts`` ``[B, classes]`` (the output layer's spikes summed over time: the
  readout) and, with ``record_spikes=True``, ``spikes_<layer>`` ``[T, B, *layer shape]`` for every
  spiking layer.

Both are traced by ``torch.onnx.export`` (the TorchScript exporter, opset :data:`OPSET`) from the
model's own forward pass in eval mode, so no equation is written twice: every step is
:func:`toolchain.snn.dynamics.cuba_step` (float) or
:func:`~toolchain.snn.dynamics.cuba_step_quantized` (fixed point) with the plain
:func:`~toolchain.snn.dynamics.heaviside` spike (the fused autograd loop of
:mod:`toolchain.snn.fused` cannot be traced; the population falls back to the step-by-step path
when its spike function is not a surrogate, which in eval mode computes the same values).
Fixed-point models (:mod:`toolchain.snn.numerics`: float64, weights on Loihi's grid, integer
rounding) export too: their integer arithmetic becomes ONNX ``Round``/``Floor``/``Div`` (``int64``
``Div`` truncates toward zero in onnxruntime, as ``torch.div(rounding_mode="trunc")``), except
convolutions, which onnxruntime runs only in float32 (refused with the layer's name).

The batch axis is dynamic (``batch``); the time axis is fixed (the graph holds ``T`` steps).
Provenance goes to the model's ``metadata_props`` (strings; JSON for lists and tables). Every file
passes ``onnx.checker.check_model(full_check=True)`` before it is written (atomically). Files are
read and run (without torch, without trusting them) by :mod:`toolchain.formats.onnx`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from toolchain import __version__
from toolchain.errors import ToolchainError, one_line
from toolchain.io import atomic_write
from toolchain.snn.ann import AnnNetwork
from toolchain.snn.dynamics import heaviside
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.neurons import CubaLIF

#: the ONNX operator set every file is written with
OPSET = 17
#: protobuf's hard limit for one message; files above it would need external data
MAX_MODEL_BYTES = 2**31 - 1
#: the most time steps an unrolled SNN may have (the graph grows linearly with T)
MAX_UNROLLED_STEPS = 4096
BATCH_AXIS = "batch"


class OnnxExportError(ToolchainError):
    """A model cannot be exported to ONNX (an unsupported layer or numeric mode, a failed check)."""


def export_ann_onnx(ann: AnnNetwork, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the ANN twin ``ann`` to ``path``: ``input`` ``[B, *input_shape]`` -> ``logits`` ``[B, classes]``.

    Exported in eval mode (batch norm with running statistics, no dropout); ``metadata`` (e.g. the
    recipe's name, encoding, class names: :func:`recipe_metadata`) goes to ``metadata_props``.
    """
    if not isinstance(ann, AnnNetwork):
        raise OnnxExportError(f"export_ann_onnx expects an AnnNetwork, got {type(ann).__name__}")
    dtype, device = _parameter_dtype(ann)
    example = torch.zeros(2, *ann.input_shape, dtype=dtype, device=device)
    props = {
        "toolchain.graph": "ann",
        "input_layout": "[B, *sample_shape]",
        "input_shape": list(ann.input_shape),
        "outputs": {"logits": "[B, classes]: the output layer's synaptic current (no ReLU)"},
        "layer_names": list(ann.layer_names),
        "numeric": "float",
    }
    with _eval_mode(ann), _weights_as_computed(ann):
        model = _trace(
            _AnnGraph(ann),
            example,
            output_names=["logits"],
            dynamic_axes={"input": {0: BATCH_AXIS}, "logits": {0: BATCH_AXIS}},
        )
    _declare_shapes(model, {"input": [BATCH_AXIS, *ann.input_shape], "logits": [BATCH_AXIS, ann.num_classes]})
    _name_initializers(model, ann, "ann.")
    return _finish(model, path, {**dict(metadata or {}), **props})


def export_snn_onnx(
    model: SpikingNetwork,
    time_steps: int,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    record_spikes: bool = False,
) -> Path:
    """Write the SNN ``model`` unrolled over ``time_steps`` steps to ``path``.

    Input ``input`` ``[T, B, *model.input_shape]``: the encoded input (for ``direct`` encoding the
    sample repeated ``T`` times; for rate/latency/spikes the 0/1 spike trains). Outputs
    ``spike_counts`` ``[B, classes]`` (``logits``, the output voltage after the last step divided by
    ``T``, for a ``potential`` readout) and, with ``record_spikes``, ``spikes_<layer>``
    ``[T, B, *shape]`` per spiking layer. Fixed-point models keep their float64 arithmetic (their
    input hook, e.g. the 8-bit graded input of ``direct`` encoding, is part of the graph).
    """
    if not isinstance(model, SpikingNetwork):
        raise OnnxExportError(f"export_snn_onnx expects a SpikingNetwork, got {type(model).__name__}")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or not time_steps >= 1:
        raise OnnxExportError(f"time_steps must be a positive integer, got {time_steps!r}")
    if time_steps > MAX_UNROLLED_STEPS:
        raise OnnxExportError(
            f"time_steps = {time_steps}: an unrolled graph of more than {MAX_UNROLLED_STEPS} steps is refused"
        )
    numeric = numeric_mode(model)
    if numeric == "fixed_point":
        _check_fixed_point_supported(model)
    dtype, device = _parameter_dtype(model)
    example = torch.zeros(time_steps, 2, *model.input_shape, dtype=dtype, device=device)
    potential = model.readout == "potential"
    names = list(model.layer_names[:-1] if potential else model.layer_names)  # the layers that fire
    result = "logits" if potential else "spike_counts"
    outputs = [result, *([f"spikes_{name}" for name in names] if record_spikes else [])]
    dynamic_axes: dict[str, dict[int, str]] = {"input": {1: BATCH_AXIS}, result: {0: BATCH_AXIS}}
    dynamic_axes.update({name: {1: BATCH_AXIS} for name in outputs[1:]})
    described = {
        result: "[B, classes]: the output layer's voltage after the last step / T (it never fires)"
        if potential
        else "[B, classes]: output spikes summed over the time steps"
    }
    described.update({name: "[T, B, *layer shape]: 0/1 spikes" for name in outputs[1:]})
    props = {
        "toolchain.graph": "snn_unrolled",
        "time_steps": time_steps,
        "input_layout": "[T, B, *input_shape]",
        "input_shape": list(model.input_shape),
        "outputs": described,
        "layer_names": names,
        "readout": model.readout,
        "numeric": numeric,
        "synapse_delay_steps": _synapse_delay(model),
    }
    wrapper = _SnnGraph(model, names if record_spikes else [])
    with _eval_mode(model), _plain_steps(model), _weights_as_computed(model):
        onnx_model = _trace(wrapper, example, output_names=outputs, dynamic_axes=dynamic_axes)
    shapes: dict[str, list[int | str]] = {
        "input": [time_steps, BATCH_AXIS, *model.input_shape],
        result: [BATCH_AXIS, model.num_classes],
    }
    for block in model.synaptic_blocks()[: len(names)]:
        shapes[f"spikes_{block.name}"] = [time_steps, BATCH_AXIS, *block.out_shape]
    _declare_shapes(onnx_model, shapes)
    _name_initializers(onnx_model, model, "model.")
    return _finish(onnx_model, path, {**dict(metadata or {}), **props})


def numeric_mode(model: nn.Module) -> str:
    """``"fixed_point"`` when the model's populations compute with Loihi's registers, else ``"float"``."""
    populations = [m for m in model.modules() if isinstance(m, CubaLIF)]
    return "fixed_point" if any(p.registers is not None for p in populations) else "float"


def recipe_metadata(recipe: Any, classes: list[str] | None = None) -> dict[str, Any]:
    """The provenance of ``ir.Network.metadata`` from a :class:`~toolchain.config.Recipe`."""
    data: dict[str, Any] = {
        "recipe": recipe.name,
        "numeric": recipe.trained_numeric,
        "encoding": {"scheme": recipe.encoding.scheme, "time_steps": recipe.encoding.time_steps},
        "dataset": recipe.data.dataset,
    }
    if classes is not None:
        data["classes"] = [str(c) for c in classes]
    return data


class _AnnGraph(nn.Module):
    """The exported function: ``[B, ...]`` -> logits ``[B, classes]`` (the class axis static)."""

    def __init__(self, ann: AnnNetwork) -> None:
        super().__init__()
        self.ann = ann

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ann(x).reshape(-1, self.ann.num_classes)


class _SnnGraph(nn.Module):
    """The exported function: input ``[T, B, ...]`` -> spike counts (and the recorded spikes)."""

    def __init__(self, model: SpikingNetwork, record: list[str]) -> None:
        super().__init__()
        self.model = model
        self.record = record

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model(x)
        if not self.record:
            return out.logits
        return (out.logits, *(out.spikes[name] for name in self.record))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _plain_steps(model: nn.Module) -> Iterator[None]:
    """Every population steps :func:`cuba_step` with :func:`heaviside` (what the surrogate computes
    forward); the fused autograd loop is used only with a surrogate spike function."""
    populations = [m for m in model.modules() if isinstance(m, CubaLIF)]
    saved = [p.spike_fn for p in populations]
    for population in populations:
        population.spike_fn = heaviside
    try:
        yield
    finally:
        for population, spike_fn in zip(populations, saved, strict=True):
            population.spike_fn = spike_fn


@contextlib.contextmanager
def _weights_as_computed(model: nn.Module) -> Iterator[None]:
    """Parametrized weights (fixed point: on Loihi's grid) enter the graph as the values the
    model computes with, not as the float originals and the rounding ops: for the export, each
    parametrization is replaced by the identity and its ``original`` holds the computed weight
    (restored afterwards, in place: the model's parameters stay the same objects)."""
    saved: list[tuple[Any, torch.Tensor, list[nn.Module]]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if not parametrize.is_parametrized(module):
                    continue
                for name in module.parametrizations:
                    computed = getattr(module, name).detach().clone()
                    chain = module.parametrizations[name]
                    saved.append((chain, chain.original.detach().clone(), list(chain)))
                    for index in range(len(chain)):
                        chain[index] = nn.Identity()
                    chain.original.copy_(computed)
        yield
    finally:
        with torch.no_grad():
            for chain, original, steps in saved:
                for index, step in enumerate(steps):
                    chain[index] = step
                chain.original.copy_(original)


def _check_fixed_point_supported(model: SpikingNetwork) -> None:
    """onnxruntime has no float64 Conv/AveragePool kernel: refuse, naming the first such layer."""
    for block in model.blocks:
        if block.kind in ("conv", "pool"):
            raise OnnxExportError(
                f"layer {block.name!r}: a fixed-point model with {block.kind} layers is not exported to "
                "ONNX (its float64 convolutions have no onnxruntime kernel); export netx or NIR, or the "
                "float model"
            )


def _synapse_delay(model: SpikingNetwork) -> int:
    delays = {block.input_delay_steps for block in model.synaptic_blocks()}
    return delays.pop() if len(delays) == 1 else -1


def _parameter_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's parameters (the example input's)."""
    for parameter in model.parameters():
        return parameter.dtype, parameter.device
    return torch.float32, torch.device("cpu")


def _trace(
    module: nn.Module,
    example: torch.Tensor,
    *,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Any:
    import onnx

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings, the TorchScript exporter's deprecation
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except ToolchainError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"torch.onnx.export failed: {one_line(exc)}") from exc
    return onnx.load_model_from_string(buffer.getvalue())


def _declare_shapes(model: Any, shapes: Mapping[str, list[int | str]]) -> None:
    """Write the known shape of each graph input and output (the tracer leaves some axes symbolic);
    ``onnx.checker``'s full check then verifies them against shape inference."""
    for value in [*model.graph.input, *model.graph.output]:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in shapes[value.name]:
            dim = dims.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = int(size)


def _name_initializers(model: Any, module: nn.Module, prefix: str) -> None:
    """Initializers named after the module's parameters: the wrapper's ``prefix`` dropped, and a
    weight the exporter transposed for ``MatMul`` (named ``onnx::MatMul_<n>``) called
    ``<parameter>_t`` after the parameter whose transpose it holds."""
    from onnx import numpy_helper

    transposed: dict[bytes, str] = {}
    with torch.no_grad():
        for name, module_ in module.named_modules():
            if isinstance(module_, nn.Linear):
                weight = module_.weight.detach().cpu().numpy()
                transposed[np.ascontiguousarray(weight.T).tobytes()] = f"{name}.weight_t"
    renames: dict[str, str] = {}
    taken = {tensor.name for tensor in model.graph.initializer}
    for tensor in model.graph.initializer:
        new = tensor.name.removeprefix(prefix)
        if tensor.name.startswith("onnx::MatMul"):
            new = transposed.get(numpy_helper.to_array(tensor).tobytes(), tensor.name)
        if new != tensor.name and new not in taken:
            renames[tensor.name] = new
            taken.add(new)
    _rename(model.graph, renames)


def _rename(graph: Any, renames: Mapping[str, str]) -> None:
    """Rename values throughout ``graph`` and its subgraphs (``If`` branches read outer values)."""
    import onnx

    for tensor in graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rename(attribute.g, renames)
            for subgraph in attribute.graphs:
                _rename(subgraph, renames)


def _finish(model: Any, path: str | Path, metadata: Mapping[str, Any]) -> Path:
    import onnx

    path = Path(path)
    model.producer_name = "toolchain"
    model.producer_version = __version__
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = str(key)
        entry.value = value if isinstance(value, str) else json.dumps(value, default=_json_default)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise OnnxExportError(f"{path}: the exported model fails onnx.checker: {one_line(exc)}") from None
    data = model.SerializeToString()
    if len(data) > MAX_MODEL_BYTES:
        raise OnnxExportError(f"{path}: the model takes {len(data)} bytes, beyond ONNX's 2 GiB limit")
    return atomic_write(path, lambda f: f.write(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


__all__ = [
    "OPSET",
    "OnnxExportError",
    "export_ann_onnx",
    "export_snn_onnx",
    "numeric_mode",
    "recipe_metadata",
]
