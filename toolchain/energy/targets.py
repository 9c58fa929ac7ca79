"""Hardware target profiles: one TOML file per target, every constant with its citation.

A profile lives in ``deploy/targets/<name>.toml`` (or in a folder named by ``$TOOLCHAIN_TARGETS``,
``os.pathsep``-separated, or at any path given to :func:`load_target`). An installed wheel holds the
same files as package data, ``toolchain/targets/*.toml`` (copied there at build time, see setup.py),
found through :mod:`importlib.resources`; a checkout reads ``deploy/targets`` itself. Layout::

    name = "loihi"
    kind = "neuromorphic"            # or "conventional" (prices the ANN twin)
    title = "Intel Loihi ..."
    verified = true                  # checked against silicon or a silicon-calibrated model (false:
    assumptions = ["..."]            # built on assumptions, which `assumptions` must then list)
    error_band = "..."               # how far its estimates may be from the chip, and the source

    [energy]                         # every table needs `source`; a value may override it
    source = "Davies et al., IEEE Micro 38(1), 2018, Table 2"
    synop_pj = 23.6
    [energy.sources]                 # optional: per-value citations
    hop_north_south_pj = "..."
    [energy.derived]                 # optional: how a value was derived from the cited figures
    mac_pj = "multiply 3.7 pJ + add 0.9 pJ"

Units are in the key (``_pj``, ``_ns``, ``_mw``). Unknown tables or keys, a missing ``source``, a
wrong type or a negative value raise :class:`TargetError` naming the file and the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from toolchain.errors import ToolchainError

#: the environment variable naming extra folders of target profiles
TARGETS_ENV = "TOOLCHAIN_TARGETS"


def _builtin_dir() -> Path:
    """The shipped profiles: an installed wheel's package data, else the checkout's ``deploy/targets``."""
    packaged = resources.files("toolchain").joinpath("targets")
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "deploy" / "targets"


#: the profiles shipped with the toolchain (see :func:`_builtin_dir`)
BUILTIN_DIR = _builtin_dir()

TargetKind = Literal["neuromorphic", "conventional"]


class TargetError(ToolchainError):
    """A target profile is missing, unreadable or invalid (unknown key, no source, wrong value)."""


#: the keys each table accepts: name -> (required for neuromorphic, required for conventional)
_TABLES: dict[str, dict[str, tuple[bool, bool]]] = {
    "energy": {
        "synop_pj": (True, False),
        "neuron_active_pj": (True, False),
        "neuron_idle_pj": (True, False),
        "neuron_access_pj": (False, False),
        "spike_out_pj": (False, False),
        "message_out_pj": (False, False),
        "spike_within_tile_pj": (False, False),
        "hop_east_west_pj": (False, False),
        "hop_north_south_pj": (False, False),
        "mac_pj": (False, True),
        "ac_pj": (False, False),
    },
    "time": {
        "synop_ns": (False, False),
        "neuron_active_ns": (False, False),
        "neuron_idle_ns": (False, False),
        "step_ns": (False, False),
    },
    "topology": {
        "cores_per_chip": (True, False),
        "cores_per_tile": (True, False),
        "mesh_width_tiles": (True, False),
        "neurons_per_core": (True, False),
        "max_fan_in_axons_per_core": (False, False),
        "max_fan_out_axons_per_core": (False, False),
        "max_synapse_bits_per_core": (False, False),
    },
    "static": {"power_mw": (True, False)},
    "overhead": {"step_pj": (False, False), "step_ns": (False, False)},
}
_INTEGER_KEYS = {
    "cores_per_chip",
    "cores_per_tile",
    "mesh_width_tiles",
    "neurons_per_core",
    "max_fan_in_axons_per_core",
    "max_fan_out_axons_per_core",
    "max_synapse_bits_per_core",
}
_TOP_KEYS = {"name", "kind", "title", "verified", "assumptions", "error_band", *_TABLES}
_TABLE_META = {"source", "sources", "derived"}


@dataclass(frozen=True)
class Target:
    """One validated target profile (see the module docstring for the file layout).

    ``values`` maps ``"table.key"`` (e.g. ``"energy.synop_pj"``) to its number, ``sources`` the same
    keys to their citation and ``derived`` to how a value was computed from the cited figures.
    Typed accessors (:attr:`synop_pj`, ...) return ``None`` for a value the profile does not give.
    """

    name: str
    kind: TargetKind
    title: str
    verified: bool
    path: Path
    values: dict[str, float]
    sources: dict[str, str]
    derived: dict[str, str] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    #: how far estimates on this profile may be from the chip, with its source (``None``: not stated)
    error_band: str | None = None

    def get(self, key: str) -> float | None:
        return self.values.get(key)

    def require(self, key: str) -> float:
        if key not in self.values:
            raise TargetError(f"{self.path}: [{key.replace('.', '].')}: required here, not given")
        return self.values[key]

    # energy, in pJ
    @property
    def synop_pj(self) -> float | None:
        return self.get("energy.synop_pj")

    @property
    def neuron_active_pj(self) -> float | None:
        return self.get("energy.neuron_active_pj")

    @property
    def neuron_idle_pj(self) -> float | None:
        return self.get("energy.neuron_idle_pj")

    @property
    def neuron_access_pj(self) -> float | None:
        return self.get("energy.neuron_access_pj")

    @property
    def spike_out_pj(self) -> float | None:
        return self.get("energy.spike_out_pj")

    @property
    def message_out_pj(self) -> float | None:
        return self.get("energy.message_out_pj")

    @property
    def spike_within_tile_pj(self) -> float:
        return self.values.get("energy.spike_within_tile_pj", 0.0)

    @property
    def hop_east_west_pj(self) -> float:
        return self.values.get("energy.hop_east_west_pj", 0.0)

    @property
    def hop_north_south_pj(self) -> float:
        return self.values.get("energy.hop_north_south_pj", 0.0)

    @property
    def mac_pj(self) -> float | None:
        return self.get("energy.mac_pj")

    @property
    def ac_pj(self) -> float | None:
        return self.get("energy.ac_pj")

    # topology
    @property
    def neurons_per_core(self) -> int:
        return int(self.require("topology.neurons_per_core"))

    @property
    def cores_per_tile(self) -> int:
        return int(self.require("topology.cores_per_tile"))

    @property
    def cores_per_chip(self) -> int:
        return int(self.require("topology.cores_per_chip"))

    @property
    def mesh_width_tiles(self) -> int:
        return int(self.require("topology.mesh_width_tiles"))

    def limit(self, key: str) -> int | None:
        """An optional per-core limit of ``[topology]`` (``None``: the profile sets none)."""
        value = self.values.get(f"topology.{key}")
        return None if value is None else int(value)

    @property
    def static_power_mw(self) -> float | None:
        return self.get("static.power_mw")

    def cited(self) -> list[tuple[str, float, str]]:
        """``(key, value, source)`` for every value, in file order."""
        return [(key, value, self.sources[key]) for key, value in self.values.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "verified": self.verified,
            "path": str(self.path),
            "assumptions": list(self.assumptions),
            "error_band": self.error_band,
            "values": {
                key: {
                    "value": value,
                    "source": self.sources[key],
                    **({"derived": self.derived[key]} if key in self.derived else {}),
                }
                for key, value in self.values.items()
            },
        }


def target_dirs() -> list[Path]:
    """Where profiles are looked up by name: ``$TOOLCHAIN_TARGETS`` folders first, then the built-ins."""
    if not BUILTIN_DIR.is_dir():
        raise TargetError(
            "the built-in target profiles are missing (neither the package data toolchain/targets nor "
            f"{BUILTIN_DIR} exists): reinstall the toolchain with `pip install .` from a checkout"
        )
    extra = [Path(p) for p in os.environ.get(TARGETS_ENV, "").split(os.pathsep) if p]
    return [*extra, BUILTIN_DIR]


def list_targets() -> list[Target]:
    """Every profile on the search path, by name (a ``$TOOLCHAIN_TARGETS`` file shadows a built-in)."""
    found: dict[str, Target] = {}
    for folder in target_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            target = parse_target_file(path)
            found.setdefault(target.name, target)
    return [found[name] for name in sorted(found)]


def load_target(name_or_path: str | os.PathLike[str]) -> Target:
    """A profile by name (``loihi``) or by path (``my/chip.toml``)."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or os.sep in text or path.is_file():
        if not path.is_file():
            raise TargetError(f"{path}: target profile not found")
        return parse_target_file(path)
    for folder in target_dirs():
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return parse_target_file(candidate)
    known = ", ".join(t.name for t in list_targets()) or "none"
    raise TargetError(f"unknown target {text!r}; known targets: {known} (or give a path to a .toml file)")


def parse_target_file(path: str | os.PathLike[str]) -> Target:
    """Read and validate one profile file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetError(f"{path}: cannot read target profile ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise TargetError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    return parse_target(data, path)


def parse_target(data: dict[str, Any], path: Path) -> Target:
    """Validate the mapping of one profile (``path`` names it in errors)."""
    for key in data:
        if key not in _TOP_KEYS:
            raise TargetError(f"{path}: unknown key {key!r}; expected one of: {', '.join(sorted(_TOP_KEYS))}")
    name = _string(path, "name", data.get("name"))
    kind = data.get("kind")
    if kind not in ("neuromorphic", "conventional"):
        raise TargetError(f"{path}: kind: expected 'neuromorphic' or 'conventional', got {kind!r}")
    title = _string(path, "title", data.get("title", name))
    verified = data.get("verified", True)
    if not isinstance(verified, bool):
        raise TargetError(f"{path}: verified: expected true or false, got {verified!r}")
    assumptions = data.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise TargetError(f"{path}: assumptions: expected a list of strings")
    if not verified and not assumptions:
        raise TargetError(f"{path}: assumptions: an unverified profile must list what it assumes")
    error_band = data.get("error_band")
    if error_band is not None:
        error_band = _string(path, "error_band", error_band)

    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    derived: dict[str, str] = {}
    column = 0 if kind == "neuromorphic" else 1
    for table, keys in _TABLES.items():
        section = data.get(table)
        if section is None:
            missing = [k for k, req in keys.items() if req[column]]
            if missing and (table != "static"):
                raise TargetError(f"{path}: [{table}]: missing (a {kind} target needs {', '.join(missing)})")
            continue
        if not isinstance(section, dict):
            raise TargetError(f"{path}: [{table}]: expected a table")
        for key in section:
            if key not in keys and key not in _TABLE_META:
                raise TargetError(
                    f"{path}: [{table}].{key}: unknown key; expected one of: "
                    f"{', '.join([*keys, *sorted(_TABLE_META)])}"
                )
        for key, req in keys.items():
            if req[column] and key not in section:
                raise TargetError(f"{path}: [{table}].{key}: missing (a {kind} target needs it)")
        table_source = section.get("source")
        if table_source is not None:
            table_source = _string(path, f"[{table}].source", table_source)
        per_value = _string_table(path, table, "sources", section.get("sources", {}), keys)
        how = _string_table(path, table, "derived", section.get("derived", {}), keys)
        for key in keys:
            if key not in section:
                continue
            value = section[key]
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
                raise TargetError(
                    f"{path}: [{table}].{key}: expected a number below 2^53, got {str(value)[:40]}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TargetError(f"{path}: [{table}].{key}: expected a number, got {str(value)[:40]!r}")
            if value < 0 or (key in _INTEGER_KEYS and (value < 1 or value != int(value))):
                expected = "a positive integer" if key in _INTEGER_KEYS else "a number >= 0"
                raise TargetError(f"{path}: [{table}].{key}: expected {expected}, got {value!r}")
            source = per_value.get(key, table_source)
            if not source:
                raise TargetError(
                    f"{path}: [{table}].{key}: no citation; give [{table}].source or [{table}.sources].{key}"
                )
            full = f"{table}.{key}"
            values[full] = float(value)
            sources[full] = source
            if key in how:
                derived[full] = how[key]
    if kind == "neuromorphic":
        time_model = {k for k in ("synop_ns", "neuron_active_ns", "neuron_idle_ns") if f"time.{k}" in values}
        if "time.step_ns" not in values and len(time_model) != 3:
            raise TargetError(
                f"{path}: [time]: give synop_ns, neuron_active_ns and neuron_idle_ns, or a fixed step_ns"
            )
    return Target(
        name=name,
        kind=kind,
        title=title,
        verified=verified,
        path=path,
        values=values,
        sources=sources,
        derived=derived,
        assumptions=tuple(assumptions),
        error_band=error_band,
    )


def _string(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TargetError(f"{path}: {key}: expected a non-empty string, got {value!r}")
    return value


def _string_table(
    path: Path, table: str, meta: str, value: Any, keys: dict[str, tuple[bool, bool]]
) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TargetError(f"{path}: [{table}].{meta}: expected a table of strings")
    for key, text in value.items():
        if key not in keys:
            raise TargetError(f"{path}: [{table}.{meta}].{key}: unknown key")
        _string(path, f"[{table}.{meta}].{key}", text)
    return dict(value)


__all__ = [
    "BUILTIN_DIR",
    "TARGETS_ENV",
    "Target",
    "TargetError",
    "list_targets",
    "load_target",
    "parse_target",
    "parse_target_file",
]
