"""What the convolution benchmarks share: two ways of computing a layer's convolution, each timed
forward alone and forward plus backward, interleaved, and the cells of a table row comparing them
(``unfolded_conv1d.py``: torch's 1-D convolution against the matrix products; ``conv2d_layout.py``:
the 2-D convolution in the default memory order against channels-last)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from event_synapses import best_ms, parse_timing_arguments

Convolution = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forward_and_training(
    conv: Convolution, x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, input_grad: bool
) -> dict[str, Callable[[], object]]:
    """``conv(x, weight)`` without gradient (``forward``), and with its backward from ``grad``
    (``training``: the weight's gradient, and the input's where ``input_grad``)."""

    def forward() -> object:
        with torch.no_grad():
            return conv(x, weight)

    def training() -> object:
        a = x.detach().requires_grad_(input_grad)
        w = weight.detach().requires_grad_(True)
        conv(a, w).backward(grad)
        return w.grad

    return {"forward": forward, "training": training}


def interleaved_best(ways: dict[str, dict[str, Callable[[], object]]], repeats: int) -> dict[str, float]:
    """The best of ``repeats`` calls, ms, of every mode of every way (keys ``"way mode"``); the ways
    take turns, twice, and the best of both turns is kept."""
    results: dict[str, float] = {}
    for _ in range(2):
        for name, modes in ways.items():
            for mode, run in modes.items():
                key = f"{name} {mode}"
                results[key] = min(results.get(key, float("inf")), best_ms(run, repeats))
    return results


def two_way_cells(times: dict[str, float], first: str, second: str) -> str:
    """A row's cells: ``first`` and ``second`` forward and their ratio, the same in training."""
    return " ".join(
        f"| {times[f'{first} {mode}']:.2f} | {times[f'{second} {mode}']:.2f} "
        f"| {times[f'{first} {mode}'] / times[f'{second} {mode}']:.2f}"
        for mode in ("forward", "training")
    )


def parse_arguments(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments of a convolution benchmark: ``--density`` of the spike inputs and the timing
    arguments every layer benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--density", type=float, default=0.2, help="fraction of 1s in the spike inputs")
    return parse_timing_arguments(parser, argv)


def measure_layers(
    layers: Sequence[Any], measure: Callable[[Any, float, int], dict[str, float]], args: argparse.Namespace
) -> list[tuple[Any, dict[str, float]]]:
    """``measure(layer, density, repeats)`` of each layer, each printed to stderr as it is done."""
    results = []
    for layer in layers:
        results.append((layer, measure(layer, args.density, args.repeats)))
        print(f"{layer}: {results[-1][1]}", file=sys.stderr)
    return results
