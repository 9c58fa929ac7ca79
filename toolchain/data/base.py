"""The typed hand-off of the data stage: a dataset is two labelled array splits and their metadata.

Loaders return samples in their natural, compact dtype (``uint8`` pixels, ``float32`` audio features),
possibly memory-mapped; :func:`as_float` turns a batch into ``float32`` in [0, 1] for images or leaves
features as they are. Keeping ``uint8`` until a batch is drawn keeps CIFAR-10 at 184 MB, not 737 MB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import DataError

DATA_DIR_ENV = "TOOLCHAIN_DATA"


@dataclass(frozen=True)
class ArraySplit:
    """One split of a dataset: ``x`` shaped ``[N, *sample_shape]`` and integer labels ``y`` shaped ``[N]``."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.y.ndim != 1:
            raise DataError(f"labels must be one-dimensional, got shape {self.y.shape}")
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} samples but {len(self.y)} labels")
        if not np.issubdtype(self.y.dtype, np.integer):
            raise DataError(f"labels must be integers, got dtype {self.y.dtype}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray | slice) -> ArraySplit:
        return ArraySplit(self.x[indices], self.y[indices])


@dataclass(frozen=True)
class DatasetShape:
    """What a dataset's samples look like, known from its options without reading any data:
    ``sample_shape`` (as :attr:`Dataset.sample_shape`) and the class names."""

    sample_shape: tuple[int, ...]
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset with a train and a test split.

    ``sample_shape`` is the shape of one sample as the network sees it (``(64,)`` for digits,
    ``(1, 28, 28)`` for MNIST, ``(3, 32, 32)`` for CIFAR-10, ``(features, frames)`` for audio).
    ``source`` says where the data came from (files, split rule) for reports.
    """

    name: str
    train: ArraySplit
    test: ArraySplit
    classes: tuple[str, ...]
    sample_shape: tuple[int, ...]
    source: str = ""

    def __post_init__(self) -> None:
        for split_name, split in (("train", self.train), ("test", self.test)):
            if tuple(split.x.shape[1:]) != tuple(self.sample_shape):
                raise DataError(
                    f"{self.name}: {split_name} samples have shape {tuple(split.x.shape[1:])}, "
                    f"expected {tuple(self.sample_shape)}"
                )
            if len(split) and (split.y.min() < 0 or split.y.max() >= len(self.classes)):
                raise DataError(f"{self.name}: {split_name} labels outside 0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_inputs(self) -> int:
        return int(np.prod(self.sample_shape))


def as_float(x: np.ndarray) -> np.ndarray:
    """A batch as ``float32``: ``uint8`` pixels are scaled to [0, 1]; other dtypes are only cast."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return np.asarray(x, dtype=np.float32)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data root: ``data_dir`` if given, else ``$TOOLCHAIN_DATA``, else ``./data``.

    The root holds one folder per dataset, named as in the project's shared data
    (``mnist/``, ``fashion-mnist/``, ``cifar10/``, ``gsc/``).
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path("data")


def cache_dir(data_root: Path | None = None) -> Path:
    """Where unpacked archives and computed features are cached, created on first use.

    ``$TOOLCHAIN_CACHE`` if set, else ``$XDG_CACHE_HOME/toolchain``, else ``~/.cache/toolchain``.
    Never inside the data root: shared data folders must stay untouched (a permission check
    cannot tell, since root may write anywhere). ``data_root`` is accepted for callers that
    key caches by it, and is unused.
    """
    del data_root
    env = os.environ.get("TOOLCHAIN_CACHE")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "toolchain"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot create the cache folder ({exc.strerror}); set TOOLCHAIN_CACHE"
        ) from None
    return path
