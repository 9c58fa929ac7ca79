"""Image dataset loaders: digits, MNIST, Fashion-MNIST and CIFAR-10.

Tests on the real data read ``../shared/data`` (skipped with a reason when absent); every bad-input
test builds its files in ``tmp_path`` and never touches the shared data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.data import cifar10 as cifar10_module
from toolchain.data import dataset_options, load_dataset
from toolchain.errors import DataError, RecipeError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

needs_mnist = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/data/mnist not present")
needs_fashion = pytest.mark.skipif(
    not (SHARED / "fashion-mnist").is_dir(), reason="../shared/data/fashion-mnist not present"
)
needs_cifar_subset = pytest.mark.skipif(
    not (SHARED / "cifar10" / "cifar10_exact_subset.npz").is_file(),
    reason="../shared/data/cifar10/cifar10_exact_subset.npz not present",
)
needs_cifar_jpeg = pytest.mark.skipif(
    not (SHARED / "cifar10" / "cifar10_jpeg_yoongikim.tar.gz").is_file()
    or not (SHARED / "cifar10" / "cifar10_exact_subset.npz").is_file(),
    reason="../shared/data/cifar10 JPEG archive or exact subset not present",
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Unpacked archives and decoded images of tmp-built data go to a throw-away cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLCHAIN_CACHE", str(cache))
    return cache


# --- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_range_and_stratified_split() -> None:
    ds = load_dataset("digits")
    assert ds.sample_shape == (64,)
    assert ds.train.x.shape == (1347, 64) and ds.test.x.shape == (450, 64)
    assert ds.train.x.dtype == np.float32
    assert ds.train.x.min() == 0.0 and ds.train.x.max() == 1.0
    assert ds.classes == tuple("0123456789")
    share = np.bincount(ds.test.y, minlength=10) / np.bincount(np.concatenate([ds.train.y, ds.test.y]))
    assert np.all(np.abs(share - 0.25) < 0.02)  # stratified
    assert sha256(ds.train.x[0]) == "4b7652a9ef9102fe7dcaa23c59b5cf8f0802cebff57905ca29650b7cd38948ac"
    assert ds.train.y[0] == 7


def test_digits_split_is_deterministic_and_seeded() -> None:
    a = load_dataset("digits", options={"seed": 3, "test_fraction": 0.5})
    b = load_dataset("digits", options={"seed": 3, "test_fraction": 0.5})
    c = load_dataset("digits", options={"seed": 4, "test_fraction": 0.5})
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.train.y, c.train.y)
    assert len(a.test) == 899


def test_digits_options_are_validated() -> None:
    with pytest.raises(RecipeError, match=r"\[data.options\].test_fraction"):
        dataset_options("digits", {"test_fraction": 1.0})
    with pytest.raises(RecipeError, match="unknown key"):
        dataset_options("digits", {"test_size": 0.2})


# --- MNIST and Fashion-MNIST on the shared data ---------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", SHARED)


@pytest.mark.shared_data
@needs_mnist
def test_mnist_shapes_counts_and_first_samples(mnist) -> None:
    assert mnist.sample_shape == (1, 28, 28)
    assert mnist.train.x.shape == (60000, 1, 28, 28) and mnist.train.x.dtype == np.uint8
    assert mnist.test.x.shape == (10000, 1, 28, 28) and mnist.test.x.dtype == np.uint8
    assert mnist.train.y.dtype == np.int64
    assert mnist.classes == tuple("0123456789")
    assert np.bincount(mnist.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test.y).tolist() == MNIST_TEST_COUNTS
    assert sha256(mnist.train.x[0]) == "23ceaef5eb61f0e70d64ac18fdf0f60df3d5971cf30bbadac7b6ebf07f782d2c"
    assert mnist.train.y[0] == 5
    assert sha256(mnist.test.x[0]) == "8f6a418c9a639f9e14e96feca47a97df2a35a0a68ae2875431c5c80e05536941"
    assert mnist.test.y[0] == 7


@pytest.mark.shared_data
@needs_mnist
def test_mnist_limits_take_the_first_images(mnist) -> None:
    small = load_dataset("mnist", SHARED, {"limit_train": 100, "limit_test": 10})
    assert small.train.x.shape == (100, 1, 28, 28) and len(small.test) == 10
    assert np.array_equal(small.train.x, mnist.train.x[:100])
    assert np.array_equal(small.test.y, mnist.test.y[:10])


@pytest.mark.shared_data
@needs_fashion
def test_fashion_mnist_shapes_counts_names_and_first_samples() -> None:
    ds = load_dataset("fashion-mnist", SHARED)
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.train.x.dtype == np.uint8
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10
    assert np.bincount(ds.train.y).tolist() == [6000] * 10
    assert np.bincount(ds.test.y).tolist() == [1000] * 10
    assert sha256(ds.train.x[0]) == "5bd44e331a6d6998daf675700cd0c13dcd7af8ab954b7585124124da61459e7b"
    assert ds.train.y[0] == 9
    assert sha256(ds.test.x[0]) == "ffc7351ed0f8bae542820866086177fa4e0b366b97bf9d998dffdb8dbe138787"
    assert ds.test.y[0] == 9


# --- MNIST: layouts and bad files built in tmp_path -----------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of a ``uint8`` array (``magic`` overrides the header's magic number)."""
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> dict[str, np.ndarray]:
    """Four small, valid IDX files in ``folder``; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_gzipped_and_plain_idx(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.train.x.shape == (6, 1, 28, 28) and ds.test.x.shape == (4, 1, 28, 28)
    assert np.array_equal(ds.train.x[:, 0], arrays["train-images-idx3-ubyte"])
    assert ds.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_mnist_uses_its_own_folder(tmp_path: Path) -> None:
    write_mnist(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist", tmp_path).classes[1] == "Trouser"
    with pytest.raises(DataError, match="mnist"):
        load_dataset("mnist", tmp_path)


def test_mnist_missing_folder_names_it_and_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "mnist") in message and "folder not found" in message
    assert all(f"{name}.gz" in message for name in MNIST_FILES)


def test_mnist_missing_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: file not found") as err:
        load_dataset("mnist", tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(err.value)  # the expected layout is listed


def test_mnist_truncated_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip"):
        load_dataset("mnist", tmp_path)


def test_mnist_truncated_payload(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated.*4x28x28 \(3136 bytes\)"):
        load_dataset("mnist", tmp_path)


def test_mnist_truncated_header(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: truncated IDX header"):
        load_dataset("mnist", tmp_path)


def test_mnist_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images, magic=0x00000D03)))  # float32 type code
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte\.gz: wrong IDX magic number 0x00000d03"
    ) as e:
        load_dataset("mnist", tmp_path)
    assert "expected 0x00000803" in str(e.value)


def test_mnist_labels_file_with_image_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((6, 28, 28), dtype=np.uint8))))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: wrong IDX magic.*expected 0x00000801"):
        load_dataset("mnist", tmp_path)


def test_mnist_count_mismatch_names_both_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(5, dtype=np.uint8))))
    with pytest.raises(DataError, match=r"holds 6 images but .*train-labels-idx1-ubyte\.gz holds 5 labels"):
        load_dataset("mnist", tmp_path)


def test_mnist_wrong_image_size_and_bad_label(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 32, 32), dtype=np.uint8))))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: images are 32x32, expected 28x28"):
        load_dataset("mnist", tmp_path)
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 12, 3], dtype=np.uint8))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: label 12"):
        load_dataset("mnist", tmp_path)


def test_mnist_limit_option_is_validated() -> None:
    with pytest.raises(RecipeError, match=r"\[data.options\].limit_train"):
        dataset_options("mnist", {"limit_train": 0})


# --- CIFAR-10 on the shared data ------------------------------------------------------------------


@pytest.mark.shared_data
@needs_cifar_subset
def test_cifar10_exact_subset() -> None:
    ds = load_dataset("cifar10", SHARED, {"source": "exact-subset"})
    assert ds.train.x.shape == (5085, 3, 32, 32) and ds.test.x.shape == (1017, 3, 32, 32)
    assert ds.train.x.dtype == np.uint8 and ds.train.y.dtype == np.int64
    assert ds.classes == cifar10_module.CLASSES  # read from the official (Python 2) batches.meta
    assert np.bincount(ds.train.y).tolist() == [517, 524, 490, 493, 537, 475, 503, 516, 529, 501]
    assert np.bincount(ds.test.y).tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    assert sha256(ds.train.x[0]) == "e052de7deb775f78e5e3b718032db5e72434ae6f0d34152c7ad434521631b17c"
    assert ds.train.y[0] == 6
    assert sha256(ds.test.x[0]) == "73eefb0106f2b7a2660668be6875682f6aa9c20820633725642b0cc87dc59198"
    assert ds.test.y[0] == 3


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.shared_data
@needs_cifar_jpeg
def test_cifar10_jpeg_limited_is_in_official_order() -> None:
    """The first JPEGs, put in the official order by the order index, match the exact pixels."""
    ds = load_dataset("cifar10", SHARED, {"limit_train": 200, "limit_test": 50})
    assert "cifar10_jpeg_yoongikim.tar.gz" in ds.source and "official order" in ds.source
    assert ds.train.x.shape == (200, 3, 32, 32) and ds.test.x.shape == (50, 3, 32, 32)
    assert ds.classes == cifar10_module.CLASSES
    with np.load(SHARED / "cifar10" / "cifar10_exact_subset.npz") as exact:
        assert np.array_equal(ds.train.y, exact["y_train"][:200])
        assert np.array_equal(ds.test.y, exact["y_test"][:50])
        assert psnr(ds.train.x, exact["x_train"][:200]) > 27.0  # lossy JPEG, about 30 dB
        assert psnr(ds.test.x, exact["x_test"][:50]) > 27.0


@pytest.mark.shared_data
@pytest.mark.slow
@needs_cifar_jpeg
def test_cifar10_jpeg_full_decode_then_memory_mapped_cache() -> None:
    """All 60,000 JPEGs (decoded once, then read from the cache as a memory map)."""
    ds = load_dataset("cifar10", SHARED)
    again = load_dataset("cifar10", SHARED)
    assert isinstance(again.train.x, np.memmap) and isinstance(again.test.x, np.memmap)
    assert ds.train.x.shape == (50000, 3, 32, 32) and ds.test.x.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.train.y).tolist() == [5000] * 10
    assert np.bincount(ds.test.y).tolist() == [1000] * 10
    assert sha256(again.train.x[0]) == "58a0e4e9d47b9a5fc96d9ea40b9420c9b72a5d08b17ae03185de2d72f478ec7e"
    assert again.train.y[0] == 6
    assert sha256(again.test.x[-1]) == sha256(ds.test.x[-1])
    with np.load(SHARED / "cifar10" / "cifar10_exact_subset.npz") as exact:
        assert np.array_equal(ds.train.y, exact["y_train_all50000"])
        assert np.array_equal(ds.test.y, exact["y_test_all10000"])
        positions = exact["train_global_index"]
        assert psnr(again.train.x[positions], exact["x_train"]) > 27.0


# --- CIFAR-10: layouts and bad files built in tmp_path --------------------------------------------


class Py2Pickler(pickle._Pickler):  # type: ignore[misc]  # the pure-Python pickler, to override bytes
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as in the official CIFAR-10 batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_batches(folder: Path, per_batch: int = 3, n_test: int = 4) -> dict[str, np.ndarray]:
    """A small ``cifar-10-batches-py`` folder in the official (Python 2, protocol 2) format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for name in [*cifar10_module.BATCH_FILES["train"], "test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"a.png"] * n,
        }
        (folder / name).write_bytes(py2_pickle(batch))
        xs.append(data)
        ys.append(labels)
    names = [c.upper().encode() for c in cifar10_module.CLASSES]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return {
        "x_train": np.concatenate(xs[:5]).reshape(-1, 3, 32, 32),
        "y_train": np.concatenate(ys[:5]),
        "x_test": xs[5].reshape(-1, 3, 32, 32),
        "y_test": np.asarray(ys[5]),
    }


def test_cifar10_python_batches(tmp_path: Path) -> None:
    expected = write_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path)
    assert "official python batches" in ds.source
    assert ds.train.x.shape == (15, 3, 32, 32) and ds.test.x.shape == (4, 3, 32, 32)
    assert np.array_equal(ds.train.x, expected["x_train"]) and np.array_equal(ds.train.y, expected["y_train"])
    assert np.array_equal(ds.test.x, expected["x_test"]) and np.array_equal(ds.test.y, expected["y_test"])
    assert ds.train.x[0, 1, 0, 0] == expected["x_train"][0, 1, 0, 0]  # rows of 1024 R, then G, then B
    assert ds.classes[0] == "AIRPLANE"  # from batches.meta
    small = load_dataset("cifar10", tmp_path, {"limit_train": 4, "limit_test": 1})
    assert np.array_equal(small.train.x, expected["x_train"][:4]) and len(small.test) == 1


def test_cifar10_batches_preferred_over_exact_subset(tmp_path: Path) -> None:
    write_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    np.savez(tmp_path / "cifar10" / "cifar10_exact_subset.npz", x_train=np.zeros(1))
    assert "python batches" in load_dataset("cifar10", tmp_path).source
    with pytest.raises(DataError, match=r"cifar10_exact_subset\.npz: missing array"):
        load_dataset("cifar10", tmp_path, {"source": "exact-subset"})


def test_cifar10_python_batches_archive(tmp_path: Path, private_cache: Path) -> None:
    expected = write_batches(tmp_path / "staging" / "cifar-10-batches-py")
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path)
    assert "cifar-10-python.tar.gz" in ds.source
    assert np.array_equal(ds.test.x, expected["x_test"])


def test_cifar10_malicious_pickle_is_refused(tmp_path: Path) -> None:
    """A batch whose pickle calls ``os.system`` is refused before anything runs."""
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_batches(batches)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (batches / "data_batch_2").write_bytes(py2_pickle({b"data": Exploit()}))
    refused = r"data_batch_2: refused pickle \(refusing to load global (posix|nt|os)\.system\)"
    with pytest.raises(DataError, match=refused):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    (batches / "data_batch_2").write_bytes(pickle.dumps([eval, "1"], protocol=4))
    with pytest.raises(DataError, match=r"data_batch_2: .*builtins\.eval"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_bad_batches(tmp_path: Path) -> None:
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_batches(batches)
    good = (batches / "test_batch").read_bytes()
    (batches / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"test_batch: corrupt or truncated pickle"):
        load_dataset("cifar10", tmp_path)
    (batches / "test_batch").write_bytes(
        py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"test_batch: 'data' has 100 values per image, expected 3072"):
        load_dataset("cifar10", tmp_path)
    (batches / "test_batch").write_bytes(py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DataError, match=r"test_batch: expected 'labels', a list of 2 integers"):
        load_dataset("cifar10", tmp_path)
    (batches / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch: file not found"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_corrupt_archive_is_named(tmp_path: Path, private_cache: Path) -> None:
    (tmp_path / "cifar10").mkdir()
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 this is not a real archive" * 10)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: corrupt or truncated archive"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar10: folder not found; expected under cifar10/"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "cifar10").mkdir()
    with pytest.raises(DataError, match=r"no CIFAR-10 data found.*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-batches-py: folder not found"):
        load_dataset("cifar10", tmp_path, {"source": "batches"})
    with pytest.raises(RecipeError, match=r"\[data.options\].source"):
        load_dataset("cifar10", tmp_path, {"source": "web"})


def pixel_value(label: int, rank: int) -> int:
    return 16 * label + rank


def write_image_tree(
    root: Path, classes: tuple[str, ...], n_train: int, n_test: int, suffix: str = ".png"
) -> None:
    """``train/<class>/NNNN.png`` and ``test/...``: image ``NNNN`` of class ``c`` is filled with
    :func:`pixel_value` ``(c, NNNN)`` (red), 255 - that (green) and 7 (blue)."""
    for split, count in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for rank in range(count):
                value = pixel_value(label, rank)
                pixels = np.empty((32, 32, 3), np.uint8)
                pixels[..., 0], pixels[..., 1], pixels[..., 2] = value, 255 - value, 7
                Image.fromarray(pixels).save(root / split / name / f"{rank:04d}{suffix}")


def test_cifar10_image_folders_fixed_order_and_cache(tmp_path: Path, private_cache: Path) -> None:
    classes = ("cat", "dog", "frog")
    write_image_tree(tmp_path / "cifar10", classes, n_train=5, n_test=2)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.classes == classes  # no batches.meta: the folder names, sorted
    assert "fixed shuffled order" in ds.source
    assert ds.train.x.shape == (15, 3, 32, 32) and ds.test.x.shape == (6, 3, 32, 32)
    assert sorted(ds.train.y.tolist()) == sorted([0, 1, 2] * 5)
    assert ds.train.y[:3].tolist() != [0, 0, 0]  # shuffled, so that the first N mix classes
    red = ds.train.x[:, 0, 0, 0].astype(int)
    assert np.all(red // 16 == ds.train.y) and np.all(ds.train.x[:, 1, 5, 5] == 255 - red)
    assert np.all(ds.train.x[:, 2] == 7)
    assert len(set(red.tolist())) == 15
    cached = sorted((private_cache / "cifar10").glob("*.npy"))
    assert [p.name.split("-")[0] for p in cached] == ["test", "train"]
    again = load_dataset("cifar10", tmp_path)
    assert isinstance(again.train.x, np.memmap)
    assert np.array_equal(again.train.x, ds.train.x) and np.array_equal(again.train.y, ds.train.y)
    limited = load_dataset("cifar10", tmp_path, {"limit_train": 4})
    assert np.array_equal(limited.train.x, ds.train.x[:4])


def test_cifar10_limited_image_load_decodes_only_what_it_needs(tmp_path: Path, private_cache: Path) -> None:
    write_image_tree(tmp_path / "cifar10", ("a", "b"), n_train=3, n_test=2)
    (tmp_path / "cifar10" / "train" / "a" / "0009.png").write_bytes(b"broken")
    ds = load_dataset("cifar10", tmp_path, {"limit_train": 1, "limit_test": 1})
    assert len(ds.train) == 1 and not (private_cache / "cifar10").exists()  # nothing partial cached
    with pytest.raises(DataError, match=r"train/a/0009\.png: cannot decode image"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_image_archive_in_official_order(tmp_path: Path, private_cache: Path) -> None:
    """An archive of class folders (inside a top folder) put in order by an order index."""
    classes = cifar10_module.CLASSES
    write_image_tree(tmp_path / "staging" / "CIFAR-10-images", classes, n_train=2, n_test=1, suffix=".jpg")
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / "images.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "CIFAR-10-images", arcname="CIFAR-10-images")
    rng = np.random.default_rng(5)
    y_train = rng.permutation(np.repeat(np.arange(10), 2))
    rank_train = np.zeros(20, dtype=np.int64)
    for label in range(10):  # the second file of each class comes first in the official order
        rank_train[np.flatnonzero(y_train == label)] = [1, 0]
    y_test = rng.permutation(10)
    np.savez(
        tmp_path / "cifar10" / "cifar10_jpeg_order_index.npz",
        y_train=y_train.astype(np.uint8),
        train_perclass_index=rank_train,
        y_test=y_test.astype(np.uint8),
        test_perclass_index=np.zeros(10, dtype=np.int64),
    )
    ds = load_dataset("cifar10", tmp_path)
    assert "images.tar.gz" in ds.source and "official order" in ds.source
    assert ds.classes == classes
    assert np.array_equal(ds.train.y, y_train) and np.array_equal(ds.test.y, y_test)
    red = ds.train.x[:, 0].astype(int).mean(axis=(1, 2))  # JPEG: close to, not equal to, the value
    assert np.all(np.abs(red - [pixel_value(y, r) for y, r in zip(y_train, rank_train, strict=True)]) < 4)

    np.savez(
        tmp_path / "cifar10" / "cifar10_jpeg_order_index.npz",
        y_train=np.zeros(20, np.uint8),
        train_perclass_index=np.arange(20),
        y_test=y_test,
        test_perclass_index=np.zeros(10, dtype=np.int64),
    )
    with pytest.raises(DataError, match=r"cifar10_jpeg_order_index\.npz: expects \[20, 0, .*train images"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_bad_images(tmp_path: Path, private_cache: Path) -> None:
    write_image_tree(tmp_path / "cifar10", ("a", "b"), n_train=2, n_test=1)
    Image.new("RGB", (16, 16)).save(tmp_path / "cifar10" / "test" / "b" / "0005.png")
    with pytest.raises(DataError, match=r"test/b/0005\.png: image is 16x16, expected 32x32"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "cifar10" / "test" / "b" / "0005.png").unlink()
    (tmp_path / "cifar10" / "test" / "c").mkdir()
    with pytest.raises(DataError, match=r"test: class folders \['a', 'b', 'c'\], expected"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_corrupt_image_archive(tmp_path: Path, private_cache: Path) -> None:
    write_image_tree(tmp_path / "staging", ("a", "b"), n_train=2, n_test=1)
    (tmp_path / "cifar10").mkdir()
    archive = tmp_path / "cifar10" / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "staging", arcname=".")
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"images\.tar\.gz: corrupt or truncated archive"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_archive_without_image_folders(tmp_path: Path, private_cache: Path) -> None:
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging" / "README.md").write_text("nothing here")
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / "other.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "README.md", arcname="README.md")
    with pytest.raises(DataError, match=r"other\.tar\.gz: expected train/<class>/\*\.jpg"):
        load_dataset("cifar10", tmp_path)
