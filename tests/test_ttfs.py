"""Time-to-first-spike coding: the kernel's equations, the regularizers, the relaxation schedule and
the surrogate DNN's trainable parameters, against hand-computed values (``docs/ttfs.md``)."""

from __future__ import annotations

import math

import pytest
import torch

from toolchain.config import ModelConfig, TTFSConfig
from toolchain.snn.ttfs import (
    decode_time,
    encode_time,
    expected_spikes_bn,
    kernel_regularization,
    relaxation_probability,
    window_bounds,
)
from toolchain.snn.ttfs_model import TemporalKernel, build_ttfs_model

TAU, T_D, T_W = 2.0, 0.0, 8


def _encode(values, mode):
    return encode_time(torch.tensor(values, dtype=torch.float64), TAU, T_D, mode=mode)


def test_encode_by_hand():
    # t = ReLU(0 - 2 ln x): x = 1 -> 0, e^-1 -> 2, 0.5 -> 2 ln 2 = 1.3863, 0.02 -> 7.8240,
    # 0.01 -> 9.2103, 3 -> ReLU(-2.1972) = 0
    values = [1.0, math.exp(-1), 0.5, 0.02, 0.01, 3.0]
    continuous = _encode(values, "continuous")
    expected = [0.0, 2.0, 1.3862944, 7.8240460, 9.2103404, 0.0]
    assert continuous.tolist() == pytest.approx(expected, abs=1e-6)
    assert _encode(values, "round").tolist() == [0.0, 2.0, 1.0, 8.0, 9.0, 0.0]
    assert _encode(values, "ceil").tolist() == [0.0, 2.0, 2.0, 8.0, 10.0, 0.0]
    # zero and negative values: ln(eps) = -69.08 -> t = 138.2, far outside the window
    assert _encode([0.0, -1.0], "continuous").tolist() == pytest.approx([138.155, 138.155], abs=1e-3)


def test_decode_by_hand():
    t = torch.tensor([0.0, 1.0, 2.0, 8.0, 9.0, 10.0], dtype=torch.float64)
    # exp(-t / 2), and 0 beyond T_w = 8 (x_T = exp(-4) = 0.0183: t = 8 is the last spike time)
    expected = [1.0, math.exp(-0.5), math.exp(-1), math.exp(-4), 0.0, 0.0]
    assert decode_time(t, TAU, T_D, T_W).tolist() == pytest.approx(expected, abs=1e-12)
    x_t, x_0 = window_bounds(TAU, T_D, T_W)
    assert float(x_t) == pytest.approx(math.exp(-4)) and float(x_0) == pytest.approx(1.0)


def test_encode_decode_at_inference_by_hand():
    values = [1.0, 0.5, 0.02, 0.01, 3.0, 0.0]
    decoded = decode_time(_encode(values, "ceil"), TAU, T_D, T_W)
    # 0.5 -> t = 2 -> e^-1 (ceil loses up to one step); 3 saturates at x_0 = 1; 0.01 < x_T -> 0
    assert decoded.tolist() == pytest.approx([1.0, math.exp(-1), math.exp(-4), 0.0, 1.0, 0.0], abs=1e-12)


def test_time_delay_shifts_the_window():
    t = encode_time(torch.tensor([1.0, math.exp(2)]), 2.0, 1.0, mode="continuous")
    assert t.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # t_d - tau ln x = 1 - 0; 1 - 4 -> 0
    assert decode_time(torch.tensor([1.0]), 2.0, 1.0, 8).tolist() == pytest.approx([1.0])


def test_gradients_flow_to_tau_and_delay_by_hand():
    kernel = TemporalKernel(TAU, T_D, T_W, 1e-30).double().train()
    x = torch.tensor([[0.5, 3.0]], dtype=torch.float64).unsqueeze(0)
    y = kernel(x)
    # 0.5: t = 1.3863 rounds to 1 (residual r = -0.3863, straight through): x_hat = x exp(-r / tau),
    # d/dtau = x_hat r / tau^2 = -0.05857, d/dt_d = 0.  3: t = 0 (saturated): x_hat = exp(t_d / tau),
    # d/dt_d = x_hat / tau = 0.5, d/dtau = -t_d x_hat / tau^2 = 0.
    r = 1.0 - 2 * math.log(2)
    assert y.flatten().tolist() == pytest.approx([0.5 * math.exp(-r / 2), 1.0])
    y.sum().backward()
    assert float(kernel.tau.grad) == pytest.approx(0.5 * math.exp(-r / 2) * r / 4, abs=1e-9)
    assert float(kernel.t_d.grad) == pytest.approx(0.5, abs=1e-9)


def test_straight_through_gradient_to_the_input():
    x = torch.tensor([0.5, 0.01, -1.0], dtype=torch.float64, requires_grad=True)
    y = decode_time(encode_time(x, TAU, T_D, mode="round"), TAU, T_D, T_W)
    y.sum().backward()
    # inside the window d x_hat / dx = x_hat / x = exp(-r / tau); outside (0.01 -> t = 9) and below 0: 0
    r = 1.0 - 2 * math.log(2)
    assert x.grad.tolist() == pytest.approx([math.exp(-r / 2), 0.0, 0.0], abs=1e-9)


def test_kernel_regularization_value_and_gradient_by_hand():
    taus = [torch.tensor(2.5, requires_grad=True), torch.tensor(1.0, requires_grad=True)]
    delays = [torch.tensor(0.5, requires_grad=True), torch.tensor(-1.0, requires_grad=True)]
    value = kernel_regularization(taus, delays, 2.0, 0.0)
    assert float(value.detach()) == pytest.approx(0.25 + 0.25 + 1.0 + 1.0)
    value.backward()
    assert [float(t.grad) for t in taus] == pytest.approx([1.0, -2.0])  # 2 (tau - tau_0)
    assert [float(d.grad) for d in delays] == pytest.approx([1.0, -2.0])  # 2 (t_d - t_d0)


def test_model_kernel_penalty_is_zero_at_init_and_weighted_from_its_epoch():
    cfg = TTFSConfig(enabled=True, kernel_reg=0.1, kernel_reg_from_epoch=3)
    net = build_ttfs_model(ModelConfig(hidden=[4]), cfg, (3,), 2)
    assert float(net.kernel_penalty().detach()) == 0.0
    with torch.no_grad():
        net.kernels()["dense1"].tau += 1.0  # (3 - 2)^2 = 1
    assert net.training_penalty(2) is None
    assert float(net.training_penalty(3).detach()) == pytest.approx(0.1)


def test_expected_spikes_bn_by_hand():
    gamma = torch.tensor([1.0, 2.0])
    beta = torch.tensor([0.0, 1.0])
    # Phi((0 - 0) / 1) + Phi((1 - 0) / 2) = 0.5 + 0.6914625, times 3 neurons per channel
    assert float(expected_spikes_bn(gamma, beta, 0.0, 3)) == pytest.approx(3 * (0.5 + 0.6914625), abs=1e-6)
    # x_T = exp(-4), gamma = 0: a step, beta above x_T fires
    assert float(expected_spikes_bn(torch.zeros(2), torch.tensor([1.0, 0.0]), math.exp(-4))) == 1.0


def _bn_net(seed=0):
    torch.manual_seed(seed)
    cfg = TTFSConfig(enabled=True, bn_reg=1.0)
    return build_ttfs_model(ModelConfig(hidden=[64], batch_norm=True), cfg, (16,), 3)


def _layer_spikes(net, x):
    net.train()
    net.run(x)
    return float(net.kernels()["dense1"].last_spikes.mean())


def test_expected_spikes_model_matches_the_counted_spikes_on_gaussian_preactivations():
    net = _bn_net()
    x = torch.randn(4096, 16)  # dense(Gaussian) is Gaussian per neuron: the model's assumption
    with torch.no_grad():
        norm = net.block("dense1").norm.module
        norm.weight.uniform_(0.2, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    modelled = float(net.expected_spikes().detach())  # the output layer has no kernel: not counted
    counted = _layer_spikes(net, x)
    assert counted == pytest.approx(modelled, rel=0.03)


def test_bn_penalty_decreases_the_spike_count_it_models_and_the_counted_one():
    net = _bn_net()
    x = torch.randn(2048, 16)
    before_model, before_count = float(net.expected_spikes().detach()), _layer_spikes(net, x)
    norm = net.block("dense1").norm.module
    optimizer = torch.optim.SGD([norm.weight, norm.bias], lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        net.training_penalty(1).backward()
        optimizer.step()
    after_model, after_count = float(net.expected_spikes().detach()), _layer_spikes(net, x)
    assert after_model < 0.8 * before_model
    assert after_count < 0.8 * before_count
    assert net.kernels()["dense1"].tau.grad is None  # x_T enters detached: gamma and beta only


def test_relaxation_schedule():
    assert relaxation_probability(1, 50) == pytest.approx(0.02)
    assert relaxation_probability(25, 50) == pytest.approx(0.5)
    assert relaxation_probability(50, 50) == 1.0
    assert relaxation_probability(80, 50) == 1.0
    assert relaxation_probability(1, 0) == 1.0
    with pytest.raises(ValueError):
        relaxation_probability(0, 5)


def test_relaxed_activation_uses_the_kernel_with_probability_p_in_training_only():
    net = build_ttfs_model(ModelConfig(hidden=[8]), TTFSConfig(enabled=True, relax_epochs=10), (4,), 2)
    net.begin_epoch(3)
    kernel = net.kernels()["dense1"]
    assert kernel.kernel_probability == pytest.approx(0.3)
    x = torch.full((1, 1, 8), 0.5)  # kernel: e^-1 (t = round(1.39) = 1 -> e^-0.5); ReLU: 0.5
    kernel.train()
    torch.manual_seed(0)
    with torch.no_grad():
        used = sum(float(kernel(x)[0, 0, 0]) != 0.5 for _ in range(1000))
    assert 250 <= used <= 350
    kernel.eval()
    with torch.no_grad():
        assert all(float(kernel(x)[0, 0, 0]) == pytest.approx(math.exp(-1)) for _ in range(20))


def test_recipe_section_is_validated(tmp_path):
    from toolchain.config import load_recipe
    from toolchain.errors import RecipeError

    path = tmp_path / "r" / "recipe.toml"
    path.parent.mkdir()
    path.write_text("[ttfs]\nenabled = true\ntime_constant = 0\n")
    with pytest.raises(RecipeError, match=r"\[ttfs\]\.time_constant: expected a number in \(0"):
        load_recipe(path)
    path.write_text("[ttfs]\ntime_window = 'eight'\n")
    with pytest.raises(RecipeError, match=r"\[ttfs\]\.time_window: expected an integer"):
        load_recipe(path)


def test_ceil_straight_through_and_its_schedule():
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    t = encode_time(x, TAU, T_D, mode="ceil_st")
    assert t.tolist() == [2.0]  # ceil(1.386)
    t.sum().backward()
    assert float(x.grad) == pytest.approx(-TAU / 0.5)  # d/dx (-tau ln x), straight through the ceiling
    net = build_ttfs_model(ModelConfig(hidden=[4]), TTFSConfig(enabled=True, ceil_from_epoch=3), (3,), 2)
    net.begin_epoch(2)
    assert net.kernels()["dense1"].train_rounding == "round"
    net.begin_epoch(3)
    assert {k.train_rounding for k in net.kernels().values()} == {"ceil_st"}
