"""Learning-rate schedules: hand-computed values, and the trainer and the teacher follow them."""

import math

import pytest
import torch

from toolchain.config import parse_recipe
from toolchain.data import load_dataset
from toolchain.errors import RecipeError
from toolchain.train.schedule import epoch_learning_rate
from toolchain.train.trainer import fit


def test_cosine_by_hand():
    rates = [epoch_learning_rate(1.0, "cosine", epoch, 4) for epoch in range(1, 5)]
    expected = [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    assert rates == pytest.approx(expected)
    assert rates[3] == pytest.approx(0.1464466)
    assert [epoch_learning_rate(0.3, "constant", e, 4) for e in (1, 4)] == [0.3, 0.3]
    with pytest.raises(ValueError, match="schedule: expected"):
        epoch_learning_rate(1.0, "step", 1, 4)


def test_recipe_refuses_an_unknown_schedule():
    with pytest.raises(RecipeError, match=r"\[train\]\.schedule"):
        parse_recipe({"name": "x", "train": {"schedule": "linear"}})


def test_the_trainer_steps_the_rate_per_epoch(tmp_path):
    recipe = parse_recipe(
        {
            "name": "cosine",
            "model": {"hidden": [16]},
            "encoding": {"time_steps": 4},
            "train": {"epochs": 3, "learning_rate": 0.004, "schedule": "cosine"},
        }
    )
    fit(recipe, load_dataset("digits"), tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.004 * 0.25)  # epoch 3 of 3
