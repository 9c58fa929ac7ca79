"""Data stage: loaders for real datasets in their standard on-disk formats, and input encoders.

Each dataset is a module with an ``Options`` dataclass (its recipe keys, validated by
:mod:`toolchain.schema`) and a ``load(data_root, options) -> Dataset`` function. Use
:func:`load_dataset` rather than the modules directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from toolchain.data.base import ArraySplit, Dataset, DatasetShape, as_float, resolve_data_dir
from toolchain.errors import DataError, RecipeError
from toolchain.schema import from_mapping

#: dataset name (as in recipes and as the folder name under the data root) -> module
DATASETS: dict[str, str] = {
    "digits": "toolchain.data.digits",
    "mnist": "toolchain.data.mnist",
    "fashion-mnist": "toolchain.data.mnist",
    "cifar10": "toolchain.data.cifar10",
    "gsc": "toolchain.data.gsc",
    "synthetic": "toolchain.data.synthetic",
}

__all__ = [
    "DATASETS",
    "ArraySplit",
    "Dataset",
    "DatasetShape",
    "as_float",
    "dataset_options",
    "dataset_shape",
    "load_dataset",
    "resolve_data_dir",
]


def _module(name: str) -> ModuleType:
    if name not in DATASETS:
        raise RecipeError(
            f"[data].dataset: unknown dataset {name!r}; expected one of: {', '.join(sorted(DATASETS))}"
        )
    return importlib.import_module(DATASETS[name])


def dataset_options(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Validate ``options`` (the recipe's ``[data.options]`` table) against dataset ``name``."""
    module = _module(name)
    return from_mapping(module.Options, dict(options or {}), "data.options")


def dataset_shape(name: str, options: Mapping[str, Any] | None = None) -> DatasetShape:
    """The sample shape and classes of dataset ``name`` with ``options``, without reading any data
    (to build, export or inspect a recipe's network where its data set is not at hand)."""
    module = _module(name)
    parsed = dataset_options(name, options)
    return module.shape(parsed, name) if _takes_name(module) else module.shape(parsed)


def load_dataset(
    name: str, data_dir: str | Path | None = None, options: Mapping[str, Any] | None = None
) -> Dataset:
    """Load dataset ``name`` from ``data_dir`` (see :func:`resolve_data_dir`).

    Raises :class:`DataError` naming the missing or corrupt file and the expected layout.
    """
    module = _module(name)
    parsed = dataset_options(name, options)
    root = resolve_data_dir(data_dir)
    dataset = module.load(root, parsed, name) if _takes_name(module) else module.load(root, parsed)
    if not isinstance(dataset, Dataset):  # pragma: no cover - a loader bug
        raise DataError(f"loader of {name!r} returned {type(dataset).__name__}, not a Dataset")
    return dataset


def _takes_name(module: ModuleType) -> bool:
    """Modules serving several datasets (MNIST and Fashion-MNIST) take the dataset name too."""
    return bool(getattr(module, "SERVES_SEVERAL", False))
