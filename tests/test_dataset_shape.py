"""``dataset_shape``: the shape and classes a loader returns, known without reading the data."""

from pathlib import Path

import pytest

from toolchain.data import dataset_shape, load_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = [
    ("digits", {}),
    ("digits", {"layout": "image"}),
    ("synthetic", {"num_inputs": 7, "time_steps": 5, "num_classes": 3}),
    ("mnist", {"limit_train": 10, "limit_test": 10}),
    ("fashion-mnist", {"limit_train": 10, "limit_test": 10}),
]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_the_shape_is_the_loaders(name, options):
    if name in ("mnist", "fashion-mnist") and not (DATA / name).is_dir():
        pytest.skip(f"{DATA / name} is absent (the shared data sets are not beside this clone)")
    loaded = load_dataset(name, DATA, options)
    described = dataset_shape(name, options)
    assert described.sample_shape == tuple(loaded.sample_shape)
    assert described.classes == tuple(loaded.classes)
    assert tuple(loaded.train.x.shape[1:]) == described.sample_shape


def test_known_shapes_without_data():
    assert dataset_shape("cifar10").sample_shape == (3, 32, 32)
    assert dataset_shape("gsc", {"num_features": 10}).sample_shape == (10, 49)
    assert dataset_shape("gsc", {"task": "35class"}).num_classes == 35
