"""The 1-D convolution synapse as matrix products against torch's convolution (oneDNN).

``toolchain.snn.unfolded_conv1d.conv1d_synapse`` computes a 1-D convolution and its two gradients
as three matrix products over the unfolded input where torch's CPU kernels use AVX2, elsewhere as a
2-D convolution in channels-last order. This measures the three ways on the speech
network's synapse layers (``models/gsc-conv1d``: ``T * B`` = 10 x 64 samples, 64 channels, kernel
3, stride 2, padding 1, 49 -> 25 -> 13 -> 7 frames; the first layer's input, 10 MFCC channels,
is computed once per sample by the toolchain and is listed with its batch of 64; the products run
on it here, though ``WINDOW_VALUES_MIN`` leaves it to the convolution in the ``Conv1d`` layer),
0/1 inputs at the spike rate given: the forward alone (no gradient), and forward plus backward (both
gradients; the first layer's weight gradient only, as in training). Interleaved, best of
``--repeats``. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unfolded_conv1d.py --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unfolded_conv1d.py --threads 1 --write-docs
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from toolchain.snn import unfolded_conv1d  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convolution_ways import (  # noqa: E402
    forward_and_training,
    interleaved_best,
    measure_layers,
    parse_arguments,
)
from event_synapses import project_command, publish, report_header  # noqa: E402

SECTION = "unfolded_conv1d"
#: (samples, channels, length, out channels, input needs a gradient): the speech network's layers
LAYERS = [(64, 10, 49, 64, False), (640, 64, 25, 64, True), (640, 64, 13, 64, True)]
KERNEL, STRIDE, PADDING = 3, 2, 1


def measure(layer: tuple[int, int, int, int, bool], density: float, repeats: int) -> dict[str, float]:
    samples, channels, length, out_channels, input_grad = layer
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(samples, channels, length, generator=generator) < density).float()
    if channels == 10:  # MFCC features, not spikes
        x = torch.randn(samples, channels, length, generator=generator)
    weight = torch.randn(out_channels, channels, KERNEL, generator=generator) * 0.1
    out_length = (length + 2 * PADDING - KERNEL) // STRIDE + 1
    grad = torch.randn(samples, out_channels, out_length, generator=generator)

    def convolution(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return functional.conv1d(a, w, stride=STRIDE, padding=PADDING)

    def products(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return unfolded_conv1d._UnfoldedConv1d.apply(a, w, STRIDE, PADDING)

    def channels_last(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return unfolded_conv1d._channels_last_conv1d(a, w, STRIDE, PADDING)

    def last(t: torch.Tensor) -> torch.Tensor:  # [N, C, L] lying as [N, L, C]
        return t.transpose(1, 2).contiguous().transpose(1, 2)

    exact = convolution(x, weight)
    difference = float((products(x, weight) - exact).abs().max()) / float(exact.abs().max())
    # in the network the channels-last way's input spikes (not the MFCC input) and gradient lie
    # with their channels last, as its neurons leave them
    ways = {
        "convolution": forward_and_training(convolution, x, weight, grad, input_grad),
        "products": forward_and_training(products, x, weight, grad, input_grad),
        "channels-last": forward_and_training(
            channels_last, last(x) if channels != 10 else x, weight, last(grad), input_grad
        ),
    }
    return {**interleaved_best(ways, repeats), "difference": difference}


def render(results: list[tuple[tuple[int, int, int, int, bool], dict[str, float]]], command: str) -> str:
    lines = [
        *report_header(command),
        f"- kernel {KERNEL}, stride {STRIDE}, padding {PADDING}; times: best of the repeats, ms; *training*: "
        "forward and backward (the input's gradient where the input needs one); *conv*: "
        "`functional.conv1d`; *products*: the three matrix products; *2-D, last*: the convolution "
        "as a 2-D one in channels-last order, its input spikes and gradient in that order as the "
        "neurons leave them; *× conv*: the convolution's time over the way's (above 1: the way is "
        "faster); *difference*: the largest |products - convolution| of the forward over the "
        "largest |convolution|",
        "",
        "| samples x channels x frames -> channels | forward: conv | products | × conv | 2-D, last "
        "| × conv | training: conv | products | × conv | 2-D, last | × conv | difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (samples, channels, length, out_channels, _), r in results:
        cells = " ".join(
            f"| {r[f'convolution {mode}']:.2f} "
            + " ".join(
                f"| {r[f'{way} {mode}']:.2f} | {r[f'convolution {mode}'] / r[f'{way} {mode}']:.2f}"
                for way in ("products", "channels-last")
            )
            for mode in ("forward", "training")
        )
        lines.append(
            f"| {samples} x {channels} x {length} -> {out_channels} {cells} | {r['difference']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(__doc__.split("\n")[0], argv)
    if unfolded_conv1d.compiled_kernels() is None:
        raise SystemExit("numba is not installed: the products do not run")
    results = measure_layers(LAYERS, measure, args)
    publish(render(results, project_command("unfolded_conv1d.py", argv)), SECTION, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
