"""The whole job for a recipe, as ``toolchain run`` does it: train, export, simulate, estimate energy.

Each stage calls its sub-package and hands the next one typed data (the trained model, the
deployment graph :class:`toolchain.ir.Network`, :class:`toolchain.activity.Activity`); files are
written for people and other tools, never re-parsed between stages, with one exception on purpose:
the simulators run the netx file *as written* (read back with :func:`toolchain.formats.netx.read_netx`),
so the run proves the file, not only the graph in memory.

The run folder, stage by stage::

    RUN/model.pt, recipe.toml, metrics.json       train     (toolchain.train.fit, resumable)
    RUN/export/model.net, model.nir, model.onnx,   export    (toolchain.export: quantize -> netx | nir
               ann.onnx, quantization.json                    | onnx)
    RUN/sim/reference.json                         simulate  (toolchain.sim.reference, whole test set)
    RUN/sim/lava.json                              lava      (toolchain.sim.lava_backend on a sample,
                                                              compared spike for spike)
    RUN/energy/report.md, report.html, *.png,      energy    (toolchain.energy on the recipe's target)
               energy.json
    RUN/pipeline.json                              what each stage produced; a stage found done
                                                   there (same recipe, same weights, outputs
                                                   present) is skipped

An interrupted run resumes: finished stages are skipped and training continues from its last
checkpoint. A stage that cannot run here (Lava not installed, a TTFS network that has no netx form)
is recorded as skipped with the reason, never silently.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.config import Recipe
from toolchain.errors import LavaUnavailableError, ToolchainError
from toolchain.io import check_writable_dir, write_json
from toolchain.run_folder import (
    METRICS_FILE,
    MODEL_FILE,
    PIPELINE_FILE,
    RECIPE_FILE,
    SUMMARY_FILE,
    RunFolder,
)

STAGES: tuple[str, ...] = ("train", "export", "simulate", "lava", "energy")
#: test samples Lava runs by default (about a second each on this machine's kind)
DEFAULT_LAVA_SAMPLES = 100


class PipelineError(ToolchainError):
    """A run folder that holds another recipe's run, or a stage that cannot go on."""


@dataclass(frozen=True)
class RunOptions:
    """How ``toolchain run`` runs: data, how many samples Lava and the reference simulator take,
    which stages to skip, and whether to show progress."""

    data_dir: Path | None = None
    lava_samples: int = DEFAULT_LAVA_SAMPLES
    sim_samples: int | None = None
    skip: tuple[str, ...] = ()
    progress: bool = True
    overwrite: bool = False
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))

    def __post_init__(self) -> None:
        unknown = [stage for stage in self.skip if stage not in STAGES]
        if unknown:
            raise PipelineError(f"--skip {','.join(unknown)}: unknown stage; stages are {', '.join(STAGES)}")
        if "train" in self.skip:
            raise PipelineError("--skip train: every later stage needs the trained model")
        if self.lava_samples < 0:
            raise PipelineError(f"--lava-samples {self.lava_samples}: expected 0 or more")
        if self.sim_samples is not None and self.sim_samples < 1:
            raise PipelineError(f"--samples {self.sim_samples}: expected a positive number")


@dataclass
class _State:
    """``pipeline.json``: the recipe's fingerprint and each finished stage's results."""

    path: Path
    fingerprint: str
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def load(path: Path, fingerprint: str) -> _State:
        if not path.is_file():
            return _State(path, fingerprint)
        try:
            data = json.loads(path.read_text())
            stages = dict(data["stages"])
            previous = str(data["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise PipelineError(
                f"{path}: unreadable pipeline state ({exc}); delete it to start over"
            ) from None
        if previous != fingerprint:
            raise PipelineError(
                f"{path.parent}: this run folder holds a run of another recipe (or other settings); "
                "use another --out, or delete the folder to start over"
            )
        return _State(path, fingerprint, stages)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def done(self, stage: str, weights_sha256: str | None) -> dict[str, Any] | None:
        """The stage's recorded result if it finished (or could not run here) from the weights
        ``weights_sha256`` (the run folder's now; ``None``: not known yet) and its outputs exist."""
        result = self.stages.get(stage)
        if (
            result is None
            or result.get("status") not in ("done", "skipped")
            or result.get("reason") == "--skip"
            or (stage != "train" and result.get("weights_sha256") != weights_sha256)
        ):
            return None
        return result if all(self.file(p).exists() for p in result.get("outputs", [])) else None

    def file(self, relative: str) -> Path:
        """A path recorded in the state (relative to the run folder) as a path to open."""
        return self.run_dir / relative

    def record(self, stage: str, result: dict[str, Any]) -> None:
        """Store ``result``; its ``outputs`` and ``files`` become relative to the run folder, so the
        folder can be moved or resumed from another working directory."""
        result = dict(result)
        result["outputs"] = [self._relative(p) for p in result.get("outputs", [])]
        if isinstance(result.get("files"), dict):
            result["files"] = {key: self._relative(p) for key, p in result["files"].items()}
        self.stages[stage] = result
        write_json(self.path, {"fingerprint": self.fingerprint, "stages": self.stages})

    def _relative(self, path: str | Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path.resolve())


def recipe_fingerprint(recipe: Recipe) -> str:
    """A hash of the resolved recipe: a run folder belongs to exactly one."""
    from toolchain.schema import to_mapping

    text = json.dumps(to_mapping(recipe), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_pipeline(recipe: Recipe, out: str | Path, options: RunOptions | None = None) -> dict[str, Any]:
    """Run every stage of ``recipe`` into the run folder ``out``; returns the summary (also written
    to ``RUN/summary.json``). Stages already done in ``out`` are skipped (see the module docstring)."""
    options = options or RunOptions()
    run_dir = check_writable_dir(out)
    folder = RunFolder(run_dir)
    with folder.lock():
        if options.overwrite:
            folder.remove_run()
        return _run_stages(recipe, folder, options)


def _run_stages(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    run_dir = folder.path
    state = _State.load(run_dir / PIPELINE_FILE, recipe_fingerprint(recipe))
    log = options.log
    loaded = _Loaded()
    weights: str | None = None  # the trained weights' hash, once training is done
    for stage in STAGES:
        if stage != "train" and weights is None:
            weights = folder.check_finished().weights_sha256
        previous = state.done(stage, weights)
        if previous is not None:
            log(f"[{stage}] done in an earlier run ({previous['status']}); skipped")
            continue
        if stage in options.skip:
            state.record(
                stage, {"status": "skipped", "reason": "--skip", "outputs": [], "weights_sha256": weights}
            )
            log(f"[{stage}] skipped (--skip)")
            continue
        log(f"[{stage}] ...")
        start = time.perf_counter()
        try:
            result = _stage_function(stage, recipe)(recipe, run_dir, options, state, loaded)
        except _Skip as skip:
            result = {"status": "skipped", "reason": str(skip), "outputs": []}
            log(f"[{stage}] skipped: {skip}")
        else:
            result = {"status": "done", **result}
        result["seconds"] = round(time.perf_counter() - start, 3)
        if stage != "train":
            result["weights_sha256"] = weights
        state.record(stage, result)
        if result["status"] == "done":
            log(f"[{stage}] done in {result['seconds']:.1f} s")
    summary = _summary(recipe, run_dir, state)
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary


@dataclass
class _Loaded:
    """What the stages of one ``run`` share in memory, each loaded once, when a stage first needs it:
    the ``dataset``, the trained ``run`` (:class:`~toolchain.export.run_loader.LoadedRun`), the
    ``network`` read back from the exported netx file, a TTFS run's ``ttfs_model``."""

    dataset: Any = None
    run: Any = None
    network: Any = None
    ttfs_model: Any = None


class _Skip(Exception):
    """A stage that cannot run here; its message is the reason recorded in pipeline.json."""


# --- stages -------------------------------------------------------------------------------------


def _train(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    from toolchain.data import load_dataset
    from toolchain.train import fit_recipe

    dataset = load_dataset(recipe.data.dataset, options.data_dir, recipe.data.options)
    loaded.dataset = dataset
    result = fit_recipe(recipe, dataset, run_dir, resume=True, progress=options.progress)
    metrics = result.metrics(recipe)
    return {
        "outputs": [str(run_dir / MODEL_FILE), str(run_dir / METRICS_FILE)],
        "test_accuracy": metrics["test_accuracy"],
        "test_samples": metrics["test_samples"],
        "spikes_per_sample": metrics["spikes_per_sample"],
        "numeric": metrics.get("numeric", recipe.neuron.numeric),
        "ttfs": metrics.get("ttfs"),
    }


def _loaded_run(run_dir: Path, options: RunOptions, loaded: _Loaded) -> Any:
    if loaded.run is None:
        from toolchain.export.run_loader import load_run

        loaded.run = load_run(run_dir, options.data_dir)
    return loaded.run


def _export_cuba(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    """A CUBA run: Loihi quantization to netx (and NIR), the torch models to ONNX."""
    from toolchain.export.onnx import export_ann_onnx, export_snn_onnx, recipe_metadata
    from toolchain.export.pipeline import ann_twin, quantize_run, write_graph

    run = _loaded_run(run_dir, options, loaded)
    folder = run_dir / "export"
    network, report = quantize_run(run)
    outputs = {"netx": folder / "model.net", "nir": folder / "model.nir"}
    written: dict[str, str] = {}
    notes: dict[str, str] = {}
    for fmt, path in outputs.items():
        if fmt not in recipe.export.formats and fmt != "netx":
            continue
        try:
            write_graph(network, fmt, path)
            written[fmt] = str(path)
        except ToolchainError as exc:
            if fmt == "netx":
                raise
            notes[fmt] = str(exc)
            options.log(f"[export] {fmt}: not written: {exc}")
    if "onnx" in recipe.export.formats:
        metadata = recipe_metadata(run.recipe, list(run.dataset.classes))
        written["onnx"] = str(
            export_snn_onnx(
                run.model, run.recipe.encoding.time_steps, folder / "model.onnx", metadata=metadata
            )
        )
        written["onnx_ann"] = str(export_ann_onnx(ann_twin(run), folder / "ann.onnx", metadata=metadata))
    write_json(folder / "quantization.json", report.to_dict())
    return {
        "outputs": [*written.values(), str(folder / "quantization.json")],
        "files": written,
        "not_written": notes,
        "exact": report.exact,
        "inexact": list(report.inexact),
        "max_weight_error": report.max_weight_error,
    }


def _ttfs_model(run_dir: Path, options: RunOptions, loaded: _Loaded) -> tuple[Any, Any]:
    """The dataset and the trained surrogate DNN of a TTFS run."""
    if loaded.ttfs_model is None:
        from toolchain.config import load_recipe
        from toolchain.data import load_dataset
        from toolchain.snn.trained import load_ttfs_run

        recipe = load_recipe(run_dir / RECIPE_FILE)
        dataset = loaded.dataset
        if dataset is None:
            dataset = load_dataset(recipe.data.dataset, options.data_dir, recipe.data.options)
        _, model = load_ttfs_run(run_dir, dataset.sample_shape, dataset.num_classes)
        loaded.dataset, loaded.ttfs_model = dataset, model
    return loaded.dataset, loaded.ttfs_model


def _export_ttfs(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    """A TTFS run: the surrogate DNN to ONNX and NIR (weights and kernel parameters, nothing lost);
    netx refused (Loihi's CUBA neuron has a fixed threshold, docs/ttfs.md)."""
    from toolchain.export.ttfs import export_ttfs_nir, export_ttfs_onnx, ttfs_metadata

    _, model = _ttfs_model(run_dir, options, loaded)
    folder = run_dir / "export"
    onnx_path = export_ttfs_onnx(model, folder / "model.onnx", metadata=ttfs_metadata(model))
    nir_path = export_ttfs_nir(model, recipe, folder / "model.nir")
    return {
        "outputs": [str(onnx_path), str(nir_path)],
        "files": {"onnx": str(onnx_path), "nir": str(nir_path)},
        "not_written": {"netx": "a TTFS network has no netx/CUBA form (docs/ttfs.md)"},
        "exact": True,
        "inexact": [],
    }


def _simulate_ttfs(
    recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded
) -> dict:
    """A TTFS run: the event-driven TTFS SNN (each neuron fires at most once) on the test split."""
    from toolchain.data import as_float
    from toolchain.sim.ttfs import simulate_ttfs

    dataset, model = _ttfs_model(run_dir, options, loaded)
    split = dataset.test
    if options.sim_samples is not None:
        split = split.subset(slice(0, min(options.sim_samples, len(split))))
    import numpy as np

    result = simulate_ttfs(model, as_float(np.asarray(split.x)), network_name=recipe.name)
    accuracy = float((result.predictions == np.asarray(split.y)).mean()) if len(split) else 0.0
    out = run_dir / "sim" / "ttfs.json"
    report = {
        "backend": "ttfs",
        "samples": len(split),
        "accuracy": accuracy,
        "spikes_per_sample": result.activity.spikes_per_sample,
        "synops_per_sample": result.activity.synops_per_sample,
        "max_spikes_per_neuron": result.max_spikes_per_neuron,
        "activity": result.activity.to_dict(),
    }
    return _stage_record(out, report)


def _exported_network(run_dir: Path, state: _State, loaded: _Loaded) -> tuple[Any, Path]:
    from toolchain.formats.netx import read_netx

    export = state.stages.get("export", {})
    relative = export.get("files", {}).get("netx")
    if export.get("status") != "done" or relative is None:
        raise _Skip("no netx file was exported (see the export stage)")
    path = state.file(relative)
    if loaded.network is None:
        loaded.network = read_netx(path)
    return loaded.network, path


def _inputs(network: Any, run_dir: Path, options: RunOptions, loaded: _Loaded, samples: int | None) -> Any:
    from toolchain.sim.inputs import network_inputs

    run = _loaded_run(run_dir, options, loaded)
    return network_inputs(network, run.dataset.test, run.recipe.encoding, samples=samples)


def _simulate_cuba(
    recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded
) -> dict:
    """A CUBA run: the exported netx file in the reference simulator on the test split."""
    from toolchain.sim.backends import simulate_backends

    network, path = _exported_network(run_dir, state, loaded)
    inputs = _inputs(network, run_dir, options, loaded, options.sim_samples)
    report = {"file": str(path), **simulate_backends(network, inputs).record("reference")}
    return _stage_record(run_dir / "sim" / "reference.json", report)


def _lava(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    """A CUBA run: the netx file in Lava on the first test samples, compared spike for spike with
    the reference simulator and the fixed-point torch model."""
    from toolchain.sim.backends import simulate_backends

    if options.lava_samples == 0:
        raise _Skip("--lava-samples 0")
    network, path = _exported_network(run_dir, state, loaded)
    try:
        from toolchain import lava_compat

        lava_compat.import_lava()
        from toolchain.sim.lava_backend import LavaProgress
    except LavaUnavailableError as exc:
        raise _Skip(f"Lava is not available here: {exc}") from None
    inputs = _inputs(network, run_dir, options, loaded, options.lava_samples)
    progress = LavaProgress(inputs.samples, label="[lava]") if options.progress else None
    run = simulate_backends(
        network,
        inputs,
        backends=("torch", "lava"),
        compare=True,
        tolerate=("torch",),
        netx_file=path,
        lava_progress=progress,
    )
    assert run.comparison is not None
    if not run.comparison.agree:
        options.log(
            f"[lava] WARNING: {run.comparison.mismatched_spikes} spikes and "
            f"{run.comparison.mismatched_potentials} output potentials differ between backends"
        )
    return _stage_record(run_dir / "sim" / "lava.json", {"file": str(path), **run.record("lava")})


def _stage_record(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write a simulation's ``report`` to ``path``; what ``pipeline.json`` keeps of it (all but the
    activity, which stays in the file)."""
    write_json(path, report)
    return {"outputs": [str(path)], **{k: v for k, v in report.items() if k != "activity"}}


def _energy(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    from toolchain.activity import read_activity
    from toolchain.energy.model import estimate
    from toolchain.energy.report import write_report
    from toolchain.energy.targets import load_target

    target = load_target(recipe.target.name)
    coding = _coding(recipe)
    sim = run_dir / "sim" / coding.activity_file
    if state.stages.get("simulate", {}).get("status") != "done" or not sim.is_file():
        raise _Skip("no measured activity (the simulate stage did not run)")
    activity, accuracy = read_activity(sim)
    network = coding.energy_network(recipe, run_dir, options, state, loaded, activity.time_steps)
    result = estimate(
        network,
        activity,
        target,
        label=recipe.name,
        accuracy=accuracy,
    )
    folder = run_dir / "energy"
    paths = write_report([result], folder)
    write_json(folder / "energy.json", result.to_dict())
    return {
        "outputs": [str(p) for p in paths.values()] + [str(folder / "energy.json")],
        "target": target.name,
        "energy_per_inference_j": result.energy_per_inference_j,
        "latency_per_inference_s": result.latency_per_inference_s,
        "breakdown_j": result.to_dict()["breakdown_j"],
        "report": str(paths.get("report.html", folder)),
    }


def _lava_ttfs(recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded) -> dict:
    raise _Skip("a TTFS network does not run on Lava's CUBA neurons (docs/ttfs.md)")


def _cuba_energy_network(
    recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded, time_steps: int
) -> Any:
    return _exported_network(run_dir, state, loaded)[0]


def _ttfs_energy_network(
    recipe: Recipe, run_dir: Path, options: RunOptions, state: _State, loaded: _Loaded, time_steps: int
) -> Any:
    """The TTFS network's topology for placement (its activity sets the counts)."""
    from toolchain.sim.ttfs import placement_network

    _, model = _ttfs_model(run_dir, options, loaded)
    return placement_network(model, recipe.name, time_steps)


Stage = Callable[[Recipe, Path, RunOptions, "_State", _Loaded], dict[str, Any]]


@dataclass(frozen=True)
class _Coding:
    """Everything that differs between a rate-coded CUBA run and a time-to-first-spike run in
    ``toolchain run``, in one place: its export, simulate and Lava stages, the activity record its
    simulation writes, and the network its energy is placed with (training dispatches in
    :func:`toolchain.train.fit_recipe`). The stages ask :func:`_coding` once."""

    export: Stage
    simulate: Stage
    lava: Stage
    activity_file: str
    energy_network: Callable[..., Any]


_CUBA = _Coding(_export_cuba, _simulate_cuba, _lava, "reference.json", _cuba_energy_network)
_TTFS = _Coding(_export_ttfs, _simulate_ttfs, _lava_ttfs, "ttfs.json", _ttfs_energy_network)


def _coding(recipe: Recipe) -> _Coding:
    """The recipe's coding: TTFS when ``[ttfs].enabled``, else the rate-coded CUBA SNN."""
    return _TTFS if recipe.ttfs.enabled else _CUBA


def _stage_function(stage: str, recipe: Recipe) -> Stage:
    """The function that runs ``stage`` for ``recipe``'s coding."""
    coding = _coding(recipe)
    stages: dict[str, Stage] = {
        "train": _train,
        "export": coding.export,
        "simulate": coding.simulate,
        "lava": coding.lava,
        "energy": _energy,
    }
    return stages[stage]


# --- summary ------------------------------------------------------------------------------------


def _summary(recipe: Recipe, run_dir: Path, state: _State) -> dict[str, Any]:
    stages = state.stages
    train = stages.get("train", {})
    sim = stages.get("simulate", {})
    lava = stages.get("lava", {})
    energy = stages.get("energy", {})
    float_model = train.get("numeric") == "float"
    return {
        "recipe": recipe.name,
        "run_dir": str(run_dir),
        "accuracy": {
            "trained_model": train.get("test_accuracy"),
            "trained_model_numeric": train.get("numeric"),
            "float": train.get("test_accuracy") if float_model else None,
            "simulator": "ttfs" if sim.get("backend") == "ttfs" else "reference",
            "fixed_point": sim.get("accuracy"),
            "fixed_point_samples": sim.get("samples"),
            "lava": lava.get("accuracy"),
            "lava_samples": lava.get("samples"),
        },
        "spikes_per_sample": sim.get("spikes_per_sample", train.get("spikes_per_sample")),
        "mismatched_spikes": lava.get("mismatched_spikes"),
        "mismatched_potentials": lava.get("mismatched_potentials"),
        "energy_per_inference_j": energy.get("energy_per_inference_j"),
        "latency_per_inference_s": energy.get("latency_per_inference_s"),
        "target": energy.get("target"),
        "report": energy.get("report"),
        "stages": {name: stages.get(name, {}).get("status", "not run") for name in STAGES},
        "skipped": {
            name: stages[name].get("reason")
            for name in STAGES
            if stages.get(name, {}).get("status") == "skipped"
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The lines ``toolchain run`` prints at the end."""
    acc = summary["accuracy"]

    def pct(value: float | None, samples: int | None = None) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" + (f" ({samples} samples)" if samples else "")

    lines = [f"recipe {summary['recipe']}  ->  {summary['run_dir']}"]
    trained = acc["trained_model_numeric"] or "?"
    lines.append(f"accuracy   trained model ({trained}) {pct(acc['trained_model'])}")
    simulated = (
        "TTFS SNN (event-driven simulator)"
        if acc.get("simulator") == "ttfs"
        else "fixed point (reference simulator)"
    )
    lines.append(f"           {simulated} {pct(acc['fixed_point'], acc['fixed_point_samples'])}")
    if acc["lava"] is not None:
        lines.append(f"           Lava {pct(acc['lava'], acc['lava_samples'])}")
    if summary["spikes_per_sample"] is not None:
        lines.append(f"spikes     {summary['spikes_per_sample']:.1f} per sample")
    mismatched = summary["mismatched_spikes"]
    if mismatched is not None:
        potentials = summary.get("mismatched_potentials")
        agree = mismatched == 0 and not potentials
        verdict = "backends agree spike for spike" if agree else "backends DISAGREE"
        if potentials is not None:  # a potential readout: its voltages are compared too
            verdict += " and output potential for potential" if agree else ""
            mismatched = f"{mismatched} mismatched spikes, {potentials} mismatched output potentials"
        else:
            mismatched = f"{mismatched} mismatched spikes"
        lines.append(f"agreement  {mismatched} (reference, Lava, torch): {verdict}")
    if summary["energy_per_inference_j"] is not None:
        from toolchain.energy.report import format_j, format_s

        lines.append(
            f"energy     {format_j(summary['energy_per_inference_j'])} and "
            f"{format_s(summary['latency_per_inference_s'])} per inference on {summary['target']}"
        )
        lines.append(f"report     {summary['report']}")
    for name, reason in summary["skipped"].items():
        lines.append(f"skipped    {name}: {reason}")
    return "\n".join(lines)


__all__ = ["STAGES", "PipelineError", "RunOptions", "format_summary", "recipe_fingerprint", "run_pipeline"]
