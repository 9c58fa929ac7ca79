"""``toolchain inspect``:
print the layers, shapes, neuron parameters and quantization of a netx, NIR or ONNX file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from toolchain.commands.graph_options import positive_seconds


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect",
        help="print the layers, shapes, neuron parameters and quantization of a netx, NIR or ONNX file",
        description="Print the layers, shapes, neuron parameters and quantization of a netx, NIR or "
        "ONNX file. The format is detected from the content (netx and NIR: HDF5 with a 'layer' or "
        "'node' group; ONNX: protobuf). A file another library wrote is described too: time steps, "
        "input encoding or a NIR graph's time step dt that it does not state show as 'not stated in "
        "the file'.",
    )
    parser.add_argument("file", type=Path, help="a netx (.net/.h5), NIR (.nir) or ONNX (.onnx) file")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="also write the description as JSON"
    )
    parser.add_argument(
        "--dt",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="NIR files only: the time step to read the neurons' time constants with "
        "(default: the graph's metadata.dt, else 1e-4 s)",
    )
    parser.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from toolchain.export.inspect import describe, format_description
    from toolchain.io import write_json

    description = describe(args.file, dt=args.dt)
    print(format_description(description))
    if args.json is not None:
        write_json(args.json, description)
    return 0
