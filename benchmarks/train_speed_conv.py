"""Training and inference speed of two conv SNNs on the CPU, this toolchain against others.

The same measurement as ``train_speed.py`` (whose builders, loop, memory probes and table this
imports), on the conv networks of two recipes without their batch norm and dropout, so that every
framework runs the same network:

- ``vgg``: ``models/cifar10-vgg/recipe.toml``'s ``[model]``: CIFAR-10-sized direct input 3x32x32,
  conv 16-32-64 (3x3, same padding), 2x2 sum pooling after each, dense readout to 10; ``T = 4``,
  batch 32;
- ``gsc``: ``models/gsc-conv1d/recipe.toml``'s ``[model]``: 10 MFCC channels x 49 frames, conv1d
  64-64-64 (kernel 3, stride 2, same padding), dense 128, 12 outputs; ``T = 10``, batch 64.

Random direct (graded) input in [0, 1), the same every step, random labels; the neurons are the
MLP benchmark's (current decay 0.25, voltage decay 0.0625, threshold 1, sigmoid surrogate of scale
4), not the recipes'. Run from the repository root with the benchmark environment::

    benchmarks/.venv/bin/python benchmarks/train_speed_conv.py --threads 1                # both nets
    benchmarks/.venv/bin/python benchmarks/train_speed_conv.py --threads 1 --write-docs   # and the docs
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed

RECIPES = {"vgg": "models/cifar10-vgg/recipe.toml", "gsc": "models/gsc-conv1d/recipe.toml"}


def conv_setup(net: str, batch: int | None = None) -> train_speed.Setup:
    """The setup of ``net`` (``vgg`` or ``gsc``): its recipe's ``[model]`` without batch norm and
    dropout, the MLP benchmark's neurons."""
    recipe = tomllib.loads((train_speed.REPO / RECIPES[net]).read_text())
    model = {**recipe["model"], "batch_norm": False, "dropout": 0.0}
    if net == "vgg":
        return train_speed.Setup(
            model=model,
            input_shape=(3, 32, 32),
            classes=10,
            description="CIFAR-10-sized VGG, 3x32x32",
            steps=4,
            batch=batch or 32,
            rate=None,
        )
    return train_speed.Setup(
        model=model,
        input_shape=(10, 49),
        classes=12,
        description="GSC conv1d, 10 channels x 49 frames",
        steps=10,
        batch=batch or 64,
        rate=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    train_speed.add_arguments(parser, repeats=5, batches=5)
    parser.add_argument("--nets", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.probe:
        setup = conv_setup(args.nets[0], args.batch)
        print(train_speed.json.dumps(train_speed.probe_memory(setup, *args.probe)))
        return 0
    if args.worker:
        return train_speed.serve_timing(conv_setup(args.nets[0], args.batch), args.worker, args.warmup)
    command = train_speed.command_line("train_speed_conv.py", argv)
    status = 0
    for net in args.nets:
        setup = conv_setup(net, args.batch)
        probe_argv = ["--nets", net, "--batch", str(setup.batch)]
        if args.threads is not None:
            probe_argv += ["--threads", str(args.threads)]
        report = train_speed.benchmark(setup, args, command, Path(__file__), probe_argv)
        if report is None:
            status = 1
            continue
        print(report + "\n")
        if args.write_docs:
            section = f"train_speed_conv-{net}-threads{torch.get_num_threads()}"
            section += "-allocator-defaults" * args.allocator_defaults
            train_speed.write_docs(report, f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
            print(f"wrote {train_speed.DOCS.relative_to(train_speed.REPO)} ({section})\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
