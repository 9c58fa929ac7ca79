"""The VGG's 2-D convolutions in torch's default memory order against channels-last (oneDNN).

Training runs the CIFAR-10-sized VGG's convolutions (``benchmarks/train_speed_conv.py --nets vgg``:
3-16-32-64 channels, 3x3, padding 1, on 32x32, 16x16 and 8x8 maps; ``T * B`` = 4 x 32 samples,
the first layer on its 32 constant direct inputs once) in ``[N, C, H, W]`` order, as every
framework of that benchmark does. oneDNN also runs them on channels-last tensors (``[N, H, W, C]``
in memory, the reference simulator's order). This times one layer's convolution both ways, the
forward alone and forward plus backward (the weight's gradient, and the input's where training
needs it), on 0/1 inputs at the spike rate given (the first layer's input: uniform values in
[0, 1)). Interleaved, best of ``--repeats``. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conv2d_layout.py --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conv2d_layout.py --threads 1 --write-docs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from event_synapses import best_ms, parse_timing_arguments, project_command, publish, report_header

SECTION = "conv2d_layout"
#: (samples, in channels, out channels, map size, input needs a gradient): the VGG's conv layers
LAYERS = [(32, 3, 16, 32, False), (128, 16, 32, 16, True), (128, 32, 64, 8, True)]
LAYOUTS = {"default": torch.contiguous_format, "channels-last": torch.channels_last}


def measure(layer: tuple[int, int, int, int, bool], density: float, repeats: int) -> dict[str, float]:
    samples, channels, out_channels, size, input_grad = layer
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(samples, channels, size, size, generator=generator)
    if input_grad:  # a spiking layer's input
        x = (x < density).float()
    weight = torch.randn(out_channels, channels, 3, 3, generator=generator) * 0.1
    grad = torch.randn(samples, out_channels, size, size, generator=generator)

    def runs(layout: torch.memory_format) -> dict[str, Callable[[], object]]:
        a, w, g = (t.contiguous(memory_format=layout) for t in (x, weight, grad))

        def forward() -> object:
            with torch.no_grad():
                return functional.conv2d(a, w, padding=1)

        def training() -> object:
            a_grad = a.detach().requires_grad_(input_grad)
            w_grad = w.detach().requires_grad_(True)
            functional.conv2d(a_grad, w_grad, padding=1).backward(g)
            return w_grad.grad

        return {"forward": forward, "training": training}

    results: dict[str, float] = {}
    for _ in range(2):  # interleaved: each way measured twice, the best kept
        for name, layout in LAYOUTS.items():
            for mode, run in runs(layout).items():
                key = f"{name} {mode}"
                results[key] = min(results.get(key, float("inf")), best_ms(run, repeats))
    default = functional.conv2d(x, weight, padding=1)
    last = functional.conv2d(
        x.contiguous(memory_format=torch.channels_last),
        weight.contiguous(memory_format=torch.channels_last),
        padding=1,
    )
    results["difference"] = float((last - default).abs().max()) / float(default.abs().max())
    return results


def render(results: list[tuple[tuple[int, int, int, int, bool], dict[str, float]]], command: str) -> str:
    lines = [
        *report_header(command),
        "- kernel 3, padding 1; times: best of the repeats, ms; *training*: forward and backward; "
        "*× default*: the default order's time over channels-last's (above 1: channels-last is "
        "faster); *difference*: the largest |channels-last - default| of the forward over the "
        "largest |default|",
        "",
        "| samples x channels x map -> channels | forward: default | channels-last | × default "
        "| training: default | channels-last | × default | difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals = {key: 0.0 for key in results[0][1] if key != "difference"}
    for (samples, channels, out_channels, size, _), r in results:
        for key in totals:
            totals[key] += r[key]
        lines.append(
            f"| {samples} x {channels} x {size}x{size} -> {out_channels} "
            f"| {r['default forward']:.2f} | {r['channels-last forward']:.2f} "
            f"| {r['default forward'] / r['channels-last forward']:.2f} "
            f"| {r['default training']:.2f} | {r['channels-last training']:.2f} "
            f"| {r['default training'] / r['channels-last training']:.2f} | {r['difference']:.1e} |"
        )
    lines.append(
        f"| all three | {totals['default forward']:.2f} | {totals['channels-last forward']:.2f} "
        f"| {totals['default forward'] / totals['channels-last forward']:.2f} "
        f"| {totals['default training']:.2f} | {totals['channels-last training']:.2f} "
        f"| {totals['default training'] / totals['channels-last training']:.2f} | |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--density", type=float, default=0.2, help="fraction of 1s in the spike inputs")
    args = parse_timing_arguments(parser, argv)
    results = []
    for layer in LAYERS:
        results.append((layer, measure(layer, args.density, args.repeats)))
        print(f"{layer}: {results[-1][1]}", file=sys.stderr)
    publish(render(results, project_command("conv2d_layout.py", argv)), SECTION, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
