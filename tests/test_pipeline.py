"""``toolchain run``: every stage from a recipe to an energy report, resuming where a run stopped."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import toolchain

from toolchain.config import load_recipe, with_overrides
from toolchain.pipeline import PipelineError, RunOptions, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "toolchain"
HAS_LAVA = importlib.util.find_spec("lava") is not None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("pipeline") / "demo"
    lava = "3" if HAS_LAVA else "0"
    result = toolchain(
        "run", "models/digits-demo", "--out", str(out), "--epochs", "3", "--lava-samples", lava,
        "--no-progress", "--json", str(out.parent / "summary.json"),
    )  # fmt: skip
    return out, result


def test_run_writes_every_stage_and_a_summary(demo_run):
    out, result = demo_run
    assert result.returncode == 0, result.stderr
    for name in ("model.pt", "metrics.json", "export/model.net", "export/model.nir", "export/model.onnx",
                 "export/ann.onnx", "export/quantization.json", "sim/reference.json",
                 "energy/report.md", "energy/report.html", "energy/energy_per_layer.png",
                 "energy/energy.json", "pipeline.json", "summary.json"):  # fmt: skip
        assert (out / name).is_file(), name
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["stages"]["train"] == "done"
    assert summary["stages"]["energy"] == "done"
    accuracy = summary["accuracy"]
    assert accuracy["trained_model"] > 0.5
    assert accuracy["fixed_point_samples"] == 450  # the whole digits test split
    assert abs(accuracy["fixed_point"] - accuracy["trained_model"]) < 0.05
    assert summary["energy_per_inference_j"] > 0
    assert summary["target"] == "loihi"
    assert "accuracy   trained model (float)" in result.stdout
    assert "per inference on loihi" in result.stdout


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed (make install)")
def test_run_compares_lava_spike_for_spike(demo_run):
    out, result = demo_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["lava"] == "done"
    assert summary["accuracy"]["lava_samples"] == 3
    assert summary["mismatched_spikes"] == 0
    lava = json.loads((out / "sim" / "lava.json").read_text())
    assert set(lava["comparison"]["samples"]) == {"reference", "lava", "torch"}
    assert "0 mismatched spikes" in result.stdout


def test_a_finished_run_is_skipped_stage_by_stage(demo_run):
    out, _ = demo_run
    before = (out / "model.pt").stat().st_mtime_ns
    again = toolchain(
        "run", "models/digits-demo", "--out", str(out), "--epochs", "3", "--lava-samples", "3",
        "--no-progress",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    for stage in ("train", "export", "simulate", "lava", "energy"):
        assert f"[{stage}] done in an earlier run" in again.stderr
    assert (out / "model.pt").stat().st_mtime_ns == before


def test_another_recipe_in_the_same_folder_is_refused(demo_run):
    out, _ = demo_run
    recipe = with_overrides(load_recipe(ROOT / "models" / "digits-demo"), **{"train.epochs": 4})
    with pytest.raises(PipelineError, match="holds a run of another recipe"):
        run_pipeline(recipe, out, RunOptions(lava_samples=0, progress=False, log=lambda _: None))


def test_bad_options_are_named():
    with pytest.raises(PipelineError, match="--skip bogus: unknown stage"):
        RunOptions(skip=("bogus",))
    with pytest.raises(PipelineError, match="--skip train"):
        RunOptions(skip=("train",))
    result = toolchain("run", "models/digits-demo", "--skip", "nothing")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("toolchain: error: --skip nothing: unknown stage")


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL once training has finished: the rerun skips training and runs the other stages."""
    out = tmp_path / "killed"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "toolchain"]
    args = [
        "run",
        "models/digits-demo",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--lava-samples",
        "0",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*command, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    state = out / "pipeline.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if state.is_file() and '"train"' in state.read_text():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stages = json.loads(state.read_text())["stages"]
    assert stages["train"]["status"] == "done"
    assert "energy" not in stages  # killed before the end
    result = toolchain(*args)
    assert result.returncode == 0, result.stderr
    assert "[train] done in an earlier run" in result.stderr
    assert json.loads((out / "summary.json").read_text())["stages"]["energy"] == "done"


def test_a_ttfs_recipe_runs_its_own_stages(tmp_path):
    """TTFS: ONNX of the surrogate DNN, the event-driven simulator, energy; netx and Lava skipped."""
    out = tmp_path / "ttfs"
    result = toolchain(
        "run", "models/digits-ttfs", "--out", str(out), "--epochs", "2", "--no-progress",
        "--set", "ttfs.relax_epochs=1", "--set", "ttfs.ceil_from_epoch=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"] == {
        "train": "done", "export": "done", "simulate": "done", "lava": "skipped", "energy": "done"
    }  # fmt: skip
    assert "TTFS network does not run on Lava" in summary["skipped"]["lava"]
    assert (out / "export" / "model.onnx").is_file()
    assert (out / "export" / "model.nir").is_file()
    assert not (out / "export" / "model.net").exists()
    sim = json.loads((out / "sim" / "ttfs.json").read_text())
    assert sim["max_spikes_per_neuron"] <= 1  # time-to-first-spike: each neuron fires at most once
    assert sim["samples"] == 450
    assert "TTFS SNN (event-driven simulator)" in result.stdout
    assert summary["energy_per_inference_j"] > 0


def test_graded_input_into_a_conv_layer_runs_in_lava(tmp_path):
    """Graded (direct) input into a conv layer: Lava's Conv applies the weight exponent -8 through
    toolchain.lava_compat, so Lava runs the network and agrees spike for spike."""
    recipe = tmp_path / "recipe.toml"
    text = (ROOT / "models" / "digits-conv" / "recipe.toml").read_text()
    recipe.write_text(
        text.replace('scheme = "rate"', 'scheme = "direct"').replace("time_steps = 16", "time_steps = 4")
    )
    out = tmp_path / "run"
    result = toolchain(
        "run", str(recipe), "--out", str(out), "--epochs", "1", "--lava-samples", "2", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["lava"] == "done", summary.get("skipped")
    assert summary["accuracy"]["lava_samples"] == 2
    assert summary["mismatched_spikes"] == 0
    assert summary["stages"]["energy"] == "done"
