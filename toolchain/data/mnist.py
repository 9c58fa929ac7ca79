"""MNIST and Fashion-MNIST from their four official IDX files.

Layout: ``<data_root>/<name>/`` (``name`` is ``mnist`` or ``fashion-mnist``) holds
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz``, or the same files un-gzipped (without ``.gz``).

The IDX format is a big-endian header (a magic number ``0x0000TTDD``: two zero bytes, the type code
``TT`` = ``0x08`` for unsigned bytes and the number of dimensions ``DD``, then one ``uint32`` per
dimension) followed by the values. The header is checked strictly: magic number, type code, number
of dimensions, image size (28×28), payload size and the agreement of image and label counts. Any
mismatch is a :class:`DataError` naming the file and what was expected.

Samples are ``uint8`` shaped ``(1, 28, 28)``; the arrays are read-only views of the decompressed
file (no extra copy), except when ``limit_train``/``limit_test`` keep only the first N.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.data.base import ArraySplit, Dataset, DatasetShape
from toolchain.errors import DataError
from toolchain.schema import bounded

#: this module serves several datasets: ``load`` takes the dataset name too
SERVES_SEVERAL = True

IMAGE_SIZE = 28
#: refuse an IDX file larger than this (decompressed): the official train images are 47 MB, so a
#: bigger file is a decompression bomb or the wrong file, and is not read into memory
MAX_IDX_BYTES = 1024**3
#: IDX type code of unsigned bytes, the only one these files use
IDX_UBYTE = 0x08
IDX_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}

#: split -> (images file, labels file), without the ``.gz`` suffix
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASSES: dict[str, tuple[str, ...]] = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}


@dataclass(frozen=True)
class Options:
    """``[data.options]`` of MNIST and Fashion-MNIST."""

    #: keep only the first N training images (quick runs); all when unset
    limit_train: int | None = bounded(None, gt=0)
    #: keep only the first N test images; all when unset
    limit_test: int | None = bounded(None, gt=0)


def shape(options: Options, name: str) -> DatasetShape:
    """``(1, 28, 28)`` images and the classes of ``name``, without reading the files."""
    if name not in CLASSES:
        raise DataError(f"the MNIST loader serves {', '.join(sorted(CLASSES))}, not {name!r}")
    return DatasetShape((1, IMAGE_SIZE, IMAGE_SIZE), CLASSES[name])


def load(data_root: Path, options: Options, name: str) -> Dataset:
    """Load ``name`` (``"mnist"`` or ``"fashion-mnist"``) from ``<data_root>/<name>/``.

    Returns ``uint8`` images shaped ``[N, 1, 28, 28]`` and ``int64`` labels 0-9 (60,000 train and
    10,000 test images for the official files). Raises :class:`DataError` naming the missing or
    corrupt file.
    """
    if name not in CLASSES:
        raise DataError(f"the MNIST loader serves {', '.join(sorted(CLASSES))}, not {name!r}")
    folder = data_root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; {_layout(name)}")
    limits = {"train": options.limit_train, "test": options.limit_test}
    splits = {split: _load_split(folder, name, split, limits[split]) for split in FILES}
    return Dataset(
        name=name,
        train=splits["train"],
        test=splits["test"],
        classes=CLASSES[name],
        sample_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
        source=f"{folder} (official IDX files)",
    )


def _layout(name: str) -> str:
    files = ", ".join(f"{stem}.gz" for pair in FILES.values() for stem in pair)
    return (
        f"expected {name}/ under the data root holding the four IDX files {files} (or the same without .gz)"
    )


def _load_split(folder: Path, name: str, split: str, limit: int | None) -> ArraySplit:
    images_stem, labels_stem = FILES[split]
    images_path, images_bytes = _read(folder, name, images_stem)
    images = _parse_idx(images_bytes, images_path, ndim=3)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    labels_path, labels_bytes = _read(folder, name, labels_stem)
    labels = _parse_idx(labels_bytes, labels_path, ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "expected the same count"
        )
    if len(labels) and labels.max() >= len(CLASSES[name]):
        raise DataError(f"{labels_path}: label {int(labels.max())} found, expected labels 0-9")
    x = images.reshape(len(images), 1, IMAGE_SIZE, IMAGE_SIZE)
    y = labels.astype(np.int64)
    if limit is not None and limit < len(y):
        x, y = x[:limit].copy(), y[:limit]  # copy so that the full buffer can be freed
    return ArraySplit(x, y)


def _read(folder: Path, name: str, stem: str) -> tuple[Path, bytes]:
    """The decompressed bytes of ``stem.gz`` (preferred) or of the un-gzipped ``stem``."""
    gz_path = folder / f"{stem}.gz"
    if gz_path.is_file():
        try:
            with gzip.open(gz_path, "rb") as f:
                data = f.read(MAX_IDX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{gz_path}: corrupt or truncated gzip file ({exc})") from None
        _check_size(gz_path, len(data))
        return gz_path, data
    raw_path = folder / stem
    if raw_path.is_file():
        try:
            _check_size(raw_path, raw_path.stat().st_size)
            return raw_path, raw_path.read_bytes()
        except OSError as exc:
            raise DataError(f"{raw_path}: cannot read ({exc})") from None
    raise DataError(f"{gz_path}: file not found (nor {raw_path.name}); {_layout(name)}")


def _check_size(path: Path, size: int) -> None:
    if size > MAX_IDX_BYTES:
        raise DataError(
            f"{path}: holds more than {MAX_IDX_BYTES / 1024**3:.0f} GiB (decompressed); an MNIST IDX "
            "file is at most 47 MB"
        )


def _parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """The ``uint8`` array of an IDX file with ``ndim`` dimensions, checked against its header."""
    expected_magic = (IDX_UBYTE << 8) | ndim
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes), expected at least 4")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x} ({_describe_magic(magic)}); expected "
            f"0x{expected_magic:08x} (unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes), expected {header_size} bytes "
            f"for {ndim} dimension{'s' if ndim > 1 else ''}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected_size = math.prod(dims)  # exact: numpy's int64 product wraps around for huge headers
    payload = len(data) - header_size
    if payload != expected_size:
        problem = "truncated" if payload < expected_size else "has trailing bytes"
        raise DataError(
            f"{path}: {problem}: the header declares dimensions {'x'.join(map(str, dims))} "
            f"({expected_size} bytes) but the payload has {payload} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected_size, offset=header_size).reshape(dims)


def _describe_magic(magic: int) -> str:
    if magic >> 16:
        return "not an IDX file: the first two bytes must be zero"
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    type_name = IDX_TYPE_NAMES.get(type_code, f"unknown type code 0x{type_code:02x}")
    return f"{type_name}, {ndim} dimension{'s' if ndim != 1 else ''}"
