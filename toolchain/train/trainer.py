"""Surrogate-gradient training of a recipe's SNN, with per-epoch checkpoints and exact resume.

A run folder holds ``model.pt`` (the trained weights), ``recipe.toml`` (the resolved recipe),
``metrics.json`` (test accuracy, spikes per sample per layer, per-epoch history) and, while
training, ``checkpoint.pt``. Every file is written atomically. Randomness (initialisation, the
shuffle and rate encoding of each epoch) derives from the recipe's seed and the epoch number, so a
resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from toolchain.config import Recipe, load_recipe, save_recipe
from toolchain.data import Dataset
from toolchain.errors import ToolchainError
from toolchain.io import check_writable_dir, save_torch, write_json
from toolchain.snn.models import SpikingMLP, build_model
from toolchain.train.evaluate import Evaluation, batches, encode_batch, evaluate

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.toml"


class TrainingDivergedError(ToolchainError):
    """The loss became NaN or infinite; the run stops instead of saving a broken model."""


@dataclass
class EpochRecord:
    """One epoch's training figures (averaged over its batches) and its duration in seconds."""

    epoch: int
    loss: float
    train_accuracy: float
    spikes_per_sample: float
    seconds: float


@dataclass
class TrainResult:
    model: SpikingMLP
    evaluation: Evaluation
    history: list[EpochRecord] = field(default_factory=list)
    out_dir: Path | None = None

    def metrics(self, recipe: Recipe) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "recipe": recipe.name,
            "dataset": recipe.data.dataset,
            "test_accuracy": self.evaluation.accuracy,
            "test_samples": self.evaluation.samples,
            "spikes_per_sample": self.evaluation.spikes_per_sample,
            "layers": [asdict(layer) for layer in self.evaluation.layers],
            "epochs": [asdict(record) for record in self.history],
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ToolchainError("--device cuda: no CUDA device is available on this machine")
    return torch.device(name)


def fit(
    recipe: Recipe,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``recipe``'s model on ``dataset``; write the run folder when ``out_dir`` is given."""
    out = check_writable_dir(out_dir) if out_dir is not None else None
    cfg = recipe.train
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(recipe.model, recipe.neuron, dataset.num_inputs, dataset.num_classes).to(device)
    optimizer = _optimizer(model, recipe)
    history: list[EpochRecord] = []
    if out is not None:
        save_recipe(recipe, out / RECIPE_FILE)
        if resume and (out / CHECKPOINT_FILE).is_file():
            history = _restore(out / CHECKPOINT_FILE, model, optimizer)
            _log(f"resuming {out} after epoch {len(history)} of {cfg.epochs}")

    for epoch in range(len(history) + 1, cfg.epochs + 1):
        record = _train_epoch(model, optimizer, recipe, dataset, epoch, device, progress)
        history.append(record)
        _log(
            f"epoch {epoch}/{cfg.epochs}: loss {record.loss:.4f}, "
            f"train accuracy {record.train_accuracy:.4f}, "
            f"spikes/sample {record.spikes_per_sample:.1f} ({record.seconds:.1f} s)"
        )
        if out is not None:
            save_torch(
                out / CHECKPOINT_FILE,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": [asdict(r) for r in history],
                },
            )

    evaluation = evaluate(model, dataset.test, recipe.encoding, device=device, seed=cfg.seed)
    result = TrainResult(model, evaluation, history, out)
    if out is not None:
        save_torch(out / MODEL_FILE, model.state_dict())
        write_json(out / METRICS_FILE, result.metrics(recipe))
    return result


def load_trained(run_dir: str | Path, num_inputs: int, num_classes: int) -> tuple[Recipe, SpikingMLP]:
    """The recipe and trained model of a run folder (weights loaded with ``weights_only=True``)."""
    run = Path(run_dir)
    recipe = load_recipe(run / RECIPE_FILE)
    model = build_model(recipe.model, recipe.neuron, num_inputs, num_classes)
    path = run / MODEL_FILE
    if not path.is_file():
        raise ToolchainError(f"{path}: no trained model in this run folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise ToolchainError(f"{path}: not a model of recipe {recipe.name!r} ({exc})") from None
    return recipe, model


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    cfg = recipe.train
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.learning_rate, momentum=0.9, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[EpochRecord]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return [EpochRecord(**r) for r in state["history"]]
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        raise ToolchainError(f"{path}: cannot resume from this checkpoint ({exc})") from None


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _train_epoch(
    model: SpikingMLP,
    optimizer: torch.optim.Optimizer,
    recipe: Recipe,
    dataset: Dataset,
    epoch: int,
    device: torch.device,
    progress: bool,
) -> EpochRecord:
    cfg = recipe.train
    model.train()
    generator = _epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(dataset.train), generator=generator).numpy()
    loss_sum = correct = seen = 0.0
    spikes = 0.0
    start = time.perf_counter()
    bar = tqdm(
        total=len(order),
        desc=f"epoch {epoch}/{cfg.epochs}",
        unit="sample",
        disable=not progress or None,
        leave=False,
        file=sys.stderr,
    )
    with bar:
        for x, y in batches(dataset.train, cfg.batch_size, order):
            inputs = encode_batch(x, recipe.encoding, generator).to(device)
            y = y.to(device)
            out = model(inputs)
            loss = nn.functional.cross_entropy(out.logits, y)
            loss_value = float(loss.detach())
            _check_finite(loss_value, "loss", epoch, cfg.learning_rate)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch = len(y)
            loss_sum += loss_value * batch
            correct += float((out.logits.argmax(1) == y).sum())
            spikes += float(sum(c.sum() for c in out.spike_counts_per_sample().values()))
            seen += batch
            bar.update(batch)
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", spk=f"{spikes / seen:.0f}"
            )
    for name, parameter in model.named_parameters():
        if not bool(torch.isfinite(parameter).all()):
            _check_finite(math.nan, f"parameter {name}", epoch, cfg.learning_rate)
    return EpochRecord(
        epoch=epoch,
        loss=loss_sum / seen,
        train_accuracy=correct / seen,
        spikes_per_sample=spikes / seen,
        seconds=time.perf_counter() - start,
    )


def _check_finite(value: float, what: str, epoch: int, learning_rate: float) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch}: {what} is {value}; lower [train].learning_rate "
            f"(now {learning_rate}) or check the data for NaN/inf values"
        )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["EpochRecord", "TrainResult", "TrainingDivergedError", "fit", "load_trained"]
