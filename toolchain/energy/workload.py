"""NeuroBench-style workload metrics of a network and its measured activity, computed here.

The definitions follow NeuroBench's (Yik et al., "The neurobench framework for benchmarking
neuromorphic computing algorithms and systems", Nature Communications 16, 2025; the `neurobench`
package's static and workload metrics), on the deployment graph's integers:

- ``activation_sparsity``: ``1 - spikes / (neurons x time_steps)`` over every synaptic layer's
  neurons (the fraction of neuron-steps without a spike);
- ``synaptic_operations``: per inference, ``effective_acs`` (operations driven by binary spikes:
  accumulates), ``effective_macs`` (driven by graded input: multiply-accumulates) and ``dense``
  (every connection of every layer at every time step, as if input and weights were all non-zero);
  effective operations count an input event times the non-zero weights it reaches
  (:mod:`toolchain.activity`'s ``synops``);
- ``connection_sparsity``: the fraction of zero weights over all synaptic layers;
- ``footprint_bytes``: what the network's parameters occupy at Loihi's register widths rounded up to
  whole bytes: 1 byte per weight (8 bits), 2 per bias mantissa (13 bits), and per layer 2 bytes for
  each of ``i_decay``, ``v_decay``, ``bias_exp``, ``weight_exp`` and 4 for ``vth_mant`` (17 bits).
  (NeuroBench's footprint counts a torch model's parameters and buffers in their dtype.)

``dense`` connections of a convolution count only the taps inside the input (zero padding is no
connection), exactly, per axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from toolchain import ir
from toolchain.activity import Activity

WEIGHT_BYTES = 1
BIAS_BYTES = 2
#: i_decay, v_decay, bias_exp, weight_exp (2 bytes each) + vth_mant (4 bytes)
LAYER_REGISTER_BYTES = 4 * 2 + 4


@dataclass(frozen=True)
class WorkloadMetrics:
    """NeuroBench-style metrics per inference (see the module docstring)."""

    activation_sparsity: float
    effective_acs: float
    effective_macs: float
    dense_ops: float
    connection_sparsity: float
    footprint_bytes: int
    parameters: int
    connections: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dense_connections(layer: ir.SynapticLayer) -> int:
    """Connections of ``layer`` whatever the weights' values (one time step)."""
    if isinstance(layer, ir.Dense):
        return int(layer.weight.shape[0] * layer.weight.shape[1])
    taps = 1
    for size, out, k, s, p in zip(
        layer.in_shape[1:], layer.out_shape[1:], layer.kernel_size, layer.stride, layer.padding, strict=True
    ):
        positions = np.arange(out)[:, None] * s - p + np.arange(k)[None, :]
        taps *= int(((positions >= 0) & (positions < size)).sum())
    c_out, c_in_per_group = int(layer.weight.shape[0]), int(layer.weight.shape[1])
    return c_out * c_in_per_group * taps


def nonzero_weights(layer: ir.SynapticLayer) -> int:
    return int(np.count_nonzero(layer.weight))


def footprint_bytes(network: ir.Network) -> int:
    total = 0
    for layer in network.synaptic_layers():
        total += layer.weight.size * WEIGHT_BYTES + LAYER_REGISTER_BYTES
        if layer.neurons.bias_mant is not None:
            total += layer.neurons.bias_mant.size * BIAS_BYTES
    return int(total)


def workload_metrics(network: ir.Network, activity: Activity) -> WorkloadMetrics:
    layers = network.synaptic_layers()
    neuron_steps = sum(math.prod(layer.out_shape) for layer in layers) * activity.time_steps
    spikes = sum(activity.layer(layer.name).spikes_per_sample for layer in layers)
    acs = sum(c.synops_per_sample for c in activity.layers if not c.graded_input)
    macs = sum(c.synops_per_sample for c in activity.layers if c.graded_input)
    weights = sum(layer.weight.size for layer in layers)
    nonzero = sum(nonzero_weights(layer) for layer in layers)
    biases = sum(layer.neurons.bias_mant.size for layer in layers if layer.neurons.bias_mant is not None)
    return WorkloadMetrics(
        activation_sparsity=1.0 - spikes / neuron_steps,
        effective_acs=float(acs),
        effective_macs=float(macs),
        dense_ops=float(sum(dense_connections(layer) for layer in layers) * activity.time_steps),
        connection_sparsity=1.0 - nonzero / weights,
        footprint_bytes=footprint_bytes(network),
        parameters=int(weights + biases),
        connections=int(nonzero),
    )


__all__ = ["WorkloadMetrics", "dense_connections", "footprint_bytes", "nonzero_weights", "workload_metrics"]
