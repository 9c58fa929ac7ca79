"""A user's own input for a deployed network: a ``.npy`` array (and labels), checked before it runs.

``toolchain simulate --input FILE.npy`` and ``toolchain energy --input FILE.npy`` run a network on
the samples of one NumPy array (``numpy.save``) instead of the dataset its metadata names.
:func:`read_input_file` checks it against the network and returns it in the layout the simulators
take (:func:`toolchain.sim.reference.simulate`):

- graded input (``input_encoding == "graded"``): floats in [0, 1], ``[B, *input_shape]`` (the same
  sample at every step, as the toolchain's ``direct`` encoding), or ``[B, T, *input_shape]`` holding
  that same sample at each of the ``T`` steps (the simulators send one 8-bit payload per sample for
  the whole inference, so a sample that changes over time is refused);
- spike input (``"spikes"``): 0/1 values ``[B, T, *input_shape]`` (bool, integer or float), the
  spikes of each of the ``T`` steps; they are handed on time-major, ``[T, B, *input_shape]``.

``T`` must equal the network's time steps. The sample axes may also come flattened to one axis of
``prod(input_shape)`` values. Labels (optional) are a ``.npy`` of ``B`` integer class indices.
Every problem is a one-line :class:`~toolchain.errors.SimulationError` naming the file and what
was expected: a missing or unreadable file, an ``.npz`` archive, a wrong dtype, a shape that does
not fit, NaN or infinite values, graded values outside [0, 1], spikes other than 0 and 1, a ``T``
other than the network's, labels of the wrong count, type or range.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolchain import ir
from toolchain.config import EncodingConfig
from toolchain.errors import SimulationError
from toolchain.sim.inputs import first_samples

#: the first bytes of every ``.npy`` file (``numpy.lib.format.MAGIC_PREFIX``)
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class FileInputs:
    """Inputs read from a file, as :class:`toolchain.sim.inputs.NetworkInputs` holds a dataset's:
    ``inputs`` in the simulators' layout, ``labels`` ``[B]`` (``None`` when none were given), the
    ``encoding`` they amount to (``direct`` for graded, ``spikes``) and the ``source`` file."""

    inputs: np.ndarray
    labels: np.ndarray | None
    encoding: EncodingConfig
    source: Path

    @property
    def samples(self) -> int:
        return int(self.inputs.shape[0] if self.encoding.scheme == "direct" else self.inputs.shape[1])

    def torch_input(self, network: ir.Network) -> torch.Tensor:
        """The same inputs as a time-major float64 ``[T, B, *input_shape]`` for a torch model."""
        x = torch.from_numpy(np.asarray(self.inputs, dtype=np.float64))
        if network.input_encoding == "graded":
            return x.unsqueeze(0).expand(network.time_steps, *x.shape)
        return x


def input_layout(network: ir.Network) -> str:
    """The layouts ``network`` takes, in words (for help texts and errors)."""
    shape = ", ".join(str(size) for size in network.input_shape)
    if network.input_encoding == "graded":
        return f"floats in [0, 1] of shape [B, {shape}] or [B, T={network.time_steps}, {shape}]"
    return f"0/1 spikes of shape [B, T={network.time_steps}, {shape}]"


def read_input_file(
    path: str | Path,
    network: ir.Network,
    *,
    labels: str | Path | None = None,
    samples: int | None = None,
    steps_from: str = "",
) -> FileInputs:
    """The samples of the ``.npy`` file ``path`` as ``network``'s inputs (see the module docstring).

    ``labels``: a ``.npy`` of one class index per sample; ``samples``: keep the first N;
    ``steps_from``: where the network's time steps come from, for the error when ``T`` differs
    (e.g. ``"--time-steps"``).
    """
    path = Path(path)
    x = _load(path, "input")
    if x.dtype.kind not in "biuf" or x.dtype.names is not None:
        raise SimulationError(f"{path}: dtype {x.dtype}: expected numbers ({input_layout(network)})")
    x = _shaped(path, x, network, steps_from)
    count = int(x.shape[0])
    if count == 0:
        raise SimulationError(f"{path}: holds no samples (B = 0)")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            what = "NaN" if np.isnan(x).any() else "infinite values"
            raise SimulationError(f"{path}: holds {what}: {int(bad.sum())} of {x.size} values not finite")
    if network.input_encoding == "graded":
        if x.dtype.kind != "f":
            raise SimulationError(
                f"{path}: dtype {x.dtype}: graded input must be floats in [0, 1] (scale integers first, "
                "e.g. 8-bit pixels / 255)"
            )
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise SimulationError(
                f"{path}: values span [{low:g}, {high:g}]: graded input must lie in [0, 1] "
                "(the 8-bit payload round(x * 255))"
            )
        if x.ndim == 1 + len(network.input_shape) + 1:  # [B, T, *shape]: one sample for every step
            changing = np.any(x != x[:, :1], axis=tuple(range(2, x.ndim)))
            if changing.any():
                sample, step = (int(i) for i in np.argwhere(changing)[0])
                raise SimulationError(
                    f"{path}: graded sample {sample} changes at step {step}: the simulators send one graded "
                    "sample for all the steps of an inference; give [B, *input_shape] (or the same "
                    "sample at every step)"
                )
            x = x[:, 0]
        inputs = np.ascontiguousarray(x, dtype=np.float64)
        encoding = EncodingConfig(scheme="direct", time_steps=network.time_steps)
    else:
        if x.dtype.kind != "b":
            other = (x != 0) & (x != 1)
            if other.any():
                example = x[other].reshape(-1)[0]
                raise SimulationError(
                    f"{path}: spike input must be 0 or 1; {int(other.sum())} of {x.size} values are not "
                    f"(e.g. {example:g})"
                )
        inputs = np.ascontiguousarray(np.moveaxis(x, 1, 0), dtype=np.uint8)
        encoding = EncodingConfig(scheme="spikes", time_steps=network.time_steps)
    y = read_labels(labels, count, network.num_classes) if labels is not None else None
    if samples is not None:
        keep = min(samples, count)
        inputs = first_samples(network, inputs, keep)
        y = None if y is None else y[:keep]
    return FileInputs(inputs, y, encoding, path)


def read_labels(path: str | Path, count: int, classes: int) -> np.ndarray:
    """``count`` integer class indices in ``[0, classes)`` from the ``.npy`` file ``path``."""
    path = Path(path)
    y = _load(path, "labels")
    if y.ndim != 1 or y.shape[0] != count:
        raise SimulationError(f"{path}: labels of shape {y.shape}: expected [B] = [{count}], one per sample")
    if y.dtype.kind not in "iu":
        raise SimulationError(f"{path}: labels of dtype {y.dtype}: expected integer class indices")
    if count and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise SimulationError(
            f"{path}: labels span [{int(y.min())}, {int(y.max())}]: the network has {classes} classes "
            f"(0 to {classes - 1})"
        )
    return y.astype(np.int64)


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise SimulationError(f"{path}: no such {what} file (expected a .npy array written by numpy.save)")
    if zipfile.is_zipfile(path):
        raise SimulationError(f"{path}: an .npz archive; expected one .npy array (numpy.save, not savez)")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            raise SimulationError(
                f"{path}: not a .npy file (it does not start with numpy's {NPY_MAGIC!r} header); "
                "write the array with numpy.save"
            )
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:  # pickled objects (an object array), or a corrupt header
        detail = "it holds Python objects" if "pickle" in str(exc) else str(exc).splitlines()[0][:120]
        raise SimulationError(f"{path}: not a .npy array of numbers ({detail})") from None
    except (OSError, EOFError) as exc:
        raise SimulationError(f"{path}: cannot read the {what} file ({exc})") from None
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load returns an array or an archive
        raise SimulationError(f"{path}: expected one .npy array, found {type(array).__name__}")
    return array


def _shaped(path: Path, x: np.ndarray, network: ir.Network, steps_from: str) -> np.ndarray:
    """``x`` as ``[B, *input_shape]`` or ``[B, T, *input_shape]`` (sample axes possibly flattened)."""
    shape = network.input_shape
    size = math.prod(shape)
    graded = network.input_encoding == "graded"
    timed: np.ndarray | None = None
    if graded and x.shape[1:] == shape:
        return x
    if graded and x.ndim == 2 and x.shape[1] == size:
        return x.reshape(x.shape[0], *shape)
    if x.ndim >= 3 and x.shape[2:] == shape:
        timed = x
    elif x.ndim == 3 and x.shape[2] == size:
        timed = x.reshape(*x.shape[:2], *shape)
    if timed is None:
        raise SimulationError(
            f"{path}: shape {x.shape} does not fit the network's input {shape}: expected "
            f"{input_layout(network)}"
        )
    if timed.shape[1] != network.time_steps:
        origin = f" ({steps_from})" if steps_from else ""
        raise SimulationError(
            f"{path}: shape {x.shape} holds T = {timed.shape[1]} time steps, the network runs "
            f"{network.time_steps}{origin}"
        )
    return timed


__all__ = ["FileInputs", "input_layout", "read_input_file", "read_labels"]
