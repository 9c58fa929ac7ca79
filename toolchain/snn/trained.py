"""A trained run's model rebuilt from its run folder: the recipe's network with the folder's weights.

Below training and export (both load runs through it): :func:`trained_model` (the CUBA SNN in its
trained numeric mode), :func:`load_ttfs_run` (the TTFS surrogate DNN), :func:`load_model_weights`
(``model.pt`` read safely), and the rules of a TTFS recipe (:func:`check_ttfs_recipe`,
:func:`refusal_message` for a stage that cannot take one).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from toolchain.config import NeuronConfig, Recipe, load_recipe
from toolchain.errors import RecipeError, ToolchainError, one_line
from toolchain.run_folder import MODEL_FILE, RECIPE_FILE, RunFolder
from toolchain.snn.models import SpikingNetwork, build_model, network_input_shape
from toolchain.snn.numerics import apply_numerics
from toolchain.snn.ttfs_model import TTFSNetwork, build_ttfs_model
from toolchain.torch_files import load_torch


def is_ttfs_recipe(recipe: Recipe) -> bool:
    """Whether ``recipe`` trains a TTFS network (``[ttfs].enabled = true``)."""
    return bool(recipe.ttfs.enabled)


def refusal_message(recipe: Recipe, what: str) -> str:
    """The one-line error for a stage that cannot take a TTFS run (``what``: e.g. ``"netx export"``)."""
    return (
        f"recipe {recipe.name!r} is a TTFS network ([ttfs].enabled = true): {what} is not possible, "
        "because its neurons fire once against a threshold that decays within each window and "
        "Loihi's CUBA neuron has a fixed threshold; use the TTFS simulator (toolchain.sim.ttfs) "
        "and the ONNX and NIR exports of the surrogate DNN (toolchain.export.ttfs), see docs/ttfs.md"
    )


def check_ttfs_recipe(recipe: Recipe) -> None:
    """Raise :class:`RecipeError` naming the key for a ``[ttfs]`` recipe this version cannot train."""
    if recipe.encoding.scheme != "direct":
        raise RecipeError(
            f"[encoding].scheme: a TTFS recipe reads the analog sample ('direct'), got "
            f"{recipe.encoding.scheme!r}; the input is coded by the input kernel ([ttfs].encode_input)"
        )
    if recipe.ttfs.bn_reg > 0 and not recipe.model.batch_norm:
        raise RecipeError(
            "[ttfs].bn_reg: the kernel-aware batch-norm penalty needs [model].batch_norm = true"
        )
    if recipe.distill.teacher != "none":
        raise RecipeError("[distill].teacher: distillation is not available for TTFS recipes yet; set 'none'")
    reg = recipe.regularization
    if reg.activation != "none" or reg.logits_weight != 0:
        raise RecipeError(
            "[regularization]: spike regularizers are for rate-coded SNNs; a TTFS recipe uses "
            "[ttfs].bn_reg (expected spikes) and [ttfs].kernel_reg"
        )


def build_for_recipe(recipe: Recipe, input_shape: tuple[int, ...], num_classes: int) -> TTFSNetwork:
    """The surrogate DNN of ``recipe`` (the trainer's ``model_builder``)."""
    check_ttfs_recipe(recipe)
    return build_ttfs_model(recipe.model, recipe.ttfs, input_shape, num_classes)


def trained_model(
    run_dir: Path, recipe: Recipe, sample_shape: tuple[int, ...] | int, num_classes: int
) -> SpikingNetwork:
    """The model of ``recipe`` with the weights of the run folder ``run_dir``, which the caller has
    checked (:meth:`toolchain.run_folder.RunFolder.check_finished`) and read ``recipe`` from."""
    if recipe.ttfs.enabled:  # a TTFS run has no CUBA SNN to rebuild (toolchain.train.ttfs)
        raise ToolchainError(f"{run_dir}: {refusal_message(recipe, 'rebuilding it as a CUBA SNN')}")
    input_shape = network_input_shape(sample_shape, recipe.encoding.scheme)
    model = build_model(recipe.model, recipe.neuron, input_shape, num_classes)
    apply_numerics(model, trained_neuron(recipe), recipe.encoding.scheme)
    load_model_weights(model, run_dir / MODEL_FILE, f"not a model of recipe {recipe.name!r}")
    return model


def trained_neuron(recipe: Recipe) -> NeuronConfig:
    """``[neuron]`` with the numeric mode of the trained model (:attr:`Recipe.trained_numeric`)."""
    return replace(recipe.neuron, numeric=recipe.trained_numeric)


def load_model_weights(model: nn.Module, path: Path, problem: str) -> None:
    """Load a run folder's ``model.pt`` into ``model`` (``weights_only``); any failure is one line
    naming ``path`` and ``problem`` (what the file is not, e.g. ``"not a model of recipe 'x'"``)."""
    if not path.is_file():
        raise ToolchainError(f"{path}: no trained model in this run folder")
    state = load_torch(path, problem)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ToolchainError(f"{path}: {problem} ({one_line(exc)})") from None


def load_ttfs_run(
    run_dir: str | Path, sample_shape: tuple[int, ...] | int, num_classes: int
) -> tuple[Recipe, TTFSNetwork]:
    """The recipe and trained surrogate DNN (eval mode) of a TTFS run folder."""
    run = Path(run_dir)
    RunFolder(run).check_finished()
    recipe = load_recipe(run / RECIPE_FILE)
    if not is_ttfs_recipe(recipe):
        raise ToolchainError(f"{run}: not a TTFS run ([ttfs].enabled is false in its recipe.toml)")
    model = build_for_recipe(recipe, network_input_shape(sample_shape), num_classes)
    load_model_weights(model, run / MODEL_FILE, f"not a TTFS model of recipe {recipe.name!r}")
    model.eval()
    return recipe, model


__all__ = [
    "build_for_recipe",
    "check_ttfs_recipe",
    "is_ttfs_recipe",
    "load_model_weights",
    "load_ttfs_run",
    "refusal_message",
    "trained_model",
    "trained_neuron",
]
