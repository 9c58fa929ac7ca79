"""Training: it learns, it is reproducible, a resumed run ends exactly where an uninterrupted one does."""

import pytest
import torch

from toolchain.config import load_recipe, with_overrides
from toolchain.data import ArraySplit
from toolchain.errors import ToolchainError
from toolchain.train import TrainingDivergedError, fit, load_trained


def _recipe(**overrides):
    return with_overrides(load_recipe("models/digits-demo"), **overrides)


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, digits):
    straight = fit(_recipe(**{"train.epochs": 2}), digits, tmp_path / "straight", progress=False)
    fit(_recipe(**{"train.epochs": 1}), digits, tmp_path / "resumed", progress=False)
    resumed = fit(_recipe(**{"train.epochs": 2}), digits, tmp_path / "resumed", resume=True, progress=False)
    assert len(resumed.history) == 2
    assert resumed.history[0].loss == straight.history[0].loss
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.evaluation == straight.evaluation


def test_load_trained_gives_back_the_model(tmp_path, digits):
    result = fit(_recipe(**{"train.epochs": 1}), digits, tmp_path, progress=False)
    recipe, model = load_trained(tmp_path, digits.num_inputs, digits.num_classes)
    assert recipe.name == "digits-demo"
    for a, b in zip(result.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_divergence_is_a_clear_error(digits):
    broken = ArraySplit(digits.train.x[:64].copy(), digits.train.y[:64].copy())
    broken.x[0, 0] = float("inf")  # an inf input current makes v = inf, and the reset inf * 0 = NaN
    dataset = type(digits)(digits.name, broken, digits.test, digits.classes, digits.sample_shape)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at epoch 1: parameter .* is nan"):
        fit(_recipe(**{"train.epochs": 1}), dataset, progress=False)


def test_a_corrupt_model_file_is_named(tmp_path, digits):
    fit(_recipe(**{"train.epochs": 1}), digits, tmp_path, progress=False)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ToolchainError, match=r"model\.pt: changed since the run finished"):
        load_trained(tmp_path, digits.num_inputs, digits.num_classes)  # the manifest's hash
    (tmp_path / "run.json").unlink()  # a folder of an older toolchain: the file itself is refused
    with pytest.raises(ToolchainError, match=r"model\.pt: not a model of recipe"):
        load_trained(tmp_path, digits.num_inputs, digits.num_classes)


def test_a_run_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    """Kill a training process at an arbitrary moment after its first checkpoint; --resume finishes it
    with exactly the weights and metrics of an uninterrupted run (checkpoints are written atomically)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [
        sys.executable,
        "-m",
        "toolchain",
        "train",
        "models/digits-demo",
        "--epochs",
        "25",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*args, "--out", str(tmp_path / "straight")], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(killed)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # somewhere in a later epoch, possibly while a checkpoint is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not (killed / "model.pt").exists()

    resumed = subprocess.run(
        [*args, "--out", str(killed), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    again = json.loads((killed / "metrics.json").read_text())
    assert again["test_accuracy"] == straight["test_accuracy"]
    assert [e["loss"] for e in again["epochs"]] == [e["loss"] for e in straight["epochs"]]


def test_each_epoch_is_tested_and_written_to_history_csv(tmp_path, digits):
    import csv
    import json

    result = fit(
        _recipe(**{"train.epochs": 3, "train.test_every_epochs": 2}), digits, tmp_path, progress=False
    )
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["test_accuracy"] == ""  # not an epoch to test
    assert 0.1 < float(rows[1]["test_accuracy"]) <= 1.0
    assert float(rows[2]["test_accuracy"]) == result.evaluation.accuracy  # the last: the final evaluation
    assert {row["phase"] for row in rows} == {"float"}
    assert float(rows[0]["learning_rate"]) == 0.002
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"][2]["test_accuracy"] == result.evaluation.accuracy
