"""A run folder is one run: the manifest, the writer lock, and what training may do with a folder."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import toolchain

from toolchain.config import load_recipe, with_overrides
from toolchain.export.run_loader import RunError, load_run
from toolchain.pipeline import _State
from toolchain.run_folder import MANIFEST_FILE, RunFolder, RunFolderError, default_run_dir, recipe_changes
from toolchain.train import fit
from toolchain.train.sweep import _finished_as

ROOT = Path(__file__).resolve().parents[1]


def _recipe(**overrides):
    return with_overrides(load_recipe(ROOT / "models" / "digits-demo"), **{"train.epochs": 1, **overrides})


def test_training_writes_a_manifest_of_its_files(tmp_path, digits):
    fit(_recipe(), digits, tmp_path, progress=False)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["status"] == "finished"
    assert manifest["epochs_done"] == 1
    assert len(manifest["weights_sha256"]) == 64
    assert RunFolder(tmp_path).check_finished().weights_sha256 == manifest["weights_sha256"]


def test_a_finished_folder_is_not_trained_over_without_being_told(tmp_path, digits):
    fit(_recipe(), digits, tmp_path, progress=False)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.net").write_text("an old export")
    (tmp_path / "notes.txt").write_text("the user's")
    with pytest.raises(RunFolderError, match=r"holds a finished run; pass --resume .* --overwrite"):
        fit(_recipe(), digits, tmp_path, progress=False)
    fit(_recipe(**{"train.seed": 1}), digits, tmp_path, overwrite=True, progress=False)
    assert not (tmp_path / "export").exists()  # the old run's later stages went with it
    assert (tmp_path / "notes.txt").is_file()  # what the toolchain did not write stays
    assert load_recipe(tmp_path / "recipe.toml").train.seed == 1
    RunFolder(tmp_path).check_finished()


def test_resume_with_another_recipe_is_refused_naming_the_keys(tmp_path, digits):
    cosine = {"train.schedule": "cosine", "train.epochs": 2}
    fit(_recipe(**cosine), digits, tmp_path, progress=False)
    with pytest.raises(RunFolderError, match=r"another recipe .*train\.learning_rate: 0\.002 -> 0\.5"):
        fit(_recipe(**cosine, **{"train.learning_rate": 0.5}), digits, tmp_path, resume=True, progress=False)
    with pytest.raises(RunFolderError, match=r"train\.epochs: 2 -> 3"):  # the cosine curve depends on it
        fit(_recipe(**{**cosine, "train.epochs": 3}), digits, tmp_path, resume=True, progress=False)
    # keys that leave the trained weights alone (the target, fine-tuning after float training) resume
    fit(_recipe(**cosine, **{"target.name": "loihi2"}), digits, tmp_path, resume=True, progress=False)
    RunFolder(tmp_path).check_finished()


def test_a_killed_retrain_is_never_read_as_the_old_run(tmp_path, digits):
    fit(_recipe(), digits, tmp_path, progress=False)
    folder = RunFolder(tmp_path)
    with folder.lock():  # a retrain that started (new recipe written) and was killed before the end
        folder.begin_training(_recipe(**{"neuron.voltage_decay": 0.5}), resume=False, overwrite=True)
    assert folder.state() == "training"
    with pytest.raises(RunError, match=r"training has not finished in this run folder.*--resume"):
        load_run(tmp_path)
    result = toolchain("export", str(tmp_path), "--format", "netx", "--out", str(tmp_path / "m.net"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "training has not finished" in result.stderr
    assert not _finished_as(tmp_path, (tmp_path / "recipe.toml").read_text())  # a sweep trains it again


def test_files_changed_after_the_run_are_refused(tmp_path, digits):
    fit(_recipe(), digits, tmp_path, progress=False)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("voltage_decay = 0.1", "voltage_decay = 0.5"))
    with pytest.raises(RunError, match=r"recipe\.toml: changed since the run finished"):
        load_run(tmp_path)


def test_a_second_writer_is_refused(tmp_path, digits):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from toolchain.run_folder import RunFolder\n"
            f"with RunFolder({str(tmp_path)!r}).lock():\n    print('locked', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match="another toolchain process is writing this run folder"):
            fit(_recipe(), digits, tmp_path, progress=False)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock of a killed process: no stale lock to clean up
        try:
            fit(_recipe(), digits, tmp_path, progress=False)
            break
        except RunFolderError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    RunFolder(tmp_path).check_finished()


@pytest.mark.parametrize("name", ["../../x", "", "/tmp/x", ".hidden", "a/b", "x" * 200])
def test_a_recipe_name_never_leads_outside_runs(name):
    with pytest.raises(RunFolderError, match="cannot name a folder under runs/"):
        default_run_dir(name)


def test_the_default_run_folder_of_a_plain_name():
    assert default_run_dir("gsc-paper_v2.1") == Path("runs") / "gsc-paper_v2.1"


def test_train_cli_refuses_a_name_that_leaves_runs(tmp_path):
    recipe = tmp_path / "recipe.toml"
    text = (ROOT / "models" / "digits-demo" / "recipe.toml").read_text()
    recipe.write_text(text.replace('name = "digits-demo"', 'name = "../../escaped"'))
    result = toolchain("train", str(recipe), "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot name a folder under runs/" in result.stderr
    assert not (tmp_path.parent.parent / "escaped").exists()


def test_recipe_changes_lists_dotted_keys():
    assert recipe_changes(_recipe(), _recipe(**{"train.seed": 3, "model.hidden": [8]})) == [
        "model.hidden: [128] -> [8]",
        "train.seed: 0 -> 3",
    ]


def test_a_run_stage_done_from_other_weights_runs_again(tmp_path):
    state = _State(tmp_path / "pipeline.json", "f")
    state.record("export", {"status": "done", "outputs": [], "weights_sha256": "a"})
    assert state.done("export", "a") is not None
    assert state.done("export", "b") is None


def test_a_folder_of_an_older_toolchain_is_read_with_a_warning(tmp_path, digits, capsys):
    fit(_recipe(), digits, tmp_path, progress=False)
    (tmp_path / MANIFEST_FILE).unlink()
    assert load_run(tmp_path).recipe.name == "digits-demo"
    assert "has no run.json (written by an older toolchain)" in capsys.readouterr().err
    os.utime(tmp_path / "model.pt", (1, 1))  # the recipe is newer than the weights: a later run began
    with pytest.raises(RunError, match=r"recipe\.toml is newer than the weights"):
        load_run(tmp_path)
