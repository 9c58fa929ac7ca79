"""Placement under Loihi's synapse memory (1 Mbit per core, NengoLoihi's format), checked by hand."""

from dataclasses import replace

import numpy as np
import pytest

from toolchain import ir
from toolchain.energy.placement import place, synapse_memory_bits
from toolchain.energy.targets import TargetError, load_target
from toolchain.loihi_numbers import weight_precision_bits


def test_weight_precision_is_the_bits_of_the_weights_without_their_common_power_of_two():
    assert weight_precision_bits(np.array([-256, 254])) == 8  # /2: [-128, 127]
    assert weight_precision_bits(np.array([2, 4, -6])) == 3  # /2: [1, 2, -3]
    assert weight_precision_bits(np.array([64, 128, 0])) == 3  # /64: [1, 2]
    assert weight_precision_bits(np.zeros(4, np.int64)) == 1


def test_synapse_memory_of_a_core_by_hand():
    # 64 synapses: one group, 64 x 8 + 10 = 522 bits -> 9 words of 64 = 576 bits;
    # 65: a full group and one of 1 synapse, 8 + 10 = 18 -> 64 bits; 0 synapses: nothing stored
    np.testing.assert_array_equal(synapse_memory_bits(np.array([[64, 65, 0]]), 8), [576 + 640])
    np.testing.assert_array_equal(synapse_memory_bits(np.array([[3.0], [0.0]]), 2), [64, 0])


def _mlp(hidden: int = 512) -> ir.Network:
    rng = np.random.default_rng(0)
    weight = 2 * rng.integers(1, 128, (hidden, 784))  # every weight non-zero, 8-bit precision
    out = 2 * rng.integers(1, 128, (10, hidden))
    cuba = ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=100)
    layers = (ir.Dense("hidden", weight, cuba), ir.Dense("output", out, cuba))
    return ir.Network("mlp", (784,), "spikes", 4, layers)


def test_a_dense_layer_is_spread_until_its_synapses_fit_a_core():
    placement = place(_mlp(), load_target("loihi"))
    hidden = placement.layer("hidden")
    # 142 neurons per core: per input neuron a group of 64, another of 64 and one of 14 synapses:
    # 576 + 576 + ceil64(14 x 8 + 10) = 1,280 bits, x 784 inputs = 1,003,520 <= 1,048,576;
    # with 143 (a group of 15: 130 -> 192 bits) 1,053,696 would not fit
    assert hidden.neurons_per_core == 142 and hidden.cores == 4
    assert placement.traffic_into("hidden").synapse_bits_max == 1280 * 784
    without = replace(
        load_target("loihi"),
        values={k: v for k, v in load_target("loihi").values.items() if "synapse_bits" not in k},
    )
    assert place(_mlp(), without).layer("hidden").cores == 1  # 512 neurons fit the neuron limit


def test_a_mapping_by_hand_that_breaks_the_synapse_memory_is_refused():
    with pytest.raises(TargetError, match=r"cores_per_layer\['hidden'\] = 2: .* bits of synapse memory"):
        place(_mlp(), load_target("loihi"), cores_per_layer={"hidden": 2})
