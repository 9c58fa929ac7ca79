"""Measured activity -> joules and seconds per inference on a neuromorphic target.

For every synaptic layer ``L`` (counts per inference from :class:`toolchain.activity.Activity`;
costs from the :class:`~toolchain.energy.targets.Target`; traffic from
:func:`toolchain.energy.placement.place`)::

    synaptic_L = synops_L x synop_pj
    neuron_L   = active_updates_L x neuron_active_pj + idle_updates_L x neuron_idle_pj
               + (active_updates_L + idle_updates_L) x neuron_access_pj      (every neuron, every step)
               + spikes_L x spike_out_pj                                     (every spike fired)
    routing_L  = source_spikes_L x (messages_per_spike x message_out_pj      (every message leaving a core)
                                    + within_tile_per_spike x spike_within_tile_pj
                                    + east_west_hops_per_spike x hop_east_west_pj
                                    + north_south_hops_per_spike x hop_north_south_pj)

``source_spikes_L`` are the spikes of the population feeding ``L`` (the previous synaptic layer's,
or the input events for the first layer): routing is charged to the layer that receives. Every
``_pj`` cost but the first three is optional: a profile without it prices that term at 0 and the
estimate lists the term as not included (:data:`TERMS`, :attr:`EnergyEstimate.terms`).

Optional terms, off unless asked for: ``static = static power_mw x latency`` (``[static]``) and
``overhead = step_pj x time_steps`` (``[overhead]``: management, I/O, synchronisation).

**Latency**: cores run in parallel and a time step ends when the slowest core is done, so
``step = max over cores (synops_core x synop_ns + active_core x neuron_active_ns + idle_core x
neuron_idle_ns) / time_steps`` with a core's counts its share of its layer's (the layer's counts
spread evenly over its neurons: activity holds no per-neuron counts); ``latency = time_steps x
(step + overhead step_ns)``. A target with a fixed ``[time].step_ns`` (real-time SpiNNaker) uses
``time_steps x step_ns``. Routing time is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.energy.baselines import BaselineEstimate, ann_twin
from toolchain.energy.placement import INPUT, LayerPlacement, Placement, Traffic, place
from toolchain.energy.targets import Target, TargetError
from toolchain.energy.workload import WorkloadMetrics, workload_metrics
from toolchain.errors import ToolchainError

PJ = 1e-12
NS = 1e-9
MW = 1e-3
COMPONENTS = ("synaptic", "neuron", "routing", "static", "overhead")


@dataclass(frozen=True)
class Term:
    """One per-operation term of the model: what it counts, its profile cost(s), its component."""

    name: str
    component: str
    counted: str
    keys: tuple[str, ...]


#: the per-operation terms, in the order of the module docstring's equations
TERMS: tuple[Term, ...] = (
    Term("synaptic operations", "synaptic", "synaptic operations", ("energy.synop_pj",)),
    Term(
        "neuron updates",
        "neuron",
        "neuron updates (active, idle)",
        ("energy.neuron_active_pj", "energy.neuron_idle_pj"),
    ),
    Term(
        "neuron access",
        "neuron",
        "neurons x time steps (every neuron, every step)",
        ("energy.neuron_access_pj",),
    ),
    Term("spikes out", "neuron", "spikes fired", ("energy.spike_out_pj",)),
    Term("messages out", "routing", "spike messages leaving a core", ("energy.message_out_pj",)),
    Term(
        "within-tile messages",
        "routing",
        "messages to a core of the source's tile",
        ("energy.spike_within_tile_pj",),
    ),
    Term(
        "tile hops",
        "routing",
        "tile hops (east-west, north-south)",
        ("energy.hop_east_west_pj", "energy.hop_north_south_pj"),
    ),
)


@dataclass(frozen=True)
class TermEnergy:
    """One term's count and energy per inference; ``energy_j`` is ``None`` when the profile has no
    cost for it (the term is not included)."""

    name: str
    component: str
    counted: str
    count: float
    energy_j: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ActivityMismatchError(ToolchainError):
    """The activity counts were measured on a different network (layer names, sizes, time steps)."""


@dataclass(frozen=True)
class LayerEnergy:
    """One population's counts and energies per inference (a synaptic layer, or input neurons).

    The neuron and routing energies are the sums of their terms (:data:`TERMS`), kept apart.
    """

    name: str
    kind: str
    neurons: int
    cores: int
    neurons_per_core: int
    spikes: float
    synops: float
    active_updates: float
    idle_updates: float
    source_spikes: float
    messages: float
    within_tile_messages: float
    east_west_hops: float
    north_south_hops: float
    synaptic_j: float
    step_time_s: float
    neuron_update_j: float
    neuron_access_j: float
    spike_out_j: float
    message_out_j: float
    within_tile_j: float
    hops_j: float

    @property
    def neuron_j(self) -> float:
        """Updates, accesses and spikes out."""
        return self.neuron_update_j + self.neuron_access_j + self.spike_out_j

    @property
    def routing_j(self) -> float:
        """Messages out, within-tile messages and tile hops."""
        return self.message_out_j + self.within_tile_j + self.hops_j

    @property
    def total_j(self) -> float:
        return self.synaptic_j + self.neuron_j + self.routing_j

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "neuron_j": self.neuron_j,
            "routing_j": self.routing_j,
            "total_j": self.total_j,
        }


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy and latency of one inference of ``network`` on ``target``, from measured activity."""

    label: str
    network: str
    target: Target
    activity_source: str
    samples: int
    time_steps: int
    layers: tuple[LayerEnergy, ...]
    breakdown_j: dict[str, float]
    latency_per_inference_s: float
    placement: Placement
    workload: WorkloadMetrics
    baselines: tuple[BaselineEstimate, ...]
    options: dict[str, bool]
    assumptions: tuple[str, ...] = field(default=())
    #: the classification accuracy measured with the same activity (``None``: not given)
    accuracy: float | None = None
    #: every per-operation term of :data:`TERMS`, with ``None`` energy where not included
    terms: tuple[TermEnergy, ...] = ()

    @property
    def energy_per_inference_j(self) -> float:
        return sum(self.breakdown_j.values())

    @property
    def energy_per_step_j(self) -> float:
        """Energy per inference divided by the time steps of an inference."""
        return self.energy_per_inference_j / max(self.time_steps, 1)

    def citations(self) -> dict[str, str]:
        """``table.key`` -> source, for every constant this estimate used."""
        used = {key: src for key, src in self.target.sources.items()}
        for baseline in self.baselines:
            used[f"{baseline.target}: energy.mac_pj"] = baseline.source
        return used

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "network": self.network,
            "target": self.target.name,
            "target_title": self.target.title,
            "target_verified": self.target.verified,
            "target_error_band": self.target.error_band,
            "activity_source": self.activity_source,
            "samples": self.samples,
            "time_steps": self.time_steps,
            "energy_per_inference_j": self.energy_per_inference_j,
            "energy_per_step_j": self.energy_per_step_j,
            "accuracy": self.accuracy,
            "breakdown_j": dict(self.breakdown_j),
            "terms": [term.to_dict() for term in self.terms],
            "latency_per_inference_s": self.latency_per_inference_s,
            "options": dict(self.options),
            "layers": [layer.to_dict() for layer in self.layers],
            "placement": self.placement.to_dict(),
            "workload": self.workload.to_dict(),
            "ann_twin": [baseline.to_dict() for baseline in self.baselines],
            "assumptions": list(self.assumptions),
            "citations": self.citations(),
        }


def estimate(
    network: ir.Network,
    activity: Activity,
    target: Target,
    *,
    static: bool = False,
    overhead: bool = False,
    baselines: Sequence[Target] | None = None,
    label: str | None = None,
    order: str = "spatial",
    accuracy: float | None = None,
    placement: Placement | None = None,
) -> EnergyEstimate:
    """Energy and latency per inference of ``network`` with ``activity`` on ``target``.

    ``static`` adds the profile's static power over the latency, ``overhead`` its per-time-step
    overhead (each refused if the profile has none); ``baselines`` are the conventional targets
    of the ANN twin (default: every conventional profile found); ``order`` the neuron order of the
    placement (:func:`toolchain.energy.placement.place`); ``accuracy``, measured with the same
    activity, is reported beside the energy; ``placement`` a placement of ``network`` on ``target``
    made beforehand (e.g. :func:`~toolchain.energy.placement.place` with ``cores_per_layer``),
    instead of ``place(network, target, order)``.
    """
    if target.kind != "neuromorphic":
        raise TargetError(
            f"{target.path}: target {target.name!r} is a conventional baseline: it prices the ANN twin "
            "(reported beside every estimate), not spiking activity; pick a neuromorphic target"
        )
    _check_activity(network, activity)
    if placement is None:
        placement = place(network, target, order)
    elif placement.target != target.name or [p.name for p in placement.layers[1:]] != [
        layer.name for layer in network.synaptic_layers()
    ]:
        raise TargetError(
            f"the placement given was made for target {placement.target!r} and layers "
            f"{[p.name for p in placement.layers[1:]]}, not for {target.name!r} and this network"
        )
    T = activity.time_steps
    fixed_step_ns = target.get("time.step_ns")
    layers: list[LayerEnergy] = []
    if activity.input_neurons is not None:  # lava-dl's Input block: neurons, written by the sample
        layers.append(_population_energy(activity.input_neurons, placement.layer(INPUT), None, target, T))
    source_spikes = activity.layers[0].input_events_per_sample
    for layer in network.synaptic_layers():
        counts = activity.layer(layer.name)
        where, traffic = placement.layer(layer.name), placement.traffic_into(layer.name)
        layers.append(_population_energy(counts, where, (traffic, source_spikes), target, T))
        source_spikes = counts.spikes_per_sample

    if fixed_step_ns is not None:
        latency = T * fixed_step_ns * NS
    else:
        latency = T * max(layer.step_time_s for layer in layers)
    if overhead:
        latency += T * target.values.get("overhead.step_ns", 0.0) * NS
    breakdown = {
        "synaptic": sum(layer.synaptic_j for layer in layers),
        "neuron": sum(layer.neuron_j for layer in layers),
        "routing": sum(layer.routing_j for layer in layers),
        "static": 0.0,
        "overhead": 0.0,
    }
    if static:
        if target.static_power_mw is None:
            raise TargetError(f"{target.path}: [static].power_mw: not given, so --static cannot be used")
        breakdown["static"] = target.static_power_mw * MW * latency
    if overhead:
        step_pj = target.get("overhead.step_pj")
        if step_pj is None and target.get("overhead.step_ns") is None:
            raise TargetError(f"{target.path}: [overhead]: not given, so --overhead cannot be used")
        breakdown["overhead"] = (step_pj or 0.0) * T * PJ

    workload = workload_metrics(network, activity)
    return EnergyEstimate(
        label=label or network.name,
        network=network.name,
        target=target,
        activity_source=activity.source,
        samples=activity.samples,
        time_steps=T,
        layers=tuple(layers),
        breakdown_j=breakdown,
        latency_per_inference_s=latency,
        placement=placement,
        workload=workload,
        baselines=tuple(ann_twin(network, workload, baselines)),
        options={"static": static, "overhead": overhead},
        assumptions=(
            *MODEL_ASSUMPTIONS,
            *_graded_input(network, layers),
            *_input_neurons(network),
            *target.assumptions,
        ),
        accuracy=accuracy,
        terms=_terms(target, layers),
    )


def _population_energy(
    counts: LayerCounts,
    where: LayerPlacement,
    incoming: tuple[Traffic, float] | None,
    target: Target,
    time_steps: int,
) -> LayerEnergy:
    """One population's energy per inference: its synaptic operations, its neurons' updates,
    accesses and spikes, and the messages of ``incoming`` (the traffic into it and the spikes of
    its source per inference; ``None`` for input neurons, whose current the sample is written into)."""
    synop_pj, active_pj, idle_pj = target.synop_pj, target.neuron_active_pj, target.neuron_idle_pj
    assert synop_pj is not None and active_pj is not None and idle_pj is not None  # required keys
    active, idle, spikes = (
        counts.active_updates_per_sample,
        counts.idle_updates_per_sample,
        counts.spikes_per_sample,
    )
    source_spikes = counts.input_events_per_sample
    messages = within = east_west = north_south = 0.0
    if incoming is not None:
        traffic, source_spikes = incoming
        messages = source_spikes * traffic.messages_per_spike
        within = source_spikes * traffic.within_tile_per_spike
        east_west = source_spikes * traffic.east_west_hops_per_spike
        north_south = source_spikes * traffic.north_south_hops_per_spike
    update_j = (active * active_pj + idle * idle_pj) * PJ
    access_j = (active + idle) * (target.neuron_access_pj or 0.0) * PJ
    spike_out_j = spikes * (target.spike_out_pj or 0.0) * PJ
    message_out_j = messages * (target.message_out_pj or 0.0) * PJ
    within_j = within * target.spike_within_tile_pj * PJ
    hops_j = (east_west * target.hop_east_west_pj + north_south * target.hop_north_south_pj) * PJ
    share = where.neurons_per_core / where.neurons  # the fullest core's share of the layer
    step_s = 0.0
    if target.get("time.step_ns") is None:
        work_ns = (
            counts.synops_per_sample * target.require("time.synop_ns")
            + active * target.require("time.neuron_active_ns")
            + idle * target.require("time.neuron_idle_ns")
        )
        step_s = share * work_ns / time_steps * NS
    return LayerEnergy(
        name=counts.name,
        kind=counts.kind,
        neurons=where.neurons,
        cores=where.cores,
        neurons_per_core=where.neurons_per_core,
        spikes=spikes,
        synops=counts.synops_per_sample,
        active_updates=active,
        idle_updates=idle,
        source_spikes=source_spikes,
        messages=messages,
        within_tile_messages=within,
        east_west_hops=east_west,
        north_south_hops=north_south,
        synaptic_j=counts.synops_per_sample * synop_pj * PJ,
        step_time_s=step_s,
        neuron_update_j=update_j,
        neuron_access_j=access_j,
        spike_out_j=spike_out_j,
        message_out_j=message_out_j,
        within_tile_j=within_j,
        hops_j=hops_j,
    )


def _terms(target: Target, layers: list[LayerEnergy]) -> tuple[TermEnergy, ...]:
    """Each term of :data:`TERMS` summed over the layers; not included where the profile has no cost."""

    def total(attr: str) -> float:
        return sum(getattr(layer, attr) for layer in layers)

    sums = {
        "synaptic operations": (total("synops"), total("synaptic_j")),
        "neuron updates": (total("active_updates") + total("idle_updates"), total("neuron_update_j")),
        "neuron access": (total("active_updates") + total("idle_updates"), total("neuron_access_j")),
        "spikes out": (total("spikes"), total("spike_out_j")),
        "messages out": (total("messages"), total("message_out_j")),
        "within-tile messages": (total("within_tile_messages"), total("within_tile_j")),
        "tile hops": (total("east_west_hops") + total("north_south_hops"), total("hops_j")),
    }
    out = []
    for term in TERMS:
        count, energy = sums[term.name]
        given = any(key in target.values for key in term.keys)
        out.append(TermEnergy(term.name, term.component, term.counted, count, energy if given else None))
    return tuple(out)


def _input_neurons(network: ir.Network) -> tuple[str, ...]:
    """The assumption behind the price of input neurons (lava-dl's ``Input`` block)."""
    if network.input_layer is None:
        return ()
    return (
        f"Input neurons ({network.input_layer.name!r}, lava-dl's Input block): their updates, accesses and "
        "spikes are priced like any layer's, on the input's cores; writing each sample into their current "
        "(by the host or an embedded processor) is not priced.",
    )


def _graded_input(network: ir.Network, layers: list[LayerEnergy]) -> tuple[str, ...]:
    """The assumption behind a graded input's price, with its share of the estimate."""
    if network.input_encoding != "graded" or not layers or network.input_layer is not None:
        return ()
    first = layers[0]
    total = sum(layer.total_j for layer in layers)
    share = first.synaptic_j / total if total > 0 else 0.0
    return (
        f"Graded input: each nonzero 8-bit input value reaching layer {first.name!r} is priced as one "
        "synaptic operation per synapse it reaches and one message, like a spike; on Loihi 1 such "
        "input is a graded payload sent by the host or an embedded processor (not priced here), on "
        f"Loihi 2 a graded spike. That layer's synaptic operations are {share:.0%} of this estimate.",
    )


MODEL_ASSUMPTIONS: tuple[str, ...] = (
    "Counts are per inference, averaged over the measured samples; every neuron of a layer is assumed "
    "to fire equally often (the activity holds per-layer totals), which sets the traffic and the "
    "per-core share of the work.",
    "Each layer has its own cores, filled up to the per-core limits (feature maps position by position "
    "with all channels, unless the placement order is 'c'); the input sits on its own cores as spike "
    "generators whose messages are counted, their generation is not.",
    "A spike is sent once to every destination core holding one of its targets; each message pays the "
    "profile's cost per message leaving a core (where it gives one), and a message inside the source's "
    "tile one within-tile spike, any other its east-west and north-south tile hops (dimension-ordered "
    "routing); chip boundaries are not priced apart.",
    "Latency: per time step the slowest core's synaptic and neuron-update time (cores in parallel); "
    "routing time and synchronisation are not modelled unless the overhead term is on.",
    "Static power and the per-time-step overhead (management cores, I/O, synchronisation) are off "
    "unless asked for (--static, --overhead).",
)


def _check_activity(network: ir.Network, activity: Activity) -> None:
    inputs, counted = network.input_layer, activity.input_neurons
    if inputs is not None and counted is None:
        raise ActivityMismatchError(
            f"network {network.name!r} has input neurons ({inputs.name!r}, lava-dl's Input block) and the "
            "activity holds no counts of them: price the reference simulator's activity of this file"
        )
    if inputs is None and counted is not None:
        raise ActivityMismatchError(
            f"the activity counts input neurons ({counted.name!r}), the network {network.name!r} has none"
        )
    if inputs is not None and counted is not None and counted.neurons != math.prod(network.input_shape):
        raise ActivityMismatchError(
            f"input neurons {inputs.name!r}: activity counts {counted.neurons}, the network has "
            f"{math.prod(network.input_shape)}"
        )
    names = [layer.name for layer in network.synaptic_layers()]
    measured = [layer.name for layer in activity.layers]
    if names != measured:
        raise ActivityMismatchError(
            f"activity of {activity.network!r} has layers {measured}, the network {network.name!r} {names}"
        )
    if activity.time_steps != network.time_steps:
        raise ActivityMismatchError(
            f"activity was measured over {activity.time_steps} time steps, "
            f"the network runs {network.time_steps}"
        )
    for layer in network.synaptic_layers():
        counts = activity.layer(layer.name)
        neurons = math.prod(layer.out_shape)
        if counts.neurons != neurons:
            raise ActivityMismatchError(
                f"layer {layer.name!r}: activity counts {counts.neurons} neurons, the network has {neurons}"
            )
        updates = counts.active_updates_per_sample + counts.idle_updates_per_sample
        if updates == 0 and activity.source == "lava":
            raise ActivityMismatchError(
                "this activity was recorded by Lava, which counts spikes only (no synaptic operations or "
                "neuron updates); price the reference simulator's activity of the same file instead "
                "(`toolchain simulate FILE --json OUT`, then `toolchain energy FILE --activity OUT`; "
                "`toolchain simulate FILE --compare` proves the two agree spike for spike)"
            )
        if not math.isclose(updates, neurons * activity.time_steps, rel_tol=1e-6):
            raise ActivityMismatchError(
                f"layer {layer.name!r}: active + idle updates = {updates:g}, expected neurons x time steps "
                f"= {neurons * activity.time_steps}"
            )


__all__ = [
    "COMPONENTS",
    "TERMS",
    "ActivityMismatchError",
    "EnergyEstimate",
    "LayerEnergy",
    "Term",
    "TermEnergy",
    "estimate",
]
