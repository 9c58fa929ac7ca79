"""Export of a time-to-first-spike (TTFS) network: what each format does with it.

- **ONNX** (:func:`export_ttfs_onnx`): the surrogate DNN in eval mode, which is what the TTFS SNN
  computes (spike times ceiled, the window applied): input ``input`` ``[B, *sample]``, output
  ``logits`` ``[B, classes]``. The kernels are in the graph (``Log``, ``Ceil``, ``Exp``,
  ``Where``) and, with the window and ``epsilon``, in ``metadata_props`` (``toolchain.ttfs``:
  JSON), so nothing is lost.
- **netx / NIR as CUBA / the SNN ONNX**: refused (:func:`refuse`). A TTFS neuron fires once, when
  its potential reaches a threshold that decays exponentially within each window; Loihi's CUBA
  neuron (netx, the quantized IR) has a fixed threshold and fires repeatedly, so a one-to-one
  mapping would silently change what the network computes. ``docs/ttfs.md`` describes what a
  NIR export would need.
"""

from __future__ import annotations

import io
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
from toolchain.io import atomic_write
from toolchain.snn.ttfs_model import TTFSNetwork

#: the ONNX operator set of the surrogate DNN's file
OPSET = 17
#: formats that would run a TTFS network as CUBA-LIF neurons: refused
CUBA_FORMATS = ("netx", "nir", "onnx-snn")


class TTFSExportError(ToolchainError):
    """A TTFS network cannot be exported to the requested format without changing its meaning."""


def refuse(recipe: Recipe, fmt: str) -> None:
    """Raise :class:`TTFSExportError` when ``recipe`` is a TTFS recipe and ``fmt`` maps onto CUBA.

    The check for ``toolchain export`` (``fmt``: ``netx``, ``nir``, ``onnx-snn``); ``onnx`` of the
    surrogate DNN is allowed (:func:`export_ttfs_onnx`).
    """
    if not recipe.ttfs.enabled or fmt not in CUBA_FORMATS:
        return
    from toolchain.train.ttfs import refusal_message

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
    """``toolchain export`` of a TTFS run: the surrogate DNN for ``onnx``, a refusal for the rest.

    Returns ``None`` when ``run_dir`` is not a TTFS run (its ``recipe.toml`` missing, unreadable or
    ``[ttfs].enabled`` false: the ordinary export handles it and reports such problems).
    """
    from toolchain.config import load_recipe
    from toolchain.data import load_dataset
    from toolchain.errors import RecipeError
    from toolchain.export.onnx import recipe_metadata
    from toolchain.train.ttfs import load_ttfs_run

    run = Path(run_dir)
    try:
        recipe = load_recipe(run / "recipe.toml")
    except RecipeError:
        return None
    if not recipe.ttfs.enabled:
        return None
    if fmt != "onnx":
        try:
            refuse(recipe, fmt if fmt in CUBA_FORMATS else "netx")
        except TTFSExportError as exc:
            raise TTFSExportError(f"{run}: {exc}") from None
    dataset = load_dataset(recipe.data.dataset, data_dir, recipe.data.options)
    _, model = load_ttfs_run(run, dataset.sample_shape, dataset.num_classes)
    return export_ttfs_onnx(model, out, metadata=recipe_metadata(recipe, list(dataset.classes)))


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


__all__ = [
    "CUBA_FORMATS",
    "OPSET",
    "TTFSExportError",
    "export_ttfs_onnx",
    "export_ttfs_run",
    "refuse",
    "ttfs_metadata",
]
