"""Surrogate-gradient training of a recipe's SNN, with per-epoch checkpoints and exact resume.

A run folder holds ``model.pt`` (the trained weights), ``recipe.toml`` (the resolved recipe),
``metrics.json`` (test accuracy, spikes per sample per layer, per-epoch history) and, while
training, ``checkpoint.pt``. Every file is written atomically. Randomness (initialisation, the
shuffle and rate encoding of each epoch) derives from the recipe's seed and the epoch number, so a
resumed run ends exactly where an uninterrupted one would.

Under ``torchrun`` (see :mod:`toolchain.train.distributed` and ``docs/training.md``) :func:`fit`
trains with DistributedDataParallel: ``[train].batch_size`` samples per rank and step, the epoch's
figures and the evaluation all-reduced over the ranks, and only rank 0 writing and printing.
"""

from __future__ import annotations

import math
import pickle
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from inspect import signature
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from toolchain.config import Recipe, load_recipe
from toolchain.data import Dataset
from toolchain.data.batches import encode_batch, load_batch
from toolchain.errors import RecipeError, ToolchainError
from toolchain.heap import keep_freed_memory
from toolchain.io import check_writable_dir, one_line, write_json, write_text
from toolchain.loihi_numbers import RoundingReport
from toolchain.run_folder import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    RunFolder,
)
from toolchain.snn.hooks import TrainableNetwork
from toolchain.snn.models import SpikingNetwork, build_model, network_input_shape
from toolchain.snn.numerics import apply_numerics
from toolchain.snn.trained import trained_model, trained_neuron
from toolchain.torch_files import load_torch, save_torch
from toolchain.train.distributed import (
    DistributedContext,
    agreed,
    broadcast_buffers,
    broadcast_object,
    global_batches,
    is_main,
    rank_seed,
    reduce_or_fail,
    world_size,
)
from toolchain.train.evaluate import Evaluation, evaluate
from toolchain.train.losses import Objective
from toolchain.train.schedule import epoch_learning_rate, set_learning_rate
from toolchain.train.teacher import TeacherInfo, TeacherLogits, load_teacher


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
    #: with ``[distill]`` or ``[regularization]`` set: each loss term's mean per sample, unweighted
    #: (``cross_entropy``, ``distillation_kl``/``_mse``, ``activation_l1``/``_l2``, ``logits_l2``)
    loss_terms: dict[str, float] = field(default_factory=dict)
    #: accuracy on the test split after the epoch (``[train].test_every_epochs``; ``None``: not
    #: evaluated after this epoch). Reporting only: training never selects by it
    test_accuracy: float | None = None
    #: the learning rate of the epoch
    learning_rate: float | None = None
    #: ``float`` or ``fixed_point`` (fine-tuning on Loihi's registers)
    phase: str = "float"


@dataclass
class TrainResult:
    """The trained (plain, unwrapped) model, its test evaluation and per-epoch history.

    ``processes`` is the number of data-parallel processes that trained it (1 without DDP).
    """

    model: SpikingNetwork
    evaluation: Evaluation
    history: list[EpochRecord] = field(default_factory=list)
    out_dir: Path | None = None
    processes: int = 1
    #: in fixed-point mode, how rounding the neuron parameters onto Loihi's registers changed them
    rounding: list[RoundingReport] = field(default_factory=list)
    #: the loss terms' weights (empty for the plain cross-entropy) and the teacher, if any
    loss_weights: dict[str, float] = field(default_factory=dict)
    teacher: TeacherInfo | None = None
    #: with ``[train].fixed_point_epochs``: the float model's test figures before fine-tuning
    float_evaluation: dict[str, float] | None = None

    def metrics(self, recipe: Recipe) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        extra: dict[str, Any] = {}
        if self.loss_weights:
            extra["loss_weights"] = self.loss_weights
        if self.teacher is not None:
            extra["teacher"] = asdict(self.teacher)
        if self.float_evaluation is not None:
            extra["float_model"] = self.float_evaluation
        return {
            "recipe": recipe.name,
            "dataset": recipe.data.dataset,
            "test_accuracy": self.evaluation.accuracy,
            "test_samples": self.evaluation.samples,
            "spikes_per_sample": self.evaluation.spikes_per_sample,
            "layers": [asdict(layer) for layer in self.evaluation.layers],
            "epochs": [_epoch_dict(record) for record in self.history],
            "processes": self.processes,
            "numeric": recipe.trained_numeric,
            "quantization": [report.to_dict() for report in self.rounding],
            **extra,
        }


def _epoch_dict(record: EpochRecord) -> dict[str, Any]:
    """An epoch's entry of ``metrics.json`` (``loss_terms`` only when the loss has more than CE)."""
    entry = asdict(record)
    if not entry["loss_terms"]:
        del entry["loss_terms"]
    return entry


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
    overwrite: bool = False,
    progress: bool = True,
    distributed: DistributedContext | None = None,
    model_builder: Callable[[Recipe, tuple[int, ...], int], nn.Module] | None = None,
) -> TrainResult:
    """Train ``recipe``'s model on ``dataset``; write the run folder when ``out_dir`` is given.

    The run folder is one run (:mod:`toolchain.run_folder`): training holds its lock, starts only in
    an empty folder, resumes a run of the same recipe with ``resume`` (from its last checkpoint),
    replaces the folder's run with ``overwrite``, and refuses anything else.

    ``model_builder(recipe, input_shape, num_classes)`` replaces the rate-coded SNN by another
    training method's network (the TTFS surrogate DNN of :mod:`toolchain.train.ttfs`): any
    :class:`~toolchain.snn.hooks.TrainableNetwork` (an output with ``logits`` and
    ``spike_counts_per_sample()``; ``begin_epoch(epoch)`` called at the start of each epoch,
    ``training_penalty(epoch)`` added to each step's loss).

    With ``distributed`` (from :func:`toolchain.train.distributed.init_from_env`, one process per
    rank) the model trains under DistributedDataParallel on ``distributed.device``: each rank takes
    ``[train].batch_size`` samples of every global batch, rank 0 alone reads the checkpoint, writes
    the run folder and prints, and every rank returns the same result (figures over all ranks).

    Raises glibc's malloc thresholds once per process (:func:`toolchain.heap.keep_freed_memory`),
    so that the steps reuse freed memory instead of paging it in again.
    """
    keep_freed_memory()
    main = is_main(distributed)
    out = Path(out_dir) if out_dir is not None else None
    with ExitStack() as stack:
        folder: RunFolder | None = None
        with agreed(distributed, "while preparing the run folder"):
            if out is not None and main:
                check_writable_dir(out)
                folder = RunFolder(out)
                stack.enter_context(folder.lock())
                folder.begin_training(recipe, resume=resume, overwrite=overwrite)
        return _fit(recipe, dataset, out, folder, resume, progress, distributed, model_builder)


def _fit(
    recipe: Recipe,
    dataset: Dataset,
    out: Path | None,
    folder: RunFolder | None,
    resume: bool,
    progress: bool,
    distributed: DistributedContext | None,
    model_builder: Callable[[Recipe, tuple[int, ...], int], nn.Module] | None,
) -> TrainResult:
    """:func:`fit` once the run folder is prepared (``folder``: rank 0's, locked, which alone
    writes; ``None`` on the other ranks and without ``out``)."""
    main = is_main(distributed)
    cfg = recipe.train
    state: dict[str, Any] | None = None
    with agreed(distributed, "while reading the checkpoint"):
        if folder is not None and resume and folder.file(CHECKPOINT_FILE).is_file():
            state = _read_checkpoint(folder.file(CHECKPOINT_FILE))
    state = broadcast_object(state, distributed)
    device = distributed.device if distributed is not None else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    input_shape = network_input_shape(dataset.sample_shape, recipe.encoding.scheme)
    if model_builder is None:
        model = build_model(recipe.model, recipe.neuron, input_shape, dataset.num_classes)
        rounding = apply_numerics(model, recipe.neuron, recipe.encoding.scheme)
    else:  # another training method's network (TTFS), trained by the same loop
        model, rounding = model_builder(recipe, input_shape, dataset.num_classes), []
        if not isinstance(model, TrainableNetwork):
            raise ToolchainError(
                f"the model builder returned a {type(model).__name__}, not a TrainableNetwork "
                "(mix in toolchain.snn.hooks.TrainingHooks for its begin_epoch, training_penalty and "
                "may_skip_parameters)"
            )
    fine_tune_epochs = cfg.fixed_point_epochs if model_builder is None else 0
    fixed = bool(state is not None and state.get("fixed_point"))
    if fixed:  # the checkpoint was written while fine-tuning in fixed point
        rounding = apply_numerics(model, trained_neuron(recipe), recipe.encoding.scheme)
    model = model.to(device)
    optimizer = _optimizer(model, recipe)
    history: list[EpochRecord] = []
    float_evaluation = state.get("float_evaluation") if state is not None else None
    if state is not None and out is not None:
        with agreed(distributed, "while restoring the checkpoint"):
            history = _restore(out / CHECKPOINT_FILE, state, model, optimizer)
        if main:
            _log(f"resuming {out} after epoch {len(history)} of {cfg.epochs + fine_tune_epochs}")
            before = state.get("processes", 1)
            if before != world_size(distributed):
                _log(
                    f"warning: the checkpoint was written by {before} process(es), this run has "
                    f"{world_size(distributed)}: a step now takes a different number of samples, so "
                    "the run will not end where an uninterrupted one would"
                )
    with agreed(distributed, "while preparing the loss"):
        objective, teacher = build_objective(
            recipe,
            dataset,
            model,
            out if main else None,
            resume=resume,
            device=device,
            log=_log if main else None,
        )
    net = _data_parallel(model, distributed)

    def test(model: nn.Module) -> Evaluation:
        """``model`` on the test split, with rank 0's batch-norm statistics on every rank."""
        broadcast_buffers(model, distributed)
        return evaluate(
            model, dataset.test, recipe.encoding, device=device, seed=cfg.seed, distributed=distributed
        )

    for epoch in range(len(history) + 1, cfg.epochs + fine_tune_epochs + 1):
        if epoch > cfg.epochs and not fixed:  # float training is over: fine-tune in fixed point
            before = test(model)
            float_evaluation = {
                "test_accuracy": before.accuracy,
                "spikes_per_sample": before.spikes_per_sample,
            }
            rounding = apply_numerics(model, trained_neuron(recipe), recipe.encoding.scheme)
            model = model.to(device)
            optimizer = _optimizer(model, recipe)
            net = _data_parallel(model, distributed)
            fixed = True
            if main:
                _log(
                    f"float model: test accuracy {before.accuracy:.4f}, spikes/sample "
                    f"{before.spikes_per_sample:.1f}; fine-tuning {fine_tune_epochs} epoch(s) on Loihi's "
                    "fixed point (batch norm folded, every layer on the registers its export writes)"
                )
        if fixed:
            rate = epoch_learning_rate(
                cfg.fixed_point_learning_rate, cfg.schedule, epoch - cfg.epochs, fine_tune_epochs
            )
        else:
            rate = epoch_learning_rate(cfg.learning_rate, cfg.schedule, epoch, cfg.epochs)
        set_learning_rate(optimizer, rate)
        record = _train_epoch(
            net, optimizer, recipe, dataset, epoch, device, progress and main, distributed, objective
        )
        record.learning_rate, record.phase = rate, "fixed_point" if fixed else "float"
        last = epoch == cfg.epochs + fine_tune_epochs
        every = cfg.test_every_epochs
        if every and epoch % every == 0 and not last:  # the last epoch's is the final evaluation
            record.test_accuracy = test(model).accuracy
        history.append(record)
        if main:
            terms = "".join(f", {name} {value:.4f}" for name, value in record.loss_terms.items())
            phase = " (fixed point)" if fixed else ""
            tested = "" if record.test_accuracy is None else f", test accuracy {record.test_accuracy:.4f}"
            _log(
                f"epoch {epoch}/{cfg.epochs + fine_tune_epochs}{phase}: loss {record.loss:.4f}{terms}, "
                f"train accuracy {record.train_accuracy:.4f}{tested}, "
                f"spikes/sample {record.spikes_per_sample:.1f} ({record.seconds:.1f} s)"
            )
        with agreed(distributed, f"while saving the checkpoint of epoch {epoch}"):
            if folder is not None:
                save_torch(
                    folder.file(CHECKPOINT_FILE),
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "history": [asdict(r) for r in history],
                        "processes": world_size(distributed),
                        "fixed_point": fixed,
                        "float_evaluation": float_evaluation,
                    },
                )
                write_text(folder.file(HISTORY_FILE), history_csv(history))
                folder.record_epoch(epoch)

    evaluation = test(model)  # evaluates (and saves) rank 0's batch-norm statistics
    if history:
        history[-1].test_accuracy = evaluation.accuracy
    result = TrainResult(model, evaluation, history, out, world_size(distributed), rounding)
    result.float_evaluation = float_evaluation
    if objective is not None:
        result.loss_weights = objective.weights()
    result.teacher = teacher
    with agreed(distributed, "while writing the run folder"):
        if folder is not None:
            save_torch(folder.file(MODEL_FILE), model.state_dict())  # the plain module's: no "module." prefix
            write_json(folder.file(METRICS_FILE), result.metrics(recipe))
            write_text(folder.file(HISTORY_FILE), history_csv(history))
            folder.finish(len(history))
    return result


def history_csv(history: list[EpochRecord]) -> str:
    """``history.csv``: one row per epoch (its phase, learning rate, loss and each loss term, train
    and test accuracy, spikes per sample, seconds); an empty cell where a figure was not measured."""
    import csv
    import io

    terms = sorted({name for record in history for name in record.loss_terms})
    columns = ["epoch", "phase", "learning_rate", "loss", *terms]
    columns += ["train_accuracy", "test_accuracy", "spikes_per_sample", "seconds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in history:
        values = {**asdict(record), **record.loss_terms}
        writer.writerow(["" if values.get(name) is None else values[name] for name in columns])
    return buffer.getvalue()


def build_objective(
    recipe: Recipe,
    dataset: Dataset,
    model: SpikingNetwork,
    out_dir: Path | None = None,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[Objective | None, TeacherInfo | None]:
    """The loss of ``recipe``'s ``[distill]`` and ``[regularization]``, or ``None`` for the plain
    cross-entropy (both off: the defaults). Loads or trains the teacher (saved in ``out_dir``) and
    caches its logits of the training samples when ``[distill].cache_teacher_logits`` is true
    (the data here are fixed arrays, the teacher sees the static samples in eval mode: its logits
    per sample are fixed). Raises :class:`RecipeError` for a layer weight of an unknown layer."""
    say = log if log is not None else (lambda _: None)
    reg = recipe.regularization
    kd = recipe.distill
    if kd.teacher == "none" and reg.activation == "none" and reg.logits_weight == 0:
        return None, None
    objective = Objective(logits_weight=reg.logits_weight)
    if reg.activation != "none":
        names = list(model.layer_names)
        unknown = sorted(set(reg.layer_weights) - set(names))
        if unknown:
            raise RecipeError(
                f"[regularization].layer_weights.{unknown[0]}: no spiking layer of that name; "
                f"the network has {', '.join(names)}"
            )
        defaults = {name: (0.0 if name == names[-1] else 1.0) for name in names}
        objective.activation = reg.activation
        objective.activation_weight = reg.activation_weight
        objective.layer_weights = {**defaults, **reg.layer_weights}
    info: TeacherInfo | None = None
    if kd.teacher != "none":
        teacher = load_teacher(recipe, dataset, out_dir, resume=resume, device=device, log=say)
        logits = TeacherLogits(teacher.logits, dataset.train, cache=kd.cache_teacher_logits)
        teacher.info.cached_logits = logits.cached
        info = teacher.info
        say(
            f"distill: {kd.loss} loss, alpha {kd.alpha}, temperature {kd.temperature}; teacher test accuracy "
            f"{info.test_accuracy:.4f}; "
            + (
                f"its logits of the {len(dataset.train)} training samples cached (fixed samples, eval mode)"
                if logits.cached
                else "its logits computed for every batch"
            )
        )
        objective.distill = kd.loss
        objective.alpha = kd.alpha
        objective.temperature = kd.temperature
        objective.teacher = logits
    return objective, info


def load_trained(
    run_dir: str | Path, sample_shape: tuple[int, ...] | int, num_classes: int
) -> tuple[Recipe, SpikingNetwork]:
    """The recipe and trained model of a run folder (weights loaded with ``weights_only=True``).

    ``sample_shape`` is the dataset's ``Dataset.sample_shape`` (an int ``n``: flat samples of ``n``).
    """
    run = Path(run_dir)
    RunFolder(run).check_finished()
    recipe = load_recipe(run / RECIPE_FILE)
    return recipe, trained_model(run, recipe, sample_shape, num_classes)


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    cfg = recipe.train
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.learning_rate, momentum=0.9, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _data_parallel(model: SpikingNetwork, ctx: DistributedContext | None) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel under DDP (it broadcasts rank 0's weights)."""
    if ctx is None:
        return model
    ddp = nn.parallel.DistributedDataParallel
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # no buffer sync in the forward pass: that would be a collective which a rank that failed
    # before its forward never joins (the networks here have no buffers anyway)
    sync_flag = (
        "forward_sync_buffers" if "forward_sync_buffers" in signature(ddp).parameters else "broadcast_buffers"
    )
    # a model whose steps may leave parameters out of the loss (TTFS: a relaxed layer skips its
    # kernel) says so; DDP then finds them each step instead of waiting for their gradients
    unused = bool(model.may_skip_parameters)
    return ddp(model, device_ids=device_ids, find_unused_parameters=unused, **{sync_flag: False})


def _read_checkpoint(path: Path) -> dict[str, Any]:
    state = load_torch(path, "cannot resume from this checkpoint")
    if not isinstance(state, dict):
        raise ToolchainError(f"{path}: cannot resume from this checkpoint (not a checkpoint dictionary)")
    return state


def _restore(
    path: Path, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> list[EpochRecord]:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return [EpochRecord(**r) for r in state["history"]]
    except (
        RuntimeError,
        KeyError,
        TypeError,
        EOFError,
        ValueError,
        OSError,
        IndexError,
        AttributeError,
        pickle.UnpicklingError,
    ) as exc:
        raise ToolchainError(f"{path}: cannot resume from this checkpoint ({one_line(exc)})") from None


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    recipe: Recipe,
    dataset: Dataset,
    epoch: int,
    device: torch.device,
    progress: bool,
    ctx: DistributedContext | None = None,
    objective: Objective | None = None,
) -> EpochRecord:
    """One epoch over ``dataset.train``; under DDP the figures are the totals over all ranks."""
    cfg = recipe.train
    world = world_size(ctx)
    net.train()
    generator = _epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(dataset.train), generator=generator).numpy()  # the same on every rank
    rank = 0 if ctx is None else ctx.rank
    if rank > 0:  # rank 0 goes on drawing rate spikes like a single process
        generator = torch.Generator().manual_seed(rank_seed(cfg.seed, epoch, rank))
    # dropout draws from torch's global generator: seeded per epoch (so that a resumed run ends
    # where an uninterrupted one does) and per rank (each rank its own masks)
    torch.manual_seed(rank_seed(cfg.seed, epoch, rank))
    model: TrainableNetwork = _unwrap(net)
    model.begin_epoch(epoch)  # a training method's per-epoch schedule (TTFS: relaxed activation)
    loss_sum = correct = seen = 0.0
    spikes = 0.0
    term_names = objective.term_names if objective is not None else []
    term_sums = [0.0] * len(term_names)
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
        for indices, global_count in global_batches(order, cfg.batch_size, ctx):
            error: Exception | None = None
            try:
                x, y = load_batch(dataset.train, indices)
                inputs = encode_batch(x, recipe.encoding, generator).to(device)
                y = y.to(device)
                out = net(inputs)
                if objective is None:
                    loss, terms = _loss(out.logits, y, global_count, world), {}
                else:
                    scale = 1.0 / len(y) if world == 1 else world / global_count
                    loss, terms = objective(out.logits, out.spikes, y, indices, scale)
                extra = model.training_penalty(epoch)  # a training method's regularizers (TTFS)
                if extra is not None:
                    loss = loss + extra
                step = [
                    float(loss.detach()) * global_count / world,  # this rank's summed loss
                    float((out.logits.argmax(1) == y).sum()),
                    float(sum(c.sum() for c in out.spike_counts_per_sample().values())),
                    float(len(y)),
                    *(terms[name] for name in term_names),  # this rank's sums of the terms
                ]
            except Exception as exc:  # re-raised by reduce_or_fail once the other ranks know
                error, step = exc, [0.0] * (4 + len(term_names))
            # one all-reduce per step, before backward: a rank that failed stops every rank here
            step_loss, step_correct, step_spikes, batch, *step_terms = reduce_or_fail(
                step, ctx, error, f"at epoch {epoch}"
            )
            _check_finite(step_loss, "loss", epoch, cfg.learning_rate)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += step_loss
            correct += step_correct
            spikes += step_spikes
            seen += batch
            term_sums = [a + b for a, b in zip(term_sums, step_terms, strict=True)]
            bar.update(int(batch))
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", spk=f"{spikes / seen:.0f}"
            )
    for name, parameter in _unwrap(net).named_parameters():  # identical on every rank under DDP
        if not bool(torch.isfinite(parameter).all()):
            _check_finite(math.nan, f"parameter {name}", epoch, cfg.learning_rate)
    return EpochRecord(
        epoch=epoch,
        loss=loss_sum / seen,
        train_accuracy=correct / seen,
        spikes_per_sample=spikes / seen,
        seconds=time.perf_counter() - start,
        loss_terms={name: total / seen for name, total in zip(term_names, term_sums, strict=True)},
    )


def _loss(logits: torch.Tensor, y: torch.Tensor, global_count: int, world: int) -> torch.Tensor:
    """Cross-entropy of this rank's samples, scaled so that the mean over the ranks (what DDP
    averages) is the mean loss of the global batch of ``global_count`` samples."""
    if world == 1:
        return nn.functional.cross_entropy(logits, y)
    return nn.functional.cross_entropy(logits, y, reduction="sum") * (world / global_count)


def _unwrap(net: nn.Module) -> Any:
    """The network itself (a :class:`~toolchain.snn.hooks.TrainableNetwork`), outside any DDP wrapper."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def _check_finite(value: float, what: str, epoch: int, learning_rate: float) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch}: {what} is {value}; lower [train].learning_rate "
            f"(now {learning_rate}) or check the data for NaN/inf values"
        )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["EpochRecord", "TrainResult", "TrainingDivergedError", "build_objective", "fit", "load_trained"]
