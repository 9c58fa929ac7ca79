"""The ANN twin on conventional hardware: the same layers, run once, densely, as multiply-accumulates.

The twin of a deployment graph is the network with the same synaptic layers and a ReLU instead of
the spiking neurons (the ANN the recipe trains beside the SNN, :mod:`toolchain.snn.ann`). One
inference is one pass: ``macs = sum(dense_connections(layer))`` (every connection, zero weights
included: a dense accelerator does not skip them), priced at the baseline's ``mac_pj``.
Activations, memory traffic and control are not counted (see each profile's ``assumptions``).

Beside it, the SNN's own effective operations on the same baseline (``snn_ops_j``): its
accumulates (spike-driven) at ``ac_pj`` and multiply-accumulates (graded input) at ``mac_pj`` —
what running the spiking network event-driven on that hardware would cost in arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from toolchain import ir
from toolchain.energy.targets import Target, TargetError, list_targets
from toolchain.energy.workload import WorkloadMetrics, dense_connections

PJ = 1e-12


@dataclass(frozen=True)
class BaselineEstimate:
    """The ANN twin (and the SNN's operations) on one conventional target, per inference."""

    target: str
    title: str
    macs: float
    mac_pj: float
    ann_twin_j: float
    snn_ops_j: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ann_macs(network: ir.Network) -> int:
    """Multiply-accumulates of one dense pass of the network's ANN twin."""
    return sum(dense_connections(layer) for layer in network.synaptic_layers())


def conventional_targets() -> list[Target]:
    return [target for target in list_targets() if target.kind == "conventional"]


def ann_twin(
    network: ir.Network, workload: WorkloadMetrics, targets: Sequence[Target] | None = None
) -> list[BaselineEstimate]:
    """The twin on each of ``targets`` (default: every conventional profile on the search path)."""
    macs = float(ann_macs(network))
    results = []
    for target in conventional_targets() if targets is None else targets:
        if target.kind != "conventional" or target.mac_pj is None:
            raise TargetError(f"{target.path}: target {target.name!r} is not a conventional baseline")
        ac_pj = target.ac_pj
        snn = None
        if ac_pj is not None:
            snn = (workload.effective_acs * ac_pj + workload.effective_macs * target.mac_pj) * PJ
        results.append(
            BaselineEstimate(
                target=target.name,
                title=target.title,
                macs=macs,
                mac_pj=target.mac_pj,
                ann_twin_j=macs * target.mac_pj * PJ,
                snn_ops_j=snn,
                source=target.sources["energy.mac_pj"],
            )
        )
    return results


__all__ = ["BaselineEstimate", "ann_macs", "ann_twin", "conventional_targets"]
