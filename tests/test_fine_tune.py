"""Fixed-point fine-tuning after float training (``[train].fixed_point_epochs``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.config import parse_recipe
from toolchain.data import load_dataset
from toolchain.errors import RecipeError
from toolchain.export.quantize import quantize_model
from toolchain.sim.reference import simulate
from toolchain.train.trainer import fit, load_trained

torch.set_num_threads(1)


def _recipe(epochs: int = 2, fixed_point_epochs: int = 2, **train):
    return parse_recipe(
        {
            "name": "digits-fine-tune",
            "data": {"dataset": "digits"},
            "encoding": {"scheme": "direct", "time_steps": 6},
            "model": {"hidden": [24], "batch_norm": True, "readout": "potential"},
            "neuron": {"current_decay": 1.0, "voltage_decay": 0.5, "threshold": 2.0},
            "train": {
                "epochs": epochs,
                "batch_size": 64,
                "learning_rate": 0.005,
                "fixed_point_epochs": fixed_point_epochs,
                "fixed_point_learning_rate": 0.001,
                **train,
            },
        }
    )


def test_fine_tuned_run_is_a_fixed_point_model_that_exports_exactly(tmp_path):
    """After the float epochs the run fine-tunes on Loihi's registers: metrics keep the float model's
    figures, the saved model reloads in fixed point, its export changes nothing, and the reference
    simulator of the export classifies the test set as the fine-tuned model's evaluation did."""
    recipe = _recipe()
    dataset = load_dataset("digits")
    result = fit(recipe, dataset, tmp_path / "run", progress=False)
    metrics = result.metrics(recipe)
    assert metrics["numeric"] == "fixed_point" and len(metrics["epochs"]) == 4
    assert 0.5 < metrics["float_model"]["test_accuracy"] <= 1.0
    loaded_recipe, model = load_trained(tmp_path / "run", dataset.sample_shape, dataset.num_classes)
    network, report = quantize_model(model.eval(), loaded_recipe)
    assert report.numeric == "fixed_point" and report.exact, report.inexact
    test = dataset.test
    reference = simulate(network, test.x.reshape(len(test.x), -1).astype(np.float64))
    assert reference.accuracy(test.y) == pytest.approx(result.evaluation.accuracy, abs=1e-12)


def test_resuming_during_fine_tuning_ends_where_an_uninterrupted_run_does(tmp_path):
    dataset = load_dataset("digits")
    whole = fit(_recipe(epochs=1, fixed_point_epochs=2), dataset, tmp_path / "whole", progress=False)
    fit(_recipe(epochs=1, fixed_point_epochs=1), dataset, tmp_path / "cut", progress=False)
    resumed = fit(
        _recipe(epochs=1, fixed_point_epochs=2), dataset, tmp_path / "cut", resume=True, progress=False
    )
    assert resumed.float_evaluation == whole.float_evaluation
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"neuron": {"numeric": "fixed_point"}}, "already trains in fixed point"),
        ({"ttfs": {"enabled": True}}, "TTFS network has no Loihi fixed-point mode"),
    ],
)
def test_fine_tuning_a_model_that_cannot_have_it_is_refused(extra, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"name": "x", "train": {"fixed_point_epochs": 1}, **extra})
