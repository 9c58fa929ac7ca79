"""The silicon-calibrated Loihi profile, the optional per-event terms, hand-made mappings, error bands."""

import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tests.test_energy import PJ, small_chip, toy_activity, toy_network, write_profile
from toolchain.energy.model import TERMS, estimate
from toolchain.energy.placement import place, tile_xy
from toolchain.energy.report import write_report
from toolchain.energy.targets import BUILTIN_DIR, TargetError, list_targets, load_target

#: SANA-FE 2.2.9 sanafe/examples/loihi.yaml: (hardware unit, attribute) -> the profile key (J -> pJ)
YAML_KEYS = {
    ("loihi_dense_synapse", "energy_process_spike"): "energy.synop_pj",
    ("loihi_lif", "energy_update_neuron"): "energy.neuron_active_pj",
    ("loihi_lif", "energy_access_neuron"): "energy.neuron_access_pj",
    ("loihi_lif", "energy_spike_out"): "energy.spike_out_pj",
    ("loihi_out", "energy_message_out"): "energy.message_out_pj",
    ("loihi_tile[0..31]", "energy_east_hop"): "energy.hop_east_west_pj",
    ("loihi_tile[0..31]", "energy_west_hop"): "energy.hop_east_west_pj",
    ("loihi_tile[0..31]", "energy_north_hop"): "energy.hop_north_south_pj",
    ("loihi_tile[0..31]", "energy_south_hop"): "energy.hop_north_south_pj",
}


def test_calibrated_profile_holds_sanafe_figures():
    t = load_target("loihi-sanafe")
    assert t.verified and not load_target("loihi").verified
    assert (t.synop_pj, t.neuron_active_pj, t.neuron_idle_pj) == (35.5, 21.6, 0.0)
    assert (t.neuron_access_pj, t.spike_out_pj, t.message_out_pj) == (51.2, 69.3, 111.0)
    assert (t.spike_within_tile_pj, t.hop_east_west_pj, t.hop_north_south_pj) == (0.0, 3.0, 4.2)
    assert t.values["time.neuron_active_ns"] == pytest.approx(6.0 + 3.7)
    for key in ("energy.synop_pj", "energy.neuron_access_pj", "energy.message_out_pj"):
        assert "loihi.yaml" in t.sources[key]
    assert "12 %" in t.error_band and "TCAD" in t.error_band
    assert (BUILTIN_DIR / "loihi-sanafe.toml").is_file()


@pytest.mark.skipif(find_spec("sanafe") is None, reason="SANA-FE is a benchmark-only dependency")
def test_calibrated_profile_matches_the_installed_sanafe_yaml():
    from importlib.resources import files

    text = (files("sanafe.examples") / "loihi.yaml").read_text()
    t = load_target("loihi-sanafe")
    for (unit, attribute), key in YAML_KEYS.items():
        block = text.split(f"name: {unit}", 1)[1].split("- name:", 1)[0]
        value = float(re.search(rf"{attribute}:\s*([0-9.eE+-]+)", block).group(1))
        assert t.values[key] == pytest.approx(value / PJ), (unit, attribute)


def test_every_builtin_profile_states_an_error_band():
    for target in list_targets():
        assert target.error_band and len(target.error_band) > 20, target.name
        assert target.to_dict()["error_band"] == target.error_band


def test_new_terms_by_hand():
    """The toy network (tests/test_energy.py) on the calibrated profile, every term by hand."""
    e = estimate(toy_network(), toy_activity(), load_target("loihi-sanafe"))
    assert e.breakdown_j["synaptic"] == pytest.approx(28 * 35.5 * PJ)
    # updates: active 9 + 7 at 21.6 pJ, idle at 0; access: 3 x 5 + 2 x 5 neuron-steps at 51.2 pJ;
    # spikes out: 4 + 2 at 69.3 pJ
    assert e.breakdown_j["neuron"] == pytest.approx((16 * 21.6 + 25 * 51.2 + 6 * 69.3) * PJ)
    # messages: 7.5 into fc1, 4 into fc2, all inside tile 0: 111 pJ each, 0 within-tile, no hops
    assert e.breakdown_j["routing"] == pytest.approx(11.5 * 111.0 * PJ)
    fc1, fc2 = e.layers
    assert fc1.neuron_access_j == pytest.approx(15 * 51.2 * PJ)
    assert fc2.spike_out_j == pytest.approx(2 * 69.3 * PJ)
    assert fc1.message_out_j == pytest.approx(7.5 * 111.0 * PJ)
    assert fc1.neuron_j == pytest.approx(fc1.neuron_update_j + fc1.neuron_access_j + fc1.spike_out_j)
    terms = {term.name: term for term in e.terms}
    assert [term.name for term in e.terms] == [term.name for term in TERMS]
    assert terms["neuron access"].count == 25 and terms["spikes out"].count == 6
    assert terms["messages out"].energy_j == pytest.approx(11.5 * 111.0 * PJ)
    assert sum(t.energy_j for t in e.terms) == pytest.approx(e.energy_per_inference_j)


def test_terms_a_profile_lacks_are_not_included_and_cost_nothing():
    table2 = estimate(toy_network(), toy_activity(), load_target("loihi"))
    terms = {term.name: term for term in table2.terms}
    for name in ("neuron access", "spikes out", "messages out"):
        assert terms[name].energy_j is None
    assert terms["spikes out"].count == 6  # counted, not priced
    assert table2.breakdown_j["neuron"] == pytest.approx((16 * 81 + 9 * 52) * PJ)  # unchanged


def test_a_custom_profile_with_one_new_term(tmp_path):
    text = (BUILTIN_DIR / "loihi.toml").read_text()
    text = text.replace("hop_north_south_pj = 4.0", "hop_north_south_pj = 4.0\nspike_out_pj = 10.0")
    e = estimate(toy_network(), toy_activity(), load_target(write_profile(tmp_path, "mine", text)))
    base = estimate(toy_network(), toy_activity(), load_target("loihi"))
    assert e.energy_per_inference_j - base.energy_per_inference_j == pytest.approx(6 * 10.0 * PJ)


def test_error_band_must_be_text(tmp_path):
    text = "error_band = 12\n" + (BUILTIN_DIR / "loihi-sanafe.toml").read_text().split("\n", 1)[1].replace(
        "error_band =", "# error_band ="
    )
    with pytest.raises(TargetError, match="error_band: expected a non-empty string"):
        load_target(write_profile(tmp_path, "bad", text))


def test_cores_per_layer_spreads_a_layer_by_hand(tmp_path):
    chip = small_chip(tmp_path)
    p = place(toy_network(), chip, cores_per_layer={"fc1": 3})
    fc1 = p.layer("fc1")
    assert (fc1.cores, fc1.neurons_per_core, fc1.first_core) == (3, 1, 1)
    assert p.layer("fc2").first_core == 4 and p.cores == 5
    # input 0 reaches fc1 neurons 0 and 2, input 1 neurons 0 and 1, input 2 neuron 1, input 3 none
    assert p.traffic_into("fc1").messages_per_spike == pytest.approx(5 / 4)
    # fc2's two neurons both read fc1's three: one message per fc1 spike
    assert p.traffic_into("fc2").messages_per_spike == pytest.approx(1.0)
    with pytest.raises(TargetError, match="no population 'fc9'"):
        place(toy_network(), chip, cores_per_layer={"fc9": 1})
    with pytest.raises(TargetError, match=r"cores_per_layer\['fc1'\]: expected an integer from 1 to its 3"):
        place(toy_network(), chip, cores_per_layer={"fc1": 4})


def test_cores_per_layer_beyond_the_neuron_limit(tmp_path):
    from toolchain import ir

    neurons = toy_network().layers[0].neurons
    wide = ir.Network("wide", (8,), "spikes", 5, (ir.Dense("fc", np.ones((2, 8), np.int64), neurons),))
    with pytest.raises(
        TargetError, match=r"cores_per_layer\['input'\] = 1: 8 neurons per core, beyond the 4"
    ):
        place(wide, small_chip(tmp_path), cores_per_layer={"input": 1})


def test_tiles_numbered_by_columns():
    # 2 cores per tile, 2 tiles per row; a column of 16 tiles: core 4 is tile 2
    assert tuple(map(int, tile_xy(4, 2, 2))) == (0, 1)
    assert tuple(map(int, tile_xy(4, 2, 2, 16))) == (0, 2)
    assert tuple(map(int, tile_xy(35, 2, 2, 16))) == (1, 1)


def test_report_lists_terms_and_error_band(tmp_path):
    calibrated = estimate(toy_network(), toy_activity(), load_target("loihi-sanafe"), label="calibrated")
    table2 = estimate(toy_network(), toy_activity(), load_target("loihi"), label="table2")
    markdown = write_report([calibrated, table2], tmp_path)["report.md"].read_text()
    assert "Error band of each profile" in markdown
    band = next(line for line in markdown.splitlines() if line.startswith("- loihi-sanafe: "))
    assert "12 %" in band
    assert "Energy by term" in markdown
    calibrated_part, table2_part = markdown.split("## calibrated on loihi-sanafe", 1)[1].split(
        "## table2 on loihi"
    )
    access = next(line for line in calibrated_part.splitlines() if line.startswith("| neuron access |"))
    assert "51.2 pJ" in access and "not included" not in access
    for name in ("neuron access", "spikes out", "messages out"):
        line = next(line for line in table2_part.splitlines() if line.startswith(f"| {name} |"))
        assert line.endswith("| not given | not included |"), line
    assert "-24.6 %" in table2_part  # the Table-2 profile's error band, from the benchmark


def test_report_without_error_band_says_so(tmp_path):
    text = (BUILTIN_DIR / "loihi.toml").read_text()
    text = re.sub(r"^error_band = .*$", "", text, flags=re.M)
    target = load_target(write_profile(tmp_path, "plain", text))
    assert target.error_band is None
    out = Path(tmp_path) / "report"
    markdown = write_report([estimate(toy_network(), toy_activity(), target)], out)["report.md"].read_text()
    assert "not stated by the profile" in markdown
