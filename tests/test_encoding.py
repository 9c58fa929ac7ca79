"""Input encoders (direct, rate, latency, spikes) and the synthetic spike-pattern dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.data import dataset_options, load_dataset
from toolchain.data.encoding import SCHEMES, direct, encode, latency, rate, spikes
from toolchain.errors import DataError, RecipeError, ToolchainError

# --- direct ---------------------------------------------------------------------------------------


def test_direct_repeats_the_input_over_time() -> None:
    x = torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.75, 0.125]])
    out = direct(x, 3)
    assert out.shape == (3, 2, 3) and out.dtype == x.dtype
    for t in range(3):
        assert torch.equal(out[t], x)
    assert torch.equal(direct(torch.tensor([[-2.0, 7.5]]), 2), torch.tensor([[[-2.0, 7.5]], [[-2.0, 7.5]]]))


def test_direct_keeps_image_dims() -> None:
    x = torch.rand(4, 1, 28, 28)
    assert direct(x, 5).shape == (5, 4, 1, 28, 28)


# --- latency --------------------------------------------------------------------------------------


def test_latency_hand_computed() -> None:
    """T = 5: t = round((1 - x) * 4); x = 0 never spikes; 0.375 -> round(2.5) = 2 (half to even)."""
    x = torch.tensor([[1.0, 0.75, 0.5, 0.375, 0.1, 0.0]])
    out = latency(x, 5)
    assert out.shape == (5, 1, 6) and out.dtype == torch.float32
    expected_step = [0, 1, 2, 2, 4, None]
    for i, step in enumerate(expected_step):
        column = out[:, 0, i]
        if step is None:
            assert column.sum() == 0
        else:
            assert column.sum() == 1 and column[step] == 1


def test_latency_one_time_step_and_full_raster() -> None:
    assert torch.equal(latency(torch.tensor([[0.3, 0.0]]), 1), torch.tensor([[[1.0, 0.0]]]))
    expected = torch.tensor(
        [
            [[1.0, 0.0, 0.0]],
            [[0.0, 1.0, 0.0]],
            [[0.0, 0.0, 1.0]],
        ]
    )
    assert torch.equal(latency(torch.tensor([[1.0, 0.5, 0.2]]), 3), expected)


# --- rate -----------------------------------------------------------------------------------------


def test_rate_statistics_with_a_seeded_generator() -> None:
    probabilities = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x = probabilities.repeat(200, 1)  # [B=200, 5]
    out = rate(x, 100, generator=torch.Generator().manual_seed(0))
    assert out.shape == (100, 200, 5) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    mean = out.mean(dim=(0, 1))
    assert mean[0] == 0.0 and mean[4] == 1.0
    # 20,000 Bernoulli draws each: the standard error is below 0.0036
    assert torch.allclose(mean[1:4], probabilities[1:4], atol=0.015)


def test_rate_is_reproducible_with_the_same_seed() -> None:
    x = torch.rand(8, 16, generator=torch.Generator().manual_seed(1))
    a = rate(x, 10, generator=torch.Generator().manual_seed(7))
    b = rate(x, 10, generator=torch.Generator().manual_seed(7))
    c = rate(x, 10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("scheme", ["rate", "latency"])
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_out_of_range_input_is_an_error_not_clipped(scheme: str, bad: float) -> None:
    x = torch.tensor([[0.2, bad]])
    with pytest.raises(DataError, match=rf"'{scheme}' needs inputs in \[0, 1\]"):
        encode(scheme, x, 4)


def test_integer_input_is_refused_for_rate() -> None:
    with pytest.raises(DataError, match="floating-point batch"):
        rate(torch.tensor([[0, 255]], dtype=torch.uint8), 4)


# --- spikes and dispatch --------------------------------------------------------------------------


def test_spikes_moves_time_first_and_keeps_values() -> None:
    batch = (torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(2)) < 0.5).float()  # [B, T, N]
    out = encode("spikes", batch, 6)
    assert out.shape == (6, 3, 4)
    assert torch.equal(out, batch.permute(1, 0, 2))
    with pytest.raises(DataError, match=r"shaped \[B, T=5, \.\.\.\], got shape \(3, 6, 4\)"):
        spikes(batch, 5)
    with pytest.raises(DataError, match="0/1 spike trains"):
        spikes(batch * 0.5, 6)


def test_encode_dispatches_and_rejects_unknown_schemes() -> None:
    x = torch.tensor([[1.0, 0.5]])
    assert torch.equal(encode("direct", x, 2), direct(x, 2))
    assert torch.equal(encode("latency", x, 3), latency(x, 3))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(encode("rate", x, 50, generator=g1), rate(x, 50, generator=g2))
    assert SCHEMES == ("direct", "rate", "latency", "spikes")
    with pytest.raises(RecipeError, match=r"\[encoding\].scheme: unknown encoding 'poisson'") as err:
        encode("poisson", x, 2)
    assert isinstance(err.value, ToolchainError)
    assert "direct, rate, latency, spikes" in str(err.value)


@pytest.mark.parametrize("steps", [0, -1, 2.0, True])
def test_time_steps_must_be_a_positive_integer(steps: object) -> None:
    with pytest.raises(RecipeError, match=r"\[encoding\].time_steps"):
        encode("direct", torch.zeros(1, 2), steps)  # type: ignore[arg-type]


# --- the synthetic dataset ------------------------------------------------------------------------


def test_synthetic_shapes_and_determinism() -> None:
    ds = load_dataset("synthetic")
    assert ds.sample_shape == (20, 32) and ds.num_classes == 4
    assert ds.train.x.shape == (256, 20, 32) and ds.test.x.shape == (64, 20, 32)
    assert ds.train.x.dtype == np.float32
    assert set(np.unique(ds.train.x).tolist()) == {0.0, 1.0}
    assert np.bincount(ds.train.y).tolist() == [64] * 4
    again = load_dataset("synthetic")
    assert np.array_equal(ds.train.x, again.train.x) and np.array_equal(ds.test.y, again.test.y)
    other = load_dataset("synthetic", options={"seed": 1})
    assert not np.array_equal(ds.train.x, other.train.x)


def test_synthetic_options_and_separable_classes() -> None:
    options = {"num_classes": 3, "num_inputs": 10, "time_steps": 50, "train_per_class": 40, "seed": 4}
    ds = load_dataset("synthetic", options=options)
    assert ds.train.x.shape == (120, 50, 10)
    # nearest class mean of the spike counts classifies the test set well above chance (1/3)
    counts = ds.train.x.sum(axis=1)
    means = np.stack([counts[ds.train.y == c].mean(axis=0) for c in range(3)])
    test_counts = ds.test.x.sum(axis=1)
    predicted = np.argmin(((test_counts[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == ds.test.y).mean() > 0.9
    with pytest.raises(RecipeError, match=r"\[data.options\].max_rate"):
        dataset_options("synthetic", {"max_rate": 1.5})


def test_synthetic_batch_goes_through_the_spikes_scheme() -> None:
    ds = load_dataset("synthetic", options={"time_steps": 7, "num_inputs": 5})
    batch = torch.from_numpy(ds.train.x[:8])
    out = encode("spikes", batch, 7)
    assert out.shape == (7, 8, 5)
    assert torch.equal(out[:, 3], batch[3])
