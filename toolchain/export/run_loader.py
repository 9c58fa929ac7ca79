"""A training run folder as the later stages need it: its recipe, its dataset and its trained model.

A run folder is what ``toolchain train --out RUN`` writes: ``RUN/recipe.toml`` (the resolved
recipe), ``RUN/model.pt`` (the weights) and ``RUN/metrics.json``. :func:`load_run` reads the recipe,
loads the recipe's dataset (for the sample shape, the class names and the test split) and rebuilds
the model in the recipe's numeric mode (:func:`toolchain.snn.trained.trained_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolchain.config import Recipe, load_recipe
from toolchain.data import Dataset, load_dataset
from toolchain.errors import RecipeError, ToolchainError
from toolchain.run_folder import RECIPE_FILE, RunFolder
from toolchain.snn.models import SpikingNetwork
from toolchain.snn.trained import trained_model


class RunError(ToolchainError):
    """A run folder is missing, incomplete or does not hold a model of its recipe."""


@dataclass(frozen=True)
class LoadedRun:
    """A trained run: the folder, its resolved recipe, the recipe's dataset and the model (eval mode)."""

    run_dir: Path
    recipe: Recipe
    dataset: Dataset
    model: SpikingNetwork


def load_run(run_dir: str | Path, data_dir: str | Path | None = None) -> LoadedRun:
    """Load the run folder ``run_dir`` (``data_dir``: where the recipe's dataset lives, see
    :func:`toolchain.data.load_dataset`).

    Raises :class:`RunError` naming the folder or file for a missing folder, a folder without
    ``recipe.toml`` or ``model.pt``, or weights that do not fit the recipe's model; data errors are
    the data stage's :class:`~toolchain.errors.DataError`.
    """
    run = Path(run_dir)
    try:
        RunFolder(run).check_finished()  # one run: recipe, weights and metrics of the manifest
    except ToolchainError as exc:
        raise RunError(str(exc)) from None
    try:
        recipe = load_recipe(run / RECIPE_FILE)
    except RecipeError as exc:
        raise RunError(f"{run}: the run's recipe is invalid: {exc}") from None
    dataset = load_dataset(recipe.data.dataset, data_dir, recipe.data.options)
    try:
        model = trained_model(run, recipe, dataset.sample_shape, dataset.num_classes)
    except RecipeError as exc:
        raise RunError(f"{run}: the run's recipe does not fit its dataset: {exc}") from None
    except RunError:
        raise
    except ToolchainError as exc:
        raise RunError(str(exc)) from None
    model.eval()
    return LoadedRun(run_dir=run, recipe=recipe, dataset=dataset, model=model)


__all__ = ["LoadedRun", "RunError", "load_run"]
