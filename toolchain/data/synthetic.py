"""A synthetic spike-pattern dataset for fast tests: no files, generated in milliseconds.

Each class is a fixed random rate template over the inputs (a spike probability per input and time
step, drawn uniformly from ``[0, max_rate]``). A sample of a class is a Bernoulli spike raster drawn
from its template (a discrete-time Poisson process), so the classes differ by which inputs fire
often.

**Its samples are already spike trains**: ``float32`` 0/1 rasters shaped ``[T, inputs]``
(``(time_steps, num_inputs)``), time first. Use the encoding scheme ``"spikes"``
(:func:`toolchain.data.encoding.spikes`), which only moves the time axis of a batch
``[B, T, inputs]`` to the front, instead of encoding them again. Everything is deterministic given
``seed``; the data root is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.data.base import ArraySplit, Dataset, DatasetShape
from toolchain.schema import bounded


@dataclass(frozen=True)
class Options:
    """``[data.options]`` of the synthetic dataset."""

    #: number of classes (one rate template each)
    num_classes: int = bounded(4, ge=2)
    #: number of input channels (neurons) of a sample
    num_inputs: int = bounded(32, ge=1)
    #: time steps ``T`` of a sample
    time_steps: int = bounded(20, ge=1)
    #: training samples per class
    train_per_class: int = bounded(64, ge=1)
    #: test samples per class
    test_per_class: int = bounded(16, ge=1)
    #: the highest spike probability per input and time step of a template
    max_rate: float = bounded(0.5, gt=0.0, le=1.0)
    #: seed of the templates and of the samples
    seed: int = bounded(0, ge=0, le=2**32 - 1)


def shape(options: Options) -> DatasetShape:
    """``(time_steps, num_inputs)`` rasters and the pattern classes, without drawing any."""
    classes = tuple(f"pattern {c}" for c in range(options.num_classes))
    return DatasetShape((options.time_steps, options.num_inputs), classes)


def load(data_root: Path, options: Options) -> Dataset:
    """The synthetic dataset: ``x`` ``float32`` 0/1 rasters ``[N, T, inputs]``, labels ``int64``.

    Labels cycle through the classes (0, 1, …, C-1, 0, 1, …). ``data_root`` is ignored.
    """
    del data_root
    rng = np.random.default_rng(options.seed)
    templates = rng.uniform(0.0, options.max_rate, size=(options.num_classes, options.num_inputs))
    train = _draw(rng, templates, options.train_per_class, options.time_steps)
    test = _draw(rng, templates, options.test_per_class, options.time_steps)
    return Dataset(
        name="synthetic",
        train=train,
        test=test,
        classes=tuple(f"pattern {c}" for c in range(options.num_classes)),
        sample_shape=(options.time_steps, options.num_inputs),
        source=(
            f"synthetic Bernoulli spike patterns: {options.num_classes} classes, "
            f"{options.num_inputs} inputs, {options.time_steps} steps, max_rate={options.max_rate}, "
            f"seed={options.seed}"
        ),
    )


def _draw(rng: np.random.Generator, templates: np.ndarray, per_class: int, time_steps: int) -> ArraySplit:
    """``per_class`` rasters ``[T, inputs]`` of each class drawn from its ``templates`` row."""
    num_classes, num_inputs = templates.shape
    y = np.tile(np.arange(num_classes, dtype=np.int64), per_class)
    uniform = rng.random((len(y), time_steps, num_inputs), dtype=np.float32)
    x = (uniform < templates[y][:, None, :]).astype(np.float32)
    return ArraySplit(x, y)
