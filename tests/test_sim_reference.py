"""The reference simulator: hand-computed traces, activity counts, equivalence with the torch model."""

import numpy as np
import pytest
import torch

from toolchain import ir
from toolchain.config import parse_recipe
from toolchain.data.encoding import encode
from toolchain.errors import SimulationError
from toolchain.export.quantize import quantize_model
from toolchain.formats.lower import lower_pooling
from toolchain.sim.compare import mismatched_spikes, simulate_torch
from toolchain.sim.reference import simulate
from toolchain.snn.models import build_model
from toolchain.snn.numerics import apply_numerics


def _two_neurons(encoding="spikes", weight=((64, 0), (128, -64)), neurons=None, steps=6, delay=1, exp=0):
    neurons = neurons or ir.CubaNeurons(i_decay=4096, v_decay=1024, vth_mant=100)
    layer = ir.Dense("d", np.array(weight), neurons, weight_exp=exp)
    return ir.Network("two", (2,), encoding, steps, (layer,), synapse_delay_steps=delay)


def test_two_neuron_trace_by_hand():
    # i_decay 4096: u = a_in << 6 each step; v = trunc(v * 3072 / 4096) + u; spike iff v > 100 << 6 = 6400
    x = np.zeros((6, 1, 2))
    x[0, 0, 0] = x[1, 0, 0] = 1
    x[2, 0, :] = 1
    result = simulate(_two_neurons(), x, record_spikes=True)
    # neuron 0 (w 64): t1 v = 4096; t2 v = 3072 + 4096 = 7168 > 6400 -> spike; t3 v = 4096; then decays
    # neuron 1 (w 128, -64): t1 v = 8192 spike; t2 8192 spike; t3 a_in = 64 -> v = 4096; then decays
    expected = np.array([[0, 0], [0, 1], [1, 1], [0, 0], [0, 0], [0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(result.spikes["d"][:, 0], expected)
    np.testing.assert_array_equal(result.counts, [[1, 2]])
    assert result.predictions.tolist() == [1]
    counts = result.activity.layer("d")
    assert result.activity.source == "reference"
    assert (counts.spikes_per_sample, counts.input_events_per_sample) == (3.0, 4.0)
    # events: input 0 at t0, t1 (2 non-zero weights each), both at t2 (2 + 1): 7 synaptic operations
    assert counts.synops_per_sample == 7.0
    # neuron 0: idle at t0, active t1..t5 (input, then non-zero v); neuron 1 the same: 10 of 12
    assert (counts.active_updates_per_sample, counts.idle_updates_per_sample) == (10.0, 2.0)
    assert (counts.synapses, counts.fan_in, counts.fan_out) == (3, 2, 2)


def test_without_delay_the_input_acts_in_its_own_step():
    x = np.zeros((3, 1, 2))
    x[0, 0, :] = 1
    result = simulate(_two_neurons(weight=((128, 0), (0, 64)), delay=0, steps=3), x, record_spikes=True)
    np.testing.assert_array_equal(result.spikes["d"][:, 0], [[1, 0], [0, 0], [0, 0]])


def test_graded_input_is_floored_after_the_weight_exponent():
    # payloads round([1.0, 0.5] * 255) = [255, 128]; no leak (v_decay 0), u = a_in << 6
    # neuron 0: (64 * 255 + 62 * 128) / 256 = 94.75 -> 94: v = 6016 k; threshold 189 << 6 = 12096
    #   t1 6016, t2 12032 (95 would give 12160 and spike), t3 18048 spike, t4 6016, t5 12032, t6 spike
    # neuron 1: (2 * 255 - 64 * 128) / 256 = -30.0078 -> floor -31 (trunc: -30): u = -1984, bias 2000
    #   with threshold 12096 it never spikes; its own check below uses a second network
    neurons = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=189)
    net = _two_neurons("graded", ((64, 62), (2, -64)), neurons, steps=8, exp=-8)
    result = simulate(net, np.array([[1.0, 0.5]]), record_spikes=True)
    assert np.flatnonzero(result.spikes["d"][:, 0, 0]).tolist() == [3, 6]
    # the negative sum: v += -1984 + 2000 = 16 per step after a spike at t0 (bias alone: 2000 > 64);
    # v = 16, 32, 48, 64 (not > 64), 80 -> spike at t5. With trunc (-30 -> +80 per step) it would be t1
    biased = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=1, bias_mant=np.array([0, 2000]))
    net = _two_neurons("graded", ((64, 62), (2, -64)), biased, steps=8, exp=-8)
    result = simulate(net, np.array([[1.0, 0.5]]), record_spikes=True)
    assert np.flatnonzero(result.spikes["d"][:, 0, 1]).tolist() == [0, 5]
    counts = result.activity.layer("d")
    assert counts.graded_input
    assert counts.input_events_per_sample == 16.0  # two non-zero payloads at each of 8 steps


def test_conv_synops_count_reached_targets_at_the_borders():
    weight = np.ones((1, 1, 3, 3), dtype=np.int64) * 64
    weight[0, 0, 1, 1] = 0  # a zero weight is no synapse
    neurons = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=1000)
    conv = ir.Conv("c", weight, neurons, in_shape=(1, 3, 3), stride=(1, 1), padding=(1, 1))
    net = ir.Network("conv", (1, 3, 3), "spikes", 2, (conv, ir.Flatten("f", (1, 3, 3)),
                     ir.Dense("out", np.full((2, 9), 2), neurons)))  # fmt: skip
    x = np.zeros((2, 1, 1, 3, 3))
    x[0, 0, 0, 0, 0] = 1  # a corner reaches 4 outputs, one of them through the zero centre: 3
    x[1, 0, 0, 1, 1] = 1  # the centre reaches all 9 outputs, one through the zero centre: 8
    counts = simulate(net, x).activity.layer("c")
    assert counts.synops_per_sample == 3 + 8
    # connections: per output the in-bounds non-zero weights (corners 3, edges 5, centre 8), summed
    assert (counts.synapses, counts.fan_in, counts.fan_out) == (4 * 3 + 4 * 5 + 8, 8, 8)


def test_input_errors_name_what_was_expected():
    net = _two_neurons()
    with pytest.raises(SimulationError, match=r"spike inputs must be 0/1 \[T=6, B, \*input_shape\]"):
        simulate(net, np.zeros((6, 1, 3)))
    with pytest.raises(SimulationError, match="have 5 time steps, the network runs 6"):
        simulate(net, np.zeros((5, 1, 2)))
    with pytest.raises(SimulationError, match="must be 0 or 1"):
        simulate(net, np.full((6, 1, 2), 2.0))
    for dtype, bad in ((np.float32, 0.5), (np.uint8, 2), (np.int64, -1), (np.int8, 3)):
        spikes = np.zeros((6, 2, 2), dtype)
        spikes[3, 1, 0] = bad
        with pytest.raises(SimulationError, match="must be 0 or 1"):
            simulate(net, spikes)
        spikes[3, 1, 0] = 1
        assert simulate(net, spikes).samples == 2
    assert simulate(net, np.ones((6, 1, 2), bool)).samples == 1
    graded = _two_neurons("graded", exp=-8)
    with pytest.raises(SimulationError, match=r"must lie in \[0, 1\], got values in \[0, 1.5\]"):
        simulate(graded, np.array([[0.0, 1.5]]))


def _random_fixed_point(table, shape, classes, seed=0, scale=0.5):
    recipe = parse_recipe({"name": "t", **table})
    model = build_model(recipe.model, recipe.neuron, shape, classes)
    apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    torch.manual_seed(seed)
    with torch.no_grad():
        for block in model.synaptic_blocks():
            weight = block.synapse.module.parametrizations.weight.original
            weight.normal_(0.05, scale).clamp_(-3.9, 3.9)
    model.eval()
    return recipe, model


CASES = {
    "mlp-graded": (
        {"encoding": {"scheme": "direct", "time_steps": 12},
         "model": {"architecture": "mlp", "hidden": [40, 30]},
         "neuron": {"current_decay": 0.5, "voltage_decay": 0.1}},
        (20,), 5, 1.0,
    ),
    "mlp-rate": (
        {"encoding": {"scheme": "rate", "time_steps": 12}, "model": {"architecture": "mlp", "hidden": [40]},
         "neuron": {"current_decay": 1.0, "voltage_decay": 0.1, "threshold": 0.5}},
        (20,), 5, 1.0,
    ),
    "conv-sum-graded": (
        {"encoding": {"scheme": "direct", "time_steps": 8},
         "model": {"architecture": "vgg", "channels": [4, 6], "pool_after": [1, 2], "pool": "sum",
                   "hidden": [12]}},
        (1, 12, 12), 4, 0.5,
    ),
    "conv-sum-rate": (
        {"encoding": {"scheme": "rate", "time_steps": 8},
         "model": {"architecture": "vgg", "channels": [4, 6], "pool_after": [1], "pool": "sum",
                   "hidden": [12]}},
        (2, 10, 10), 4, 0.5,
    ),
    "conv-avg-rate": (
        {"encoding": {"scheme": "rate", "time_steps": 8},
         "model": {"architecture": "vgg", "channels": [4, 6], "pool_after": [1], "pool": "avg",
                   "hidden": [12]}},
        (2, 9, 9), 4, 0.5,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_identical_spikes_to_the_fixed_point_torch_model(case):
    table, shape, classes, scale = CASES[case]
    table = {**table, "neuron": {"numeric": "fixed_point", **table.get("neuron", {})}}
    recipe, model = _random_fixed_point(table, shape, classes, scale=scale)
    network, report = quantize_model(model, recipe)
    assert report.exact
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(1))
    encoded = encode(recipe.encoding.scheme, x, recipe.encoding.time_steps, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(encoded)
    inputs = x.numpy() if network.input_encoding == "graded" else encoded.numpy()
    result = simulate(network, inputs, batch_size=5, record_spikes=True)  # 4 chunks, one partial
    torch_spikes = {name: s.numpy().astype(np.uint8) for name, s in out.spikes.items()}
    assert set(result.spikes) == set(torch_spikes)
    assert mismatched_spikes(result.spikes, torch_spikes) == dict.fromkeys(torch_spikes, 0)
    np.testing.assert_array_equal(result.counts, out.logits.numpy().astype(np.int64))
    for name, spikes in torch_spikes.items():  # a non-trivial pattern in every layer
        assert 0.01 < spikes.mean() < 0.95, name
        assert result.activity.layer(name).spikes_per_sample == spikes.sum() / 16
    if case == "conv-avg-rate":  # 9 x 9 drops a row and a column, and w / 4 is off Loihi's grid
        return
    # the torch model rebuilt from the lowered graph (what `simulate --compare` runs) agrees too
    lowered = lower_pooling(network)
    rebuilt = simulate_torch(lowered, inputs)
    assert mismatched_spikes(result.spikes, rebuilt.spikes) == dict.fromkeys(torch_spikes, 0)
    assert mismatched_spikes(
        result.spikes, simulate(lowered, inputs, record_spikes=True).spikes
    ) == dict.fromkeys(torch_spikes, 0)


def test_batches_do_not_change_results():
    table, shape, classes, _ = CASES["mlp-rate"]
    recipe, model = _random_fixed_point({**table, "neuron": {"numeric": "fixed_point"}}, shape, classes)
    network, _ = quantize_model(model, recipe)
    x = (np.random.default_rng(0).random((12, 7, 20)) < 0.3).astype(np.uint8)
    one = simulate(network, x, batch_size=1, record_spikes=True)
    all_at_once = simulate(network, x, record_spikes=True)
    for name in one.spikes:
        np.testing.assert_array_equal(one.spikes[name], all_at_once.spikes[name])
    assert one.activity == all_at_once.activity
    assert one.timing.sample_steps == 7 * 12


def test_network_inputs_give_the_evaluation_spikes_to_any_first_samples():
    from toolchain.data import load_dataset
    from toolchain.data.batches import encode_batch, load_batch
    from toolchain.sim.inputs import encoding_of, network_inputs

    table = CASES["mlp-rate"][0]
    recipe, model = _random_fixed_point({**table, "neuron": {"numeric": "fixed_point"}}, (64,), 10)
    network, _ = quantize_model(model, recipe)
    split = load_dataset("digits").test
    everything = network_inputs(network, split)
    first = network_inputs(network, split, samples=10)
    assert everything.inputs.shape == (12, len(split), 64)
    np.testing.assert_array_equal(first.inputs, everything.inputs[:, :10])
    np.testing.assert_array_equal(first.labels, split.y[:10])
    x, _ = load_batch(split, np.arange(256))
    evaluation = encode_batch(x, recipe.encoding, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(everything.inputs[:, :256], evaluation)
    assert encoding_of(network).scheme == "rate"
    broken = ir.Network(
        **{**network.__dict__, "metadata": {"encoding": {"scheme": "direct", "time_steps": 12}}}
    )
    with pytest.raises(SimulationError, match="encoding 'direct' does not fit the network's 'spikes' input"):
        encoding_of(broken, "x.net")


@pytest.mark.parametrize("kernel", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 2, 4, 7, 8), (3, 2, 5, 11)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sum_pool_equals_the_window_sums(kernel, shape, channels_last):
    from toolchain.sim.reference import _sum_pool

    h = torch.randint(0, 3, shape).to(torch.float32)  # [T, b, C, *spatial]
    if channels_last:  # as a 2-D convolution's spikes come back: channels innermost in memory
        h = h.movedim(2, -1).contiguous().movedim(-1, 2)
    spatial = shape[3:]
    got = _sum_pool(h, kernel, 2)
    crop = [size // kernel * kernel for size in spatial]
    expected = h[(..., *(slice(0, c) for c in crop))].contiguous()
    windows = [d for c in crop for d in (c // kernel, kernel)]
    expected = expected.reshape(*shape[:3], *windows).sum(dim=tuple(range(4, 4 + 2 * len(crop), 2)))
    assert torch.equal(got, expected)


def _case_network_and_inputs(case: str, seed: int, samples: int = 9) -> tuple[ir.Network, np.ndarray]:
    """The fixed-point network of ``CASES[case]`` exported exactly, and ``samples`` random inputs
    as the simulator takes them (graded, or encoded spikes)."""
    table, shape, classes, scale = CASES[case]
    table = {**table, "neuron": {"numeric": "fixed_point", **table.get("neuron", {})}}
    recipe, model = _random_fixed_point(table, shape, classes, scale=scale)
    network, _ = quantize_model(model, recipe)
    x = torch.rand(samples, *shape, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    encoded = encode(recipe.encoding.scheme, x, recipe.encoding.time_steps, generator)
    return network, (x.numpy() if network.input_encoding == "graded" else encoded.numpy())


@pytest.mark.parametrize("case", ["mlp-graded", "conv-sum-rate", "conv-avg-rate"])
def test_the_compiled_neuron_loop_and_the_tensor_functions_agree(case, monkeypatch):
    """The reference simulator steps neurons with the compiled cuba_fixed_steps where numba is
    installed, else with the tensor functions: the same spikes, potentials and counts."""
    import toolchain.sim.reference as reference
    from toolchain.snn.dynamics import compiled_cuba_fixed_steps

    if compiled_cuba_fixed_steps() is None:
        pytest.skip("numba is not installed: only the tensor functions run")
    network, inputs = _case_network_and_inputs(case, seed=3)
    compiled = simulate(network, inputs, batch_size=4, record_spikes=True)
    monkeypatch.setattr(reference, "compiled_cuba_fixed_steps", lambda: None)
    tensors = simulate(network, inputs, batch_size=4, record_spikes=True)
    for name in tensors.spikes:
        np.testing.assert_array_equal(compiled.spikes[name], tensors.spikes[name])
    np.testing.assert_array_equal(compiled.counts, tensors.counts)
    np.testing.assert_array_equal(compiled.potentials, tensors.potentials)
    assert compiled.activity == tensors.activity


@pytest.mark.parametrize("case", ["mlp-graded", "conv-sum-rate"])
def test_threads_split_the_neurons_with_the_same_results(case, monkeypatch, torch_free_pool):
    """The compiled neuron loop steps disjoint ranges of neurons on torch's threads (numpy work only:
    ``torch_free_pool``): the same spikes, counts and activity as on one thread."""
    from toolchain.snn import compiled as compiled_kernels
    from toolchain.snn.dynamics import compiled_cuba_fixed_steps

    if compiled_cuba_fixed_steps() is None:
        pytest.skip("numba is not installed: the tensor functions run on torch's own threads")
    monkeypatch.setattr(compiled_kernels, "PARALLEL_ROWS_MIN", 8)
    network, inputs = _case_network_and_inputs(case, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = simulate(network, inputs, record_spikes=True)
        torch.set_num_threads(3)
        split = simulate(network, inputs, record_spikes=True)
    finally:
        torch.set_num_threads(threads)
    for name in single.spikes:
        np.testing.assert_array_equal(split.spikes[name], single.spikes[name])
    np.testing.assert_array_equal(split.counts, single.counts)
    assert split.activity == single.activity


@pytest.mark.parametrize("case", ["conv-sum-graded", "conv-sum-rate"])
def test_a_folded_pool_runs_as_the_pool_and_the_smaller_conv_with_the_same_results(case, monkeypatch):
    """A lowered network's pool -> conv fold runs factored (the pool, then the conv before the
    fold), with the spikes, potentials and counts of the folded conv, and the folded layer's events
    and synaptic operations."""
    import toolchain.sim.reference as reference

    network, inputs = _case_network_and_inputs(case, seed=5)
    lowered = lower_pooling(network)
    factored = [s for s in reference._prepare(lowered) if getattr(s, "pool_kernel", 1) > 1]
    assert [s.layer.name for s in factored] == [
        entry["into"] for entry in lowered.metadata["lowered_pooling"] if entry["into"].startswith("conv")
    ]
    assert factored and all(s.weight.shape[-1] < s.layer.weight.shape[-1] for s in factored)
    fast = simulate(lowered, inputs, batch_size=4, record_spikes=True)
    monkeypatch.setattr(reference, "factor_pooling", lambda conv: None)
    assert not [s for s in reference._prepare(lowered) if getattr(s, "pool_kernel", 1) > 1]
    folded = simulate(lowered, inputs, batch_size=4, record_spikes=True)
    for name in folded.spikes:
        np.testing.assert_array_equal(fast.spikes[name], folded.spikes[name])
    np.testing.assert_array_equal(fast.potentials, folded.potentials)
    assert fast.activity == folded.activity
    assert fast.activity.layers[1].spikes_per_sample > 0
