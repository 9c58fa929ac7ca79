"""``toolchain export``: export a trained run with Loihi quantization to Lava-dl netx (HDF5), NIR or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="export a trained run with Loihi quantization to Lava-dl netx (HDF5), NIR or ONNX",
        description="Quantize a trained run onto Loihi's registers and write it as Lava-dl netx HDF5 "
        "or NIR, or write its float model as ONNX. Prints the per-layer quantization (weight range, "
        "quantization error, bias and neuron-register rounding) and, for netx and NIR, the test "
        "accuracy before (the torch model) and after (the quantized network in the reference "
        "simulator).",
    )
    export.add_argument("run", type=Path, help="a run folder written by `toolchain train --out RUN`")
    export.add_argument("--format", required=True, metavar="FORMAT", help="netx (Lava-dl HDF5), nir or onnx")
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write")
    export.add_argument(
        "--onnx-model",
        default="snn",
        metavar="MODEL",
        help="with --format onnx: snn (the SNN unrolled over its time steps, default) or ann (its ANN twin)",
    )
    export.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding one folder per dataset (default: $TOOLCHAIN_DATA, else ./data)",
    )
    export.add_argument(
        "--samples", type=int, default=None, metavar="N", help="evaluate on the first N test samples only"
    )
    export.add_argument("--no-eval", action="store_true", help="skip the accuracy before/after quantization")
    export.add_argument(
        "--no-layer-scale",
        action="store_true",
        help="do not scale a float layer's weights, bias and threshold by a power of two before "
        "rounding (its weights then keep the fixed scale 1.0 = 64)",
    )
    export.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the report and accuracies as JSON"
    )
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from toolchain.export.pipeline import check_export_arguments, export_run, format_report
    from toolchain.export.run_loader import load_run
    from toolchain.io import check_writable_dir, write_json

    check_export_arguments(args.format, args.out, args.onnx_model, args.samples)
    if args.json is not None:
        check_writable_dir(args.json.parent)
    from toolchain.export.ttfs import export_ttfs_run  # a TTFS run: ONNX/NIR of its network, or refused

    if (written := export_ttfs_run(args.run, args.format, args.out, args.data_dir)) is not None:
        what = (
            "the TTFS network as NIR (folded weights; each kernel a TTFS-tagged node, not a LIF "
            "neuron; read back with toolchain.export.ttfs.read_ttfs_nir)"
            if args.format == "nir"
            else "the TTFS surrogate DNN (what the TTFS SNN computes)"
        )
        print(f"wrote {written}: {what}, see docs/ttfs.md")
        return 0
    run = load_run(args.run, args.data_dir)
    result = export_run(
        run,
        args.format,
        args.out,
        onnx_model=args.onnx_model,
        evaluate=not args.no_eval,
        samples=args.samples,
        scale_layers=not args.no_layer_scale,
    )
    print(format_report(result))
    if args.json is not None:
        write_json(args.json, result.to_dict())
    return 0
