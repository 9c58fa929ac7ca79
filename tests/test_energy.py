"""The energy model against hand-computed counts and joules: targets, placement, arithmetic, metrics."""

import math
from pathlib import Path

import numpy as np
import pytest

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.energy.baselines import ann_macs, ann_twin
from toolchain.energy.model import ActivityMismatchError, estimate
from toolchain.energy.placement import place
from toolchain.energy.targets import (
    BUILTIN_DIR,
    TARGETS_ENV,
    TargetError,
    list_targets,
    load_target,
    parse_target_file,
)
from toolchain.energy.workload import dense_connections, workload_metrics

PJ, NS = 1e-12, 1e-9
NEURONS = ir.CubaNeurons(i_decay=1024, v_decay=128, vth_mant=100)


def counts(name, neurons, synops, active, spikes, events, steps, graded=False, kind="dense"):
    return LayerCounts(
        name=name,
        kind=kind,
        neurons=neurons,
        synapses=0,
        fan_in=0,
        fan_out=0,
        spikes_per_sample=spikes,
        synops_per_sample=synops,
        active_updates_per_sample=active,
        idle_updates_per_sample=neurons * steps - active,
        input_events_per_sample=events,
        graded_input=graded,
    )


def toy_network():
    """4 inputs (input 3 has no synapse) -> fc1 (3) -> fc2 (2), 5 steps."""
    w1 = np.array([[1, 2, 0, 0], [0, 3, 1, 0], [5, 0, 0, 0]], np.int64)
    w2 = np.array([[1, 1, 1], [0, 1, -1]], np.int64)
    layers = (ir.Dense("fc1", w1, NEURONS), ir.Dense("fc2", w2, NEURONS))
    return ir.Network("toy", (4,), "spikes", 5, layers)


def toy_activity():
    return Activity(
        network="toy",
        source="hand",
        samples=1,
        time_steps=5,
        layers=(
            counts("fc1", 3, synops=20, active=9, spikes=4, events=10, steps=5),
            counts("fc2", 2, synops=8, active=7, spikes=2, events=4, steps=5),
        ),
    )


def write_profile(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path


def small_chip(tmp_path, limits="", name="tiny"):
    """4 neurons per core, 2 cores per tile, 2 tiles per row; 1 / 2 / 3 pJ within-tile / EW / NS."""
    return parse_target_file(
        write_profile(
            tmp_path,
            name,
            f"""
name = "{name}"
kind = "neuromorphic"
[energy]
source = "test"
synop_pj = 10.0
neuron_active_pj = 2.0
neuron_idle_pj = 1.0
spike_within_tile_pj = 1.0
hop_east_west_pj = 2.0
hop_north_south_pj = 3.0
[time]
source = "test"
synop_ns = 1.0
neuron_active_ns = 1.0
neuron_idle_ns = 1.0
[topology]
source = "test"
cores_per_chip = 64
cores_per_tile = 2
mesh_width_tiles = 2
neurons_per_core = 4
{limits}
""",
        )
    )


# --- arithmetic -----------------------------------------------------------------------------------


def test_loihi_energy_by_hand():
    e = estimate(toy_network(), toy_activity(), load_target("loihi"))
    # synaptic: (20 + 8) synops x 23.6 pJ
    assert e.breakdown_j["synaptic"] == pytest.approx(28 * 23.6 * PJ)
    # neuron: active (9 + 7) x 81 pJ, idle (6 + 3) x 52 pJ
    assert e.breakdown_j["neuron"] == pytest.approx((16 * 81 + 9 * 52) * PJ)
    # input, fc1, fc2 on cores 0, 1, 2 of tile 0: every message is within-tile (1.7 pJ).
    # input -> fc1: 3 of the 4 inputs have synapses (one message each), 10 input events;
    # fc1 -> fc2: each of the 4 fc1 spikes reaches fc2's one core
    assert e.breakdown_j["routing"] == pytest.approx((10 * 0.75 + 4 * 1.0) * 1.7 * PJ)
    assert e.breakdown_j["static"] == 0.0 and e.breakdown_j["overhead"] == 0.0
    assert e.energy_per_inference_j == pytest.approx(sum(e.breakdown_j.values()))
    fc1, fc2 = e.layers
    assert fc1.synaptic_j == pytest.approx(20 * 23.6 * PJ)
    assert fc2.neuron_j == pytest.approx((7 * 81 + 3 * 52) * PJ)
    assert fc1.messages == pytest.approx(7.5) and fc2.messages == pytest.approx(4.0)
    assert fc1.east_west_hops == 0 and fc2.north_south_hops == 0
    # latency: per step the slowest core; fc1: (20 x 3.5 + 9 x 8.4 + 6 x 5.3) / 5 ns = 35.48 ns
    assert fc1.step_time_s == pytest.approx(35.48 * NS)
    assert fc2.step_time_s == pytest.approx((8 * 3.5 + 7 * 8.4 + 3 * 5.3) / 5 * NS)
    assert e.latency_per_inference_s == pytest.approx(5 * 35.48 * NS)


def test_static_and_overhead_terms():
    loihi = load_target("loihi")
    e = estimate(toy_network(), toy_activity(), loihi, static=True, overhead=True)
    assert e.breakdown_j["static"] == pytest.approx(29e-3 * 5 * 35.48 * NS)
    assert e.breakdown_j["overhead"] == pytest.approx(5 * loihi.values["overhead.step_pj"] * PJ)
    with pytest.raises(TargetError, match=r"\[static\].power_mw"):
        estimate(toy_network(), toy_activity(), load_target("loihi2"), static=True)


def test_fixed_step_target_and_conventional_refusal():
    e = estimate(toy_network(), toy_activity(), load_target("spinnaker"))
    assert e.latency_per_inference_s == pytest.approx(5 * 1e-3)
    assert e.breakdown_j["synaptic"] == pytest.approx(28 * 13.3e-9)
    assert e.breakdown_j["neuron"] == pytest.approx(25 * 26e-9)  # every update costs the same
    assert e.breakdown_j["routing"] == 0.0
    with pytest.raises(TargetError, match="conventional baseline"):
        estimate(toy_network(), toy_activity(), load_target("cpu"))


def test_json_has_the_agreed_keys():
    data = estimate(toy_network(), toy_activity(), load_target("loihi")).to_dict()
    for key in ("target", "energy_per_inference_j", "breakdown_j", "latency_per_inference_s", "layers"):
        assert key in data
    assert set(data["breakdown_j"]) >= {"synaptic", "neuron", "routing", "static"}
    assert data["target"] == "loihi"
    assert [layer["name"] for layer in data["layers"]] == ["fc1", "fc2"]
    assert all(source for source in data["citations"].values())


def test_activity_of_another_network_is_refused():
    activity = toy_activity()
    wrong_steps = Activity("toy", "hand", 1, 6, activity.layers)
    with pytest.raises(ActivityMismatchError, match="6 time steps"):
        estimate(toy_network(), wrong_steps, load_target("loihi"))
    renamed = Activity("toy", "hand", 1, 5, (activity.layers[0], counts("out", 2, 8, 7, 2, 4, 5)))
    with pytest.raises(ActivityMismatchError, match="layers"):
        estimate(toy_network(), renamed, load_target("loihi"))
    bad_updates = Activity("toy", "hand", 1, 5, (activity.layers[0], counts("fc2", 2, 8, 7, 2, 4, 4)))
    with pytest.raises(ActivityMismatchError, match=r"'fc2'.*active \+ idle"):
        estimate(toy_network(), bad_updates, load_target("loihi"))


# --- placement ------------------------------------------------------------------------------------


def several_core_network():
    """6 inputs -> fc1 (10, all-to-all) -> fc2 (3, all-to-all)."""
    layers = (
        ir.Dense("fc1", np.ones((10, 6), np.int64), NEURONS),
        ir.Dense("fc2", np.ones((3, 10), np.int64), NEURONS),
    )
    return ir.Network("several", (6,), "spikes", 2, layers)


def test_placement_on_several_cores(tmp_path):
    p = place(several_core_network(), small_chip(tmp_path))
    # input: cores 0 (4), 1 (2); fc1: cores 2, 3 (4 each), 4 (2); fc2: core 5
    assert [(lp.name, lp.first_core, lp.cores) for lp in p.layers] == [
        ("input", 0, 2),
        ("fc1", 2, 3),
        ("fc2", 5, 1),
    ]
    assert (p.cores, p.tiles, p.chips) == (6, 3, 1)
    # tiles (2 cores each) on a mesh 2 wide: tile 0 (0,0) holds the input, tile 1 (1,0) fc1's
    # cores 2, 3, tile 2 (0,1) fc1's core 4 and fc2
    into_fc1 = p.traffic_into("fc1")
    assert into_fc1.messages_per_spike == 3  # every input reaches all 3 cores of fc1
    assert into_fc1.within_tile_per_spike == 0
    assert into_fc1.east_west_hops_per_spike == 2  # cores 2, 3: one hop east each
    assert into_fc1.north_south_hops_per_spike == 1  # core 4: one hop north
    assert into_fc1.fan_in_axons_max == 6
    assert into_fc1.fan_out_axons_max == 12  # core 0: 4 inputs x 3 destination cores
    into_fc2 = p.traffic_into("fc2")
    # 8 fc1 neurons in tile 1 -> tile 2: 1 EW + 1 NS hop; 2 in tile 2: within-tile; per spike / 10
    assert into_fc2.messages_per_spike == 1
    assert into_fc2.within_tile_per_spike == pytest.approx(0.2)
    assert into_fc2.east_west_hops_per_spike == pytest.approx(0.8)
    assert into_fc2.north_south_hops_per_spike == pytest.approx(0.8)


def test_routing_energy_on_several_cores(tmp_path):
    activity = Activity(
        "several",
        "hand",
        1,
        2,
        (
            counts("fc1", 10, synops=60, active=20, spikes=5, events=10, steps=2),
            counts("fc2", 3, synops=50, active=6, spikes=1, events=5, steps=2),
        ),
    )
    e = estimate(several_core_network(), activity, small_chip(tmp_path))
    # input -> fc1: 10 spikes x (2 EW x 2 pJ + 1 NS x 3 pJ); fc1 -> fc2: 5 spikes x
    # (0.2 x 1 pJ + 0.8 x 2 pJ + 0.8 x 3 pJ)
    assert e.layers[0].routing_j == pytest.approx(10 * (2 * 2 + 1 * 3) * PJ)
    assert e.layers[1].routing_j == pytest.approx(5 * (0.2 * 1 + 0.8 * 2 + 0.8 * 3) * PJ)
    # the fullest fc1 core holds 4 of 10 neurons: (60 + 20 + 0) x 1 ns x 0.4 / 2 steps
    assert e.layers[0].step_time_s == pytest.approx(0.4 * (60 + 20) / 2 * NS)


def test_fan_out_limit_splits_the_source(tmp_path):
    target = small_chip(tmp_path, "max_fan_out_axons_per_core = 8")
    p = place(several_core_network(), target)
    # 4 inputs per core would need 12 routes; 2 per core need 6
    assert [(lp.name, lp.cores, lp.neurons_per_core) for lp in p.layers] == [
        ("input", 3, 2),
        ("fc1", 3, 4),
        ("fc2", 1, 3),
    ]
    assert p.traffic_into("fc1").fan_out_axons_max == 6


def test_fan_in_limit_refuses_a_dense_layer_naming_it(tmp_path):
    target = small_chip(tmp_path, "max_fan_in_axons_per_core = 5")
    with pytest.raises(TargetError, match=r"layer 'fc1' does not fit target 'tiny'.*6 input axons"):
        place(several_core_network(), target)


def test_convolution_reach_in_both_orders(tmp_path):
    # input (1, 8) -> conv 2 x 3 taps, no padding -> (2, 6) = 12 neurons on 3 cores of 4
    conv = ir.Conv("c1", np.ones((2, 1, 3), np.int64), NEURONS, in_shape=(1, 8), stride=(1,), padding=(0,))
    head = ir.Dense("fc", np.ones((2, 12), np.int64), NEURONS)
    net = ir.Network("conv", (1, 8), "spikes", 1, (conv, ir.Flatten("flat", (2, 6)), head))
    t = place(net, small_chip(tmp_path), order="c").traffic_into("c1")
    # C order: core A = channel 0, positions 0-3 <- inputs 0-5; core B = ch 0 pos 4-5 + ch 1 pos
    # 0-1 <- all 8; core C = ch 1 pos 2-5 <- inputs 2-7
    assert t.fan_in_axons_max == 8
    assert t.messages_per_spike == pytest.approx((6 + 8 + 6) / 8)
    spatial = place(net, small_chip(tmp_path)).traffic_into("c1")
    # spatial order: each core holds 2 positions x 2 channels: positions 0-1, 2-3, 4-5 <- inputs
    # 0-3, 2-5, 4-7
    assert spatial.fan_in_axons_max == 4
    assert spatial.messages_per_spike == pytest.approx((4 + 4 + 4) / 8)
    # the dense head reads the feature map in C order whatever the placement: all 12 neurons reach
    # its one core
    assert place(net, small_chip(tmp_path)).traffic_into("fc").messages_per_spike == 1


def test_pooling_is_folded_into_the_reach(tmp_path):
    # conv (1, 8) -> (1, 8) with padding, sum-pool 2 -> (1, 4), fc reads pooled positions 0 and 3
    conv = ir.Conv("c1", np.ones((1, 1, 3), np.int64), NEURONS, in_shape=(1, 8), stride=(1,), padding=(1,))
    pool = ir.Pool("pool", "sum", 2, (1, 8))
    w = np.array([[1, 0, 0, 1]], np.int64)
    net = ir.Network(
        "pooled", (1, 8), "spikes", 1, (conv, pool, ir.Flatten("flat", (1, 4)), ir.Dense("fc", w, NEURONS))
    )
    t = place(net, small_chip(tmp_path)).traffic_into("fc")
    # pooled positions 0 and 3 come from conv neurons 0, 1, 6, 7: 4 of 8 neurons send one message
    assert t.messages_per_spike == pytest.approx(4 / 8)
    assert t.fan_in_axons_max == 4


# --- workload metrics and the ANN twin ------------------------------------------------------------


def test_workload_metrics_by_hand():
    w = workload_metrics(toy_network(), toy_activity())
    assert w.activation_sparsity == pytest.approx(1 - 6 / (5 * 5))
    assert w.effective_acs == 28 and w.effective_macs == 0
    assert w.dense_ops == (12 + 6) * 5
    assert w.connection_sparsity == pytest.approx(1 - 10 / 18)  # 5 + 5 non-zero of 12 + 6
    # 18 weights x 1 byte + 2 layers x 12 register bytes, no biases
    assert w.footprint_bytes == 18 + 2 * 12


def test_graded_input_counts_macs():
    w1 = np.ones((3, 4), np.int64)
    net = ir.Network("g", (4,), "graded", 2, (ir.Dense("fc1", w1, NEURONS, weight_exp=-8),))
    activity = Activity("g", "hand", 1, 2, (counts("fc1", 3, 24, 6, 1, 8, 2, graded=True),))
    w = workload_metrics(net, activity)
    assert (w.effective_macs, w.effective_acs) == (24, 0)


def test_dense_connections_of_a_padded_convolution():
    conv = ir.Conv("c", np.ones((2, 1, 3), np.int64), NEURONS, in_shape=(1, 8), stride=(1,), padding=(1,))
    # 8 outputs x 3 taps, minus the 2 taps on the padding
    assert dense_connections(conv) == 2 * 1 * (8 * 3 - 2)
    conv2d = ir.Conv(
        "c2", np.ones((1, 1, 3, 3), np.int64), NEURONS, in_shape=(1, 4, 4), stride=(2, 2), padding=(1, 1)
    )
    # per axis: outputs 0, 1 at offsets -1..1 and 1..3 -> 2 + 3 = 5 valid taps; 5 x 5
    assert dense_connections(conv2d) == 25


def test_ann_twin_on_horowitz():
    net = toy_network()
    assert ann_macs(net) == 12 + 6
    w = workload_metrics(net, toy_activity())
    twin = {b.target: b for b in ann_twin(net, w, [load_target("horowitz-45nm-fp32")])}
    fp32 = twin["horowitz-45nm-fp32"]
    assert fp32.ann_twin_j == pytest.approx(18 * 4.6 * PJ)
    assert fp32.snn_ops_j == pytest.approx(28 * 0.9 * PJ)


# --- target profiles ------------------------------------------------------------------------------


def test_builtin_targets_are_valid_and_cited():
    names = {t.name for t in list_targets()}
    assert {"loihi", "loihi2", "spinnaker", "spinnaker2", "cpu", "gpu", "arm"} <= names
    loihi = load_target("loihi")
    assert loihi.synop_pj == 23.6 and loihi.neuron_active_pj == 81.0 and loihi.neuron_idle_pj == 52.0
    assert (loihi.spike_within_tile_pj, loihi.hop_east_west_pj, loihi.hop_north_south_pj) == (1.7, 3.0, 4.0)
    assert loihi.values["time.synop_ns"] == 3.5 and loihi.neurons_per_core == 1024
    assert "Davies" in loihi.sources["energy.synop_pj"]
    assert not load_target("loihi2").verified and load_target("loihi2").assumptions
    assert load_target("horowitz-45nm-int8").mac_pj == 0.23
    for target in list_targets():
        assert all(source.strip() for _, _, source in target.cited()), target.name


GOOD = """
name = "mine"
kind = "conventional"
[energy]
source = "a paper"
mac_pj = 1.0
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GOOD + "colour = 3\n", r"\[energy\]\.colour: unknown key"),
        (GOOD.replace('source = "a paper"\n', ""), r"\[energy\]\.mac_pj: no citation"),
        (GOOD.replace("mac_pj = 1.0", "mac_pj = -1.0"), r"\[energy\]\.mac_pj: expected a number >= 0"),
        (GOOD.replace("mac_pj = 1.0", 'mac_pj = "cheap"'), r"\[energy\]\.mac_pj: expected a number"),
        (GOOD.replace("mac_pj = 1.0", "ac_pj = 1.0"), r"\[energy\]\.mac_pj: missing"),
        (GOOD.replace("conventional", "analog"), "kind: expected 'neuromorphic' or 'conventional'"),
        (GOOD + "verified = false\n", r"\[energy\]\.verified: unknown key"),
        ("verified = false\n" + GOOD, "assumptions: an unverified profile must list"),
        ("speed = 1\n" + GOOD, "unknown key 'speed'"),
        (GOOD + "[energy.sources]\nfoo_pj = 'x'\n", r"\[energy\.sources\]\.foo_pj: unknown key"),
        ("name = ", "not valid TOML"),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path, body, message):
    path = write_profile(tmp_path, "mine", body)
    with pytest.raises(TargetError, match=message) as caught:
        load_target(path)
    assert str(path) in str(caught.value)


def test_neuromorphic_profile_needs_a_time_model(tmp_path):
    text = (BUILTIN_DIR / "loihi.toml").read_text().replace("synop_ns = 3.5\n", "")
    path = write_profile(tmp_path, "slow", text)
    with pytest.raises(TargetError, match=r"slow.toml: \[time\]: give synop_ns"):
        load_target(path)


def test_user_folder_of_targets(tmp_path, monkeypatch):
    write_profile(tmp_path, "mine", GOOD)
    monkeypatch.setenv(TARGETS_ENV, str(tmp_path))
    assert load_target("mine").mac_pj == 1.0
    assert "mine" in {t.name for t in list_targets()}
    with pytest.raises(TargetError, match=r"unknown target 'nothing'.*loihi"):
        load_target("nothing")


def test_estimate_is_finite_on_every_neuromorphic_target():
    for target in list_targets():
        if target.kind == "neuromorphic":
            e = estimate(toy_network(), toy_activity(), target)
            assert math.isfinite(e.energy_per_inference_j) and e.energy_per_inference_j > 0, target.name
            assert e.latency_per_inference_s > 0, target.name
