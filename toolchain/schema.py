"""Typed, validated construction of dataclasses from plain mappings (TOML tables, JSON objects).

One small mechanism serves every configuration in the toolchain (recipes, dataset options, target
profiles): a dataclass declares its fields with type hints and, where a value has limits, a
``metadata`` entry made by :func:`bounded` or :func:`choice`. :func:`from_mapping` then builds the
dataclass and rejects, naming the full key path:

- unknown keys (``[neuron].treshold: unknown key; expected one of ...``),
- wrong types (``[train].epochs: expected an integer, got 'ten' (str)``),
- impossible values (``[neuron].voltage_decay: expected a number in [0, 1], got 1.5``).

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, ``Literal[...]``,
``list[T]``/``tuple[T, ...]`` of those, ``dict[str, T]``, ``X | None`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from toolchain.errors import RecipeError

T = TypeVar("T")

_CHECK = "toolchain.check"


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field whose numeric value (or every item of a list of numbers) lies in a range."""

    def check(value: Any) -> str | None:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                return f"expected a finite number{_range_text(ge, gt, le, lt)}, got {item!r}"
            if (
                (ge is not None and item < ge)
                or (gt is not None and item <= gt)
                or (le is not None and item > le)
                or (lt is not None and item >= lt)
            ):
                return f"expected a number{_range_text(ge, gt, le, lt)}, got {value!r}"
        return None

    return _field(default, default_factory, check)


def choice(
    *allowed: str,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A string field (or every item of a list of strings) restricted to ``allowed``.

    Kept as ``str`` rather than ``Literal`` so that the allowed set can grow without a type change.
    """

    def check(value: Any) -> str | None:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item not in allowed:
                return f"expected one of {', '.join(repr(a) for a in allowed)}, got {item!r}"
        return None

    return _field(default, default_factory, check)


def _field(default: Any, default_factory: Any, check: Callable[[Any], str | None]) -> Any:
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_CHECK: check})
    return dataclasses.field(default=default, metadata={_CHECK: check})


def _range_text(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    low = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else "(-inf")
    high = f"{le}]" if le is not None else (f"{lt})" if lt is not None else "inf)")
    return f" in {low}, {high}"


def from_mapping(cls: type[T], mapping: Any, where: str = "", error: type[Exception] = RecipeError) -> T:
    """Build dataclass ``cls`` from ``mapping``, validating every key; ``where`` prefixes messages.

    Raises ``error`` (default :class:`RecipeError`) naming the offending key path.
    """
    if not isinstance(mapping, Mapping):
        raise error(f"{_path(where)}: expected a table, got {_describe(mapping)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise error(f"{_path(where, unknown[0])}: unknown key; expected one of: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(where, name)
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"{_path(key_path)}: missing required key")
            continue
        value = _convert(hints[name], mapping[name], key_path, error)
        check = f.metadata.get(_CHECK)
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise error(f"{_path(key_path)}: {problem}")
        values[name] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # cross-field checks in __post_init__
        raise error(f"[{where}]: {exc}" if where else f"(top level): {exc}") from None


def check_fields(obj: Any) -> None:
    """Check a constructed dataclass's fields as :func:`from_mapping` checks a table's keys: each
    value's type (a nested dataclass must be an instance of its class) and the limits of
    :func:`bounded` / :func:`choice`. Raises ``ValueError`` naming the field (``scheme: expected one
    of 'direct', ..., got 'bogus'``, prefixed with the class name)."""
    hints = get_type_hints(type(obj))
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, hint):
                raise ValueError(
                    f"{name}.{f.name}: expected a {hint.__name__} instance, got {_describe(value)}"
                )
            continue
        try:
            _convert(hint, value, f.name, ValueError)
        except ValueError as exc:  # "[path].key: problem" in a table's terms: name the class's field
            raise ValueError(f"{name}.{f.name}: {str(exc).partition(': ')[2]}") from None
        check = f.metadata.get(_CHECK)
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise ValueError(f"{name}.{f.name}: {problem}")


class Validated:
    """A dataclass that checks itself on construction: every field (:func:`check_fields`), then the
    cross-field rules of :meth:`check`. A configuration built in Python is held to the same rules as
    one read from a file."""

    def __post_init__(self) -> None:
        check_fields(self)
        self.check()

    def check(self) -> None:
        """Rules across fields; raise ``ValueError`` naming them. None by default."""


def to_mapping(obj: Any) -> Any:
    """The inverse of :func:`from_mapping`: plain dicts/lists, ``None`` values left out (TOML has no null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_mapping(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None
        }
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items() if v is not None}
    return obj


def _convert(hint: Any, value: Any, key_path: str, error: type[Exception]) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        problems = []
        for candidate in candidates:
            try:
                return _convert(candidate, value, key_path, error)
            except error as exc:
                problems.append(str(exc))
        raise error(problems[0] if len(problems) == 1 else f"{_path(key_path)}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise error(f"{_path(key_path)}: expected one of {allowed}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{_path(key_path)}: expected a list, got {_describe(value)}")
        item_hint = args[0] if args else Any
        items = [_convert(item_hint, v, f"{key_path}[{i}]", error) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise error(f"{_path(key_path)}: expected a table, got {_describe(value)}")
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _convert(value_hint, v, _join(key_path, str(k)), error) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, key_path, error)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{_path(key_path)}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{_path(key_path)}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{_path(key_path)}: expected a number, got {_describe(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits (TOML integers are unbounded)
            raise error(
                f"{_path(key_path)}: expected a number, got an integer too large for a float"
            ) from None
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{_path(key_path)}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"schema: unsupported field type {hint!r} at {key_path}")  # a bug, not user input


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _path(where: str, name: str | None = None) -> str:
    """Render a key path TOML-style: ``[train].epochs`` for ``train.epochs``."""
    full = _join(where, name) if name else where
    if not full:
        return "(top level)"
    head, _, tail = full.rpartition(".")
    return f"[{head}].{tail}" if head else full
