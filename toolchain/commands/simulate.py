"""``toolchain simulate``: run an exported network in the bit-accurate reference simulator or in Lava.

``toolchain simulate FILE --backend reference|lava [--data-dir DIR] [--samples N] [--lava-samples M]
[--compare] [--json OUT] [--output OUT.npz] [--input X.npy [--labels Y.npy]] [--time-steps N]
[--input-encoding graded|spikes] [--dt SECONDS]``. FILE is a netx HDF5 file (``toolchain export
--format netx``, or lava-dl's ``export_hdf5``) or a NIR file (reference backend only). The dataset,
its options and the encoding come from the file's metadata (``dataset``, ``encoding``; the data
options from the run folder named by ``source`` when it holds a ``recipe.toml``), or the samples
from ``--input`` (:mod:`toolchain.sim.input_file`); what a file written elsewhere does not state
comes from ``--time-steps``, ``--input-encoding`` and ``--dt``
(:mod:`toolchain.commands.graph_options`). ``--output`` writes the output layer's spikes and the
predictions as ``.npz``. ``--compare`` runs the fixed-point torch model rebuilt from the file, the
reference simulator and Lava (netx files) on the same inputs and reports, per layer, the spikes
that differ in time or place. See ``docs/simulation.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from toolchain.commands.graph_options import add_graph_options, positive_int
from toolchain.errors import ToolchainError

BACKENDS = ("reference", "lava")
#: samples Lava runs under --compare when --samples is not given (it takes about a second per sample)
LAVA_COMPARE_SAMPLES = 100
#: most bytes of spikes --output may have the simulator record (it records every layer's)
OUTPUT_HELP = (
    "write the output layer's activity as .npz: predictions [B], counts [B, classes], spikes "
    "[T, B, classes] (uint8), potentials [T, B, classes] (the output voltage after each step, when the "
    "backend reports it) and labels [B] (when known)"
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run an exported network in the bit-accurate reference simulator or in Lava",
        description="Run an exported network (netx, or NIR with the reference backend) on the test split "
        "of the dataset its metadata names, or on your own samples (--input), and report accuracy, "
        "spikes and synaptic operations per sample per layer, and speed. A file another library wrote "
        "(lava-dl's slayer, snnTorch) may not state its time steps, input encoding or dt: give them "
        "with --time-steps, --input-encoding, --dt. --output writes the output spikes and predictions. "
        "--compare checks the fixed-point torch model, the reference simulator and Lava against each "
        "other spike for spike.",
    )
    parser.add_argument(
        "file",
        type=Path,
        help="a netx (.net/.h5) or NIR (.nir) file from `toolchain export` or another library",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="reference", help="simulator (default: reference)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding one folder per dataset; default: $TOOLCHAIN_DATA, else ./data",
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="simulate the first N samples of the test split or of --input (default: all)",
    )
    parser.add_argument(
        "--lava-samples",
        type=positive_int,
        default=None,
        help=f"samples Lava runs (about a second each): default N with --backend lava, else "
        f"min(N, {LAVA_COMPARE_SAMPLES}) under --compare",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the fixed-point torch model and (for netx files) Lava; report mismatched spikes",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="reference simulator batch (default 256)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON"
    )
    parser.add_argument("--output", type=Path, default=None, metavar="OUT.npz", help=OUTPUT_HELP)
    add_graph_options(parser)
    parser.set_defaults(handler=cmd_simulate)


def load_test_split(network: Any, path: Path, data_dir: Path | None) -> tuple[Any, dict[str, Any]]:
    """The test split of the dataset ``network.metadata`` names, with the options of its run's recipe."""
    from toolchain.config import load_recipe
    from toolchain.data import load_dataset
    from toolchain.errors import RecipeError

    meta = network.metadata
    dataset = meta.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise ToolchainError(f"{path}: metadata names no dataset (key 'dataset'); cannot pick the test data")
    options: dict[str, Any] = {}
    options_from = "defaults"
    source = meta.get("source")
    if isinstance(source, str) and source and (Path(source) / "recipe.toml").is_file():
        try:
            recipe = load_recipe(Path(source) / "recipe.toml")
        except RecipeError:
            recipe = None
        if recipe is not None and recipe.data.dataset == dataset:
            options, options_from = dict(recipe.data.options), str(Path(source) / "recipe.toml")
    return load_dataset(dataset, data_dir, options).test, {
        "dataset": dataset,
        "data_options_from": options_from,
    }


def cmd_simulate(args: argparse.Namespace) -> int:
    from toolchain.commands.graph_options import model_inputs, open_model, warn_if_silent
    from toolchain.io import write_json

    graph = open_model(args.file, args)
    network, fmt = graph.network, graph.format
    if args.backend == "lava" and fmt != "netx":
        raise ToolchainError(f"{args.file}: the lava backend runs netx files; export with --format netx")
    inputs, data_info = model_inputs(network, args.file, args, args.samples)
    encoding = inputs.encoding
    default_lava = inputs.samples if args.backend == "lava" else LAVA_COMPARE_SAMPLES
    lava_samples = min(inputs.samples, args.lava_samples or default_lava)
    record = args.compare or args.output is not None
    if args.output is not None:
        from toolchain.sim.reference import check_spike_record

        check_spike_record(
            network,
            inputs.samples if args.backend == "reference" else lava_samples,
            "--samples",
            "--output: ",
        )

    from toolchain.sim.backends import simulate_backends

    netx_file = args.file if fmt == "netx" else None
    backends = [args.backend]
    if args.compare:  # every backend that can run the file, each against the reference
        backends += [name for name in ("torch", "lava") if name != "lava" or netx_file is not None]
    backends = list(dict.fromkeys(backends))
    lava_progress = None
    if "lava" in backends:
        from toolchain.sim.lava_backend import LavaProgress

        lava_progress = LavaProgress(lava_samples)
    run = simulate_backends(
        network,
        inputs,
        backends=backends,
        compare=args.compare,
        tolerate=("torch",),
        netx_file=netx_file,
        lava_samples=lava_samples,
        batch_size=args.batch_size,
        record_spikes=record,
        lava_progress=lava_progress,
    )
    comparison = run.comparison
    main = run.results[args.backend]
    warn_if_silent(main, network, fmt, args.file)
    report = {
        "file": str(args.file),
        "format": fmt,
        "network": network.name,
        "encoding": {"scheme": encoding.scheme, "time_steps": encoding.time_steps},
        **data_info,
        **run.record(args.backend),
    }
    report["not_stated"] = sorted(graph.placeholders | (_relevant(fmt) - graph.stated))
    if graph.dt is not None:
        report["dt_s"] = graph.dt
    if comparison is not None and network.metadata.get("numeric") == "float":
        report["float_model"] = _float_model(network, inputs, args.data_dir)
    if args.output is not None:
        report["output"] = str(write_output(args.output, main, network, _labels(inputs, main.samples)))
    print(_format(report))
    if args.json is not None:
        write_json(args.json, report)
    return 1 if comparison is not None and not comparison.agree else 0


def _relevant(fmt: str) -> set[str]:
    return {"time_steps", "input_encoding"} | ({"dt"} if fmt == "nir" else set())


def _labels(inputs: Any, samples: int) -> Any:
    return None if inputs.labels is None else inputs.labels[:samples]


def write_output(path: Path, result: Any, network: Any, labels: Any) -> Path:
    """Write ``result``'s output layer as ``.npz`` (keys: see ``OUTPUT_HELP`` and docs/simulation.md)."""
    import io

    import numpy as np

    from toolchain.io import atomic_write

    steps = network.time_steps
    output = network.synaptic_layers()[-1].name
    if result.spikes is None or output not in result.spikes:
        raise ToolchainError(f"--output: the backend recorded no spikes of the output layer {output!r}")
    arrays: dict[str, Any] = {
        "predictions": np.asarray(result.predictions, dtype=np.int64),
        "counts": np.asarray(result.counts, dtype=np.int64),
        "spikes": np.asarray(result.spikes[output], dtype=np.uint8).reshape(steps, result.samples, -1),
    }
    potentials = getattr(result, "potentials", None)
    if potentials is not None:
        arrays["potentials"] = np.asarray(potentials, dtype=np.int64).reshape(steps, result.samples, -1)
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _float_model(network: Any, inputs: Any, data_dir: Path | None) -> dict[str, Any]:
    """The accuracy of the float model the file was quantized from, on the same inputs, when the
    metadata's ``source`` is its run folder (else the reason it is not reported)."""
    import numpy as np
    import torch

    if inputs.labels is None:
        return {"accuracy": None, "note": "no labels (--labels); float model not evaluated"}
    source = network.metadata.get("source")
    if not isinstance(source, str) or not source or not Path(source).is_dir():
        return {"accuracy": None, "note": "metadata names no run folder (source); float model not evaluated"}
    from toolchain.export.run_loader import load_run

    try:
        run = load_run(source, data_dir)
    except ToolchainError as exc:
        return {"accuracy": None, "note": f"run folder not loadable: {exc}"}
    x = inputs.torch_input(network).to(torch.float32)
    predictions = []
    with torch.no_grad():
        for first in range(0, inputs.samples, 256):
            logits = run.model(x[:, first : first + 256]).logits
            predictions.append(logits.argmax(dim=1).numpy())
    accuracy = float((np.concatenate(predictions) == inputs.labels).mean())
    return {"accuracy": accuracy, "samples": inputs.samples, "run": source}


def _format(report: dict[str, Any]) -> str:
    source = (
        f"{report['dataset']} test samples" if report.get("dataset") else f"samples of {report.get('input')}"
    )
    accuracy = (
        f"accuracy {report['accuracy']:.4f}"
        if report["accuracy"] is not None
        else "accuracy not measured (no labels: --labels)"
    )
    lines = [
        f"{report['file']} ({report['format']}, {report['network']}): {report['backend']} backend, "
        f"{report['samples']} {source} x {report['time_steps']} steps",
        f"{accuracy}, {report['spikes_per_sample']:.1f} spikes and "
        f"{report['synops_per_sample']:.1f} synops per sample",
    ]
    comparison = report.get("comparison")
    for layer in report["layers"]:
        line = (
            f"  {layer['name']:<12} {layer['neurons']:>7} neurons  {layer['spikes_per_sample']:>10.1f} spikes"
            f"  {layer['synops_per_sample']:>12.1f} synops"
        )
        if comparison is not None:
            per = next(entry for entry in comparison["layers"] if entry["name"] == layer["name"])
            line += "  mismatched: " + ", ".join(
                f"{key.removeprefix('mismatched_')} {value}" for key, value in per.items() if key != "name"
            )
        lines.append(line)
    timing = report["timing"] or {}
    if timing:
        lines.append(
            f"speed: {report['sample_steps_per_second']:.0f} sample-steps/s; "
            f"start-up {timing['startup_s']:.2f} s, "
            f"{timing['per_step_s'] * 1e6:.1f} us per step, {timing['per_sample_s'] * 1e3:.1f} ms per sample"
        )
    if comparison is not None:
        samples = ", ".join(f"{name} {count}" for name, count in comparison["samples"].items())
        potentials = comparison.get("mismatched_potentials") or {}
        verdict = "agree spike for spike" if comparison["agree"] else "DISAGREE"
        if potentials and comparison["agree"]:
            verdict += " and output potential for potential"
        lines.append(
            f"compare ({samples} samples): {report['mismatched_spikes']} mismatched spikes"
            + (
                ", mismatched output potentials: " + ", ".join(f"{k} {v}" for k, v in potentials.items())
                if potentials
                else ""
            )
            + f": backends {verdict}"
        )
        accuracy = ", ".join(f"{name} {value:.4f}" for name, value in comparison["accuracy"].items())
        if accuracy:
            lines.append(f"accuracy: {accuracy}")
        for name, reason in report.get("not_compared", {}).items():
            lines.append(f"not compared: {name}: {reason}")
    if report.get("output"):
        lines.append(f"output spikes and predictions: {report['output']}")
    float_model = report.get("float_model")
    if float_model is not None:
        value = float_model["accuracy"]
        lines.append(
            f"float model (before quantization): accuracy {value:.4f} on the same samples"
            if value is not None
            else f"float model: {float_model['note']}"
        )
    return "\n".join(lines)
