"""Energy reports (Markdown, HTML, PNG, JSON) and the `energy` / `targets` commands end to end."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_runner import toolchain

from toolchain.activity import Activity
from toolchain.energy.model import estimate
from toolchain.energy.report import PLOTS, format_constant, format_count, format_j, write_report
from toolchain.energy.targets import load_target

sys.path.insert(0, str(Path(__file__).parent))
from test_energy import toy_activity, toy_network

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sparse_activity() -> Activity:
    base = toy_activity()
    fc1, fc2 = base.layers
    return replace(
        base,
        layers=(
            replace(fc1, spikes_per_sample=1.0, active_updates_per_sample=5, idle_updates_per_sample=10),
            replace(fc2, synops_per_sample=2, input_events_per_sample=1.0),
        ),
    )


def test_format_j():
    assert format_j(1.234e-6) == "1.23 µJ"
    assert format_j(0.0) == "0 J"
    assert format_j(4.5e-13) == "450 fJ"


def test_report_of_two_runs(tmp_path):
    loihi = load_target("loihi")
    runs = [
        estimate(toy_network(), toy_activity(), loihi, label="baseline"),
        estimate(toy_network(), sparse_activity(), loihi, label="sparse"),
    ]
    paths = write_report(runs, tmp_path / "report")
    for name in (*PLOTS, "report.md", "report.html", "report.json"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    for name in PLOTS:
        data = paths[name].read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        import matplotlib.image

        image = matplotlib.image.imread(paths[name])
        assert image.shape[0] > 100 and image.shape[1] > 100
    page = paths["report.html"].read_text()
    assert page.count("<table>") >= 2 + 2 * 4  # summary, comparison; per run: layers, workload, twin, sources
    for text in ("baseline", "sparse", "fc1", "fc2", "Davies", "horowitz-45nm-fp32", "activation sparsity"):
        assert text in page
    assert page.count('src="data:image/png;base64,') == len(PLOTS)  # self-contained: plots embedded
    assert 'src="energy' not in page and 'src="snn' not in page
    markdown = paths["report.md"].read_text()
    assert "## Comparison" in markdown and "| fc1 | dense |" in markdown
    data = json.loads(paths["report.json"].read_text())
    assert [e["label"] for e in data["estimates"]] == ["baseline", "sparse"]
    assert data["estimates"][1]["energy_per_inference_j"] < data["estimates"][0]["energy_per_inference_j"]


def test_targets_command(tmp_path):
    result = toolchain("targets", "--json", str(tmp_path / "targets.json"))
    assert result.returncode == 0, result.stderr
    assert "loihi " in result.stdout and "Davies" in result.stdout and "[UNVERIFIED]" in result.stdout
    listed = json.loads((tmp_path / "targets.json").read_text())["targets"]
    loihi = next(t for t in listed if t["name"] == "loihi")
    assert loihi["values"]["energy.synop_pj"]["value"] == 23.6
    assert "Table 2" in loihi["values"]["energy.synop_pj"]["source"]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI's ``main`` in this process (the slow start of a subprocess paid once per file)."""
    from toolchain.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_targets_command_names_a_bad_user_file(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nkind = "conventional"\n[energy]\nmac_pj = 1.0\n')
    monkeypatch.setenv("TOOLCHAIN_TARGETS", str(tmp_path))
    code, _, err = run_main(capsys, "targets")
    assert code == 2
    assert err.strip().splitlines() == [
        f"toolchain: error: {bad}: [energy].mac_pj: no citation; "
        "give [energy].source or [energy.sources].mac_pj"
    ]


@pytest.fixture
def model_files(tmp_path):
    from toolchain.formats.nir import write_nir

    model = write_nir(toy_network(), tmp_path / "toy.nir")
    activity = tmp_path / "sim.json"
    activity.write_text(json.dumps({"accuracy": 0.5, "activity": toy_activity().to_dict()}))
    sparse = tmp_path / "sparse.json"
    sparse.write_text(json.dumps(sparse_activity().to_dict()))
    return model, activity, sparse


def test_energy_command_end_to_end(tmp_path, model_files):
    model, activity, sparse = model_files
    out = tmp_path / "energy.json"
    result = toolchain(
        "energy",
        str(model),
        str(model),
        "--target",
        "loihi",
        "--activity",
        str(activity),
        "--activity",
        str(sparse),
        "--label",
        "baseline",
        "--label",
        "sparse",
        "--static",
        "--json",
        str(out),
        "--report",
        str(tmp_path / "report"),
    )
    assert result.returncode == 0, result.stderr
    assert "baseline on loihi:" in result.stdout and "sparse on loihi:" in result.stdout
    data = json.loads(out.read_text())["estimates"]
    expected = estimate(toy_network(), toy_activity(), load_target("loihi"), static=True)
    assert data[0]["energy_per_inference_j"] == pytest.approx(expected.energy_per_inference_j)
    assert data[0]["breakdown_j"]["static"] > 0
    assert data[0]["latency_per_inference_s"] == pytest.approx(expected.latency_per_inference_s)
    assert (tmp_path / "report" / "report.html").is_file()


def test_energy_command_errors_are_one_line(tmp_path, model_files, capsys):
    model, activity, _ = model_files
    bad = tmp_path / "chip.toml"
    bad.write_text(
        (ROOT / "deploy/targets/loihi.toml").read_text().replace("synop_pj = 23.6", "synop_pj = -1")
    )
    cases = [
        (
            ["--target", str(bad), "--activity", str(activity)],
            f"{bad}: [energy].synop_pj: expected a number >= 0",
        ),
        (["--target", "nowhere", "--activity", str(activity)], "unknown target 'nowhere'"),
        (["--target", "cpu", "--activity", str(activity)], "is a conventional baseline"),
        ([], "no activity: give --activity SIM.json"),
    ]
    for extra, message in cases:
        code, _, err = run_main(capsys, "energy", str(model), *extra)
        assert code == 2, (extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (extra, err)


def test_energy_of_a_netx_file_with_measured_activity(tmp_path, capsys):
    """netx file -> reference simulator's activity JSON -> estimate, all through real files."""
    from toolchain.formats.netx import write_netx
    from toolchain.sim.reference import simulate

    network = toy_network()
    path = write_netx(network, tmp_path / "toy.net")
    spikes = (np.random.default_rng(0).random((5, 16, 4)) < 0.6).astype(np.float32)
    activity = simulate(network, spikes).activity
    (tmp_path / "sim.json").write_text(json.dumps({"activity": activity.to_dict()}))
    code, out, err = run_main(
        capsys,
        "energy",
        str(path),
        "--activity",
        str(tmp_path / "sim.json"),
        "--json",
        str(tmp_path / "e.json"),
    )
    assert code == 0, err
    assert "toy on loihi:" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["energy_per_inference_j"] == pytest.approx(
        estimate(network, activity, load_target("loihi")).energy_per_inference_j
    )


@pytest.mark.slow
def test_energy_of_a_run_folder_simulates_its_test_samples(tmp_path, capsys):
    """A training run folder: quantized on the fly, activity from the reference simulator."""
    run = tmp_path / "run"
    code, _, err = run_main(
        capsys, "train", str(ROOT / "models/digits-demo"), "--out", str(run), "--epochs", "1", "--no-progress"
    )
    assert code == 0, err
    code, out, err = run_main(
        capsys, "energy", str(run), "--samples", "12", "--json", str(tmp_path / "e.json")
    )
    assert code == 0, err
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["activity_source"] == "reference" and data["samples"] == 12
    assert data["workload"]["effective_macs"] > 0  # direct (graded) input: the first layer's ops are MACs
    assert data["energy_per_inference_j"] > 0 and "run on loihi:" in out


def test_a_report_replaces_the_previous_report_of_its_folder(tmp_path):
    loihi = load_target("loihi")
    old = write_report([estimate(toy_network(), toy_activity(), loihi, label="run-before")], tmp_path)
    (tmp_path / "energy.json").write_text('{"label": "old"}')  # what `toolchain run` writes beside it
    (tmp_path / "notes.txt").write_text("the user's")
    new = write_report([estimate(toy_network(), sparse_activity(), loihi, label="run-after")], tmp_path)
    assert not (tmp_path / "energy.json").exists()
    assert "run-before" not in new["report.md"].read_text() and "run-after" in new["report.md"].read_text()
    assert (tmp_path / "notes.txt").is_file()
    assert set(old) == set(new)


def test_counts_and_constants_read_with_si_prefixes():
    assert format_count(33260.0) == "33.3 k"
    assert format_count(2_100_000) == "2.1 M"
    assert format_count(9472) == "9472"
    assert format_count(55.36) == "55.36"
    assert format_constant("overhead.step_pj", 2.65051e7) == "26.5 µJ"
    assert format_constant("time.synop_ns", 3.5) == "3.5 ns"
    assert format_constant("static.power_mw", 29) == "29 mW"
    assert format_constant("topology.neurons_per_core", 1024) == "1024"


def test_terms_not_asked_for_read_not_included_and_accuracy_stands_beside_energy(tmp_path):
    import base64
    import re

    loihi = load_target("loihi")
    off = estimate(toy_network(), toy_activity(), loihi, label="off", accuracy=0.875)
    on = estimate(toy_network(), toy_activity(), loihi, label="on", static=True, overhead=True)
    paths = write_report([off, on], tmp_path)
    markdown = paths["report.md"].read_text()
    row_off = next(line for line in markdown.splitlines() if line.startswith("| off |"))
    row_on = next(line for line in markdown.splitlines() if line.startswith("| on |"))
    assert row_off.count("not included") == 2 and "0.8750" in row_off
    assert "not included" not in row_on and "not given" in row_on
    assert "0 J" not in markdown
    assert "energy / time step" in markdown and format_j(off.energy_per_inference_j / 5) in row_off
    assert "Not a like-for-like comparison" in markdown
    assert not re.search(r"\de[+-]\d", markdown), "a number without an SI prefix"
    page = paths["report.html"].read_text()
    first = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(first).startswith(PNG_SIGNATURE)


def test_graded_input_states_its_pricing_and_share():
    spiking = toy_network()
    first = replace(spiking.layers[0], weight_exp=-8)
    network = replace(spiking, input_encoding="graded", layers=(first, *spiking.layers[1:]))
    text = " ".join(estimate(network, toy_activity(), load_target("loihi")).assumptions)
    assert "Graded input: each nonzero 8-bit input value reaching layer 'fc1'" in text
    assert "That layer's synaptic operations are" in text
    plain = estimate(spiking, toy_activity(), load_target("loihi"))
    assert "Graded input" not in " ".join(plain.assumptions)


def test_lava_activity_is_refused_with_what_to_do():
    from toolchain.energy.model import ActivityMismatchError

    activity = toy_activity()
    lava = replace(
        activity,
        source="lava",
        layers=tuple(
            replace(c, active_updates_per_sample=0, idle_updates_per_sample=0) for c in activity.layers
        ),
    )
    with pytest.raises(ActivityMismatchError, match=r"recorded by Lava.*toolchain simulate FILE --json OUT"):
        estimate(toy_network(), lava, load_target("loihi"))


def test_the_html_report_reads_well_in_a_real_browser(tmp_path):
    """Headless Chromium loads the page alone: every plot decodes, nothing is wider than the window."""
    from report_browser import check_report, find_browser

    browser = find_browser()
    if browser is None:
        pytest.skip("no headless Chromium installed (Debian: apt-get install chromium)")
    loihi, calibrated = load_target("loihi"), load_target("loihi-sanafe")
    runs = [
        estimate(toy_network(), toy_activity(), loihi, label="a run with a long label " * 3),
        estimate(toy_network(), sparse_activity(), calibrated, label="sparse"),
    ]
    write_report(runs, tmp_path)
    result = check_report(tmp_path, browser)
    assert result["problems"] == [], result
    assert result["images"] == len(PLOTS) and result["broken"] == 0
