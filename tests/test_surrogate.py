"""Surrogate gradients: Heaviside forward, the documented derivative backward."""

import pytest
import torch

from toolchain.errors import RecipeError
from toolchain.snn.surrogate import SURROGATES, spike_function


def _grad(name, scale, x):
    t = torch.tensor([x], requires_grad=True)
    spike_function(name, scale)(t).sum().backward()
    return float(t.grad)


def test_forward_is_a_strict_heaviside():
    spike = spike_function("fast_sigmoid", 10.0)
    assert spike(torch.tensor([-0.1, 0.0, 0.1])).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("name", "scale", "x", "expected"),
    [
        ("sigmoid", 4.0, 0.0, 1.0),  # 4 * 0.5 * 0.5
        ("fast_sigmoid", 10.0, 0.1, 0.25),  # 1 / (10 * 0.1 + 1)^2
        ("fast_sigmoid", 10.0, -0.1, 0.25),
        ("triangle", 2.0, 0.25, 1.0),  # 2 * (1 - 2 * 0.25)
        ("triangle", 2.0, 0.6, 0.0),
    ],
)
def test_gradient_by_hand(name, scale, x, expected):
    assert _grad(name, scale, x) == pytest.approx(expected)


@pytest.mark.parametrize("scale", [4.0, 3.0])
def test_sigmoid_derivative_is_its_formula(scale):
    # computed by torch's sigmoid_backward kernel: scale * sig * (1 - sig) to float32 rounding
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    sig = torch.sigmoid(scale * x)
    torch.testing.assert_close(
        SURROGATES["sigmoid"](x, scale), scale * sig * (1.0 - sig), rtol=2e-7, atol=1e-9
    )


def test_sigmoid_gradient_is_the_derivative_of_a_sigmoid():
    xs = torch.linspace(-1, 1, 21, requires_grad=True)
    torch.sigmoid(5.0 * xs).sum().backward()
    for x, expected in zip(xs.detach(), xs.grad, strict=True):
        assert _grad("sigmoid", 5.0, float(x)) == pytest.approx(float(expected), rel=1e-5)


def test_unknown_surrogate_and_bad_scale_are_named():
    with pytest.raises(RecipeError, match=r"\[neuron\].surrogate: unknown surrogate 'relu'"):
        spike_function("relu", 1.0)
    with pytest.raises(RecipeError, match="surrogate_scale"):
        spike_function("sigmoid", 0.0)
