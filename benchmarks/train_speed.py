"""Training and inference speed of the reference SNN on the CPU, this toolchain against others.

The network is the reference 700-256-256-20 dense CUBA-LIF network (Zenke's SHD layout), ``T``
time steps, random input spikes at ``--rate`` and random labels; every framework gets the same
initial weights, the same neuron parameters, Adam and cross-entropy on the output spike counts.
Frameworks are measured side by side in one process, interleaved repeat by repeat so that they
share the machine's load; the best (minimum) time of the repeats is reported with the 1-minute load
average when it was taken.

Run from the repository root with the benchmark environment (``benchmarks/README.md``)::

    benchmarks/.venv/bin/python benchmarks/train_speed.py                 # print the table
    benchmarks/.venv/bin/python benchmarks/train_speed.py --write-docs    # and update docs/benchmarks.md

Frameworks that are not installed are listed as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Setup:
    """The benchmark's workload; every framework is configured from this."""

    sizes: tuple[int, ...] = (700, 256, 256, 20)
    steps: int = 100
    batch: int = 64
    rate: float = 0.1
    #: fractions lost per step, as in toolchain's [neuron]; both exact in Loihi's 12-bit decays
    current_decay: float = 0.25
    voltage_decay: float = 0.0625
    threshold: float = 1.0
    #: the surrogate every framework has in the same form: scale * sig(scale x) (1 - sig(scale x))
    surrogate_scale: float = 4.0
    learning_rate: float = 1e-3
    seed: int = 0


#: forward: native input -> every layer's spikes (the last is the output layer, time on ``time_axis``)
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

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.forward(inputs)[-1].sum(dim=self.time_axis)


@dataclass
class Timing:
    """Wall and process-CPU seconds per batch of each repeat, and the load average after each."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], None], batches: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            fn()
        self.wall.append((time.perf_counter() - wall) / batches)
        self.cpu.append((time.process_time() - cpu) / batches)
        self.loads.append(os.getloadavg()[0])

    def best(self) -> tuple[float, float]:
        """The best (minimum) wall time and the load average when it was taken."""
        index = min(range(len(self.wall)), key=self.wall.__getitem__)
        return self.wall[index], self.loads[index]


def initial_weights(setup: Setup) -> list[torch.Tensor]:
    """``[out, in]`` weights of every layer, the same for every framework: torch's ``nn.Linear``
    default (uniform in +-1/sqrt(fan_in)), which gives every layer about 10 % spikes per step here."""
    torch.manual_seed(setup.seed)
    weights = []
    for fan_in, fan_out in zip(setup.sizes[:-1], setup.sizes[1:], strict=True):
        weights.append(nn.Linear(fan_in, fan_out, bias=False).weight.detach())
    return weights


def toolchain_runner(setup: Setup, weights: list[torch.Tensor], inputs: torch.Tensor, fused: bool) -> Runner:
    """This toolchain's network as ``toolchain.snn.models.build_model`` makes it from a recipe.

    In float mode ``CubaLIF`` runs :func:`toolchain.snn.fused.cuba_sequence` when its spike
    function is a :class:`~toolchain.snn.surrogate.SurrogateSpike` (what recipes give it);
    ``fused=False`` wraps that spike function in a plain function, so that ``CubaLIF`` steps
    ``cuba_step`` under autograd instead, as it did before the fused loop.
    """
    from toolchain.config import ModelConfig, NeuronConfig
    from toolchain.snn.models import build_model
    from toolchain.snn.neurons import CubaLIF
    from toolchain.snn.surrogate import SurrogateSpike

    neuron = NeuronConfig(
        threshold=setup.threshold,
        current_decay=setup.current_decay,
        voltage_decay=setup.voltage_decay,
        surrogate="sigmoid",
        surrogate_scale=setup.surrogate_scale,
        synapse_delay=0,
    )
    architecture = ModelConfig(architecture="mlp", hidden=list(setup.sizes[1:-1]))
    model = build_model(architecture, neuron, setup.sizes[0], setup.sizes[-1])
    _copy_weights([m for m in model.modules() if isinstance(m, nn.Linear)], weights)
    populations = [m for m in model.modules() if isinstance(m, CubaLIF)]
    if len(populations) != len(weights):
        raise RuntimeError(f"expected {len(weights)} CubaLIF populations, found {len(populations)}")
    for population in populations:
        if not isinstance(population.spike_fn, SurrogateSpike) or population.registers is not None:
            raise RuntimeError("CubaLIF is no longer built to run fused; update benchmarks/train_speed.py")
        if not fused:
            population.spike_fn = _plain_function(population.spike_fn)

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
            "build_model's CubaLIF, which runs toolchain.snn.fused.cuba_sequence"
            if fused
            else "the same model with CubaLIF stepping cuba_step under autograd (spike function "
            "wrapped in a plain function)"
        ),
    )


def _plain_function(
    spike_fn: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same spike function, but not a ``SurrogateSpike``: ``CubaLIF`` then steps ``cuba_step``."""

    def spike(x: torch.Tensor) -> torch.Tensor:
        return spike_fn(x)

    return spike


def snntorch_runner(setup: Setup, weights: list[torch.Tensor], inputs: torch.Tensor) -> Runner:
    """snnTorch ``Synaptic`` neurons (CUBA), reset to zero right after the spike."""
    import snntorch
    from snntorch import surrogate

    linears = nn.ModuleList(nn.Linear(w.shape[1], w.shape[0], bias=False) for w in weights)
    _copy_weights(list(linears), weights)
    spike_grad = surrogate.sigmoid(slope=setup.surrogate_scale)
    neurons = nn.ModuleList(
        snntorch.Synaptic(
            alpha=1.0 - setup.current_decay,
            beta=1.0 - setup.voltage_decay,
            threshold=setup.threshold,
            spike_grad=spike_grad,
            reset_mechanism="zero",
            reset_delay=False,
        )
        for _ in weights
    )
    module = nn.ModuleDict({"linears": linears, "neurons": neurons})

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = x
        for linear, neuron in zip(linears, neurons, strict=True):
            current = linear(h)  # all T steps in one matmul, as for every framework here
            syn, mem = neuron.reset_mem()
            spikes = []
            for x_t in current:
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


def spikingjelly_runner(setup: Setup, weights: list[torch.Tensor], inputs: torch.Tensor) -> Runner:
    """SpikingJelly ``CUBALIFNode`` in multi-step mode (``step_mode='m'``; torch is its only backend)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    modules: list[nn.Module] = []
    for w in weights:
        modules.append(layer.Linear(w.shape[1], w.shape[0], bias=False))
        modules.append(
            neuron.CUBALIFNode(
                c_decay=1.0 - setup.current_decay,
                v_decay=1.0 - setup.voltage_decay,
                v_threshold=setup.threshold,
                v_reset=0.0,
                surrogate_function=surrogate.Sigmoid(alpha=setup.surrogate_scale),
            )
        )
    net = nn.Sequential(*modules)
    functional.set_step_mode(net, "m")
    _copy_weights([m for m in net if isinstance(m, nn.Linear)], weights)

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        functional.reset_net(net)
        out = []
        h = x
        for m in net:
            h = m(h)
            if not isinstance(m, nn.Linear):
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


def slayer_runner(setup: Setup, weights: list[torch.Tensor], inputs: torch.Tensor) -> Runner:
    """lava-dl's slayer ``block.cuba.Dense``: input ``[B, C, T]``, CPU fallback of its dynamics."""
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
    blocks = nn.ModuleList(
        slayer.block.cuba.Dense(params, w.shape[1], w.shape[0], weight_norm=False, delay_shift=False)
        for w in weights
    )
    with torch.no_grad():
        for block, w in zip(blocks, weights, strict=True):
            block.synapse.weight.copy_(w.reshape(block.synapse.weight.shape))

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = x
        for block in blocks:
            h = block(h)
            out.append(h)
        return out

    return Runner(
        name="lava-dl slayer",
        version=importlib.metadata.version("lava-dl"),
        module=blocks,
        forward=forward,
        inputs=inputs.permute(1, 2, 0).contiguous(),
        time_axis=-1,
        notes="block.cuba.Dense, 8-bit weights, fixed-point states (its defaults)",
    )


def _copy_weights(linears: Sequence[nn.Linear], weights: list[torch.Tensor]) -> None:
    if len(linears) != len(weights):
        raise RuntimeError(f"expected {len(weights)} linear layers, found {len(linears)}")
    with torch.no_grad():
        for linear, w in zip(linears, weights, strict=True):
            linear.weight.copy_(w)


BUILDERS: dict[str, Callable[[Setup, list[torch.Tensor], torch.Tensor], Runner]] = {
    "toolchain-step": lambda s, w, x: toolchain_runner(s, w, x, fused=False),
    "toolchain-fused": lambda s, w, x: toolchain_runner(s, w, x, fused=True),
    "snntorch": snntorch_runner,
    "spikingjelly": spikingjelly_runner,
    "slayer": slayer_runner,
}


def train_step(runner: Runner, labels: torch.Tensor) -> None:
    assert runner.optimizer is not None
    runner.optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(runner.logits(runner.inputs), labels)
    loss.backward()
    runner.optimizer.step()


def infer_step(runner: Runner) -> None:
    with torch.no_grad():
        runner.logits(runner.inputs)


def gradient_agreement(runners: list[Runner], labels: torch.Tensor) -> str:
    """How far the fused model's first gradient is from the step-by-step model's (same weights)."""
    pair = {r.name: r for r in runners if r.name.startswith("toolchain")}
    if len(pair) != 2:
        return ""
    grads = []
    for runner in pair.values():
        runner.module.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(runner.logits(runner.inputs), labels).backward()
        grads.append([p.grad.clone() for p in runner.module.parameters()])
        runner.module.zero_grad(set_to_none=True)
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads[0], grads[1], strict=True))
    return (
        "- the fused and the step-by-step toolchain models have identical spikes and weight gradients "
        f"within a relative {worst:.1e} (float32, max |difference| / max |gradient| per layer, first batch)"
    )


def activity(runner: Runner, batch: int) -> list[float]:
    """Spikes per sample of every layer on the benchmark's batch (initial weights)."""
    with torch.no_grad():
        return [float(s.sum()) / batch for s in runner.forward(runner.inputs)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--steps", type=int, default=Setup.steps, help="time steps T")
    parser.add_argument("--batch", type=int, default=Setup.batch)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per framework and mode")
    parser.add_argument("--batches", type=int, default=3, help="batches per timed repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per framework and mode")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"update the section for this thread count in {DOCS}"
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    setup = Setup(steps=args.steps, batch=args.batch)
    torch.manual_seed(setup.seed)
    inputs = (torch.rand(setup.steps, setup.batch, setup.sizes[0]) < setup.rate).float()
    labels = torch.randint(0, setup.sizes[-1], (setup.batch,))
    weights = initial_weights(setup)

    runners: list[Runner] = []
    skipped: list[str] = []
    for key in args.frameworks:
        try:
            runner = BUILDERS[key](setup, weights, inputs)
        except ImportError as error:
            skipped.append(f"{key} ({error})")
            continue
        runner.optimizer = torch.optim.Adam(runner.module.parameters(), lr=setup.learning_rate)
        runners.append(runner)
    if not runners:
        print("nothing to measure: " + "; ".join(skipped), file=sys.stderr)
        return 1

    spikes = {r.name: activity(r, setup.batch) for r in runners}
    agreement = gradient_agreement(runners, labels)
    for runner in runners:  # warm-up: allocator, lazy initialisation, Adam's state
        for _ in range(args.warmup):
            train_step(runner, labels)
            infer_step(runner)
    train = {r.name: Timing() for r in runners}
    infer = {r.name: Timing() for r in runners}
    for repeat in range(args.repeats):
        # interleaved, and each repeat starts with the next framework, so that no framework is
        # always the one measured right after a quiet (or busy) moment
        shift = repeat % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            train[runner.name].add(lambda r=runner: train_step(r, labels), args.batches)
            infer[runner.name].add(lambda r=runner: infer_step(r), args.batches)

    command = "benchmarks/.venv/bin/python benchmarks/train_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = render(setup, args, runners, train, infer, spikes, skipped, command.strip(), agreement)
    print(report)
    if args.write_docs:
        section = f"train_speed-threads{torch.get_num_threads()}"
        write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
        print(f"\nwrote {DOCS.relative_to(REPO)} ({section})")
    return 0


def render(
    setup: Setup,
    args: argparse.Namespace,
    runners: list[Runner],
    train: dict[str, Timing],
    infer: dict[str, Timing],
    spikes: dict[str, list[float]],
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

    lines = [
        f"Command: `{command}`",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}",
        f"- 1-minute load average after each measurement: {min(loads):.2f} to {max(loads):.2f} "
        "(other work shared the machine)",
        f"- workload: {'-'.join(map(str, setup.sizes))} dense CUBA-LIF, T = {setup.steps}, "
        f"batch {batch}, input spikes at rate {setup.rate}, current decay {setup.current_decay}, "
        f"voltage decay {setup.voltage_decay}, threshold {setup.threshold}, sigmoid surrogate "
        f"scale {setup.surrogate_scale}, Adam lr {setup.learning_rate}, cross-entropy on output "
        "spike counts",
        f"- timing: {args.warmup} warm-up batches, then {args.repeats} repeats of {args.batches} batches "
        "per framework and mode, interleaved; samples/s = batch / seconds per batch, best repeat "
        "(median in brackets); per CPU-second: batch / process CPU seconds per batch, best repeat",
        "",
        f"| framework | version | train samples/s | inference samples/s | train, inference per CPU-s "
        f"| load at best (train, infer) | {ours}: × faster (train, infer) | spikes/sample per layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours_train, ours_infer = rate(train[ours].best()[0]), rate(infer[ours].best()[0])
    for runner in runners:
        t, i = train[runner.name], infer[runner.name]
        (t_best, t_load), (i_best, i_load) = t.best(), i.best()
        lines.append(
            f"| {runner.name} | {runner.version} "
            f"| {rate(t_best):.0f} ({rate(statistics.median(t.wall)):.0f}) "
            f"| {rate(i_best):.0f} ({rate(statistics.median(i.wall)):.0f}) "
            f"| {rate(min(t.cpu)):.0f}, {rate(min(i.cpu)):.0f} "
            f"| {t_load:.2f}, {i_load:.2f} "
            f"| {ours_train / rate(t_best):.2f}, {ours_infer / rate(i_best):.2f} "
            f"| {' / '.join(f'{n:.0f}' for n in spikes[runner.name])} |"
        )
    lines.append("")
    lines.extend(f"- {runner.name}: {runner.notes}" for runner in runners)
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


if __name__ == "__main__":
    raise SystemExit(main())
