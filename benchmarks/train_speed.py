"""Training and inference speed of the reference SNN on the CPU, this toolchain against others.

The network is the reference 700-256-256-20 dense CUBA-LIF network (Zenke's SHD layout), ``T``
time steps, random input spikes at ``--rate`` and random labels; every framework gets the same
initial weights, the same neuron parameters, Adam and cross-entropy on the output spike counts.
Each framework is timed in a process of its own (:class:`TimingWorker`), the processes taking
turns repeat by repeat so that they share the machine's load: no framework's speed depends on
what another allocated before it, as for a user who trains with one of them. Every timed process
keeps the memory it frees for reuse (:data:`ALLOCATOR_ENV`), so that page faults of fresh memory,
which glibc's adaptive defaults make vary from run to run, do not decide the timings. The best
(minimum) time of the repeats is reported with the 1-minute load average when it was taken. Peak
memory is measured afterwards, each framework and mode in a fresh process with the allocator's
defaults (:func:`probe_memory`).

The networks are described framework-neutrally (:class:`Layer`: dense, conv, pool, flatten), taken
from the model that ``toolchain.snn.models.build_model`` makes of a ``[model]`` table, so that
``train_speed_conv.py`` measures conv networks with the same builders and the same loop.

Run from the repository root with the benchmark environment (``benchmarks/README.md``)::

    benchmarks/.venv/bin/python benchmarks/train_speed.py                 # print the table
    benchmarks/.venv/bin/python benchmarks/train_speed.py --write-docs    # and update docs/benchmarks.md

Frameworks that are not installed are listed as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import machine
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Setup:
    """The benchmark's workload; every framework is configured from this."""

    #: the network as a recipe's ``[model]`` table, for ``input_shape`` samples and ``classes``
    model: dict[str, Any] = field(default_factory=lambda: {"architecture": "mlp", "hidden": [256, 256]})
    input_shape: tuple[int, ...] = (700,)
    classes: int = 20
    #: what the tables call the network
    description: str = "700-256-256-20 dense CUBA-LIF"
    steps: int = 100
    batch: int = 64
    #: input spikes at this rate per step and input; ``None``: direct input, one uniform [0, 1)
    #: sample per batch element, the same current every step
    rate: float | None = 0.1
    #: fractions lost per step, as in toolchain's [neuron]; both exact in Loihi's 12-bit decays
    current_decay: float = 0.25
    voltage_decay: float = 0.0625
    threshold: float = 1.0
    #: the surrogate every framework has in the same form: scale * sig(scale x) (1 - sig(scale x))
    surrogate_scale: float = 4.0
    learning_rate: float = 1e-3
    seed: int = 0

    @property
    def input_description(self) -> str:
        if self.rate is None:
            return "direct input (one uniform [0, 1) sample, the same every step, a stride-0 view over time)"
        return f"input spikes at rate {self.rate}"


@dataclass(frozen=True)
class Layer:
    """One layer of the network, framework-neutral. ``dims``: 0 dense, 1 or 2 spatial axes."""

    kind: str  # "dense", "conv", "pool", "flatten"
    weight: torch.Tensor | None = None  # dense [out, in], conv [out, in, *kernel]
    stride: int = 1
    padding: int = 0
    size: int = 2  # pooling window (= stride)
    dims: int = 0

    @property
    def synaptic(self) -> bool:
        return self.kind in ("dense", "conv")


#: forward: native input -> every spiking layer's spikes (time on the runner's ``time_axis``)
Forward = Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass
class Runner:
    """One framework's network, ready to time."""

    name: str
    version: str
    module: nn.Module
    forward: Forward
    inputs: torch.Tensor
    time_axis: int
    notes: str = ""
    optimizer: torch.optim.Optimizer | None = None
    #: its weights are ours times this (Norse: 1 / voltage decay); Adam's learning rate is scaled
    #: alike, so that its training is ours in its units (Adam's step ignores the gradient's scale)
    weight_scale: float = 1.0

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.forward(inputs)[-1].sum(dim=self.time_axis)


@dataclass
class Timing:
    """Wall and process-CPU seconds and minor page faults per batch of each repeat, and the load
    average after each."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    faults: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], None], batches: int) -> None:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            fn()
        self.wall.append((time.perf_counter() - wall) / batches)
        self.cpu.append((time.process_time() - cpu) / batches)
        self.loads.append(os.getloadavg()[0])
        self.faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / batches)

    def record(self, wall: float, cpu: float, load: float, faults: float) -> None:
        """Add a repeat measured elsewhere (a :class:`TimingWorker`)."""
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.loads.append(load)
        self.faults.append(faults)

    def best(self) -> tuple[float, float]:
        """The best (minimum) wall time and the load average when it was taken."""
        index = _best_index(self)
        return self.wall[index], self.loads[index]


def _best_index(timing: Timing) -> int:
    return min(range(len(timing.wall)), key=timing.wall.__getitem__)


def make_batch(setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[T, B, *input_shape]`` and labels ``[B]``, the same for every framework."""
    torch.manual_seed(setup.seed)
    shape = (setup.steps, setup.batch, *setup.input_shape)
    if setup.rate is not None:
        inputs = (torch.rand(shape) < setup.rate).float()
    else:
        # as the toolchain's ``direct`` encoding makes it (toolchain.data.encoding.direct): one
        # step repeated over time as a view (stride 0), which each framework takes as it is
        inputs = torch.rand(shape[1:]).unsqueeze(0).expand(shape)
    labels = torch.randint(0, setup.classes, (setup.batch,))
    return inputs, labels


def toolchain_model(setup: Setup) -> nn.Module:
    """``build_model`` of the setup's ``[model]`` table with the setup's neurons (seeded: its
    initial weights are torch's defaults, uniform in +-1/sqrt(fan_in), and every framework's)."""
    from toolchain.config import ModelConfig, NeuronConfig
    from toolchain.snn.models import build_model

    neuron = NeuronConfig(
        threshold=setup.threshold,
        current_decay=setup.current_decay,
        voltage_decay=setup.voltage_decay,
        surrogate="sigmoid",
        surrogate_scale=setup.surrogate_scale,
        synapse_delay=0,
    )
    torch.manual_seed(setup.seed)
    return build_model(ModelConfig(**setup.model), neuron, setup.input_shape, setup.classes)


def network(setup: Setup) -> list[Layer]:
    """The layers of the toolchain's model, framework-neutral, with its initial weights."""
    from toolchain.snn.blocks import FlattenBlock, PoolBlock, SynapticBlock

    layers = []
    for block in toolchain_model(setup).blocks:
        if isinstance(block, SynapticBlock):
            weight = block.weight.detach().clone()
            if block.kind == "dense":
                layers.append(Layer("dense", weight))
            else:
                conv = block.synapse.module
                layers.append(
                    Layer("conv", weight, conv.stride[0], conv.padding[0], dims=block.spec.spatial_dims)
                )
        elif isinstance(block, PoolBlock):
            if block.spec.mode != "sum":
                raise ValueError(f"{block.name}: only sum pooling is benchmarked")
            layers.append(Layer("pool", size=block.spec.kernel_size, dims=block.spec.spatial_dims))
        elif isinstance(block, FlattenBlock):
            layers.append(Layer("flatten"))
        else:
            raise ValueError(f"{block.name}: no benchmark layer for {type(block).__name__}")
    return layers


def describe_layers(layers: list[Layer]) -> str:
    parts = []
    for layer in layers:
        if layer.kind == "dense":
            parts.append(f"dense {layer.weight.shape[0]}")
        elif layer.kind == "conv":
            kernel = "x".join(str(k) for k in layer.weight.shape[2:])
            parts.append(
                f"conv{layer.dims}d {layer.weight.shape[0]} ({kernel}, stride {layer.stride}, "
                f"padding {layer.padding})"
            )
        elif layer.kind == "pool":
            parts.append(f"sum pool {layer.size}")
        else:
            parts.append("flatten")
    return " -> ".join(parts)


def toolchain_runner(setup: Setup, layers: list[Layer], inputs: torch.Tensor, fused: bool) -> Runner:
    """This toolchain's network as ``toolchain.snn.models.build_model`` makes it from a recipe.

    In float mode ``CubaLIF`` runs :func:`toolchain.snn.fused.cuba_sequence` when its spike
    function is a :class:`~toolchain.snn.surrogate.SurrogateSpike` (what recipes give it);
    ``fused=False`` wraps that spike function in a plain function, so that ``CubaLIF`` steps
    ``cuba_step`` under autograd instead, as it did before the fused loop.
    """
    from toolchain.snn.blocks import SynapticBlock
    from toolchain.snn.neurons import CubaLIF
    from toolchain.snn.surrogate import SurrogateSpike

    model = toolchain_model(setup)
    blocks = [b for b in model.blocks if isinstance(b, SynapticBlock)]
    synaptic = [layer for layer in layers if layer.synaptic]
    if len(blocks) != len(synaptic):
        raise RuntimeError(f"expected {len(synaptic)} synaptic blocks, found {len(blocks)}")
    with torch.no_grad():
        for block, layer in zip(blocks, synaptic, strict=True):
            block.weight.copy_(layer.weight)
    populations = [m for m in model.modules() if isinstance(m, CubaLIF)]
    if len(populations) != len(synaptic):
        raise RuntimeError(f"expected {len(synaptic)} CubaLIF populations, found {len(populations)}")
    for population in populations:
        if not isinstance(population.spike_fn, SurrogateSpike) or population.registers is not None:
            raise RuntimeError("CubaLIF is no longer built to run fused; update benchmarks/train_speed.py")
        if not fused:
            population.spike_fn = _plain_function(population.spike_fn)
    # its compiled kernels (numba: the fused loop's forward and backward, the event-driven dense
    # synapses, which the step-by-step model runs too) load with the network, as peers' imports do
    from toolchain.snn.dynamics import compiled_cuba_float_steps
    from toolchain.snn.event_synapses import compiled_kernels
    from toolchain.snn.fused import KERNEL_SLOPES, compiled_cuba_float_backward_steps

    compiled_kernels()
    if fused:
        compiled_cuba_float_steps()
        compiled_cuba_float_backward_steps(KERNEL_SLOPES["sigmoid"])  # the setup's surrogate

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        return list(model(x).spikes.values())

    return Runner(
        name="toolchain, fused" if fused else "toolchain, step by step",
        version=importlib.metadata.version("neuro-toolchain"),
        module=model,
        forward=forward,
        inputs=inputs,
        time_axis=0,
        notes=(
            "build_model's CubaLIF, which runs toolchain.snn.fused.cuba_sequence (its forward loop "
            "and backward recursion compiled by numba), and its Dense layers on events where their "
            "input is sparse (toolchain.snn.event_synapses; the kernels loaded when the network is built)"
            if fused
            else "the same model with CubaLIF stepping cuba_step under autograd (spike function "
            "wrapped in a plain function); its Dense layers on events as the fused model's"
        ),
    )


def _plain_function(
    spike_fn: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same spike function, but not a ``SurrogateSpike``: ``CubaLIF`` then steps ``cuba_step``."""

    def spike(x: torch.Tensor) -> torch.Tensor:
        return spike_fn(x)

    return spike


class SumPool(nn.Module):
    """Sum pooling over ``size`` windows (stride ``size``) of ``[N, C, *spatial]``."""

    def __init__(self, size: int, dims: int) -> None:
        super().__init__()
        self.size, self.dims = size, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 2:
            return nn.functional.avg_pool2d(x, self.size, divisor_override=1)
        return nn.functional.avg_pool1d(x, self.size) * self.size


class OverTime(nn.Module):
    """A per-sample module applied to all ``T * B`` samples of ``[T, B, ...]`` at once."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


def torch_layer(layer: Layer, weight_scale: float = 1.0) -> nn.Module:
    """``layer`` as a torch module on ``[N, ...]`` samples (weights copied, times ``weight_scale``)."""
    if layer.kind == "pool":
        return SumPool(layer.size, layer.dims)
    if layer.kind == "flatten":
        return nn.Flatten()
    assert layer.weight is not None
    out_features, in_features, *kernel = layer.weight.shape
    if layer.kind == "dense":
        module: nn.Module = nn.Linear(in_features, out_features, bias=False)
    else:
        conv = nn.Conv2d if layer.dims == 2 else nn.Conv1d
        module = conv(in_features, out_features, kernel, layer.stride, layer.padding, bias=False)
    with torch.no_grad():
        module.weight.copy_(layer.weight * weight_scale)
    return module


def snntorch_runner(setup: Setup, layers: list[Layer], inputs: torch.Tensor) -> Runner:
    """snnTorch ``Synaptic`` neurons (CUBA), reset to zero right after the spike."""
    import snntorch
    from snntorch import surrogate

    spike_grad = surrogate.sigmoid(slope=setup.surrogate_scale)
    synapses = nn.ModuleList(OverTime(torch_layer(layer)) for layer in layers)
    neurons = nn.ModuleList(
        snntorch.Synaptic(
            alpha=1.0 - setup.current_decay,
            beta=1.0 - setup.voltage_decay,
            threshold=setup.threshold,
            spike_grad=spike_grad,
            reset_mechanism="zero",
            reset_delay=False,
        )
        if layer.synaptic
        else nn.Identity()
        for layer in layers
    )
    module = nn.ModuleDict({"synapses": synapses, "neurons": neurons})

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = x
        for layer, synapse, neuron in zip(layers, synapses, neurons, strict=True):
            h = synapse(h)  # all T steps in one matmul / convolution, as for every framework here
            if not layer.synaptic:
                continue
            syn, mem = neuron.reset_mem()
            spikes = []
            for x_t in h:
                s_t, syn, mem = neuron(x_t, syn, mem)
                spikes.append(s_t)
            h = torch.stack(spikes)
            out.append(h)
        return out

    return Runner(
        name="snnTorch",
        version=importlib.metadata.version("snntorch"),
        module=module,
        forward=forward,
        inputs=inputs,
        time_axis=0,
        notes="Synaptic(reset_mechanism='zero', reset_delay=False), stepped over T",
    )


def spikingjelly_runner(setup: Setup, layers: list[Layer], inputs: torch.Tensor) -> Runner:
    """SpikingJelly ``CUBALIFNode`` in multi-step mode (``step_mode='m'``; torch is its only backend)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    modules: list[nn.Module] = []
    spiking: list[bool] = []
    for spec in layers:
        if spec.kind == "pool":
            if spec.dims == 2:
                modules.append(layer.AvgPool2d(spec.size, divisor_override=1))
            else:
                modules.append(layer.SeqToANNContainer(SumPool(spec.size, spec.dims)))
        elif spec.kind == "flatten":
            modules.append(layer.Flatten())
        else:
            plain = torch_layer(spec)
            if spec.kind == "dense":
                synapse = layer.Linear(plain.in_features, plain.out_features, bias=False)
            else:
                conv = layer.Conv2d if spec.dims == 2 else layer.Conv1d
                synapse = conv(
                    plain.in_channels, plain.out_channels, plain.kernel_size, spec.stride, spec.padding,
                    bias=False,
                )  # fmt: skip
            with torch.no_grad():
                synapse.weight.copy_(plain.weight)
            modules.append(synapse)
        spiking.append(False)
        if spec.synaptic:
            modules.append(
                neuron.CUBALIFNode(
                    c_decay=1.0 - setup.current_decay,
                    v_decay=1.0 - setup.voltage_decay,
                    v_threshold=setup.threshold,
                    v_reset=0.0,
                    surrogate_function=surrogate.Sigmoid(alpha=setup.surrogate_scale),
                )
            )
            spiking.append(True)
    net = nn.Sequential(*modules)
    functional.set_step_mode(net, "m")

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        functional.reset_net(net)
        out = []
        h = x
        for m, is_neuron in zip(net, spiking, strict=True):
            h = m(h)
            if is_neuron:
                out.append(h)
        return out

    return Runner(
        name="SpikingJelly",
        version=importlib.metadata.version("spikingjelly"),
        module=net,
        forward=forward,
        inputs=inputs,
        time_axis=0,
        notes="CUBALIFNode, step_mode='m', backend torch",
    )


def norse_parameters(setup: Setup) -> Any:
    """Norse's ``LIFParameters`` with our CUBA dynamics (``dt = 1``).

    Norse's step (``lif_feed_forward_step``): ``i += x`` (the input jumps the current first), then
    ``v += dt * tau_mem_inv * (v_leak - v + i)`` with that new current, ``i -= dt * tau_syn_inv * i``
    (the decay after the voltage used it), ``z = v > v_th``, ``v = (1 - z) v + z v_reset``. With
    ``dt * tau_syn_inv`` our current decay and ``dt * tau_mem_inv`` our voltage decay ``d``, its current
    equals ours and its voltage is ``v = (1 - d) v + d * u``: ``d`` times ours for the same input.
    Weights of ``1 / d`` times ours (:attr:`Runner.weight_scale`) make both the same, with the same
    threshold. Its ``tanh`` surrogate's derivative ``1 - tanh(alpha x)^2`` is ours
    (``4 sig(4x) (1 - sig(4x))`` for scale 4) with ``alpha = scale / 2``.
    """
    import norse.torch as norse

    return norse.LIFParameters(
        tau_syn_inv=torch.as_tensor(setup.current_decay),
        tau_mem_inv=torch.as_tensor(setup.voltage_decay),
        v_leak=torch.as_tensor(0.0),
        v_th=torch.as_tensor(setup.threshold),
        v_reset=torch.as_tensor(0.0),
        method="tanh",
        alpha=torch.as_tensor(setup.surrogate_scale / 2),
    )


def norse_runner(setup: Setup, layers: list[Layer], inputs: torch.Tensor) -> Runner:
    """Norse's ``LIF`` module (a ``LIFCell`` wrapped in time) over each layer's whole sequence."""
    import norse.torch as norse

    scale = 1.0 / setup.voltage_decay
    parameters = norse_parameters(setup)
    synapses = nn.ModuleList(OverTime(torch_layer(layer, scale)) for layer in layers)
    neurons = nn.ModuleList(
        norse.LIF(parameters, dt=1.0) if layer.synaptic else nn.Identity() for layer in layers
    )
    module = nn.ModuleDict({"synapses": synapses, "neurons": neurons})

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = x
        for layer, synapse, neuron in zip(layers, synapses, neurons, strict=True):
            h = synapse(h)
            if layer.synaptic:
                h, _ = neuron(h)
                out.append(h)
        return out

    return Runner(
        name="Norse",
        version=importlib.metadata.version("norse"),
        module=module,
        forward=forward,
        inputs=inputs,
        time_axis=0,
        notes=f"LIF(LIFParameters(tau_syn_inv={setup.current_decay}, tau_mem_inv={setup.voltage_decay}, "
        f"v_th={setup.threshold}, v_reset=0, method='tanh', alpha={setup.surrogate_scale / 2:g}), dt=1) "
        f"over the whole sequence; weights x {scale:g} (= 1 / voltage decay: its voltage integrates "
        f"dt * tau_mem_inv * current), Adam lr x {scale:g}",
        weight_scale=scale,
    )


def slayer_runner(setup: Setup, layers: list[Layer], inputs: torch.Tensor) -> Runner:
    """lava-dl's slayer ``block.cuba.Dense``/``Conv`` (input ``[B, C, ..., T]``, CPU fallback of its
    dynamics); sum pooling as a ``(k, k, 1)`` pooling of its ``[B, C, H, W, T]`` tensors (its own
    ``Pool`` block would add a layer of neurons), a 1-D convolution as a ``(k, 1)`` ``Conv``."""
    from toolchain import lava_compat

    lava_compat.install()
    from lava.lib.dl import slayer

    params = {
        "threshold": setup.threshold,
        "current_decay": setup.current_decay,
        "voltage_decay": setup.voltage_decay,
        "tau_grad": 1.0,
        "scale_grad": 1.0,
        "requires_grad": False,
    }
    blocks: list[nn.Module] = []
    for layer in layers:
        if layer.kind == "dense":
            assert layer.weight is not None
            out_features, in_features = layer.weight.shape
            block: nn.Module = slayer.block.cuba.Dense(
                params, in_features, out_features, weight_norm=False, delay_shift=False
            )
        elif layer.kind == "conv":
            assert layer.weight is not None
            out_features, in_features, *kernel = layer.weight.shape
            pair = (lambda n, fill: (n, n)) if layer.dims == 2 else (lambda n, fill: (n, fill))
            block = slayer.block.cuba.Conv(
                params, in_features, out_features, pair(kernel[0], 1), stride=pair(layer.stride, 1),
                padding=pair(layer.padding, 0), weight_norm=False, delay_shift=False,
            )  # fmt: skip
        elif layer.kind == "pool":
            window = (layer.size, layer.size, 1) if layer.dims == 2 else (layer.size, 1, 1)
            block = _SlayerSumPool(window)
        else:
            block = slayer.block.cuba.Flatten()
        if layer.synaptic:
            with torch.no_grad():
                block.synapse.weight.copy_(layer.weight.reshape(block.synapse.weight.shape))
        blocks.append(block)
    module = nn.ModuleList(blocks)
    native = inputs.movedim(0, -1)  # [B, *shape, T]
    if layers[0].kind == "conv" and layers[0].dims == 1:
        native = native.unsqueeze(3)  # [B, C, L, 1, T]: a 1-D convolution as a (k, 1) one
    native = native.contiguous()

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = x
        for layer, block in zip(layers, blocks, strict=True):
            h = block(h)
            if layer.synaptic:
                out.append(h)
        return out

    kinds = sorted(
        {f"block.cuba.{'Dense' if layer.kind == 'dense' else 'Conv'}" for layer in layers if layer.synaptic}
    )
    return Runner(
        name="lava-dl slayer",
        version=importlib.metadata.version("lava-dl"),
        module=module,
        forward=forward,
        inputs=native,
        time_axis=-1,
        notes=f"{', '.join(kinds)}, 8-bit weights, fixed-point states (its defaults)",
    )


class _SlayerSumPool(nn.Module):
    def __init__(self, window: tuple[int, int, int]) -> None:
        super().__init__()
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool3d(x, self.window, divisor_override=1)


BUILDERS: dict[str, Callable[[Setup, list[Layer], torch.Tensor], Runner]] = {
    "toolchain-step": lambda s, n, x: toolchain_runner(s, n, x, fused=False),
    "toolchain-fused": lambda s, n, x: toolchain_runner(s, n, x, fused=True),
    "snntorch": snntorch_runner,
    "spikingjelly": spikingjelly_runner,
    "norse": norse_runner,
    "slayer": slayer_runner,
}


def build_runners(
    setup: Setup, layers: list[Layer], inputs: torch.Tensor, frameworks: Sequence[str]
) -> tuple[list[Runner], list[str]]:
    """The frameworks' runners, each with its Adam; frameworks that cannot be imported are skipped."""
    runners: list[Runner] = []
    skipped: list[str] = []
    for key in frameworks:
        try:
            runner = BUILDERS[key](setup, layers, inputs)
        except ImportError as error:
            skipped.append(f"{key} ({error})")
            continue
        runner.optimizer = torch.optim.Adam(
            runner.module.parameters(), lr=setup.learning_rate * runner.weight_scale
        )
        runners.append(runner)
    return runners, skipped


def train_step(runner: Runner, labels: torch.Tensor) -> None:
    assert runner.optimizer is not None
    runner.optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(runner.logits(runner.inputs), labels)
    loss.backward()
    runner.optimizer.step()


def infer_step(runner: Runner) -> None:
    with torch.no_grad():
        runner.logits(runner.inputs)


def weight_gradients(runner: Runner, labels: torch.Tensor) -> list[torch.Tensor]:
    """The first batch's gradients of every weight (parameters of 2 or more dimensions), in order,
    in our units (times the runner's weight scale)."""
    runner.module.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(runner.logits(runner.inputs), labels).backward()
    grads = [p.grad.clone() * runner.weight_scale for p in runner.module.parameters() if p.dim() >= 2]
    runner.module.zero_grad(set_to_none=True)
    return grads


def gradient_agreement(runners: list[Runner], labels: torch.Tensor) -> str:
    """How far each framework's first weight gradients are from the fused toolchain model's."""
    reference = next((r for r in runners if r.name == "toolchain, fused"), None)
    if reference is None or len(runners) < 2:
        return ""
    ours = weight_gradients(reference, labels)
    parts = []
    for runner in runners:
        if runner is reference:
            continue
        theirs = weight_gradients(runner, labels)
        if [g.numel() for g in theirs] != [g.numel() for g in ours]:
            parts.append(f"{runner.name} -")
            continue
        worst = max(
            float((a.reshape(b.shape) - b).abs().max() / b.abs().max())
            for a, b in zip(theirs, ours, strict=True)
        )
        parts.append(f"{runner.name} {worst:.1e}")
    return (
        "- weight gradients of the first batch against the fused toolchain model's (same weights, in "
        "our units; max |difference| / max |gradient|, worst layer): " + ", ".join(parts)
    )


def activity(runner: Runner, batch: int) -> list[float]:
    """Spikes per sample of every spiking layer on the benchmark's batch (initial weights)."""
    with torch.no_grad():
        return [float(s.sum()) / batch for s in runner.forward(runner.inputs)]


# ------------------------------------------------------------------------------------------------
# peak memory: each framework and mode in a fresh process


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key}")
    return int(match.group(1))


def probe_memory(setup: Setup, key: str, mode: str, steps: int = 2) -> dict[str, float]:
    """Peak resident memory of ``steps`` training (or inference) steps of one framework, in MiB.

    Run in a fresh process (``--probe``): builds the batch and the network, then resets the
    kernel's high-water mark of the resident set (``/proc/self/clear_refs``, 5) and runs the steps
    (training: forward, backward and Adam, whose state the first step allocates). ``step``: the
    high-water mark ``VmHWM`` after the steps less the resident set ``VmRSS`` before them;
    ``process``: the process's peak resident set, the larger ``VmHWM`` of before the reset
    (interpreter, torch, the framework's imports, network) and after the steps. (Not
    ``getrusage``'s ``ru_maxrss``: Linux carries it over ``exec`` from the forked parent.)
    """
    inputs, labels = make_batch(setup)
    runners, skipped = build_runners(setup, network(setup), inputs, [key])
    if not runners:
        raise SystemExit("; ".join(skipped))
    runner = runners[0]
    gc.collect()
    before, built = _status_kib("VmRSS"), _status_kib("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")
    for _ in range(steps):
        if mode == "train":
            train_step(runner, labels)
        else:
            infer_step(runner)
    peak = _status_kib("VmHWM")
    return {"step": (peak - before) / 1024, "process": max(built, peak) / 1024}


def measure_memory(
    script: Path, argv: Sequence[str], runners: list[Runner], keys: Sequence[str], runs: int
) -> dict[str, dict[str, dict[str, float]]]:
    """``{runner name: {mode: probe}}``: the median of ``runs`` fresh processes
    ``script argv --probe KEY MODE`` (the step's peak varies from process to process: the
    allocator's and the garbage collector's timing), interleaved over frameworks and modes."""
    probes: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(runs):
        for runner, key in zip(runners, keys, strict=True):
            for mode in ("train", "infer"):
                done = subprocess.run(
                    [sys.executable, str(script), *argv, "--probe", key, mode],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    print(f"memory probe {key} {mode} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                probes.setdefault((runner.name, mode), []).append(result)
    return {
        name: {
            mode: {part: statistics.median(p[part] for p in found) for part in ("step", "process")}
            for (other, mode), found in probes.items()
            if other == name
        }
        for name in {name for name, _ in probes}
    }


#: the prefix of a timing worker's replies on its standard output (frameworks may print there too)
_REPLY = "@@timing "
#: glibc's allocator settings of every timed process: freed memory is kept for reuse (no
#: ``mmap`` per large tensor, no trimming of the heap), the same for every framework. With glibc's
#: defaults its thresholds adapt to the sizes a process has freed, so how much fresh memory each
#: step pages in (and pays for in page faults) depends on what was freed before
#: (``--allocator-defaults`` measures with the defaults, page faults per step reported)
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def keep_freed_memory() -> None:
    """Start the running script again with :data:`ALLOCATOR_ENV` unless it already has it (glibc
    reads the settings at start-up), so that its timings, as the training tables', leave out the
    page faults of fresh memory: with the defaults a new output tensor over the current mmap
    threshold is mapped and faulted in at every call, until a free raises the threshold."""
    if any(os.environ.get(key) != value for key, value in ALLOCATOR_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})


def serve_timing(setup: Setup, key: str, warmup: int) -> int:
    """The ``--worker KEY`` process: build the batch and framework ``key``'s network, warm it up
    (``warmup`` training and inference steps), then answer each line ``train N`` or ``infer N`` on
    standard input with the wall and CPU seconds per batch of ``N`` batches and the load average."""
    inputs, labels = make_batch(setup)
    runners, skipped = build_runners(setup, network(setup), inputs, [key])
    if not runners:
        print(_REPLY + json.dumps({"error": "; ".join(skipped)}), flush=True)
        return 1
    runner = runners[0]
    for _ in range(warmup):
        train_step(runner, labels)
        infer_step(runner)
    print(_REPLY + json.dumps({"ready": runner.name}), flush=True)
    for line in sys.stdin:
        mode, batches = line.split()
        timing = Timing()
        if mode == "train":
            timing.add(lambda: train_step(runner, labels), int(batches))
        else:
            timing.add(lambda: infer_step(runner), int(batches))
        reply = {
            "wall": timing.wall[0],
            "cpu": timing.cpu[0],
            "load": timing.loads[0],
            "faults": timing.faults[0],
        }
        print(_REPLY + json.dumps(reply), flush=True)
    return 0


class TimingWorker:
    """A framework's network in a process of its own (``script argv --worker KEY``), timed on
    request: the parent only waits while it runs."""

    def __init__(self, script: Path, argv: Sequence[str], key: str, warmup: int, keep_freed: bool) -> None:
        self.key = key
        self.process = subprocess.Popen(
            [sys.executable, str(script), *argv, "--warmup", str(warmup), "--worker", key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **ALLOCATOR_ENV} if keep_freed else None,
        )
        self._reply()  # built and warmed up

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(_REPLY):
                reply = json.loads(line[len(_REPLY) :])
                if "error" in reply:
                    raise RuntimeError(f"timing worker {self.key}: {reply['error']}")
                return reply
        raise RuntimeError(f"timing worker {self.key} ended (exit status {self.process.wait()})")

    def time(self, mode: str, batches: int, timing: Timing) -> None:
        """Run ``batches`` steps of ``mode`` (``train`` or ``infer``) there; add them to ``timing``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{mode} {batches}\n")
        self.process.stdin.flush()
        reply = self._reply()
        timing.record(reply["wall"], reply["cpu"], reply["load"], reply["faults"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


# ------------------------------------------------------------------------------------------------
# the measurement and its table


def add_arguments(parser: argparse.ArgumentParser, repeats: int = 5, batches: int = 3) -> None:
    """The options every training-speed script shares."""
    parser.add_argument("--frameworks", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the network's)")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per framework and mode")
    parser.add_argument("--batches", type=int, default=batches, help="batches per timed repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per framework and mode")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--memory-runs", type=int, default=3, help="fresh processes per framework and mode for peak memory"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument(
        "--allocator-defaults",
        action="store_true",
        help="time with glibc's allocator defaults, not ALLOCATOR_ENV (to see what the setting changes)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update this table's section in {DOCS}")
    parser.add_argument("--probe", nargs=2, metavar=("FRAMEWORK", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", metavar="FRAMEWORK", help=argparse.SUPPRESS)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command as the docs print it (with ``OMP_NUM_THREADS`` when it is set)."""
    env = os.environ.get("OMP_NUM_THREADS")
    prefix = f"OMP_NUM_THREADS={env} " if env else ""
    args = sys.argv[1:] if argv is None else list(argv)
    return f"{prefix}benchmarks/.venv/bin/python benchmarks/{script} {' '.join(args)}".strip()


def benchmark(
    setup: Setup,
    args: argparse.Namespace,
    command: str,
    script: Path,
    probe_argv: Sequence[str],
) -> str | None:
    """Time every framework on ``setup`` (interleaved repeats), probe its memory, return the table."""
    inputs, labels = make_batch(setup)
    layers = network(setup)
    runners, skipped = build_runners(setup, layers, inputs, args.frameworks)
    if not runners:
        print("nothing to measure: " + "; ".join(skipped), file=sys.stderr)
        return None
    keys = [key for key in args.frameworks if not any(item.startswith(f"{key} (") for item in skipped)]

    spikes = {r.name: activity(r, setup.batch) for r in runners}
    agreement = gradient_agreement(runners, labels)
    train = {r.name: Timing() for r in runners}
    infer = {r.name: Timing() for r in runners}
    # one process per framework, built and warmed up (allocator, lazy initialisation, Adam's state)
    keep_freed = not args.allocator_defaults
    workers = [TimingWorker(script, probe_argv, key, args.warmup, keep_freed) for key in keys]
    pairs = list(zip(runners, workers, strict=True))
    try:
        for repeat in range(args.repeats):
            # interleaved, and each repeat starts with the next framework, so that no framework is
            # always the one measured right after a quiet (or busy) moment
            shift = repeat % len(pairs)
            for runner, worker in pairs[shift:] + pairs[:shift]:
                worker.time("train", args.batches, train[runner.name])
                worker.time("infer", args.batches, infer[runner.name])
    finally:
        for worker in workers:
            worker.close()
    memory = {} if args.no_memory else measure_memory(script, probe_argv, runners, keys, args.memory_runs)
    return render(setup, layers, args, runners, train, infer, spikes, memory, skipped, command, agreement)


def render(
    setup: Setup,
    layers: list[Layer],
    args: argparse.Namespace,
    runners: list[Runner],
    train: dict[str, Timing],
    infer: dict[str, Timing],
    spikes: dict[str, list[float]],
    memory: dict[str, dict[str, dict[str, float]]],
    skipped: list[str],
    command: str,
    agreement: str,
) -> str:
    """The results as markdown: the setting, one table row per framework, notes."""
    ours = next((r.name for r in runners if r.name == "toolchain, fused"), runners[0].name)
    loads = [load for t in (*train.values(), *infer.values()) for load in t.loads]
    batch = setup.batch

    def rate(seconds: float) -> float:
        return batch / seconds

    def mib(name: str, part: str) -> str:
        modes = memory.get(name, {})
        return ", ".join(f"{modes[m][part]:.0f}" if m in modes else "-" for m in ("train", "infer"))

    workload = setup.description
    if setup.model.get("architecture") != "mlp":
        workload += f" ({describe_layers(layers)})"
    allocator = (
        "glibc's allocator with its defaults"
        if args.allocator_defaults
        else "glibc's allocator keeping freed memory ("
        + " ".join(f"{key}={value}" for key, value in ALLOCATOR_ENV.items())
        + ")"
    )
    lines = [
        f"Command: `{command}`",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {platform.machine()} ({machine.cpu_description()}), {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}",
        f"- 1-minute load average after each measurement: {min(loads):.2f} to {max(loads):.2f} "
        "(other work shared the machine)",
        f"- workload: {workload}, T = {setup.steps}, batch {batch}, {setup.input_description}, "
        f"current decay {setup.current_decay}, voltage decay {setup.voltage_decay}, threshold "
        f"{setup.threshold}, sigmoid surrogate scale {setup.surrogate_scale}, Adam lr "
        f"{setup.learning_rate}, cross-entropy on output spike counts",
        f"- timing: each framework in a process of its own, {allocator}, {args.warmup} warm-up batches, then "
        f"{args.repeats} repeats of {args.batches} batches per framework and mode, the processes taking "
        "turns; samples/s = batch / seconds per batch, best repeat "
        "(median in brackets); per CPU-second: batch / process CPU seconds per batch, best repeat",
    ]
    if memory:
        lines.append(
            f"- peak memory, MiB: median of {args.memory_runs} fresh processes per framework and mode "
            "(same threads), 2 steps each (training: forward, backward, Adam with its state); *steps*: "
            "the peak resident set during the steps (VmHWM, reset before them) less the resident set "
            "before them (network and batch built); *process*: the process's peak resident set "
            "(VmHWM: interpreter, torch, the framework's imports, network, steps)"
        )
    header = (
        f"| framework | version | train samples/s | inference samples/s | train, inference per CPU-s "
        f"| load at best (train, infer) | {ours}: × faster (train, infer) "
    )
    rule = "|---|---|---|---|---|---|---|"
    if memory:
        header += "| peak MiB, steps (train, infer) | peak MiB, process (train, infer) "
        rule += "---|---|"
    lines += ["", header + "| spikes/sample per layer |", rule + "---|"]
    ours_train, ours_infer = rate(train[ours].best()[0]), rate(infer[ours].best()[0])
    for runner in runners:
        t, i = train[runner.name], infer[runner.name]
        (t_best, t_load), (i_best, i_load) = t.best(), i.best()
        row = (
            f"| {runner.name} | {runner.version} "
            f"| {rate(t_best):.0f} ({rate(statistics.median(t.wall)):.0f}) "
            f"| {rate(i_best):.0f} ({rate(statistics.median(i.wall)):.0f}) "
            f"| {rate(min(t.cpu)):.0f}, {rate(min(i.cpu)):.0f} "
            f"| {t_load:.2f}, {i_load:.2f} "
            f"| {ours_train / rate(t_best):.2f}, {ours_infer / rate(i_best):.2f} "
        )
        if memory:
            row += f"| {mib(runner.name, 'step')} | {mib(runner.name, 'process')} "
        lines.append(row + f"| {' / '.join(f'{n:.0f}' for n in spikes[runner.name])} |")
    lines.append("")
    lines.extend(f"- {runner.name}: {runner.notes}" for runner in runners)
    lines.append(
        "- minor page faults per training step (fresh memory paged in; the best repeat's): "
        + ", ".join(f"{r.name} {train[r.name].faults[_best_index(train[r.name])]:.0f}" for r in runners)
    )
    if agreement:
        lines.append(agreement)
    lines.extend(f"- skipped: {item}" for item in skipped)
    return "\n".join(lines)


def write_docs(report: str, begin: str, end: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` of docs/benchmarks.md."""
    text = DOCS.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{DOCS}: missing the markers {begin} / {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOCS.write_text(f"{head}{begin}\n{report}\n{end}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--steps", type=int, default=Setup.steps, help="time steps T")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    setup = Setup(steps=args.steps, batch=args.batch or Setup.batch)
    if args.probe:
        print(json.dumps(probe_memory(setup, *args.probe)))
        return 0
    if args.worker:
        return serve_timing(setup, args.worker, args.warmup)
    probe_argv = ["--steps", str(setup.steps), "--batch", str(setup.batch)]
    if args.threads is not None:
        probe_argv += ["--threads", str(args.threads)]
    report = benchmark(setup, args, command_line("train_speed.py", argv), Path(__file__), probe_argv)
    if report is None:
        return 1
    print(report)
    if args.write_docs:
        section = f"train_speed-threads{torch.get_num_threads()}" + (
            "-allocator-defaults" * args.allocator_defaults
        )
        write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
        print(f"\nwrote {DOCS.relative_to(REPO)} ({section})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
