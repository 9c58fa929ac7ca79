"""Cores a network takes on Loihi under each per-core limit: neurons, axons, synapse memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/placement.py

Places three networks with :func:`toolchain.energy.placement.place` on the ``loihi`` profile, in
both neuron orders (``spatial``: a core holds a patch of a feature map with all its channels;
``c``: channel by channel), with the profile's limits added one at a time: 1,024 neurons per core
only; + 4,096 input and output axons per core; + 1 Mbit of synapse memory per core (NengoLoihi's
format, every synapse stored). It prints the cores per layer and in all, and the latency the
placement implies for one time step in which every neuron of each layer receives one spike from
every synapse (the slowest core's synaptic operations at the profile's 3.5 ns each).

The networks (random integer weights, every weight non-zero, so the synapse counts are the
architecture's): the DVS-gesture network of SANA-FE's tutorial (1 x 32 x 32 input, 3 x 3
convolutions 1-16-32-64-11, the first with stride 2, dense 891 -> 11), a small VGG (3 x 32 x 32,
3 x 3 convolutions 16-32-64 with 2 x 2 sum pooling after each, dense 1024 -> 10) and an MLP
784-512-10.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np

from toolchain import ir
from toolchain.energy.placement import place
from toolchain.energy.targets import load_target

LIMITS = (
    ("neurons", ()),
    ("+ axons", ("topology.max_fan_in_axons_per_core", "topology.max_fan_out_axons_per_core")),
    (
        "+ synapse memory",
        (
            "topology.max_fan_in_axons_per_core",
            "topology.max_fan_out_axons_per_core",
            "topology.max_synapse_bits_per_core",
        ),
    ),
)
OPTIONAL = ("max_fan_in_axons_per_core", "max_fan_out_axons_per_core", "max_synapse_bits_per_core")


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Even non-zero integers on Loihi's 8-bit grid."""
    magnitude = 2 * rng.integers(1, 128, shape)
    return np.where(rng.random(shape) < 0.5, -magnitude, magnitude).astype(np.int64)


def _neurons() -> ir.CubaNeurons:
    return ir.CubaNeurons(i_decay=4096, v_decay=0, vth_mant=100)


def dvs_network(rng: np.random.Generator) -> ir.Network:
    layers: list[ir.Layer] = []
    shape: tuple[int, ...] = (1, 32, 32)
    for index, (c_out, stride) in enumerate(((16, 2), (32, 1), (64, 1), (11, 1)), start=1):
        conv = ir.Conv(
            f"conv{index}", _weights(rng, (c_out, shape[0], 3, 3)), _neurons(), shape, (stride,) * 2, (0, 0)
        )
        layers.append(conv)
        shape = conv.out_shape
    layers.append(ir.Flatten("flatten", shape))
    layers.append(ir.Dense("dense1", _weights(rng, (11, math.prod(shape))), _neurons()))
    return ir.Network("dvs-gesture (SANA-FE tutorial)", (1, 32, 32), "spikes", 1, tuple(layers))


def vgg_network(rng: np.random.Generator) -> ir.Network:
    layers: list[ir.Layer] = []
    shape: tuple[int, ...] = (3, 32, 32)
    for index, c_out in enumerate((16, 32, 64), start=1):
        conv = ir.Conv(
            f"conv{index}", _weights(rng, (c_out, shape[0], 3, 3)), _neurons(), shape, (1, 1), (1, 1)
        )
        pool = ir.Pool(f"pool{index}", "sum", 2, conv.out_shape)
        layers += [conv, pool]
        shape = pool.out_shape
    layers.append(ir.Flatten("flatten", shape))
    layers.append(ir.Dense("fc", _weights(rng, (10, math.prod(shape))), _neurons()))
    return ir.Network("small VGG 16-32-64", (3, 32, 32), "spikes", 1, tuple(layers))


def mlp_network(rng: np.random.Generator) -> ir.Network:
    layers = (
        ir.Dense("hidden", _weights(rng, (512, 784)), _neurons()),
        ir.Dense("output", _weights(rng, (10, 512)), _neurons()),
    )
    return ir.Network("MLP 784-512-10", (784,), "spikes", 1, layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="loihi")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = load_target(args.target)
    synop_ns = base.require("time.synop_ns")
    rng = np.random.default_rng(args.seed)
    for network in (dvs_network(rng), vgg_network(rng), mlp_network(rng)):
        names = ["input", *(layer.name for layer in network.synaptic_layers())]
        fan_in = {layer.name: _fan_in(layer) for layer in network.synaptic_layers()}
        print(f"\n{network.name}: cores per population ({', '.join(names)}), target {base.name}\n")
        print("| order | limits | cores per population | cores | synaptic step time of the slowest core |")
        print("|---|---|---|---|---|")
        for order in ("spatial", "c"):
            for label, keep in LIMITS:
                values = {
                    key: value
                    for key, value in base.values.items()
                    if key.split(".")[-1] not in OPTIONAL or key in keep
                }
                placement = place(network, replace(base, values=values), order)
                per_layer = [placement.layer(name) for name in names]
                slowest = max(
                    where.neurons_per_core * fan_in[where.name] * synop_ns for where in per_layer[1:]
                )
                cores = ", ".join(str(where.cores) for where in per_layer)
                print(f"| {order} | {label} | {cores} | {placement.cores} | {slowest / 1000:.1f} µs |")


def _fan_in(layer: ir.SynapticLayer) -> int:
    """Synapses into one neuron (every weight non-zero): the work of one fully driven step."""
    return math.prod(layer.weight.shape[1:])


if __name__ == "__main__":
    main()
