"""``toolchain energy``:
estimate energy and latency per inference on a neuromorphic target from measured activity.

The activity is ``--activity`` (``toolchain simulate --json``), or measured here by the reference
simulator: on a run folder's test samples, on ``--input`` (a user's own ``.npy``), or on the test
split of the dataset a netx/NIR file's metadata names. ``--time-steps``, ``--input-encoding`` and
``--dt`` give what a file another library wrote does not state (as for ``toolchain simulate``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from toolchain.commands.graph_options import add_graph_options
from toolchain.errors import ToolchainError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "energy",
        help="estimate energy and latency per inference on a neuromorphic target from measured activity",
        description="Estimate the energy and latency of one inference on a neuromorphic target "
        "(deploy/targets/*.toml, `toolchain targets`) from the network's measured activity, with "
        "the ANN twin on each conventional baseline beside it. Several models share one report.",
    )
    parser.add_argument(
        "models",
        nargs="+",
        type=Path,
        metavar="MODEL_OR_RUN",
        help="a netx (.net/.h5) or NIR (.nir) file, or a training run folder (quantized on the fly)",
    )
    parser.add_argument(
        "--target", default="loihi", help="target name (`toolchain targets`) or a .toml path (default: loihi)"
    )
    parser.add_argument(
        "--activity",
        type=Path,
        action="append",
        default=[],
        metavar="SIM.json",
        help="activity counts: the JSON of `toolchain simulate --json` (key `activity`) or an "
        "Activity object; one per MODEL_OR_RUN, in order (default: simulate --input, else the test "
        "samples of the run folder or of the dataset the file's metadata names)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=100,
        help="samples simulated when no --activity is given (default 100)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset folder for run folders (default: $TOOLCHAIN_DATA)",
    )
    parser.add_argument("--label", action="append", default=[], help="a name per model for the report")
    parser.add_argument("--static", action="store_true", help="add the profile's static power x latency")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="add the profile's per-time-step overhead (management, I/O, sync)",
    )
    parser.add_argument(
        "--order",
        choices=["spatial", "c"],
        default="spatial",
        help="placement order of feature maps: position by position with all channels (default), "
        "or channel by channel (C order)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, metavar="DIR", help="write Markdown, HTML, PNG here"
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="write the estimate(s) as JSON"
    )
    add_graph_options(parser)
    parser.set_defaults(handler=cmd_energy)


def cmd_energy(args: argparse.Namespace) -> int:
    from toolchain.activity import read_activity
    from toolchain.energy.model import estimate
    from toolchain.energy.report import dumps, format_component, format_j, format_s, write_report
    from toolchain.energy.targets import load_target
    from toolchain.io import write_text

    if args.activity and len(args.activity) != len(args.models):
        raise ToolchainError(
            f"--activity: {len(args.activity)} given for {len(args.models)} models; give one per MODEL_OR_RUN"
        )
    if args.label and len(args.label) != len(args.models):
        raise ToolchainError(
            f"--label: {len(args.label)} given for {len(args.models)} models; give one per model"
        )
    if args.samples < 1:
        raise ToolchainError(f"--samples: expected a positive number, got {args.samples}")
    if args.activity and (args.input is not None or args.labels is not None):
        raise ToolchainError("--input: the activity comes from --activity; give one or the other")
    target = load_target(args.target)
    estimates = []
    for i, model in enumerate(args.models):
        network, run = load_network(model, args.data_dir, args)
        if args.activity:
            activity, accuracy = read_activity(args.activity[i])
        elif run is not None and args.input is None:
            activity, accuracy = measure_activity(network, run, args.samples)
        else:
            activity, accuracy = simulate_activity(network, model, args)
        label = args.label[i] if args.label else model.stem if model.is_file() else model.name
        estimates.append(
            estimate(
                network,
                activity,
                target,
                static=args.static,
                overhead=args.overhead,
                label=label,
                order=args.order,
                accuracy=accuracy,
            )
        )
    for e in estimates:
        b = e.breakdown_j
        extra = ", ".join(f"{term} {format_component(e, term)}" for term in ("static", "overhead"))
        accuracy = "" if e.accuracy is None else f", accuracy {e.accuracy:.4f}"
        print(
            f"{e.label} on {e.target.name}: {format_j(e.energy_per_inference_j)} per inference "
            f"({format_j(e.energy_per_step_j)} per time step; synaptic {format_j(b['synaptic'])}, neuron "
            f"{format_j(b['neuron'])}, routing {format_j(b['routing'])}, {extra}), "
            f"latency {format_s(e.latency_per_inference_s)}, {e.placement.cores} cores; "
            f"activity: {e.activity_source}, {e.samples} samples{accuracy}"
        )
    if args.json is not None:
        write_text(args.json, dumps(estimates) + "\n")
    if args.report is not None:
        paths = write_report(estimates, args.report)
        print(f"report: {paths['report.html']}")
    return 0


def load_network(
    path: Path, data_dir: Path | None, options: argparse.Namespace | None = None
) -> tuple[Any, Any]:
    """``(ir.Network, LoadedRun | None)`` from a netx/NIR file (detected by content) or a run folder.

    ``options``: the command's ``--time-steps``, ``--input-encoding`` and ``--dt``, for a file that
    does not state them (:func:`toolchain.commands.graph_options.open_model`); a run folder's
    recipe states them all, so there they are refused.
    """
    given = [
        flag
        for flag, key in (
            ("--time-steps", "time_steps"),
            ("--input-encoding", "input_encoding"),
            ("--dt", "dt"),
        )
        if options is not None and getattr(options, key, None) is not None
    ]
    if path.is_dir():
        from toolchain.export.quantize import quantize_model
        from toolchain.export.run_loader import load_run

        if given:
            raise ToolchainError(
                f"{path}: {', '.join(given)} apply to netx and NIR files; a run folder's recipe states them"
            )
        run = load_run(path, data_dir)
        network, _ = quantize_model(run.model, run.recipe, classes=run.dataset.classes, source=str(path))
        return network, run
    if not path.exists():
        raise ToolchainError(f"{path}: no such file or run folder")
    if options is not None:
        from toolchain.commands.graph_options import open_model

        return open_model(path, options).network, None
    from toolchain.formats.detect import read_graph

    network, _ = read_graph(path)
    return network, None


def simulate_activity(network: Any, path: Path, args: argparse.Namespace) -> tuple[Any, float | None]:
    """The reference simulator's activity of ``network`` (read from the file ``path``, or a run
    folder's) on ``--input``, else on the first ``--samples`` test samples of the dataset the file's
    metadata names (:func:`toolchain.commands.graph_options.model_inputs`)."""
    from toolchain.commands.graph_options import model_inputs, warn_if_silent
    from toolchain.formats.detect import graph_format
    from toolchain.sim.backends import simulate_backends

    dataset = network.metadata.get("dataset")
    if args.input is None and (not isinstance(dataset, str) or not dataset):
        from toolchain.sim.input_file import input_layout

        raise ToolchainError(
            f"{path}: no activity: give --activity SIM.json (`toolchain simulate --json`), or samples to "
            f"simulate with --input FILE.npy ({input_layout(network)}); the file names no dataset"
        )
    inputs, info = model_inputs(network, path, args, args.samples)
    what = f"samples of {info['input']}" if info.get("input") else f"test samples of {info['dataset']}"
    print(f"simulating {inputs.samples} {what} ...", file=sys.stderr)
    run = simulate_backends(network, inputs)
    result = run.results["reference"]
    warn_if_silent(result, network, "run" if path.is_dir() else graph_format(path), path)
    return result.activity, run.accuracy("reference")


def measure_activity(network: Any, run: Any, samples: int) -> tuple[Any, float | None]:
    """Run the reference simulator on the first ``samples`` test samples of a run's dataset, encoded
    as the evaluation encodes them (:func:`toolchain.sim.inputs.network_inputs`)."""
    from toolchain.sim.backends import simulate_backends
    from toolchain.sim.inputs import network_inputs

    inputs = network_inputs(network, run.dataset.test, run.recipe.encoding, samples=samples)
    print(f"simulating {inputs.samples} test samples of {run.dataset.name} ...", file=sys.stderr)
    simulated = simulate_backends(network, inputs)
    return simulated.results["reference"].activity, simulated.accuracy("reference")
