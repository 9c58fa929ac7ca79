"""``toolchain convert``: another library's float NIR model onto Loihi's registers, as netx or NIR."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolchain.commands.graph_options import INPUT_HELP, positive_int, positive_seconds


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="quantize a float NIR model (snnTorch, SpikingJelly, Norse, sinabs) to Loihi netx or NIR",
        description="Read a float NIR graph written by another library, round it onto Loihi's registers "
        "(each layer scaled by a power of two first, as `export` does), write it as Lava-dl netx or "
        "NIR, and print every rounding. With --input (and --labels) it runs the float graph and the "
        "quantized network on your samples and reports where their output spikes differ; for netx "
        "it also measures what Lava's one-step synapse delay changes (NIR's edges have none).",
    )
    parser.add_argument("model", type=Path, help="a NIR file (.nir) holding a float graph")
    parser.add_argument(
        "--to", choices=("netx", "nir"), default="netx", help="the format to write (default: netx)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write")
    parser.add_argument(
        "--time-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="time steps of one inference (needed when the graph's metadata does not state them)",
    )
    parser.add_argument(
        "--dt",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="the time step the graph's time constants are discretized with (default: the graph's "
        "metadata.dt, else the convention's: 1e-4 s for nir, 1e-3 s for norse, 1 step for sinabs)",
    )
    parser.add_argument(
        "--convention",
        choices=("nir", "norse", "sinabs"),
        default="nir",
        help="how the exporting library means its neuron nodes: nir (snnTorch, SpikingJelly; default), "
        "norse (Norse's to_nir), sinabs (sinabs's to_nir)",
    )
    parser.add_argument(
        "--input-encoding",
        choices=("spikes", "graded"),
        default="spikes",
        help="what the first layer receives: spikes (0/1, default) or graded (values in [0, 1], "
        "sent as 8-bit payloads)",
    )
    parser.add_argument(
        "--no-layer-scale",
        action="store_true",
        help="do not scale a layer's weights, bias and threshold by a power of two before rounding",
    )
    parser.add_argument("--input", type=Path, default=None, metavar="FILE.npy", help=INPUT_HELP)
    parser.add_argument(
        "--labels", type=Path, default=None, metavar="FILE.npy", help="with --input: B integer class indices"
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        metavar="N",
        help="check on the first N samples of --input",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the report and the check as JSON"
    )
    parser.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from toolchain.commands.graph_options import warn
    from toolchain.errors import ToolchainError
    from toolchain.export.convert import convert_nir, format_conversion
    from toolchain.io import check_writable_dir, write_json

    if args.labels is not None and args.input is None:
        raise ToolchainError("--labels needs --input FILE.npy")
    check_writable_dir(args.out.parent)
    if args.json is not None:
        check_writable_dir(args.json.parent)
    conversion = convert_nir(
        args.model,
        args.out,
        to=args.to,
        time_steps=args.time_steps,
        dt=args.dt,
        convention=args.convention,
        input_encoding=args.input_encoding,
        scale_layers=not args.no_layer_scale,
        inputs=args.input,
        labels=args.labels,
        samples=args.samples,
    )
    for note in conversion.notes:
        warn(f"{args.model}: {note}")
    print(format_conversion(conversion))
    if args.json is not None:
        write_json(
            args.json,
            {
                "model": str(args.model),
                "out": str(conversion.out),
                "format": args.to,
                "dt": conversion.dt,
                "time_steps": conversion.network.time_steps,
                "synapse_delay_steps": conversion.network.synapse_delay_steps,
                "quantization": conversion.report.to_dict(),
                "check": None if conversion.check is None else conversion.check.to_dict(),
                "unchecked": conversion.unchecked,
                "notes": list(conversion.notes),
            },
        )
    return 0
