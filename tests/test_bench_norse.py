"""The training benchmark's Norse network computes our spikes and our gradients.

``benchmarks/train_speed.py`` maps our CUBA-LIF dynamics onto Norse's ``LIF`` (its voltage
integrates ``dt * tau_mem_inv`` times the current, so its weights are ours times
``1 / voltage_decay``, and its ``tanh`` surrogate with ``alpha = scale / 2`` is our sigmoid
surrogate). On small dense and conv networks its spikes must be ours and its weight gradients,
back in our units, ours up to float rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("norse.torch", reason="norse is not installed (the Makefile installs it with --no-deps)")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import train_speed  # noqa: E402

SETUPS = {
    "mlp": train_speed.Setup(
        model={"architecture": "mlp", "hidden": [48, 32]}, input_shape=(40,), classes=5, steps=30, batch=8
    ),
    "conv": train_speed.Setup(
        model={
            "architecture": "vgg",
            "channels": [6, 8],
            "kernel_size": 3,
            "padding": "same",
            "pool_after": [1, 2],
            "pool": "sum",
            "pool_size": 2,
            "hidden": [],
        },
        input_shape=(2, 8, 8),
        classes=4,
        steps=6,
        batch=4,
        rate=None,
    ),
}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_norse_spikes_and_gradients_are_ours(name: str) -> None:
    setup = SETUPS[name]
    inputs, labels = train_speed.make_batch(setup)
    layers = train_speed.network(setup)
    ours = train_speed.toolchain_runner(setup, layers, inputs, fused=True)
    norse = train_speed.norse_runner(setup, layers, inputs)
    assert norse.weight_scale == 1 / setup.voltage_decay
    with torch.no_grad():
        expected, got = ours.forward(inputs), norse.forward(inputs)
    assert [s.sum() > 0 for s in expected] == [True] * len(expected), "every layer should spike"
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(
        train_speed.weight_gradients(ours, labels), train_speed.weight_gradients(norse, labels), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
