"""CIFAR-10: 60,000 colour 32×32 images of 10 classes, from the official batches or from image files.

Under ``<data_root>/cifar10/`` the ``source`` option picks one of (``auto`` tries them in this order):

``batches``
    The official python batches: the folder ``cifar-10-batches-py/`` (``data_batch_1`` …
    ``data_batch_5``, ``test_batch``, ``batches.meta``) or its archive ``cifar-10-python.tar.gz``.
    The batches are pickles; they are read with a restricted unpickler that only builds plain
    containers and numpy arrays, so a tampered file cannot run code (it is refused with a
    :class:`DataError`).
``images``
    Class folders of images, ``train/<class>/*.jpg|png`` and ``test/<class>/*.jpg|png``, either
    directly under ``cifar10/`` or inside an archive there (such as ``cifar10_jpeg_yoongikim.tar.gz``,
    unpacked once into the cache). When ``cifar10_jpeg_order_index.npz`` lies beside them, it puts
    the images into the official order with the official labels (its ``y_<split>`` holds the label
    of each official position and ``<split>_perclass_index`` the rank of that image among its class
    folder's files, sorted by number); without it the images get a fixed pseudo-random order (so
    that the first N cover every class). Decoding 60,000 images takes a while, so the decoded
    ``uint8`` arrays are cached as ``.npy`` files in :func:`~toolchain.data.base.cache_dir` and
    memory-mapped on later loads.
``exact-subset``
    ``cifar10_exact_subset.npz``: exact pixels of a part of the official data (5,085 train and
    1,017 test images of the project's shared data).

Samples are ``uint8`` shaped ``(3, 32, 32)`` (channels R, G, B); labels are ``int64`` 0-9. Class
names come from ``batches.meta`` (in the batches folder or in ``cifar10/``) when present, else from
the class folders. ``limit_train``/``limit_test`` keep the first N images and decode only those.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from toolchain.data.archive import unpacked
from toolchain.data.base import ArraySplit, Dataset, DatasetShape, cache_dir
from toolchain.errors import DataError, ToolchainError
from toolchain.io import atomic_write
from toolchain.schema import bounded, choice

SOURCES = ("auto", "batches", "images", "exact-subset")
#: the official label names, in label order (as in ``batches.meta``)
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SAMPLE_SHAPE = (3, 32, 32)
SPLITS = ("train", "test")

BATCHES_DIR = "cifar-10-batches-py"
BATCHES_ARCHIVE = "cifar-10-python.tar.gz"
BATCH_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
META_FILE = "batches.meta"
ORDER_INDEX = "cifar10_jpeg_order_index.npz"
EXACT_SUBSET = "cifar10_exact_subset.npz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
#: seed of the fixed order of image folders that come without an order index
IMAGE_ORDER_SEED = 0
#: bump when the decoded cache format changes
CACHE_VERSION = "1"

LAYOUT = (
    f"expected under cifar10/ one of: {BATCHES_DIR}/ (data_batch_1..5, test_batch, batches.meta) or "
    f"{BATCHES_ARCHIVE}; train/<class>/*.jpg|png and test/<class>/*.jpg|png, or an archive holding "
    f"them; or {EXACT_SUBSET}"
)


@dataclass(frozen=True)
class Options:
    """``[data.options]`` of CIFAR-10."""

    #: where the images come from; ``auto`` prefers batches, then images, then the exact subset
    source: str = choice(*SOURCES, default="auto")
    #: keep only the first N training images (and decode only those); all when unset
    limit_train: int | None = bounded(None, gt=0)
    #: keep only the first N test images; all when unset
    limit_test: int | None = bounded(None, gt=0)


def shape(options: Options) -> DatasetShape:
    """``(3, 32, 32)`` images and the ten classes, without reading the files."""
    return DatasetShape(SAMPLE_SHAPE, CLASSES)


def load(data_root: Path, options: Options) -> Dataset:
    """Load CIFAR-10 from ``<data_root>/cifar10/`` (see the module docstring for the layouts).

    Returns ``uint8`` images ``[N, 3, 32, 32]`` (possibly memory-mapped, read-only) and ``int64``
    labels. Raises :class:`DataError` naming the missing or corrupt file.
    """
    folder = data_root / "cifar10"
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; {LAYOUT}")
    limits = {"train": options.limit_train, "test": options.limit_test}
    source = options.source if options.source != "auto" else _detect_source(folder)
    if source == "batches":
        splits, classes, described = _load_batches(folder, data_root, limits)
    elif source == "images":
        splits, classes, described = _load_images(folder, data_root, limits)
    elif source == "exact-subset":
        splits, classes, described = _load_exact_subset(folder, limits)
    else:  # pragma: no cover - Options.source is validated
        raise DataError(f"unknown CIFAR-10 source {source!r}")
    return Dataset(
        name="cifar10",
        train=splits["train"],
        test=splits["test"],
        classes=classes,
        sample_shape=SAMPLE_SHAPE,
        source=described,
    )


def _detect_source(folder: Path) -> str:
    if (folder / BATCHES_DIR).is_dir() or (folder / BATCHES_ARCHIVE).is_file():
        return "batches"
    if _image_tree_in(folder) is not None or _image_archives(folder):
        return "images"
    if (folder / EXACT_SUBSET).is_file():
        return "exact-subset"
    raise DataError(f"{folder}: no CIFAR-10 data found; {LAYOUT}")


# --- restricted unpickling ------------------------------------------------------------------------

#: the only globals a CIFAR-10 pickle may name: numpy's array reconstruction (numpy 1.x and 2.x)
ALLOWED_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle names a global that :class:`RestrictedUnpickler` does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, strings, numbers and numpy arrays.

    Any other global (``os.system``, ``builtins.eval``, a class) is refused, so loading a tampered
    file cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_PICKLE_GLOBALS:
            found = super().find_class(module, name)
            return _empty_reconstruct(found) if name == "_reconstruct" else found
        raise RefusedGlobalError(f"refusing to load global {module}.{name}")


def _empty_reconstruct(reconstruct: Any) -> Any:
    """numpy's ``_reconstruct``, allowed only for the empty array numpy's own pickles start from
    (``_reconstruct(ndarray, (0,), b'b')``, then ``__setstate__`` with the shape and the data, whose
    length numpy checks). Any other shape would be an array of uninitialised memory of a size the
    file declares without holding its bytes."""

    def empty_only(subtype: Any, shape: Any, dtype: Any) -> Any:
        dims = shape if isinstance(shape, tuple) else (shape,)
        if not all(isinstance(d, int) for d in dims) or math.prod(dims) != 0:
            raise RefusedGlobalError(f"refusing an array of shape {str(dims)[:80]} declared without its data")
        return reconstruct(subtype, shape, dtype)

    return empty_only


def restricted_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding='bytes'``, as the official
    Python 2 batches need: their keys come back as ``bytes``). Raises :class:`DataError`.

    The opcodes are scanned first (:func:`pickletools.genops` on the bytes in memory), so a length
    field larger than the file (a corrupt or hostile ``BINBYTES`` of 10^12 bytes) is refused
    before the unpickler would allocate what it declares.
    """
    try:
        data = path.read_bytes()
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
        return _unpickle(io.BytesIO(data))
    except RefusedGlobalError as exc:
        raise DataError(
            f"{path}: refused pickle ({exc}); expected a CIFAR-10 batch holding only dicts, lists, "
            "strings, numbers and numpy arrays (a pickle naming other objects could run code)"
        ) from None
    except (
        pickle.UnpicklingError,
        OSError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise DataError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None


def _unpickle(f: BinaryIO) -> Any:
    return RestrictedUnpickler(f, encoding="bytes").load()


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _read_meta(path: Path) -> tuple[str, ...]:
    """The label names of a ``batches.meta`` file."""
    names = _str_keys(restricted_load(path), path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: expected 'label_names', a list of {len(CLASSES)} strings")
    decoded = tuple(n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n for n in names)
    if len(decoded) != len(CLASSES):
        raise DataError(f"{path}: {len(decoded)} label names, expected {len(CLASSES)}")
    return decoded


def _meta_classes(*candidates: Path) -> tuple[str, ...] | None:
    for path in candidates:
        if path.is_file():
            return _read_meta(path)
    return None


# --- official python batches ----------------------------------------------------------------------


def _load_batches(
    folder: Path, data_root: Path, limits: dict[str, int | None]
) -> tuple[dict[str, ArraySplit], tuple[str, ...], str]:
    batches, origin = _batches_dir(folder, data_root)
    classes = _meta_classes(batches / META_FILE, folder / META_FILE) or CLASSES
    splits = {split: _read_batches(batches, BATCH_FILES[split], limits[split]) for split in SPLITS}
    return splits, classes, f"{origin} (official python batches)"


def _batches_dir(folder: Path, data_root: Path) -> tuple[Path, Path]:
    """The batches folder and where it came from (itself or its archive)."""
    direct = folder / BATCHES_DIR
    if direct.is_dir():
        return direct, direct
    archive = folder / BATCHES_ARCHIVE
    if not archive.is_file():
        raise DataError(f"{direct}: folder not found (nor {archive.name}); {LAYOUT}")
    inside = unpacked(archive, data_root) / BATCHES_DIR
    if not inside.is_dir():
        raise DataError(f"{archive}: expected a folder {BATCHES_DIR}/ inside the archive")
    return inside, archive


def _read_batches(batches: Path, names: Sequence[str], limit: int | None) -> ArraySplit:
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for name in names:
        if limit is not None and sum(len(y) for y in ys) >= limit:
            break  # the first N are loaded: skip the remaining batch files
        path = batches / name
        if not path.is_file():
            raise DataError(f"{path}: file not found; {LAYOUT}")
        x, y = _batch_arrays(path)
        xs.append(x)
        ys.append(y)
    x_all = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y_all = np.concatenate(ys) if len(ys) > 1 else ys[0]
    if limit is not None and limit < len(y_all):
        x_all, y_all = x_all[:limit].copy(), y_all[:limit]  # copy: let the rest be freed
    return ArraySplit(x_all, y_all)


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 3, 32, 32]`` and labels ``int64 [N]`` of one batch file."""
    entries = _str_keys(restricted_load(path), path)
    data = entries.get("data")
    pixels = int(np.prod(SAMPLE_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: expected 'data', a uint8 array shaped [N, {pixels}], got {got}")
    if data.shape[1] != pixels:
        raise DataError(f"{path}: 'data' has {data.shape[1]} values per image, expected {pixels}")
    y = _int_vector(entries.get("labels"))
    if y is None or y.shape != (len(data),):
        raise DataError(f"{path}: expected 'labels', a list of {len(data)} integers (one per image)")
    if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels outside 0..{len(CLASSES) - 1}")
    return data.reshape(len(data), *SAMPLE_SHAPE), y


def _int_vector(values: Any) -> np.ndarray | None:
    """``values`` (a list of ints or an integer array) as ``int64``, or None if it is not that."""
    if isinstance(values, np.ndarray):
        return values.astype(np.int64) if np.issubdtype(values.dtype, np.integer) else None
    if isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        try:
            return np.asarray(values, dtype=np.int64).reshape(len(values))
        except OverflowError:
            return None
    return None


# --- class folders of images ----------------------------------------------------------------------


def _load_images(
    folder: Path, data_root: Path, limits: dict[str, int | None]
) -> tuple[dict[str, ArraySplit], tuple[str, ...], str]:
    tree, origin = _image_tree(folder, data_root)
    index_path = folder / ORDER_INDEX
    meta = _meta_classes(folder / META_FILE, tree / META_FILE)
    if index_path.is_file():
        classes = meta or CLASSES
    else:
        classes = meta or tuple(d.name for d in _class_dirs(tree / "train"))
    splits = {}
    for split in SPLITS:
        per_class, key = _list_class_files(tree / split, classes)
        if index_path.is_file():
            files, labels = _official_order(per_class, index_path, split)
            key.update(_stat_text(index_path).encode())
        else:
            files, labels = _fixed_order(per_class)
            key.update(f"fixed order, seed {IMAGE_ORDER_SEED}".encode())
        count = len(files) if limits[split] is None else min(limits[split], len(files))
        cache = cache_dir(data_root) / "cifar10" / f"{split}-{key.hexdigest()[:20]}.npy"
        x = _decoded(files, count, cache, f"decoding CIFAR-10 {split}")
        splits[split] = ArraySplit(x, labels[:count])
    order = f", official order from {index_path}" if index_path.is_file() else ", fixed shuffled order"
    return splits, classes, f"{origin} (class folders of images{order})"


def _image_tree(folder: Path, data_root: Path) -> tuple[Path, Path]:
    """The folder holding ``train/`` and ``test/`` class folders, and where it came from."""
    tree = _image_tree_in(folder)
    if tree is not None:
        return tree, tree
    archives = _image_archives(folder)
    if not archives:
        raise DataError(f"{folder}: no train/ and test/ image folders nor an archive of them; {LAYOUT}")
    archive = archives[0]
    tree = _image_tree_in(unpacked(archive, data_root), depth=1)
    if tree is None:
        raise DataError(
            f"{archive}: expected train/<class>/*.jpg|png and test/<class>/*.jpg|png inside the archive"
        )
    return tree, archive


def _image_tree_in(folder: Path, depth: int = 0) -> Path | None:
    """``folder`` if it holds ``train/`` and ``test/``, else such a sub-folder down to ``depth``."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    if depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            found = _image_tree_in(sub, depth - 1)
            if found is not None:
                return found
    return None


def _image_archives(folder: Path) -> list[Path]:
    """Archives under ``cifar10/`` other than the official batches archive, sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES) and p.name != BATCHES_ARCHIVE
    )


def _class_dirs(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: folder not found; {LAYOUT}")
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_class_files(split_dir: Path, classes: Sequence[str]) -> tuple[list[list[str]], Any]:
    """The image files (paths as ``str``) of each class in label order, sorted by number
    (``0000.jpg`` …), and a running sha256 of the listing (names, sizes, modification times)."""
    found = {d.name: d for d in _class_dirs(split_dir)}
    if set(found) != set(classes):
        raise DataError(
            f"{split_dir}: class folders {sorted(found)}, expected one folder per class: {sorted(classes)}"
        )
    key = hashlib.sha256(f"cifar10-decoded-v{CACHE_VERSION}\0{split_dir.resolve()}\n".encode())
    per_class = []
    for name in classes:
        entries = [
            e for e in os.scandir(found[name]) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
        ]
        if not entries:
            raise DataError(f"{found[name]}: no .jpg or .png images found")
        entries.sort(key=_file_order)
        for e in entries:
            st = e.stat()
            key.update(f"{name}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        per_class.append([e.path for e in entries])
    return per_class, key


def _file_order(entry: os.DirEntry[str]) -> tuple[int, int, str]:
    stem = entry.name.rsplit(".", 1)[0]
    return (0, int(stem), entry.name) if stem.isdigit() else (1, 0, entry.name)


def _stat_text(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n"


def _official_order(per_class: list[list[str]], index_path: Path, split: str) -> tuple[list[str], np.ndarray]:
    """Files and labels in the official order given by the order index."""
    labels, ranks = _read_order_index(index_path, split)
    counts = np.bincount(labels, minlength=len(per_class))
    actual = [len(files) for files in per_class]
    if len(counts) != len(per_class) or counts.tolist() != actual:
        raise DataError(
            f"{index_path}: expects {counts.tolist()} {split} images per class, but the class folders "
            f"hold {actual}"
        )
    for label, files in enumerate(per_class):
        if not np.array_equal(np.sort(ranks[labels == label]), np.arange(len(files))):
            raise DataError(
                f"{index_path}: {split}_perclass_index of class {label} is not a permutation "
                f"of 0..{len(files) - 1}"
            )
    files = [per_class[label][rank] for label, rank in zip(labels.tolist(), ranks.tolist(), strict=True)]
    return files, labels


def _read_order_index(index_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    keys = (f"y_{split}", f"{split}_perclass_index")
    try:
        with np.load(index_path, allow_pickle=False) as npz:
            labels, ranks = (np.asarray(npz[k]) for k in keys)
    except KeyError:
        raise DataError(f"{index_path}: expected arrays {', '.join(keys)}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{index_path}: corrupt order index ({exc})") from None
    if (
        labels.ndim != 1
        or labels.shape != ranks.shape
        or not (np.issubdtype(labels.dtype, np.integer) and np.issubdtype(ranks.dtype, np.integer))
    ):
        raise DataError(f"{index_path}: expected {keys[0]} and {keys[1]} as integer vectors of equal length")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{index_path}: {keys[0]} holds labels outside 0..{len(CLASSES) - 1}")
    return labels.astype(np.int64), ranks.astype(np.int64)


def _fixed_order(per_class: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """All files with their labels, in a fixed pseudo-random order (seeded, so reproducible)."""
    files = [f for group in per_class for f in group]
    labels = np.concatenate([np.full(len(g), label, dtype=np.int64) for label, g in enumerate(per_class)])
    order = np.random.default_rng(IMAGE_ORDER_SEED).permutation(len(files))
    return [files[i] for i in order], labels[order]


def _decoded(files: list[str], count: int, cache: Path, description: str) -> np.ndarray:
    """The first ``count`` images of ``files`` decoded, ``uint8 [count, 3, 32, 32]``.

    A complete split is cached as ``.npy`` at ``cache`` and memory-mapped (read-only) from then on.
    A limited load (``count < len(files)``) uses that cache when it exists, else decodes only its
    images and caches nothing.
    """
    cached = _load_cached(cache, len(files))
    if cached is not None:
        return cached[:count]
    x = _decode_images(files[:count], description)
    if count == len(files):
        _save_atomic(cache, x)
        cached = _load_cached(cache, len(files))
        if cached is not None:
            return cached
    return x


def _load_cached(path: Path, count: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None  # an unreadable cache is decoded again
    if x.dtype != np.uint8 or x.shape != (count, *SAMPLE_SHAPE):
        return None
    return x


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically; a cache that cannot be written is only a warning."""
    try:
        atomic_write(path, lambda f: np.save(f, array))
    except ToolchainError as exc:
        warnings.warn(f"cannot cache decoded images: {exc}", stacklevel=3)


def _decode_images(files: list[str], description: str) -> np.ndarray:
    out = np.empty((len(files), *SAMPLE_SHAPE), dtype=np.uint8)
    for i, path in enumerate(tqdm(files, desc=description, unit="img", disable=None, leave=False)):
        out[i] = decode_image(path)
    return out


def decode_image(path: str | Path) -> np.ndarray:
    """One 32×32 JPEG or PNG image as ``uint8 [3, 32, 32]`` (R, G, B); greyscale/palette become RGB."""
    try:
        with Image.open(path, formats=("JPEG", "PNG")) as im:
            size = im.size
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            raw = rgb.tobytes() if size == (32, 32) else b""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    if size != (32, 32):
        raise DataError(f"{path}: image is {size[0]}x{size[1]}, expected 32x32")
    return np.frombuffer(raw, dtype=np.uint8).reshape(32, 32, 3).transpose(2, 0, 1)


# --- exact subset ---------------------------------------------------------------------------------


def _load_exact_subset(
    folder: Path, limits: dict[str, int | None]
) -> tuple[dict[str, ArraySplit], tuple[str, ...], str]:
    path = folder / EXACT_SUBSET
    if not path.is_file():
        raise DataError(f"{path}: file not found; {LAYOUT}")
    classes = _meta_classes(folder / META_FILE) or CLASSES
    splits = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for split in SPLITS:
                x, y = npz[f"x_{split}"], npz[f"y_{split}"]
                limit = limits[split]
                splits[split] = _checked_subset(path, split, x[:limit], y[:limit])
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt file ({exc})") from None
    return splits, classes, f"{path} (exact subset of the official images)"


def _checked_subset(path: Path, split: str, x: np.ndarray, y: np.ndarray) -> ArraySplit:
    if x.dtype != np.uint8 or x.shape[1:] != SAMPLE_SHAPE:
        raise DataError(f"{path}: x_{split} is {x.dtype} {x.shape}, expected uint8 [N, 3, 32, 32]")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y_{split} must be {len(x)} integer labels, got {y.dtype} {y.shape}")
    return ArraySplit(x, y.astype(np.int64))
