"""Training stage: surrogate-gradient training of the SNN a recipe describes, and its evaluation."""

from typing import Any

from toolchain.train.evaluate import Evaluation, LayerActivity, evaluate
from toolchain.train.trainer import TrainingDivergedError, TrainResult, fit, load_trained


def fit_recipe(recipe: Any, dataset: Any, out_dir: Any = None, **options: Any) -> Any:
    """Train ``recipe`` with the coding it asks for: the rate-coded CUBA SNN (:func:`fit`), or the
    time-to-first-spike surrogate DNN when ``[ttfs].enabled`` (:func:`toolchain.train.ttfs.fit_ttfs`,
    whose result adds the TTFS figures); ``options`` as :func:`fit` takes them."""
    if recipe.ttfs.enabled:
        from toolchain.train.ttfs import fit_ttfs

        return fit_ttfs(recipe, dataset, out_dir, **options)
    return fit(recipe, dataset, out_dir, **options)


__all__ = [
    "Evaluation",
    "LayerActivity",
    "TrainResult",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "fit_recipe",
    "load_trained",
]
