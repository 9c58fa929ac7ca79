"""The surrogate DNN of a time-to-first-spike (TTFS) network: what the TTFS SNN computes.

:class:`TTFSNetwork` is the ANN twin of a recipe's ``[model]`` (same layer plan,
:func:`~toolchain.snn.architectures.plan_layers`, and blocks, :func:`~toolchain.snn.blocks.build_blocks`,
hence the same parameter names) in which each hidden ReLU is a :class:`TemporalKernel`: encode the
pre-activation into a spike time and decode it back (:mod:`toolchain.snn.ttfs`). Each kernel has
its own trainable time constant ``tau`` and delay ``t_d``; the window ``T_w`` is fixed. The output
layer has no kernel: the logits are its synaptic current (after batch norm), which the TTFS SNN
reads as the output neurons' membrane potentials at the end of their integration window.

With ``encode_input`` the input values are coded by a kernel of their own (``input``), so the
first layer receives spikes too.

Stochastically relaxed activation: in training mode a kernel is used with probability
:attr:`TemporalKernel.kernel_probability` per forward pass (one draw per layer and step from
torch's global generator, which the trainer seeds per epoch), otherwise plain ReLU. Evaluation
always uses the kernel, with ceiled spike times; training rounds them (straight-through).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from toolchain.config import ModelConfig, TTFSConfig
from toolchain.snn.architectures import LayerSpec, plan_layers
from toolchain.snn.blocks import Block, SynapticBlock, build_blocks, shape_input
from toolchain.snn.hooks import TrainingHooks
from toolchain.snn.models import network_input_shape
from toolchain.snn.ttfs import (
    decode_time,
    encode_time,
    expected_spikes_bn,
    kernel_regularization,
    relaxation_probability,
    spikes,
    window_bounds,
)


class TemporalKernel(nn.Module):
    """One layer's temporal kernel: ``x -> decode(encode(x))`` with trainable ``tau``, ``t_d``.

    ``last_spikes`` holds, after each forward pass, the spikes per sample ``[B]`` the kernel
    emits (values inside the window), detached; ``last_times`` the spike times (a time above
    ``window_steps`` is no spike).
    """

    def __init__(self, time_constant: float, time_delay: float, window_steps: int, epsilon: float) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(float(time_constant)))
        self.t_d = nn.Parameter(torch.tensor(float(time_delay)))
        self.window_steps = int(window_steps)
        self.epsilon = float(epsilon)
        #: probability of using the kernel (not ReLU) in a training step; evaluation always uses it
        self.kernel_probability = 1.0
        #: how training rounds spike times: ``"round"`` or ``"ceil_st"`` (both straight-through)
        self.train_rounding = "round"
        self.last_spikes: torch.Tensor | None = None
        self.last_times: torch.Tensor | None = None

    def spike_times(self, x: torch.Tensor) -> torch.Tensor:
        """Spike times of ``x``: rounded or ceiled (straight-through) in training, ceiled in evaluation."""
        mode = self.train_rounding if self.training else "ceil"
        return encode_time(x, self.tau, self.t_d, mode=mode, epsilon=self.epsilon)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_T, x_0)``, the representable range (differentiable in ``tau`` and ``t_d``)."""
        return window_bounds(self.tau, self.t_d, self.window_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, ...]`` (``T = 1``) pre-activations -> decoded values (or ReLU when relaxed)."""
        t = self.spike_times(x)
        self.last_times = t.detach()
        self.last_spikes = spikes(t.detach(), self.window_steps).flatten(2).sum(dim=(0, 2))
        relaxed = self.training and self.kernel_probability < 1.0
        if relaxed and float(torch.rand(())) >= self.kernel_probability:
            return torch.relu(x)
        return decode_time(t, self.tau, self.t_d, self.window_steps)

    def extra_repr(self) -> str:
        tau, t_d = float(self.tau.detach()), float(self.t_d.detach())
        return f"tau={tau:.4g}, t_d={t_d:.4g}, window_steps={self.window_steps}"


@dataclass
class TTFSOutput:
    """A forward pass: ``logits`` ``[B, classes]`` and the spikes per sample ``[B]`` by layer name."""

    logits: torch.Tensor
    spike_counts: dict[str, torch.Tensor]

    def spike_counts_per_sample(self) -> dict[str, torch.Tensor]:
        """Spikes per sample ``[B]`` of each layer (detached; the output layer never fires: 0)."""
        return dict(self.spike_counts)


class TTFSNetwork(TrainingHooks, nn.Module):
    """The surrogate DNN: ``[T, B, *input_shape]`` (direct encoding; step 0 is read) -> :class:`TTFSOutput`.

    Same ``blocks``, ``layer_names`` and ``layer_sizes`` as the rate-coded SNN of the same
    ``[model]``; ``kernels()`` lists the kernels by layer name (``input`` first when the input is
    encoded). :meth:`begin_epoch` and :meth:`training_penalty` are the trainer's hooks.
    """

    def __init__(self, specs: Sequence[LayerSpec], ttfs: TTFSConfig) -> None:
        super().__init__()
        if not specs or specs[-1].kind != "dense":
            raise ValueError("a TTFS network ends with a dense output layer")
        self.config = ttfs

        def make_kernel() -> TemporalKernel:
            return TemporalKernel(ttfs.time_constant, ttfs.time_delay, ttfs.time_window, ttfs.epsilon)

        self.blocks = build_blocks(list(specs), make_kernel)
        output = self.blocks[-1]
        assert isinstance(output, SynapticBlock)
        output.neuron = nn.Identity()  # the output layer integrates and is read out; it never fires
        self.input_kernel: TemporalKernel | None = make_kernel() if ttfs.encode_input else None
        self.input_shape: tuple[int, ...] = specs[0].in_shape
        self.num_classes: int = specs[-1].out_shape[0]
        self.layer_names: list[str] = [spec.name for spec in specs if spec.synaptic]
        self.layer_sizes: list[int] = [spec.neurons for spec in specs if spec.synaptic]
        #: a relaxed training step (ReLU instead of a kernel) leaves that kernel's tau, t_d out of
        #: the loss: DistributedDataParallel must look for unused parameters
        self.may_skip_parameters: bool = ttfs.relax_epochs > 0

    def synaptic_blocks(self) -> list[SynapticBlock]:
        return [block for block in self.blocks if isinstance(block, SynapticBlock)]

    def block(self, name: str) -> Block:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def kernels(self) -> dict[str, TemporalKernel]:
        """Every kernel by layer name, in order: ``input`` (if encoded), then each hidden layer."""
        found: dict[str, TemporalKernel] = {}
        if self.input_kernel is not None:
            found["input"] = self.input_kernel
        for block in self.synaptic_blocks():
            if isinstance(block.neuron, TemporalKernel):
                found[block.name] = block.neuron
        return found

    def forward(self, x: torch.Tensor) -> TTFSOutput:
        """``x``: an encoded batch ``[T, B, *input_shape]`` (direct encoding: every step is the
        sample; step 0 is used), as the trainer and :func:`~toolchain.train.evaluate.evaluate` pass
        it. Static samples ``[B, *input_shape]`` go to :meth:`run`."""
        return self.run(x[0])

    def run(self, x: torch.Tensor) -> TTFSOutput:
        """``x``: static samples ``[B, *input_shape]`` -> :class:`TTFSOutput`."""
        h = shape_input(x, self.input_shape, time_major=False).unsqueeze(0)
        if self.input_kernel is not None:
            h = self.input_kernel(h)
        counts: dict[str, torch.Tensor] = {}
        *hidden, output = self.blocks
        for block in hidden:
            h = block(h)
            if isinstance(block, SynapticBlock):
                kernel = block.neuron
                assert isinstance(kernel, TemporalKernel) and kernel.last_spikes is not None
                counts[block.name] = kernel.last_spikes
                h = block.drop(h)
        assert isinstance(output, SynapticBlock)
        logits = output.current(h).squeeze(0)
        counts[output.name] = torch.zeros(logits.shape[0], device=logits.device)
        return TTFSOutput(logits=logits, spike_counts=counts)

    # -- the trainer's hooks ---------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Set every kernel's probability of use for 1-based ``epoch`` (relaxed activation) and its
        training rounding (``ceil_st`` from ``[ttfs].ceil_from_epoch`` on, else ``round``)."""
        p = relaxation_probability(epoch, self.config.relax_epochs)
        start = self.config.ceil_from_epoch
        rounding = "ceil_st" if start > 0 and epoch >= start else "round"
        for kernel in self.kernels().values():
            kernel.kernel_probability = p
            kernel.train_rounding = rounding

    def kernel_penalty(self) -> torch.Tensor:
        """``sum_l (tau_l - tau_0)^2 + (t_d,l - t_d,0)^2`` over every kernel (not yet weighted)."""
        kernels = list(self.kernels().values())
        return kernel_regularization(
            [k.tau for k in kernels],
            [k.t_d for k in kernels],
            self.config.time_constant,
            self.config.time_delay,
        )

    def expected_spikes(self) -> torch.Tensor:
        """Expected spikes per sample of the hidden layers modelled from their batch norms' gamma,
        beta (:func:`~toolchain.snn.ttfs.expected_spikes_bn`); layers without batch norm count 0.

        The kernel's ``x_T`` enters detached: the penalty acts on gamma and beta only.
        """
        total = torch.zeros(())
        for block in self.synaptic_blocks():
            kernel = block.neuron
            if not isinstance(kernel, TemporalKernel) or block.norm is None:
                continue
            norm = block.norm.module
            assert norm.weight is not None and norm.bias is not None
            x_t, _ = kernel.bounds()
            per_channel = math.prod(block.out_shape[1:]) if len(block.out_shape) > 1 else 1
            total = total + expected_spikes_bn(norm.weight, norm.bias, x_t.detach(), per_channel)
        return total

    def training_penalty(self, epoch: int) -> torch.Tensor | None:
        """The recipe's regularizers at 1-based ``epoch`` (added to the loss), or ``None``."""
        cfg = self.config
        terms: list[torch.Tensor] = []
        if cfg.kernel_reg > 0 and epoch >= cfg.kernel_reg_from_epoch:
            terms.append(cfg.kernel_reg * self.kernel_penalty())
        if cfg.bn_reg > 0 and epoch >= cfg.bn_reg_from_epoch:
            terms.append(cfg.bn_reg * self.expected_spikes())
        return torch.stack(terms).sum() if terms else None


def build_ttfs_model(
    model: ModelConfig, ttfs: TTFSConfig, sample_shape: Sequence[int] | int, num_classes: int
) -> TTFSNetwork:
    """The surrogate DNN of ``[model]`` with ``[ttfs]``'s kernels, for ``sample_shape``, ``num_classes``."""
    return TTFSNetwork(plan_layers(model, network_input_shape(sample_shape), num_classes), ttfs)


__all__ = ["TTFSNetwork", "TTFSOutput", "TemporalKernel", "build_ttfs_model"]
