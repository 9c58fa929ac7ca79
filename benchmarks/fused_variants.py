"""Ways to run one CUBA-LIF population over time on the CPU, measured side by side.

One hidden layer of the reference network: input current ``[T, B, N] = [100, 64, 256]`` (float32),
the toolchain's reference parameters (``train_speed.Setup``); "train" is forward + backward of
``(spikes * g).sum()`` for a fixed random ``g``, "inference" the forward under ``torch.no_grad()``.

- ``autograd``: :class:`toolchain.snn.neurons.CubaLIF` stepping ``cuba_step`` under autograd (its
  spike function wrapped in a plain function, so that it does not dispatch to the fused loop);
- ``fused``: :func:`toolchain.snn.fused.cuba_sequence` as shipped: the forward loop and the
  backward recursion compiled by numba, the recursion computing the surrogate's derivative from the
  sigmoid that torch computes 2 steps of this shape at a time on several threads
  (``CHUNK_ELEMENTS``, the most that stays within torch's intra-op grain), 8 on one
  (``SERIAL_CHUNK_ELEMENTS``);
- ``fused, compiled backward, sigmoid chunk = k``: the same with the sigmoid of ``k`` steps
  computed at once (``k = T``: a whole-sequence temporary);
- ``fused, tensor backward, chunk = k``: the backward where numba is absent, its factors computed
  ``k`` steps at a time and two tensor operations per step (shipped: the same chunks as the
  compiled backward's; ``k = T``: all steps at once, "plain vectorized torch");
- ``torch.jit.script``: tried on the dynamics (prints why it does not apply);
- ``torch.compile`` (only with ``--compile``, it takes minutes): the forward loop of tensor
  functions (the one that runs without numba) compiled by inductor, compile time and run time.

``--busy N`` starts ``N`` processes that only loop (for at most 10 minutes, stopped at the end)
while the variants are timed: the other work that shares a machine, made reproducible.

Run from the repository root::

    benchmarks/.venv/bin/python benchmarks/fused_variants.py --threads 1 --compile --write-docs
    benchmarks/.venv/bin/python benchmarks/fused_variants.py --threads 2 [--busy 2] --write-docs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed

from toolchain.snn import dynamics, fused
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.surrogate import spike_function

SHAPE = (100, 64, 256)
#: what ``--busy`` runs in each extra process: one core busy, for at most 10 minutes
BUSY_LOOP = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"


@dataclass
class Variant:
    """One way to run the population: a callable to time, and the settings of
    :mod:`toolchain.snn.fused` it runs with (module attributes, set while it runs)."""

    name: str
    mode: str  # "train" or "inference"
    run: Callable[[], object]
    settings: dict[str, Any] = field(default_factory=dict)
    wall_ms: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def cell(self) -> str:
        best = min(range(len(self.wall_ms)), key=self.wall_ms.__getitem__)
        median = statistics.median(self.wall_ms)
        return f"{self.wall_ms[best]:.1f} ({median:.1f}), load {self.loads[best]:.2f}"


def measure(variants: list[Variant], repeats: int) -> None:
    """A warm-up call of each, then ``repeats`` rounds timing every variant once, interleaved."""
    for round_ in range(-1, repeats):
        for variant in variants:
            shipped = {name: getattr(fused, name) for name in variant.settings}
            try:
                for name, value in variant.settings.items():
                    setattr(fused, name, value)
                start = time.perf_counter()
                variant.run()
                elapsed = time.perf_counter() - start
            finally:
                for name, value in shipped.items():
                    setattr(fused, name, value)
            if round_ >= 0:
                variant.wall_ms.append(elapsed * 1000.0)
                variant.loads.append(os.getloadavg()[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also try torch.compile (minutes)")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="run this many busy-looping processes meanwhile (other work on the machine, reproducibly)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"update {train_speed.DOCS}")
    args = parser.parse_args(argv)
    train_speed.keep_freed_memory()  # the allocator settings of the training tables
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    setup = train_speed.Setup()
    params = (setup.current_decay, setup.voltage_decay, setup.threshold)
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(*SHAPE, generator=generator) * 0.5
    grad = torch.randn(*SHAPE, generator=generator)
    leaf = current.clone().requires_grad_(True)
    reference = CubaLIF(
        *params, train_speed._plain_function(spike_function("sigmoid", setup.surrogate_scale))
    )

    def fused_call(x: torch.Tensor) -> torch.Tensor:
        return fused.cuba_sequence(x, *params, "sigmoid", setup.surrogate_scale)

    def train(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            leaf.grad = None
            forward(leaf).backward(grad)

        return step

    def infer(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                forward(current)

        return step

    step_elements = SHAPE[1] * SHAPE[2]
    shipped_steps = fused._chunk_steps(step_elements)  # for this number of threads
    variants = [
        Variant("autograd (CubaLIF)", "train", train(reference)),
        Variant("autograd (CubaLIF)", "inference", infer(reference)),
        Variant(
            f"fused as shipped (compiled backward, sigmoid chunk = {shipped_steps})",
            "train",
            train(fused_call),
        ),
        Variant("fused", "inference", infer(fused_call)),
    ]

    def chunk_bound(elements: int) -> dict[str, int]:  # the backward's chunk on any thread count
        return {"CHUNK_ELEMENTS": elements, "SERIAL_CHUNK_ELEMENTS": elements}

    for steps in sorted({2, 8, SHAPE[0]} - {shipped_steps}):
        label = "all at once" if steps == SHAPE[0] else f"{steps}"
        variants.append(
            Variant(
                f"fused, compiled backward, sigmoid chunk = {label}",
                "train",
                train(fused_call),
                chunk_bound(steps * step_elements),
            )
        )
    no_compiled_backward = {"compiled_cuba_float_backward_steps": lambda *slope_kind: None}
    for steps in sorted({1, 2, 8, shipped_steps, SHAPE[0]}):
        label = "all at once" if steps == SHAPE[0] else f"{steps}"
        default = " (as shipped)" if steps == shipped_steps else ""
        variants.append(
            Variant(
                f"fused, tensor backward, chunk = {label}{default}",
                "train",
                train(fused_call),
                {**no_compiled_backward, **chunk_bound(steps * step_elements)},
            )
        )
    busy = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
        for _ in range(args.busy)
    ]
    try:
        measure(variants, args.repeats)
    finally:
        for process in busy:
            process.terminate()
            process.wait()
    inference = {v.name: v for v in variants if v.mode == "inference"}
    rows: list[tuple[str, str, str, str]] = []
    for variant in variants:
        if variant.mode != "train":
            continue
        key = variant.name if variant.name in inference else "fused"
        other = inference[key].cell() if variant.name.startswith(("autograd", "fused as")) else "as fused"
        rows.append((variant.name, variant.cell(), other, ""))

    try:
        torch.jit.script(dynamics.cuba_subthreshold)
        jit_note = "scripted (not measured)"
    except Exception as error:  # TorchScript raises several types here
        jit_note = f"not applicable: {type(error).__name__}: {str(error).splitlines()[0]}"
    rows.append(("torch.jit.script of the dynamics", "-", "-", jit_note))

    if args.compile:
        # measure a cold compile: without inductor's on-disk caches of earlier runs
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        forward_loop = fused._forward_loop
        # the loop of tensor functions (what runs without numba): dynamo cannot trace numba's
        numba_kernel = fused.compiled_cuba_float_steps
        tensor_loop = {"compiled_cuba_float_steps": lambda: None}

        def loop(x: torch.Tensor) -> torch.Tensor:
            spikes, _ = forward_loop(x, *params, "zero", keep_voltage=True)
            return spikes

        compiled = torch.compile(loop, fullgraph=True, dynamic=False)
        fused.compiled_cuba_float_steps = tensor_loop["compiled_cuba_float_steps"]
        try:
            start = time.perf_counter()
            compiled(current)
            compile_s = time.perf_counter() - start
            same = torch.equal(compiled(current), loop(current))
        finally:
            fused.compiled_cuba_float_steps = numba_kernel
        eager = Variant("eager", "inference", lambda: loop(current), tensor_loop)
        inductor = Variant("compiled", "inference", lambda: compiled(current), tensor_loop)
        measure([eager, inductor], args.repeats)
        rows.append(
            (
                "torch.compile (inductor) of the forward loop of tensor functions",
                "-",
                inductor.cell(),
                f"compile {compile_s:.0f} s (no cache); same spikes: {same}; the same loop eager: "
                f"{eager.cell()}",
            )
        )

    command = "benchmarks/.venv/bin/python benchmarks/fused_variants.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        f"Command: `{command.strip()}`; one population `[T, B, N] = {list(SHAPE)}` float32, "
        f"torch.get_num_threads() = {torch.get_num_threads()}"
        + (f", {args.busy} busy-looping processes running meanwhile" if args.busy else "")
        + "; milliseconds per call: best of "
        f"{args.repeats} interleaved rounds after a warm-up (median in brackets), and the 1-minute "
        "load average at the best.",
        "",
        "| variant | train: forward + backward, ms | inference (forward), ms | note |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    report = "\n".join(lines)
    print(report)
    if args.write_docs:
        section = f"fused_variants-threads{torch.get_num_threads()}" + (
            f"-busy{args.busy}" if args.busy else ""
        )
        train_speed.write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
        print(f"\nwrote {train_speed.DOCS.relative_to(train_speed.REPO)} ({section})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
