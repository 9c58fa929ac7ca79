"""Measured activity of a network over a set of inferences: what simulators record, energy consumes.

A simulator (the reference simulator, Lava, the training evaluation) returns :class:`Activity`;
the energy model (:mod:`toolchain.energy`) turns it into joules and seconds. Every count is *per
sample* (one inference of ``time_steps`` steps), averaged over ``samples`` inferences.

Definitions (the same for every backend, so that they can be compared):

- ``spikes_per_sample``: output spikes of the layer's neurons.
- ``synops_per_sample``: synaptic operations *into* the layer: every input event (a spike, or a
  non-zero graded payload) times the number of non-zero weights it reaches.
- ``active_updates_per_sample``: neuron updates at steps where the neuron had non-zero input or
  non-zero state (``a_in != 0`` or ``u != 0`` or ``v != 0`` before the update);
  ``idle_updates_per_sample = neurons * time_steps - active``.
- ``input_events_per_sample``: events the layer received (spikes or non-zero graded values).

A network whose input layer has neurons (lava-dl's ``Input`` block, :class:`toolchain.ir.InputNeurons`)
has their counts in ``Activity.input_neurons`` (kind ``"input"``): no synapses and no synaptic
operations (the sample is written into their current), ``input_events_per_sample`` the non-zero
input currents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError


@dataclass(frozen=True)
class LayerCounts:
    """One synaptic layer's activity per sample (see the module docstring for the definitions).

    ``synapses`` is the number of non-zero weights into the layer; ``fan_in`` the largest number
    of synapses into one neuron, ``fan_out`` the largest number out of one input.
    """

    name: str
    kind: str
    neurons: int
    synapses: int
    fan_in: int
    fan_out: int
    spikes_per_sample: float
    synops_per_sample: float
    active_updates_per_sample: float
    idle_updates_per_sample: float
    input_events_per_sample: float
    graded_input: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_totals(
        static: LayerCounts,
        *,
        spikes: float,
        synops: float,
        active: float,
        events: float,
        samples: int,
        time_steps: int,
    ) -> LayerCounts:
        """A layer's counts from totals over ``samples`` inferences of ``time_steps`` steps.

        ``static`` gives the layer's name, kind, neurons, synapses, fan-in, fan-out and
        ``graded_input`` (its activity fields are ignored); idle updates are
        ``neurons * time_steps`` minus the active ones. With ``samples == 0`` every count is 0.
        """
        per = 1.0 / samples if samples else 0.0
        active_per_sample = active * per
        return replace(
            static,
            spikes_per_sample=spikes * per,
            synops_per_sample=synops * per,
            active_updates_per_sample=active_per_sample,
            idle_updates_per_sample=static.neurons * time_steps - active_per_sample if samples else 0.0,
            input_events_per_sample=events * per,
        )


@dataclass(frozen=True)
class Activity:
    """Activity of a whole network, per sample, from one backend (``source``)."""

    network: str
    source: str
    samples: int
    time_steps: int
    layers: tuple[LayerCounts, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    input_neurons: LayerCounts | None = None

    @property
    def spikes_per_sample(self) -> float:
        """Spikes of every population per sample, the input neurons' included."""
        inputs = self.input_neurons.spikes_per_sample if self.input_neurons is not None else 0.0
        return inputs + sum(layer.spikes_per_sample for layer in self.layers)

    @property
    def synops_per_sample(self) -> float:
        return sum(layer.synops_per_sample for layer in self.layers)

    def layer(self, name: str) -> LayerCounts:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "source": self.source,
            "samples": self.samples,
            "time_steps": self.time_steps,
            "spikes_per_sample": self.spikes_per_sample,
            "synops_per_sample": self.synops_per_sample,
            "layers": [layer.to_dict() for layer in self.layers],
            "metadata": dict(self.metadata),
            **({"input_neurons": self.input_neurons.to_dict()} if self.input_neurons is not None else {}),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Activity:
        """The inverse of :meth:`to_dict` (e.g. the ``activity`` of ``toolchain simulate --json``).

        Raises ``ValueError`` naming the key for a value of the wrong type or range (a count that is
        not a finite number >= 0, a size that is not a whole number), ``KeyError`` for a missing key.
        """
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise ValueError("expected an object with a list of 'layers'")
        layers = [_layer_counts(layer, f"layers[{index}]") for index, layer in enumerate(data["layers"])]
        inputs = data.get("input_neurons")
        metadata = data.get("metadata", {})
        return Activity(
            network=str(data["network"]),
            source=str(data["source"]),
            samples=_whole(data["samples"], "samples"),
            time_steps=_whole(data["time_steps"], "time_steps"),
            layers=tuple(layers),
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
            input_neurons=None if inputs is None else _layer_counts(inputs, "input_neurons"),
        )


def _layer_counts(layer: Any, where: str) -> LayerCounts:
    """One layer's counts from :meth:`LayerCounts.to_dict`'s object, every value checked."""
    if not isinstance(layer, dict):
        raise ValueError(f"{where}: expected an object")
    values = {key: layer[key] for key in _COUNT_FIELDS}
    for key in _WHOLE_FIELDS:
        values[key] = _whole(layer[key], f"{where}.{key}")
    for key in _RATE_FIELDS:
        values[key] = _rate(layer[key], f"{where}.{key}")
    values["name"], values["kind"] = str(layer["name"]), str(layer["kind"])
    values["graded_input"] = bool(layer.get("graded_input", False))
    return LayerCounts(**values)


_WHOLE_FIELDS = ("neurons", "synapses", "fan_in", "fan_out")
_RATE_FIELDS = (
    "spikes_per_sample",
    "synops_per_sample",
    "active_updates_per_sample",
    "idle_updates_per_sample",
    "input_events_per_sample",
)
_COUNT_FIELDS = (*_WHOLE_FIELDS, *_RATE_FIELDS)


def _whole(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53:
        raise ValueError(f"{key}: expected a whole number >= 0, got {str(value)[:40]}")
    return value


def _rate(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e300:
        raise ValueError(f"{key}: expected a finite number >= 0, got {str(value)[:40]}")
    return float(value)


def read_activity(path: str | Path) -> tuple[Activity, float | None]:
    """The :class:`Activity` in a JSON file (``toolchain simulate --json`` output, whose key
    ``activity`` holds it, or the object itself) and the accuracy the simulation measured with it
    (``None`` when the file has none). Anything else is a one-line :class:`ToolchainError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolchainError(f"{path}: cannot read activity ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ToolchainError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ToolchainError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise ToolchainError(f"{path}: not an activity record (JSON nested too deeply)") from None
    accuracy = None
    if isinstance(data, dict) and "activity" in data:
        given = data.get("accuracy")
        if isinstance(given, int | float) and not isinstance(given, bool) and 0 <= given <= 1:
            accuracy = float(given)
        data = data["activity"]
    try:
        return Activity.from_dict(data), accuracy
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolchainError(
            f"{path}: not an activity record (key `activity` of `toolchain simulate --json`): {exc}"
        ) from None


__all__ = ["Activity", "LayerCounts", "read_activity"]
