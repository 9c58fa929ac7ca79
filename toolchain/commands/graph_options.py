"""Options ``simulate`` and ``energy`` share: how to run a netx/NIR file that does not say, and own input.

A file the toolchain exported states its time steps, input encoding and (NIR) time step ``dt``, and
names the dataset it was trained on; a file another library wrote (slayer's ``export_hdf5``, a NIR
graph from snnTorch) may state none of it. ``--time-steps``, ``--input-encoding`` and ``--dt`` give
what it leaves out (:func:`toolchain.formats.detect.open_graph`); ``--input FILE.npy`` (and
``--labels``) gives the samples (:func:`toolchain.sim.input_file.read_input_file`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError

INPUT_HELP = (
    "run on your own samples instead of the dataset the file's metadata names: a .npy array "
    "(numpy.save); graded input: floats in [0, 1], [B, *input_shape] (the same sample every step) "
    "or [B, T, *input_shape] holding that sample at each step; spike input: 0/1 values "
    "[B, T, *input_shape] (T = the network's time steps; the sample axes may be flattened to one)"
)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time step in seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive time step in seconds, got {text}")
    return value


def add_graph_options(parser: argparse.ArgumentParser) -> None:
    """``--time-steps``, ``--input-encoding``, ``--dt``, ``--input`` and ``--labels``."""
    parser.add_argument(
        "--time-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="time steps of one inference: needed for a file that does not state them (a netx file "
        "from lava-dl's slayer, a NIR graph from another library); overrides the file's",
    )
    parser.add_argument(
        "--input-encoding",
        choices=("graded", "spikes"),
        default=None,
        help="what the first layer receives, for a netx file that does not state it: graded (8-bit "
        "payloads of values in [0, 1]) or spikes (0/1); a NIR graph that does not state it takes spikes",
    )
    parser.add_argument(
        "--dt",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="NIR files only: the time step the graph's time constants are discretized with "
        "(default: the graph's metadata.dt, else 1e-4 s with a warning)",
    )
    parser.add_argument("--input", type=Path, default=None, metavar="FILE.npy", help=INPUT_HELP)
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="FILE.npy",
        help="with --input: a .npy of B integer class indices, for the accuracy",
    )


def warn(message: str) -> None:
    print(f"toolchain: warning: {message}", file=sys.stderr)


def open_model(path: Path, args: argparse.Namespace) -> Any:
    """The :class:`~toolchain.formats.detect.GraphFile` of ``path`` read with the options, its notes
    printed as warnings. A ``--time-steps`` that overrides the file's is also written into the
    metadata's ``encoding``, so the file's dataset is encoded for that many steps."""
    graph = read_model(path, time_steps=args.time_steps, input_encoding=args.input_encoding, dt=args.dt)
    for note in graph.notes:
        warn(note)
    return graph


def read_model(
    path: str | Path,
    *,
    time_steps: int | None = None,
    input_encoding: str | None = None,
    dt: float | None = None,
) -> Any:
    """:func:`~toolchain.formats.detect.open_graph` of ``path`` (notes not printed: the caller's),
    with a ``time_steps`` that overrides the file's also written into the metadata's ``encoding``
    (for :func:`open_model` and :func:`toolchain.api.read`)."""
    from toolchain.formats.detect import open_graph

    graph = open_graph(path, time_steps=time_steps, input_encoding=input_encoding, dt=dt)
    network = graph.network
    encoding = network.metadata.get("encoding")
    if time_steps is not None and isinstance(encoding, dict) and "time_steps" in encoding:
        metadata = {**network.metadata, "encoding": {**encoding, "time_steps": network.time_steps}}
        graph = dataclasses.replace(graph, network=dataclasses.replace(network, metadata=metadata))
    return graph


def model_inputs(
    network: Any, path: Path, args: argparse.Namespace, samples: int | None
) -> tuple[Any, dict[str, Any]]:
    """The inputs to run ``network`` (read from ``path``) on, and what they are (for the report): the
    samples of ``--input`` (with ``--labels``), else the test split of the dataset the file's
    metadata names (encoded as its metadata says); ``samples`` keeps the first N."""
    if args.input is not None:
        from toolchain.sim.input_file import read_input_file

        inputs = read_input_file(
            args.input,
            network,
            labels=args.labels,
            samples=samples,
            steps_from="--time-steps" if args.time_steps is not None else "as the file states",
        )
        return inputs, {"dataset": None, "input": str(args.input), "data_options_from": None}
    if args.labels is not None:
        raise ToolchainError("--labels goes with --input (the labels of your own samples)")
    dataset = network.metadata.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        from toolchain.sim.input_file import input_layout

        raise ToolchainError(
            f"{path}: the file names no dataset to run on (no 'dataset' in its metadata): give your own "
            f"samples with --input FILE.npy ({input_layout(network)})"
        )
    from toolchain.commands.simulate import load_test_split
    from toolchain.sim.inputs import encoding_of, network_inputs

    encoding = encoding_of(network, str(path))
    split, data_info = load_test_split(network, path, args.data_dir)
    return network_inputs(network, split, encoding, samples=samples), data_info


def warn_if_silent(result: Any, network: Any, fmt: str, path: Path) -> None:
    """A warning when a spike-count readout got no output spike at all (every prediction class 0)."""
    if getattr(network, "readout", "spike_count") != "spike_count" or result.samples == 0:
        return
    if int(result.counts.sum()) == 0:
        hint = "; check --dt (seconds) and --time-steps" if fmt == "nir" else ""
        warn(
            f"{path}: the output layer never spiked on any of the {result.samples} samples, so every "
            f"prediction is class 0{hint}"
        )


__all__ = [
    "INPUT_HELP",
    "add_graph_options",
    "model_inputs",
    "open_model",
    "positive_int",
    "positive_seconds",
    "read_model",
    "warn",
    "warn_if_silent",
]
