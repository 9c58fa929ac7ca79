"""A non-editable install (`pip install .`) works: the wheel holds the target profiles as package data.

The wheel is built from a copy of the project files (never in the working tree, whose ``build/``
setuptools would reuse), installed with ``pip install --target`` into a folder put first on
``PYTHONPATH``, and its CLI is run from a folder outside the checkout. The checkout must not be what
runs: the installed copy's module paths are checked.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_energy import toy_activity, toy_network

ROOT = Path(__file__).resolve().parents[1]
#: what a build needs (a copy of these, without caches, is what the wheel is built from)
PROJECT_FILES = ["pyproject.toml", "setup.py", "README.md", "toolchain", "deploy"]
PROFILES = sorted(path.name for path in (ROOT / "deploy" / "targets").glob("*.toml"))


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from a copy of the project and installed with --no-deps into its own folder."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    wheels = tmp / "wheels"
    built = run(
        *pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), ".", cwd=source
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("neuro_toolchain-*.whl")
    site = tmp / "site"
    done = run(*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    work = tmp / "work"  # the folder the installed CLI runs in: outside the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TOOLCHAIN_TARGETS")}
    env.update(PYTHONPATH=str(site), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return {"wheel": wheel, "site": site, "work": work, "env": env}


def toolchain(installed: dict, *args: str) -> subprocess.CompletedProcess:
    """The installed console script (``python -m toolchain`` if pip wrote none)."""
    script = installed["site"] / "bin" / "toolchain"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "toolchain"]
    return run(*command, *args, cwd=installed["work"], env=installed["env"])


@pytest.mark.slow
def test_wheel_holds_the_target_profiles(installed):
    assert PROFILES and "loihi.toml" in PROFILES
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
        for profile in PROFILES:
            member = f"toolchain/targets/{profile}"
            assert member in names, f"{member} not in {installed['wheel'].name}"
            assert wheel.read(member) == (ROOT / "deploy" / "targets" / profile).read_bytes()
        assert "toolchain/py.typed" in names
        assert not any(name.startswith("deploy/") for name in names)


@pytest.mark.slow
def test_the_installed_copy_runs_not_the_checkout(installed):
    result = run(
        sys.executable,
        "-c",
        "import toolchain, toolchain.energy.targets as t; print(toolchain.__file__); print(t.BUILTIN_DIR)",
        cwd=installed["work"],
        env=installed["env"],
    )
    assert result.returncode == 0, result.stderr
    module, builtin = (Path(line) for line in result.stdout.split())
    site = installed["site"].resolve()
    assert module.resolve().is_relative_to(site), module
    assert builtin.resolve() == site / "toolchain" / "targets"
    assert not installed["work"].resolve().is_relative_to(ROOT)


@pytest.mark.slow
def test_installed_cli_lists_the_targets(installed):
    result = toolchain(installed, "targets", "--json", "targets.json")
    assert result.returncode == 0, result.stdout + result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()}
    assert {Path(profile).stem for profile in PROFILES} <= names
    assert "loihi" in names
    listed = json.loads((installed["work"] / "targets.json").read_text())["targets"]
    loihi = next(t for t in listed if t["name"] == "loihi")
    assert Path(loihi["path"]).resolve().is_relative_to(installed["site"].resolve())


@pytest.mark.slow
def test_installed_energy_resolves_a_target_by_name(installed):
    from toolchain.energy.model import estimate
    from toolchain.energy.targets import load_target
    from toolchain.formats.nir import write_nir

    work = installed["work"]
    write_nir(toy_network(), work / "toy.nir")
    (work / "sim.json").write_text(json.dumps({"activity": toy_activity().to_dict()}))
    result = toolchain(
        installed, "energy", "toy.nir", "--activity", "sim.json", "--target", "loihi", "--json", "e.json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "toy on loihi:" in result.stdout
    data = json.loads((work / "e.json").read_text())
    assert data["target"] == "loihi"
    assert "horowitz-45nm-fp32" in json.dumps(data["ann_twin"])  # the conventional baselines: listed too
    expected = estimate(toy_network(), toy_activity(), load_target("loihi"))
    assert data["energy_per_inference_j"] == pytest.approx(expected.energy_per_inference_j)

    unknown = toolchain(installed, "energy", "toy.nir", "--activity", "sim.json", "--target", "nowhere")
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown target 'nowhere'; known targets: " in lines[0], unknown.stderr
    assert "loihi" in lines[0]


def test_missing_builtin_profiles_fail_in_one_line(tmp_path, monkeypatch, capsys):
    """An install without its package data: `targets` and `energy` name the problem, no traceback."""
    import toolchain.energy.targets
    from toolchain.cli import main

    monkeypatch.setattr(toolchain.energy.targets, "BUILTIN_DIR", tmp_path / "missing")
    for args in (["targets"], ["energy", str(tmp_path / "toy.nir"), "--target", "loihi"]):
        assert main(args) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "the built-in target profiles are missing" in lines[0], lines
