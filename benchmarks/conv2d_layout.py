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

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convolution_ways import (
    forward_and_training,
    interleaved_best,
    measure_layers,
    parse_arguments,
    two_way_cells,
)
from event_synapses import project_command, publish, report_header

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

    def conv(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(a, w, padding=1)

    # the input, the weight and the gradient in each memory order
    laid_out = {
        name: [t.contiguous(memory_format=layout) for t in (x, weight, grad)]
        for name, layout in LAYOUTS.items()
    }
    results = interleaved_best(
        {name: forward_and_training(conv, *tensors, input_grad) for name, tensors in laid_out.items()},
        repeats,
    )
    default, last = (conv(*laid_out[name][:2]) for name in LAYOUTS)
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
            f"{two_way_cells(r, 'default', 'channels-last')} | {r['difference']:.1e} |"
        )
    lines.append(f"| all three {two_way_cells(totals, 'default', 'channels-last')} | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(__doc__.split("\n")[0], argv)
    results = measure_layers(LAYERS, measure, args)
    publish(render(results, project_command("conv2d_layout.py", argv)), SECTION, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
