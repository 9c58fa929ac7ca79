"""Training stage: surrogate-gradient training of the SNN a recipe describes, and its evaluation."""

from toolchain.train.evaluate import Evaluation, LayerActivity, evaluate
from toolchain.train.trainer import TrainingDivergedError, TrainResult, fit, load_trained

__all__ = [
    "Evaluation",
    "LayerActivity",
    "TrainResult",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "load_trained",
]
