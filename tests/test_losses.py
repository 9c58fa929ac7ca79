"""Each loss term against values computed by hand, and the objective's weighting of them."""

import math

import numpy as np
import pytest
import torch

from toolchain.train.losses import (
    Objective,
    activation_sum,
    cross_entropy_sum,
    firing_rates,
    kd_kl_sum,
    kd_mse_sum,
    logits_l2_sum,
)


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_cross_entropy_of_two_samples_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1])
    # -log(e^2 / (e^2 + 1)) - log(1/2)
    expected = math.log(1 + math.exp(-2)) + math.log(2)
    assert float(cross_entropy_sum(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_kl_of_a_two_class_example_by_hand():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[3.0, 1.0]])
    tau = 2.0
    # softened: p = softmax([1.5, 0.5]) (teacher), q = softmax([0.5, 0]) (student)
    p = _softmax([1.5, 0.5])
    q = _softmax([0.5, 0.0])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert float(kd_kl_sum(student, teacher, tau)) == pytest.approx(tau**2 * kl, rel=1e-5)
    # sums over the batch, zero when the student equals the teacher
    both = kd_kl_sum(torch.cat([student, teacher]), torch.cat([teacher, teacher]), tau)
    assert float(both) == pytest.approx(tau**2 * kl, rel=1e-5)


def test_kl_gradient_reaches_the_student_only():
    student = torch.tensor([[1.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[3.0, 1.0]], requires_grad=True)
    kd_kl_sum(student, teacher, 2.0).backward()
    # d/ds of tau^2 KL(p || softmax(s / tau)) = tau * (q - p)
    p, q = _softmax([1.5, 0.5]), _softmax([0.5, 0.0])
    assert student.grad.tolist()[0] == pytest.approx([2 * (q[0] - p[0]), 2 * (q[1] - p[1])], rel=1e-5)
    assert teacher.grad is None


def test_mse_by_hand():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 4.0], [1.0, -1.0]])
    # sample 1: (1 + 4) / 2, sample 2: (1 + 1) / 2
    assert float(kd_mse_sum(student, teacher)) == pytest.approx(2.5 + 1.0)


def test_mismatched_logits_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        kd_kl_sum(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


def test_activation_l1_and_l2_by_hand():
    # T = 2 steps, B = 2 samples, 2 neurons in layer a, 1 neuron in layer b
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])  # [T, B, 2]
    b = torch.tensor([[[1.0], [0.0]], [[0.0], [0.0]]])  # [T, B, 1]
    rates_a = firing_rates(a)
    assert rates_a.tolist() == [[1.0, 0.0], [0.5, 1.0]]
    spikes = {"a": a, "b": b}
    # L1, layer a: sample 1 mean(1, 0) = 0.5, sample 2 mean(0.5, 1) = 0.75; layer b: 0.5 and 0
    assert float(activation_sum(spikes, {"a": 1.0, "b": 0.0}, "l1")) == pytest.approx(1.25)
    assert float(activation_sum(spikes, {"a": 1.0, "b": 2.0}, "l1")) == pytest.approx(1.25 + 2 * 0.5)
    # L2, layer a: mean(1, 0) = 0.5, mean(0.25, 1) = 0.625; layer b: 0.25, 0
    assert float(activation_sum(spikes, {"a": 1.0, "b": 4.0}, "l2")) == pytest.approx(1.125 + 4 * 0.25)
    with pytest.raises(KeyError):
        activation_sum(spikes, {"c": 1.0}, "l1")


def test_activation_of_conv_layers_is_per_neuron():
    spikes = torch.ones(4, 3, 2, 5, 5)  # every neuron fires every step
    assert float(activation_sum({"conv1": spikes}, {"conv1": 1.0}, "l1")) == pytest.approx(3.0)


def test_logits_l2_by_hand():
    logits = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    assert float(logits_l2_sum(logits)) == pytest.approx((9 + 1) / 2 + (0 + 4) / 2)


def test_objective_weights_the_terms():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    spikes = {"dense1": torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), "output": torch.zeros(1, 2, 2)}
    objective = Objective(
        alpha=0.25,
        distill="kl",
        temperature=2.0,
        teacher=lambda idx: teacher[torch.from_numpy(idx)],
        activation="l1",
        activation_weight=0.5,
        layer_weights={"dense1": 1.0, "output": 0.0},
        logits_weight=0.1,
    )
    total, terms = objective(logits, spikes, labels, np.array([0, 1]), scale=0.5)
    assert (
        list(terms)
        == objective.term_names
        == ["cross_entropy", "distillation_kl", "activation_l1", "logits_l2"]
    )
    assert terms["activation_l1"] == pytest.approx(0.5)
    assert terms["logits_l2"] == pytest.approx(2.0 + 0.5)
    expected = 0.5 * (0.75 * terms["cross_entropy"] + 0.25 * terms["distillation_kl"] + 0.5 * 0.5 + 0.1 * 2.5)
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert objective.weights() == {
        "cross_entropy": 0.75,
        "distillation_kl": 0.25,
        "activation_l1": 0.5,
        "logits_l2": 0.1,
    }


def test_objective_without_teacher_is_plain_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    total, terms = Objective()(logits, {}, labels, np.array([0, 1]), scale=0.5)
    assert float(total) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    assert list(terms) == ["cross_entropy"]
