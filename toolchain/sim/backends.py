"""The simulate stage: a deployment graph run on the chosen backends, checked against each other.

:func:`simulate_backends` is the one way the commands and the pipeline run a network:
``toolchain simulate`` (any backend, ``--compare``), ``toolchain energy`` (the reference
simulator's activity) and ``toolchain run`` (its ``simulate`` stage on the whole test split, its
``lava`` stage with the comparison) all call it, and all write :meth:`SimulationRun.record` as
their JSON record (which :func:`toolchain.activity.read_activity` reads back). It returns typed
results (:class:`SimulationRun`); nothing is re-parsed between stages.

Backends (:func:`run_backend`, the one place a backend's name becomes a call): ``reference``
(:func:`toolchain.sim.reference.simulate`), ``torch`` (the fixed-point torch model rebuilt from the
graph, :func:`toolchain.sim.compare.simulate_torch`; no activity counts) and ``lava``
(:func:`toolchain.sim.lava_backend.simulate_lava` on the netx file as written, the first
``lava_samples``; imports Lava). With ``compare`` the reference simulator also runs, recording every
layer's spikes, and every other backend is compared with it spike for spike
(:func:`toolchain.sim.compare.compare`); a backend named in ``tolerate`` that cannot express the
network (the torch model and a neuron bias) is recorded in ``not_compared`` with the reason.
The Python API (:mod:`toolchain.api`) runs its backends through the same two functions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toolchain import ir
from toolchain.errors import SimulationError, ToolchainError
from toolchain.sim.compare import Comparison
from toolchain.sim.inputs import first_samples
from toolchain.sim.reference import SimulationResult

BACKENDS: tuple[str, ...] = ("reference", "torch", "lava")
#: what Lava's results do not hold (it reports spikes, not the counts the reference measures)
LAVA_ACTIVITY_NOTE = "Lava measures spikes only: synops and updates are 0; use the reference backend"


class SimulatorInputs(Protocol):
    """Samples in the simulators' layout (:class:`toolchain.sim.inputs.NetworkInputs` from a
    dataset split, :class:`toolchain.sim.input_file.FileInputs` from a user's ``.npy``)."""

    @property
    def inputs(self) -> np.ndarray: ...

    @property
    def labels(self) -> np.ndarray | None: ...

    @property
    def samples(self) -> int: ...


@dataclass(frozen=True)
class InputArrays:
    """Simulator inputs already in memory (the Python API's): ``inputs`` in the simulators'
    layout, their ``labels`` (or ``None``) and the number of ``samples`` they hold."""

    inputs: np.ndarray
    labels: np.ndarray | None
    samples: int


@dataclass(frozen=True)
class SimulationRun:
    """What :func:`simulate_backends` measured: each backend's result, the comparison (``None``
    without ``compare``) and the backends not compared, with the reason."""

    network: ir.Network
    labels: np.ndarray | None
    results: Mapping[str, SimulationResult]
    comparison: Comparison | None = None
    not_compared: Mapping[str, str] = field(default_factory=dict)

    def accuracy(self, backend: str) -> float | None:
        """``backend``'s accuracy on the samples it ran (``None`` without labels)."""
        result = self.results[backend]
        return None if self.labels is None else result.accuracy(self.labels[: result.samples])

    def record(self, backend: str) -> dict[str, Any]:
        """The JSON record of ``backend``'s result: samples, accuracy, spikes and synaptic operations
        per sample (in all and per layer), speed, the whole activity, and with a comparison the
        mismatches of every backend against the reference."""
        result = self.results[backend]
        activity = result.activity
        timing = result.timing
        record: dict[str, Any] = {
            "backend": backend,
            "samples": result.samples,
            "time_steps": self.network.time_steps,
            "accuracy": self.accuracy(backend),
            "spikes_per_sample": activity.spikes_per_sample,
            "synops_per_sample": activity.synops_per_sample,
            "layers": [
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "neurons": layer.neurons,
                    "spikes_per_sample": layer.spikes_per_sample,
                    "synops_per_sample": layer.synops_per_sample,
                }
                for layer in activity.layers
            ],
            "sample_steps_per_second": timing.sample_steps_per_second if timing else None,
            "timing": {
                **(timing.to_dict() if timing else {}),
                **result.metadata.get("lava_timing", {}),
            }
            or None,
            "activity": activity.to_dict(),
        }
        if backend == "lava":
            record["activity_note"] = LAVA_ACTIVITY_NOTE
        if self.comparison is not None:
            comparison = self.comparison
            record["mismatched_spikes"] = comparison.mismatched_spikes
            record["mismatched_potentials"] = (
                comparison.mismatched_potentials if self.network.readout == "potential" else None
            )
            record["comparison"] = comparison.to_dict()
            record["not_compared"] = dict(self.not_compared)
        return record


def run_backend(
    backend: str,
    network: ir.Network,
    x: np.ndarray,
    *,
    netx_file: str | Path | None = None,
    record_spikes: bool = False,
    batch_size: int = 256,
    lava_progress: Any = None,
) -> SimulationResult:
    """One backend's result on the simulator inputs ``x`` (graded ``[B, ...]`` or spikes
    ``[T, B, ...]``): the one place a backend's name becomes a call."""
    if backend == "reference":
        from toolchain.sim.reference import simulate

        return simulate(network, x, batch_size=batch_size, record_spikes=record_spikes)
    if backend == "torch":
        from toolchain.sim.compare import simulate_torch

        return simulate_torch(network, x, record_spikes=record_spikes)
    if backend == "lava":
        if netx_file is None:
            raise SimulationError("the lava backend runs netx files: give the file the network was read from")
        from toolchain.sim.lava_backend import simulate_lava

        return simulate_lava(
            netx_file, np.asarray(x), network=network, record_spikes=record_spikes, progress=lava_progress
        )
    raise SimulationError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def simulate_backends(
    network: ir.Network,
    inputs: SimulatorInputs,
    *,
    backends: Sequence[str] = ("reference",),
    compare: bool = False,
    tolerate: Collection[str] = (),
    reference: SimulationResult | None = None,
    netx_file: str | Path | None = None,
    lava_samples: int | None = None,
    batch_size: int = 256,
    record_spikes: bool = False,
    lava_progress: Any = None,
) -> SimulationRun:
    """Run ``network`` on ``inputs`` with each of ``backends`` (see the module docstring).

    ``compare``: also run the reference simulator (recording every layer's spikes; or take
    ``reference``, a result with spikes on exactly these inputs) and compare every other backend
    with it spike for spike. ``tolerate``: backends whose refusal of the network (a
    :class:`~toolchain.errors.ToolchainError`, e.g. the torch model and a neuron bias) is recorded in
    ``not_compared`` instead of raised. ``netx_file``: the file ``network`` was read from, which
    Lava runs. ``lava_samples``: how many of the samples Lava runs (default: all).
    ``record_spikes``: keep every layer's spikes (always with ``compare``). ``lava_progress``: a
    :class:`toolchain.sim.lava_backend.LavaProgress` or ``None``.
    """
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        raise SimulationError(f"unknown backend(s) {unknown}; expected one of {', '.join(BACKENDS)}")
    record = record_spikes or compare
    labels = None if inputs.labels is None else np.asarray(inputs.labels)
    results: dict[str, SimulationResult] = {}
    not_compared: dict[str, str] = {}
    if reference is not None:
        if reference.samples != inputs.samples:
            raise SimulationError(
                f"the reference result holds {reference.samples} samples, the inputs {inputs.samples}; "
                "simulate the same inputs"
            )
        results["reference"] = reference
    order = (["reference"] if compare else []) + [
        name for name in backends if name != "reference" or not compare
    ]
    for name in order:
        if name in results:
            continue
        x = inputs.inputs
        if name == "lava" and lava_samples is not None and lava_samples < inputs.samples:
            x = first_samples(network, x, lava_samples)
        try:
            results[name] = run_backend(
                name,
                network,
                x,
                netx_file=netx_file,
                record_spikes=record,
                batch_size=batch_size,
                lava_progress=lava_progress,
            )
        except ToolchainError as exc:
            if name not in tolerate:
                raise
            not_compared[name] = str(exc)
    if not compare:
        return SimulationRun(network, labels, results, None, not_compared)
    from toolchain.sim.compare import compare as compare_backends

    others = {name: results[name] for name in BACKENDS if name != "reference" and name in results}
    comparison = compare_backends(results["reference"], others, labels)
    return SimulationRun(network, labels, results, comparison, not_compared)


__all__ = [
    "BACKENDS",
    "LAVA_ACTIVITY_NOTE",
    "InputArrays",
    "SimulationRun",
    "SimulatorInputs",
    "run_backend",
    "simulate_backends",
]
