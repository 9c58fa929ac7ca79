"""scikit-learn's handwritten digits: 1,797 grey 8×8 images of the digits 0-9, shipped with scikit-learn.

Nothing is downloaded and the data root is ignored. Samples are the 64 pixels as ``float32`` in
[0, 1] (the original 0-16 grey levels divided by 16), shaped ``(64,)`` (``layout = "flat"``) or
``(1, 8, 8)`` (``layout = "image"``, for convolutional networks). scikit-learn has no official split,
so a deterministic stratified one is made (``test_fraction``, ``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from toolchain.data.base import ArraySplit, Dataset, DatasetShape
from toolchain.schema import bounded, choice

#: the grey levels of the original images run from 0 to 16
MAX_LEVEL = 16.0


@dataclass(frozen=True)
class Options:
    """``[data.options]`` of the digits dataset."""

    #: share of the 1,797 images held out for the test split, stratified by class (each split
    #: keeps at least one image of each of the 10 classes)
    test_fraction: float = bounded(0.25, ge=0.01, le=0.99)
    #: seed of the split (the same seed always gives the same split)
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    #: sample shape: ``"flat"`` (64,) or ``"image"`` (1, 8, 8)
    layout: str = choice("flat", "image", default="flat")


def shape(options: Options) -> DatasetShape:
    """The samples' shape (by ``layout``) and the ten classes, without loading anything."""
    return DatasetShape((1, 8, 8) if options.layout == "image" else (64,), tuple(str(d) for d in range(10)))


def load(data_root: Path, options: Options) -> Dataset:
    """The digits as a :class:`Dataset`: ``x`` ``float32`` ``[N, 64]`` (or ``[N, 1, 8, 8]``) in [0, 1],
    labels ``int64`` 0-9.

    ``data_root`` is ignored (the data ship with scikit-learn).
    """
    del data_root
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(MAX_LEVEL)).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    described = shape(options)
    x = x.reshape(len(x), *described.sample_shape)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=options.test_fraction, random_state=options.seed, stratify=y
    )
    return Dataset(
        name="digits",
        train=ArraySplit(x_train, y_train),
        test=ArraySplit(x_test, y_test),
        classes=described.classes,
        sample_shape=described.sample_shape,
        source=(
            f"scikit-learn load_digits, stratified split: test_fraction={options.test_fraction}, "
            f"seed={options.seed}, layout={options.layout}"
        ),
    )
