"""Training a time-to-first-spike (TTFS) recipe: the surrogate DNN through the trainer's own loop.

A recipe with ``[ttfs].enabled = true`` (:func:`is_ttfs_recipe`) trains
:class:`~toolchain.snn.ttfs_model.TTFSNetwork` instead of the rate-coded SNN. :func:`fit_ttfs`
hands it to :func:`toolchain.train.trainer.fit` (``model_builder``), so checkpoints, atomic
writes, exact ``--resume``, DDP and the evaluation are the trainer's; the network's own hooks add
the relaxed-activation schedule (``begin_epoch``) and the regularizers (``training_penalty``).

After training, the event-driven TTFS SNN (:mod:`toolchain.sim.ttfs`) runs the trained network on
the test split and ``metrics.json`` gains a ``ttfs`` table: the kernels' parameters, the
simulator's accuracy, spikes and synaptic events per sample, and its agreement with the surrogate
DNN (identical spike times, identical predictions, largest logit difference).

A TTFS run has no CUBA equivalent (the neurons compare their potential with a threshold that
decays exponentially within each window; Loihi's CUBA threshold is fixed), so
:func:`toolchain.train.trainer.load_trained` refuses it with
:func:`~toolchain.snn.trained.refusal_message`; read such a run with
:func:`~toolchain.snn.trained.load_ttfs_run` (the recipe rules and the loading live in
:mod:`toolchain.snn.trained`, below training and export, and are re-exported here).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolchain.config import Recipe
from toolchain.data import Dataset, as_float
from toolchain.io import write_json
from toolchain.run_folder import METRICS_FILE, RunFolder
from toolchain.snn.trained import (
    build_for_recipe,
    check_ttfs_recipe,
    is_ttfs_recipe,
    load_ttfs_run,
    refusal_message,
)
from toolchain.snn.ttfs_model import TTFSNetwork
from toolchain.train.distributed import DistributedContext, is_main
from toolchain.train.trainer import TrainResult, fit


@dataclass
class TTFSTrainResult:
    """The trainer's result for the surrogate DNN and the ``ttfs`` table of ``metrics.json``."""

    train: TrainResult
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> TTFSNetwork:
        model = self.train.model
        assert isinstance(model, TTFSNetwork)
        return model

    def metrics(self, recipe: Recipe) -> dict[str, Any]:
        """The content of ``metrics.json``: the trainer's figures and ``ttfs``."""
        return {**self.train.metrics(recipe), "ttfs": self.summary}


def fit_ttfs(
    recipe: Recipe,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    distributed: DistributedContext | None = None,
    simulate: bool = True,
) -> TTFSTrainResult:
    """Train ``recipe``'s TTFS surrogate DNN on ``dataset`` (see :func:`toolchain.train.trainer.fit`).

    With ``simulate`` the event-driven SNN runs on the test split afterwards; its figures go to
    ``metrics.json`` under ``ttfs`` and to the result's ``summary`` (rank 0 only under DDP).
    """
    check_ttfs_recipe(recipe)
    folder = RunFolder(out_dir) if out_dir is not None and is_main(distributed) else None
    with folder.lock() if folder is not None else nullcontext():
        return _fit_ttfs(recipe, dataset, folder, resume, overwrite, progress, distributed, simulate)


def _fit_ttfs(
    recipe: Recipe,
    dataset: Dataset,
    folder: RunFolder | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    distributed: DistributedContext | None,
    simulate: bool,
) -> TTFSTrainResult:
    result = fit(
        recipe,
        dataset,
        folder.path if folder is not None else None,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        distributed=distributed,
        model_builder=build_for_recipe,
    )
    if not is_main(distributed):
        return TTFSTrainResult(result)
    model = result.model
    assert isinstance(model, TTFSNetwork)
    summary: dict[str, Any] = {"kernels": kernel_parameters(model), "time_window": recipe.ttfs.time_window}
    if simulate:
        from toolchain.sim.ttfs import agreement, simulate_ttfs

        model.eval()
        device = next(model.parameters()).device
        x = torch.from_numpy(as_float(dataset.test.x))
        y = torch.from_numpy(dataset.test.y.astype("int64"))
        sim = simulate_ttfs(model.cpu(), x, network_name=recipe.name)
        summary["simulator"] = {
            "test_accuracy": float((torch.from_numpy(sim.predictions) == y).double().mean()),
            "spikes_per_sample": sim.activity.spikes_per_sample,
            "input_spikes_per_sample": sim.input_spikes_per_sample,
            "synops_per_sample": sim.activity.synops_per_sample,
            "layers": {
                layer.name: {
                    "spikes_per_sample": layer.spikes_per_sample,
                    "spikes_per_neuron": layer.spikes_per_sample / layer.neurons,
                    "synops_per_sample": layer.synops_per_sample,
                }
                for layer in sim.activity.layers
            },
            "max_spikes_per_neuron": sim.max_spikes_per_neuron,
            "agreement_with_surrogate": agreement(model, x, sim).to_dict(),
        }
        model.to(device)
    ttfs_result = TTFSTrainResult(result, summary)
    if folder is not None:
        write_json(folder.file(METRICS_FILE), ttfs_result.metrics(recipe))
        folder.refresh_metrics()
    return ttfs_result


def kernel_parameters(model: TTFSNetwork) -> dict[str, dict[str, float]]:
    """Each kernel's trained ``tau``, ``t_d`` (steps) and representable range ``[x_T, x_0]``."""
    table: dict[str, dict[str, float]] = {}
    for name, kernel in model.kernels().items():
        with torch.no_grad():
            x_t, x_0 = kernel.bounds()
        table[name] = {
            "tau": float(kernel.tau.detach()),
            "t_d": float(kernel.t_d.detach()),
            "x_T": float(x_t),
            "x_0": float(x_0),
        }
    return table


__all__ = [
    "TTFSTrainResult",
    "build_for_recipe",
    "check_ttfs_recipe",
    "fit_ttfs",
    "is_ttfs_recipe",
    "kernel_parameters",
    "load_ttfs_run",
    "refusal_message",
]
