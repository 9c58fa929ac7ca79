"""The toolchain as a Python library: one stable name per step, for notebooks and scripts.

Every function here is a thin wrapper over the stage that does the work (the same functions the
``toolchain`` commands call), with the defaults a notebook wants::

    import toolchain as tc

    recipe = tc.load_recipe("models/digits-demo", {"train.epochs": 1})
    trained = tc.fit(recipe, out_dir="runs/api-demo")           # TrainResult
    network, report = tc.quantize(tc.load_run("runs/api-demo"))  # ir.Network, QuantizationReport
    tc.write(network, "runs/api-demo/model.net")
    result = tc.simulate(tc.read("runs/api-demo/model.net"), samples=50)
    tc.estimate_energy(network, result, "loihi").energy_per_inference_j
    tc.plot_raster(result).savefig("raster.png")

The names are re-exported lazily by :mod:`toolchain` (``import toolchain`` imports none of the
stages, nor torch); this module itself imports each stage only inside the function that needs it.
Errors a caller can cause are :class:`~toolchain.errors.ToolchainError` subclasses with a one-line
message, as on the command line. The reference and a worked example: ``docs/api.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain import API
from toolchain.errors import SimulationError, ToolchainError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from toolchain import ir
    from toolchain.activity import Activity
    from toolchain.config import Recipe
    from toolchain.data import ArraySplit, Dataset
    from toolchain.energy.model import EnergyEstimate
    from toolchain.energy.targets import Target
    from toolchain.export.quantize import QuantizationReport
    from toolchain.export.run_loader import LoadedRun
    from toolchain.sim.compare import Comparison
    from toolchain.sim.input_file import FileInputs
    from toolchain.sim.inputs import NetworkInputs
    from toolchain.sim.reference import SimulationResult
    from toolchain.snn.models import SpikingNetwork
    from toolchain.train.trainer import TrainResult

    PathLike = str | os.PathLike[str]
    Inputs = NetworkInputs | FileInputs

#: the backends :func:`simulate` runs
BACKENDS: tuple[str, ...] = ("reference", "lava", "torch")
#: what :func:`write` picks from a file's suffix
SUFFIX_FORMATS: dict[str, str] = {".net": "netx", ".h5": "netx", ".hdf5": "netx", ".nir": "nir"}


# ----------------------------------------------------------------------------------------------
# recipe, data, training


def load_recipe(path: PathLike, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """The validated recipe in ``path`` (a ``recipe.toml`` or the folder holding one, such as
    ``models/digits-demo``), with ``overrides``: dotted recipe keys and their values
    (``{"train.epochs": 1, "neuron.numeric": "fixed_point"}``), validated like the file.

    Raises :class:`~toolchain.errors.RecipeError` naming the file or key.
    """
    from toolchain.config import load_recipe as read_recipe
    from toolchain.config import with_overrides

    recipe = read_recipe(path)
    return with_overrides(recipe, **dict(overrides)) if overrides else recipe


def load_dataset(
    dataset: str | Recipe,
    data_dir: PathLike | None = None,
    options: Mapping[str, Any] | None = None,
) -> Dataset:
    """A dataset with its ``train`` and ``test`` splits, by name (``"digits"``, ``"mnist"``, ...) or a
    recipe's (its ``[data]`` dataset and options; ``options`` replaces the recipe's).

    ``data_dir``: the folder holding one folder per dataset (default ``$TOOLCHAIN_DATA``, else
    ``./data``; scikit-learn's ``digits`` needs none). Raises
    :class:`~toolchain.errors.DataError` naming the missing file and the expected layout.
    """
    from toolchain.config import Recipe
    from toolchain.data import load_dataset as read_dataset

    if isinstance(dataset, Recipe):
        return read_dataset(dataset.data.dataset, data_dir, options or dataset.data.options)
    if not isinstance(dataset, str):
        raise ToolchainError(
            f"load_dataset: expected a dataset name or a Recipe, got {type(dataset).__name__}"
        )
    return read_dataset(dataset, data_dir, options)


def fit(
    recipe: Recipe | PathLike,
    dataset: Dataset | None = None,
    out_dir: PathLike | None = None,
    *,
    data_dir: PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``recipe``'s network (:func:`toolchain.train.fit`; a TTFS recipe: the TTFS trainer)
    on ``dataset`` (default: the recipe's, loaded from ``data_dir``).

    ``out_dir``: the run folder to write (``model.pt``, ``recipe.toml``, ``metrics.json``,
    checkpoints; what :func:`load_run` and ``toolchain export`` read); ``None`` writes nothing.
    A run folder holds one run (:mod:`toolchain.run_folder`): ``resume`` continues the run in
    ``out_dir`` from its checkpoint (same recipe), ``overwrite`` replaces it; a folder that holds a
    run is refused otherwise. ``progress`` shows progress bars. Returns
    the :class:`~toolchain.train.TrainResult` (``model``, ``evaluation.accuracy`` on the test split,
    ``history`` per epoch).
    """
    from toolchain.config import Recipe

    resolved = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    data = load_dataset(resolved, data_dir) if dataset is None else dataset
    from toolchain.train import fit_recipe

    return fit_recipe(resolved, data, out_dir, resume=resume, overwrite=overwrite, progress=progress)


def load_run(run_dir: PathLike, data_dir: PathLike | None = None) -> LoadedRun:
    """A run folder written by :func:`fit` or ``toolchain train``: its resolved ``recipe``, its
    ``dataset`` (loaded from ``data_dir``) and its trained ``model`` in eval mode
    (:func:`toolchain.export.run_loader.load_run`). Raises ``RunError`` naming the folder or file.
    """
    from toolchain.export.run_loader import load_run as read_run

    return read_run(run_dir, data_dir)


# ----------------------------------------------------------------------------------------------
# export


def quantize(
    source: LoadedRun | TrainResult | SpikingNetwork | PathLike,
    recipe: Recipe | PathLike | None = None,
    *,
    classes: Sequence[str] | None = None,
    scale_layers: bool = True,
    data_dir: PathLike | None = None,
) -> tuple[ir.Network, QuantizationReport]:
    """The deployment graph of a trained network on Loihi's integer registers, and what quantizing
    changed (:func:`toolchain.export.quantize.quantize_model`, as ``toolchain export`` does).

    ``source``: a :class:`~toolchain.export.run_loader.LoadedRun` or a run folder's path (its
    recipe and class names are used), a :class:`~toolchain.train.TrainResult` (its run folder's
    recipe, or ``recipe``), or a trained model with its ``recipe``. ``classes`` names the outputs in
    the graph's metadata (default: the run's dataset's, else ``"0"``, ``"1"``, ...);
    ``scale_layers`` scales each float layer by a power of two before rounding (``False``:
    ``--no-layer-scale``). Raises :class:`~toolchain.errors.QuantizationError` or
    :class:`~toolchain.errors.UnsupportedDynamicsError` naming the layer; nothing is clipped.
    """
    from toolchain.config import Recipe
    from toolchain.export.quantize import quantize_model
    from toolchain.export.run_loader import LoadedRun
    from toolchain.run_folder import RECIPE_FILE
    from toolchain.train.trainer import TrainResult

    if isinstance(source, str | os.PathLike):
        source = load_run(source, data_dir)
    where = ""
    model: Any
    if isinstance(source, LoadedRun):
        if recipe is not None:
            raise ToolchainError("quantize: a run folder holds its recipe; leave recipe out")
        model, recipe = source.model, source.recipe
        classes = source.dataset.classes if classes is None else classes
        where = str(source.run_dir.resolve())
    elif isinstance(source, TrainResult):
        model = source.model
        if source.out_dir is not None:
            where = str(Path(source.out_dir).resolve())
            if recipe is None:
                recipe = Path(source.out_dir) / RECIPE_FILE
        if recipe is None:
            raise ToolchainError(
                "quantize: a TrainResult without a run folder needs its recipe: quantize(result, recipe)"
            )
    else:
        model = source
        if not hasattr(model, "blocks"):
            raise ToolchainError(
                f"quantize: expected a run folder, a LoadedRun, a TrainResult or a SpikingNetwork, "
                f"got {type(model).__name__}"
            )
        if recipe is None:
            raise ToolchainError(
                "quantize: a model needs the recipe it was built from: quantize(model, recipe)"
            )
    resolved = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    return quantize_model(model, resolved, classes=classes, source=where, scale_layers=scale_layers)


def quantize_nir(
    graph: PathLike | Any,
    *,
    time_steps: int | None = None,
    input_encoding: str = "spikes",
    dt: float | None = None,
    convention: str = "nir",
    scale_layers: bool = True,
) -> tuple[ir.Network, QuantizationReport]:
    """A float NIR graph from another library (a ``.nir`` path or a ``nir.NIRGraph``) on Loihi's
    registers, and what rounding changed (:func:`toolchain.export.nir_quantize.quantize_nir_graph`,
    as ``toolchain convert`` does; write the result with :func:`write`).

    ``time_steps``: steps of one inference (default the graph's metadata); ``input_encoding``:
    ``"spikes"`` or ``"graded"``; ``dt``: the time step in seconds the graph's time constants are
    discretized with (default the graph's ``metadata.dt``, else the convention's, with a
    ``UserWarning``); ``convention``: ``"nir"`` (snnTorch, SpikingJelly), ``"norse"``, ``"sinabs"``.
    The network runs with NIR's instantaneous edges (``synapse_delay_steps = 0``); netx needs
    Lava's one-step delay: ``dataclasses.replace(network, synapse_delay_steps=1)`` changes the
    dynamics (``toolchain convert --to netx`` measures by how much). Raises
    :class:`~toolchain.errors.FormatError` or :class:`~toolchain.errors.QuantizationError` naming
    the node for what Loihi cannot hold.
    """
    from toolchain.export.nir_quantize import quantize_nir_graph
    from toolchain.formats.nir import load_graph

    _positive(time_steps, "quantize_nir: time_steps")
    where = ""
    if isinstance(graph, str | os.PathLike):
        where = f"{graph}: "
        graph = load_graph(graph)
    try:
        converted = quantize_nir_graph(
            graph,
            time_steps=time_steps,
            input_encoding=input_encoding,  # type: ignore[arg-type]  # checked there
            dt=dt,
            convention=convention,
            scale_layers=scale_layers,
        )
    except ToolchainError as exc:
        raise type(exc)(f"{where}{exc}") from None
    for note in converted.notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return converted.network, converted.report


def read(
    path: PathLike,
    *,
    time_steps: int | None = None,
    input_encoding: str | None = None,
    dt: float | None = None,
) -> ir.Network:
    """The deployment graph (:class:`toolchain.ir.Network`) in a netx or NIR file, the format told
    by the content (:func:`toolchain.formats.detect.open_graph`), also one another library wrote.

    What the file does not state must be given: ``time_steps`` (steps of one inference; overrides
    the file's), ``input_encoding`` (``"graded"`` or ``"spikes"``, netx), ``dt`` (NIR only: the
    time step in seconds its time constants are discretized with; default the graph's, else
    1e-4 s). Notes (a default ``dt``) are issued as :class:`UserWarning`. An ONNX file holds the
    float torch model, not a deployment graph, and is refused like any other file that is not
    netx or NIR: :class:`~toolchain.formats.detect.ModelFileError` naming the file.
    """
    from toolchain.commands.graph_options import read_model

    _positive(time_steps, "read: time_steps")
    if input_encoding is not None and input_encoding not in ("graded", "spikes"):
        raise ToolchainError(f"read: input_encoding must be 'graded' or 'spikes', got {input_encoding!r}")
    if dt is not None and (not isinstance(dt, int | float) or not 0 < dt < math.inf):
        raise ToolchainError(f"read: dt must be a positive time step in seconds, got {dt!r}")
    graph = read_model(Path(path), time_steps=time_steps, input_encoding=input_encoding, dt=dt)
    for note in graph.notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return graph.network


def write(network: ir.Network, path: PathLike, *, format: str | None = None, dt: float | None = None) -> Path:
    """Write ``network`` as lava-dl netx HDF5 (``.net``, ``.h5``, ``.hdf5``) or NIR (``.nir``),
    the format from the suffix or ``format`` (``"netx"``, ``"nir"``); returns the path written
    (atomically). ``dt``: NIR only, the time step in seconds its time constants are written for
    (default 1e-4 s). What a format cannot hold (netx: a synapse delay other than 1 step) is a
    :class:`~toolchain.errors.FormatError` naming the layer. ONNX holds the float torch model, not
    the quantized graph: write it from a run (``toolchain export RUN --format onnx``).
    """
    from toolchain import ir

    path = Path(path)
    if not isinstance(network, ir.Network):
        raise ToolchainError(
            f"write: expected an ir.Network (from quantize or read), got {type(network).__name__}"
        )
    fmt = format if format is not None else SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt == "onnx" or (format is None and path.suffix.lower() == ".onnx"):
        raise ToolchainError(
            f"{path}: ONNX holds the float torch model, not the quantized graph; write netx or nir here, "
            "ONNX from a run folder with `toolchain export RUN --format onnx`"
        )
    if fmt is None:
        raise ToolchainError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r} "
            f"(known: {', '.join(SUFFIX_FORMATS)}); pass format='netx' or format='nir'"
        )
    if fmt not in ("netx", "nir"):
        raise ToolchainError(f"write: format {fmt!r}: expected 'netx' or 'nir'")
    if path.is_dir():
        raise ToolchainError(f"{path}: is a folder; give the file to write")
    if fmt == "netx":
        if dt is not None:
            raise ToolchainError(f"{path}: dt applies to NIR files; netx holds Loihi's integer decays")
        from toolchain.formats.netx import write_netx

        return write_netx(network, path)
    from toolchain.formats.nir import DEFAULT_DT_S, write_nir

    return write_nir(network, path, dt=DEFAULT_DT_S if dt is None else float(dt))


# ----------------------------------------------------------------------------------------------
# simulation


def load_inputs(
    network: ir.Network,
    source: PathLike | Dataset | ArraySplit | None = None,
    *,
    labels: PathLike | None = None,
    samples: int | None = None,
    data_dir: PathLike | None = None,
) -> Inputs:
    """Samples to run ``network`` on, in the simulators' layout, with their labels.

    ``source``: ``None`` for the test split of the dataset the network's metadata names (with its
    run's data options, loaded from ``data_dir``); a :class:`~toolchain.data.Dataset` (its test
    split) or an :class:`~toolchain.data.ArraySplit`, encoded as the metadata's ``encoding`` says
    (rate spikes drawn as the training evaluation draws them); or a ``.npy`` file of your own
    samples (``labels``: a ``.npy`` of class indices; layouts in ``docs/simulation.md``).
    ``samples`` keeps the first N. Returns an object with ``inputs`` (graded: floats
    ``[B, *input_shape]`` in [0, 1]; spikes: 0/1 ``[T, B, *input_shape]``), ``labels`` ``[B]``
    (``None`` for a file without labels) and ``samples``.
    """
    from toolchain.data import ArraySplit, Dataset
    from toolchain.sim.inputs import encoding_of, network_inputs

    samples = _positive(samples, "samples")
    if isinstance(source, str | os.PathLike):
        from toolchain.sim.input_file import read_input_file

        return read_input_file(source, network, labels=labels, samples=samples)
    if labels is not None:
        raise ToolchainError("load_inputs: labels go with a .npy file of samples (the dataset has its own)")
    name = network.metadata.get("source") or network.name
    if isinstance(source, Dataset):
        source = source.test
    if isinstance(source, ArraySplit):
        return network_inputs(network, source, encoding_of(network, str(name)), samples=samples)
    if source is not None:
        raise ToolchainError(
            "load_inputs: source must be None, a .npy path, a Dataset or an ArraySplit, "
            f"got {type(source).__name__}"
        )
    dataset = network.metadata.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        from toolchain.sim.input_file import input_layout

        raise ToolchainError(
            f"network {network.name!r} names no dataset in its metadata: give your own samples as a "
            f".npy file or an array ({input_layout(network)})"
        )
    from toolchain.commands.simulate import load_test_split

    split, _ = load_test_split(network, Path(str(name)), Path(data_dir) if data_dir is not None else None)
    return network_inputs(network, split, encoding_of(network, str(name)), samples=samples)


def simulate(
    network: ir.Network | PathLike,
    inputs: Inputs | np.ndarray | PathLike | None = None,
    *,
    backend: str = "reference",
    samples: int | None = None,
    record_spikes: bool = True,
    batch_size: int = 256,
    data_dir: PathLike | None = None,
) -> SimulationResult:
    """Run ``network`` (an :class:`~toolchain.ir.Network`, or a netx/NIR file's path) on ``inputs``.

    ``inputs``: what :func:`load_inputs` returns, a ``.npy`` path, an array in the simulators'
    layout (graded: floats ``[B, *input_shape]`` in [0, 1]; spikes: 0/1 ``[T, B, *input_shape]``),
    or ``None`` for the test split of the dataset the metadata names. ``samples`` keeps the first N.
    ``backend``: ``"reference"`` (the bit-accurate reference simulator, batches of ``batch_size``),
    ``"lava"`` (Lava's fixed-point CPU simulation of the netx file, about a second per sample; an
    in-memory network is written to a temporary netx file first) or ``"torch"`` (the fixed-point
    torch model rebuilt from the graph; no activity counts). ``record_spikes`` keeps every synaptic
    layer's spikes (``result.spikes[name]``: ``uint8`` ``[T, B, *shape]``; one byte per neuron and
    step, refused beyond 2 GiB), which :func:`plot_raster` and :func:`compare` need.

    Returns the :class:`~toolchain.sim.reference.SimulationResult`: ``counts`` ``[B, classes]``
    (output spikes), ``potentials`` ``[T, B, classes]`` (output voltage, Lava's integer units),
    ``scores``, ``predictions`` ``[B]``, ``spikes``, ``activity`` (spikes, synaptic operations and
    neuron updates per sample per layer), ``timing`` (seconds) and ``accuracy(labels)``; the labels
    of the inputs, when known, are in ``metadata["labels"]``.
    """
    import dataclasses

    if backend not in BACKENDS:
        raise ToolchainError(f"simulate: backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    batch_size = _positive(batch_size, "batch_size")
    network, path = _network(network)
    x, labels = _inputs(network, inputs, samples, data_dir)
    if record_spikes:
        from toolchain.sim.reference import check_spike_record

        check_spike_record(network, _count(network, x), "samples=, or record_spikes=False")
    result = _run(backend, network, path, x, record_spikes, batch_size)
    if labels is not None:
        result = dataclasses.replace(result, metadata={**result.metadata, "labels": labels[: result.samples]})
    return result


def compare(
    network: ir.Network | PathLike,
    inputs: Inputs | np.ndarray | PathLike | None = None,
    *,
    backends: Sequence[str] = ("torch",),
    reference: SimulationResult | None = None,
    samples: int | None = None,
    lava_samples: int | None = None,
    data_dir: PathLike | None = None,
) -> Comparison:
    """Run ``network`` on the same ``inputs`` in the reference simulator and each of ``backends``
    (``"torch"``: the fixed-point torch model rebuilt from the graph; ``"lava"``: Lava on the netx
    file) and count, per layer, the spikes that differ in time or place
    (:func:`toolchain.sim.compare.compare`, as ``toolchain simulate --compare``).

    ``inputs`` and ``samples`` as for :func:`simulate`; ``reference``: a reference-simulator result
    with recorded spikes on exactly these inputs, to reuse instead of simulating again;
    ``lava_samples``: Lava runs only the first N (about a second each). Returns the
    :class:`~toolchain.sim.compare.Comparison`: ``agree``, ``mismatched_spikes``, ``mismatches``
    (backend -> layer -> count), ``samples`` and ``accuracy`` (with labels) per backend.
    """
    from toolchain.sim.backends import InputArrays, simulate_backends

    backends = [backends] if isinstance(backends, str) else list(backends)
    unknown = [name for name in backends if name not in BACKENDS or name == "reference"]
    if unknown or not backends:
        raise ToolchainError(
            f"compare: backends {backends!r}: expected one or more of 'torch', 'lava' "
            "(each is compared with the reference simulator)"
        )
    lava_samples = _positive(lava_samples, "lava_samples")
    network, path = _network(network)
    x, labels = _inputs(network, inputs, samples, data_dir)
    count = _count(network, x)
    if reference is None:
        from toolchain.sim.reference import check_spike_record

        check_spike_record(network, count, "samples=, or record_spikes=False")
    elif reference.samples != count:
        raise ToolchainError(
            f"compare: the reference result holds {reference.samples} samples, the inputs {count}; "
            "simulate the same inputs (or leave reference out)"
        )
    if labels is None and reference is not None:
        labels = reference.metadata.get("labels")
    with _netx_file(network, path, "lava" in backends) as netx_file:
        run = simulate_backends(
            network,
            InputArrays(x, labels, count),
            backends=backends,
            compare=True,
            reference=reference,
            netx_file=netx_file,
            lava_samples=lava_samples,
        )
    assert run.comparison is not None
    return run.comparison


# ----------------------------------------------------------------------------------------------
# energy


def estimate_energy(
    network: ir.Network | PathLike,
    activity: Activity | SimulationResult | PathLike | None = None,
    target: str | os.PathLike[str] | Target = "loihi",
    *,
    samples: int = 100,
    static: bool = False,
    overhead: bool = False,
    label: str | None = None,
    order: str = "spatial",
    data_dir: PathLike | None = None,
) -> EnergyEstimate:
    """Energy and latency of one inference of ``network`` on ``target`` from measured activity
    (:func:`toolchain.energy.model.estimate`, as ``toolchain energy``).

    ``activity``: a reference-simulator :class:`~toolchain.sim.reference.SimulationResult` or its
    :class:`~toolchain.activity.Activity`, the path of ``toolchain simulate --json``'s output, or
    ``None`` to simulate the first ``samples`` test samples of the dataset the metadata names.
    ``target``: a profile name (``"loihi"``, ``"loihi2"``, ``"spinnaker2"``; ``toolchain
    targets``), a ``.toml`` path or a loaded target. ``static`` adds static power over the latency,
    ``overhead`` the per-step overhead; ``order``: placement of feature maps (``"spatial"``, ``"c"``).

    Returns the :class:`~toolchain.energy.model.EnergyEstimate`: ``energy_per_inference_j``
    (joules), ``breakdown_j`` (synaptic, neuron, routing, static, overhead; joules),
    ``latency_per_inference_s`` (seconds), ``layers`` (per-layer counts and joules),
    ``placement`` (cores), ``workload`` and the ANN twin's ``baselines``. A full report:
    ``toolchain.energy.report.write_report([estimate], folder)``.
    """
    from toolchain.energy.model import estimate
    from toolchain.energy.targets import Target, load_target

    if order not in ("spatial", "c"):
        raise ToolchainError(f"estimate_energy: order {order!r}: expected 'spatial' or 'c'")
    network, _ = _network(network)
    accuracy = None
    if activity is None:
        result = simulate(network, samples=samples, record_spikes=False, data_dir=data_dir)
        activity = result.activity
        labels = result.metadata.get("labels")
        accuracy = result.accuracy(labels) if labels is not None else None
    elif isinstance(activity, str | os.PathLike):
        from toolchain.activity import read_activity

        activity, accuracy = read_activity(activity)
    activity = _activity("estimate_energy: activity", activity, "an Activity or a JSON path")
    profile = target if isinstance(target, Target) else load_target(target)
    return estimate(
        network,
        activity,
        profile,
        static=static,
        overhead=overhead,
        label=label,
        order=order,
        accuracy=accuracy,
    )


# ----------------------------------------------------------------------------------------------
# plots


def plot_raster(
    result: SimulationResult,
    layer: str | None = None,
    sample: int = 0,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A spike raster of one ``sample`` of ``result`` in one ``layer`` (default: the output layer):
    a mark at (time step, neuron) for every spike; neurons numbered in the C order of the layer's
    shape (a conv layer's ``(C, H, W)``). The result must hold spikes (``record_spikes=True``).

    Draws into ``ax`` when given, else into a new figure; returns the
    :class:`matplotlib.figure.Figure` (``fig.savefig("raster.png")``; a notebook shows it).
    """
    import numpy as np

    if result.spikes is None or not result.spikes:
        raise SimulationError("plot_raster: the result holds no spikes: simulate with record_spikes=True")
    names = list(result.spikes)
    name = names[-1] if layer is None else layer
    if name not in result.spikes:
        raise SimulationError(f"plot_raster: no spikes of layer {name!r}; recorded: {', '.join(names)}")
    spikes = result.spikes[name]
    count = int(spikes.shape[1])
    if isinstance(sample, bool) or not isinstance(sample, int | np.integer) or not 0 <= sample < count:
        raise SimulationError(f"plot_raster: sample {sample!r}: expected an index in [0, {count})")
    grid = np.asarray(spikes[:, sample]).reshape(spikes.shape[0], -1)
    steps, neurons = grid.shape
    times, index = np.nonzero(grid)
    fig, ax = _axes(ax, (6.4, 3.2 + min(neurons, 400) / 200))
    ax.scatter(times, index, marker="|", s=max(4.0, min(60.0, 2000.0 / max(neurons, 1))), color="black")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(-0.5, neurons - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel(f"neuron ({neurons})")
    ax.set_title(title or f"{name}: sample {sample}, {len(times)} spikes in {steps} steps", fontsize=10)
    return fig


def plot_activity(
    results: SimulationResult | Activity | Mapping[str, SimulationResult | Activity],
    *,
    per_neuron: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A bar chart of the spikes per sample (one inference) of each synaptic layer, or with
    ``per_neuron`` per neuron and sample; a mapping ``{label: result}`` (e.g. two backends or two
    networks with the same layers) gives grouped bars. Takes simulation results or their
    :class:`~toolchain.activity.Activity`.

    Draws into ``ax`` when given, else into a new figure; returns the
    :class:`matplotlib.figure.Figure`.
    """
    import numpy as np

    series = dict(results) if isinstance(results, Mapping) else {"": results}
    if not series:
        raise ToolchainError("plot_activity: no results to plot")
    activities = {
        label: _activity(f"plot_activity: {label or 'results'}", value) for label, value in series.items()
    }
    first = next(iter(activities.values()))
    names = [layer.name for layer in first.layers]
    for label, activity in activities.items():
        if [layer.name for layer in activity.layers] != names:
            raise ToolchainError(
                f"plot_activity: {label!r} has layers {[layer.name for layer in activity.layers]}, "
                f"the first result {names}"
            )
    fig, ax = _axes(ax, (max(4.8, 1.1 * len(names) + 2.5), 3.6))
    width = 0.8 / len(activities)
    positions = np.arange(len(names))
    for i, (label, activity) in enumerate(activities.items()):
        values = [
            layer.spikes_per_sample / layer.neurons if per_neuron else layer.spikes_per_sample
            for layer in activity.layers
        ]
        ax.bar(positions + (i - (len(activities) - 1) / 2) * width, values, width, label=label or None)
    ax.set_xticks(positions, names)
    ax.set_xlabel("layer")
    ax.set_ylabel("spikes per neuron per sample" if per_neuron else "spikes per sample")
    total = ", ".join(
        f"{label + ': ' if label else ''}{activity.spikes_per_sample:.1f}"
        for label, activity in activities.items()
    )
    ax.set_title(title or f"{first.network}: spikes per sample ({total})", fontsize=10)
    if len(activities) > 1:
        ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------
# helpers


def _positive(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ToolchainError(f"{what}: expected a positive integer, got {value!r}")
    return value


def _network(network: Any) -> tuple[ir.Network, Path | None]:
    """``network`` and the file it was read from (``None`` for an in-memory network)."""
    from toolchain import ir

    if isinstance(network, ir.Network):
        return network, None
    if isinstance(network, str | os.PathLike):
        return read(network), Path(network)
    raise ToolchainError(
        f"expected an ir.Network or the path of a netx/NIR file, got {type(network).__name__}"
    )


def _inputs(network: ir.Network, inputs: Any, samples: int | None, data_dir: Any) -> tuple[Any, Any]:
    """The simulators' input array and the labels (or ``None``) of ``inputs``, the first ``samples``."""
    import numpy as np

    samples = _positive(samples, "samples")
    if inputs is None or isinstance(inputs, str | os.PathLike):
        inputs = load_inputs(network, inputs, samples=samples, data_dir=data_dir)
    if hasattr(inputs, "inputs") and hasattr(inputs, "labels"):
        x, labels = np.asarray(inputs.inputs), inputs.labels
    else:
        try:
            x, labels = np.asarray(inputs), None
        except Exception as exc:
            raise SimulationError(f"inputs: not an array ({type(inputs).__name__}: {exc})") from None
    if samples is not None:
        from toolchain.sim.inputs import first_samples

        x = first_samples(network, x, samples)
        labels = None if labels is None else labels[:samples]
    return x, labels


def _count(network: ir.Network, x: Any) -> int:
    axis = 0 if network.input_encoding == "graded" else 1
    return int(x.shape[axis]) if x.ndim > axis else 0


def _run(
    backend: str, network: ir.Network, path: Path | None, x: Any, record: bool, batch_size: int
) -> SimulationResult:
    from toolchain.sim.backends import run_backend

    with _netx_file(network, path, backend == "lava") as netx_file:
        return run_backend(
            backend, network, x, netx_file=netx_file, record_spikes=record, batch_size=batch_size
        )


@contextlib.contextmanager
def _netx_file(network: ir.Network, path: Path | None, needed: bool) -> Iterator[Path | None]:
    """The netx file Lava runs when ``needed``: ``path`` (refused unless it is netx), or the
    in-memory ``network`` written to a temporary one for the duration."""
    if not needed:
        yield None
        return
    if path is not None:
        from toolchain.formats.detect import graph_format

        if graph_format(path) != "netx":
            raise ToolchainError(f"{path}: the lava backend runs netx files; write the network as netx")
        yield path
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="toolchain-lava-") as folder:
        yield write(network, Path(folder) / "network.net")


def _activity(where: str, value: Any, also: str = "an Activity") -> Activity:
    """The per-layer :class:`~toolchain.activity.Activity` of a SimulationResult or an Activity
    ``value``, or the toolchain's one-line error prefixed with ``where``."""
    from toolchain.activity import Activity

    activity = getattr(value, "activity", value)
    if not isinstance(activity, Activity):
        raise ToolchainError(f"{where}: expected a SimulationResult or {also}, got {type(value).__name__}")
    if not activity.layers:
        raise ToolchainError(
            f"{where}: the {activity.source!r} activity holds no per-layer counts: its backend measured no "
            "per-layer activity (the torch backend measures none); use the reference simulator's"
        )
    return activity


def _axes(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    """``ax`` and its figure, or a new figure (not pyplot's: no backend, no global state) and axes."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


__all__ = ["BACKENDS", *API]
