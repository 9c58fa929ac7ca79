"""Teachers for knowledge distillation: the student's ANN twin, a teacher run folder, or an ONNX file.

A teacher maps a batch of **static** samples ``[B, *sample_shape]`` (what the dataset holds, before
the spiking input encoding) to logits ``[B, classes]``. :func:`load_teacher` gives the one that
``[distill].teacher`` names:

- ``ann``: the student's ANN twin (:func:`toolchain.snn.ann.build_ann`, the same layers with ReLU),
  trained here with cross-entropy on the static training samples for ``[distill].teacher_epochs``
  (Adam, ``teacher_learning_rate``, the student's batch size and seed) as the first stage of the
  student's run. It is saved in the run folder as ``teacher.pt`` with ``teacher.json`` (its test
  accuracy); a resumed run loads it instead of training it again.
- ``run``: the ``teacher.pt`` of an earlier run folder ``teacher_path``; its architecture is the
  ``[model]`` of that folder's ``recipe.toml`` (it may differ from the student's).
- ``onnx``: an ONNX file ``teacher_path`` run with onnxruntime on the CPU. Its single input takes
  the static samples (float32, a dynamic or matching batch axis); its first output must give one
  value per class (checked on load: :class:`TeacherError` otherwise).

Teacher logits are cached (:class:`TeacherLogits`) when the training data are deterministic: every
split here is a fixed array and no augmentation exists, the teacher sees the static sample (no
encoding, so no random spikes) and runs in eval mode (no dropout, batch-norm running statistics),
so its logits per training sample never change during the student's training. They are computed
once, in batches, before the student's first epoch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toolchain.config import Recipe, load_recipe
from toolchain.data import ArraySplit, Dataset
from toolchain.data.batches import batches, load_batch
from toolchain.errors import ToolchainError
from toolchain.io import one_line, write_json
from toolchain.run_folder import TEACHER_FILE, TEACHER_METRICS_FILE
from toolchain.snn.ann import AnnNetwork, build_ann
from toolchain.torch_files import load_torch, save_torch
from toolchain.train.schedule import epoch_learning_rate, set_learning_rate

#: static samples [B, *sample_shape] (float32, on the CPU) -> logits [B, classes] (float32, CPU)
TeacherFn = Callable[[torch.Tensor], torch.Tensor]


class TeacherError(ToolchainError):
    """A teacher cannot be used: a missing or unreadable file, or outputs of the wrong size."""


@dataclass
class TeacherInfo:
    """What ``metrics.json`` says of the teacher (its ``distill`` entry)."""

    kind: str
    source: str
    test_accuracy: float
    train_seconds: float
    cached_logits: bool
    #: the ANN twin's per-epoch mean cross-entropy (kind ``ann`` trained in this run; else empty)
    epoch_losses: list[float]


@dataclass
class Teacher:
    """A teacher: its logits function and where it came from."""

    logits: TeacherFn
    info: TeacherInfo


class TeacherLogits:
    """The teacher's logits of training samples by index: cached once, or computed per batch."""

    def __init__(self, teacher: TeacherFn, split: ArraySplit, *, cache: bool, batch_size: int = 512) -> None:
        self._teacher = teacher
        self._split = split
        self._cache: torch.Tensor | None = None
        if cache:
            parts = [teacher(x) for x, _ in batches(split, batch_size)]
            self._cache = torch.cat(parts) if parts else torch.zeros(0)

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def __call__(self, indices: np.ndarray) -> torch.Tensor:
        """Logits ``[len(indices), classes]`` of training samples ``indices`` (CPU, float32)."""
        if self._cache is not None:
            return self._cache[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
        x, _ = load_batch(self._split, indices)
        return self._teacher(x)


def load_teacher(
    recipe: Recipe,
    dataset: Dataset,
    out_dir: Path | None,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = lambda _: None,
) -> Teacher:
    """The teacher ``recipe``'s ``[distill]`` names, checked against ``dataset``'s classes.

    Kind ``ann`` trains the twin (on ``device``) and, with ``out_dir``, saves it there; with
    ``resume`` a ``teacher.pt`` already in ``out_dir`` is loaded instead.
    """
    cfg = recipe.distill
    if cfg.teacher == "ann":
        saved = out_dir / TEACHER_FILE if out_dir is not None else None
        if resume and saved is not None and saved.is_file():
            log(f"distill: loading the ANN twin teacher trained earlier in this run ({saved})")
            ann = _load_ann(saved, recipe, dataset).to(device)
            info = _read_info(out_dir, "ann", str(saved))
        else:
            ann, info = train_ann_teacher(recipe, dataset, log, device)
            if out_dir is not None:
                save_torch(out_dir / TEACHER_FILE, ann.state_dict())
                write_json(out_dir / TEACHER_METRICS_FILE, asdict(info))
        return Teacher(_torch_fn(ann, device), info)
    if cfg.teacher == "run":
        run = Path(cfg.teacher_path)
        path = run / TEACHER_FILE
        if not path.is_file():
            raise TeacherError(
                f"{path}: no teacher in this run folder ([distill].teacher_path; a run trained with "
                '[distill].teacher = "ann" writes one)'
            )
        teacher_recipe = load_recipe(run / "recipe.toml")
        fn = _torch_fn(_load_ann(path, teacher_recipe, dataset).to(device), device)
        accuracy = teacher_accuracy(fn, dataset.test)
        return Teacher(fn, TeacherInfo("run", str(path), accuracy, 0.0, False, []))
    if cfg.teacher == "onnx":
        fn = onnx_teacher(cfg.teacher_path, dataset.sample_shape, dataset.num_classes)
        accuracy = teacher_accuracy(fn, dataset.test)
        return Teacher(fn, TeacherInfo("onnx", cfg.teacher_path, accuracy, 0.0, False, []))
    raise ValueError(f"[distill].teacher = {cfg.teacher!r}: no teacher to load")


def train_ann_teacher(
    recipe: Recipe,
    dataset: Dataset,
    log: Callable[[str], None] = lambda _: None,
    device: torch.device | str = "cpu",
) -> tuple[AnnNetwork, TeacherInfo]:
    """Train the ANN twin of ``recipe``'s model on ``dataset``'s static samples.

    Seeded from ``[train].seed``: the same recipe gives the same teacher (on the same device).
    """
    cfg = recipe.distill
    torch.manual_seed(recipe.train.seed)
    ann = build_ann(recipe.model, dataset.sample_shape, dataset.num_classes).to(device)
    optimizer = torch.optim.Adam(ann.parameters(), lr=cfg.teacher_learning_rate)
    start = time.perf_counter()
    losses: list[float] = []
    for epoch in range(1, cfg.teacher_epochs + 1):
        rate = epoch_learning_rate(
            cfg.teacher_learning_rate, recipe.train.schedule, epoch, cfg.teacher_epochs
        )
        set_learning_rate(optimizer, rate)
        ann.train()
        generator = torch.Generator().manual_seed(recipe.train.seed * 1_000_003 + epoch + 7_919)
        torch.manual_seed(recipe.train.seed * 1_000_003 + epoch + 7_919)  # dropout masks
        order = torch.randperm(len(dataset.train), generator=generator).numpy()
        total = 0.0
        for x, y in batches(dataset.train, recipe.train.batch_size, order):
            loss = nn.functional.cross_entropy(ann(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
        losses.append(total / max(len(order), 1))
    seconds = time.perf_counter() - start
    fn = _torch_fn(ann, device)
    accuracy = teacher_accuracy(fn, dataset.test)
    log(
        f"distill: ANN twin teacher trained for {cfg.teacher_epochs} epochs ({seconds:.1f} s): "
        f"loss {losses[-1]:.4f}, test accuracy {accuracy:.4f}"
    )
    return ann, TeacherInfo("ann", "trained in this run", accuracy, seconds, False, losses)


def onnx_teacher(path: str | Path, sample_shape: Sequence[int] | int, num_classes: int) -> TeacherFn:
    """An ONNX model as a teacher; raises :class:`TeacherError` unless it gives ``num_classes`` logits."""
    from toolchain.formats.onnx import OnnxFormatError, onnx_session

    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"{path}: ONNX teacher not found ([distill].teacher_path)")
    try:
        session = onnx_session(path, threads=None)
    except OnnxFormatError as exc:
        raise TeacherError(f"{exc} ([distill].teacher_path)") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise TeacherError(
            f"{path}: an ONNX teacher takes one input (the static samples), this one takes {len(inputs)}"
        )
    name = inputs[0].name
    shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(int(s) for s in sample_shape)
    declared = inputs[0].shape
    flat = int(np.prod(shape))
    if len(declared) >= 2 and all(isinstance(d, int) for d in declared[1:]):
        per_sample = tuple(int(d) for d in declared[1:])
        if int(np.prod(per_sample)) != flat:
            raise TeacherError(
                f"{path}: input {name!r} takes samples of shape {per_sample}, the dataset's are {shape}"
            )
    else:
        per_sample = shape

    dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}
    if inputs[0].type not in dtypes:
        raise TeacherError(
            f"{path}: input {name!r} is of type {inputs[0].type}; an ONNX teacher takes floating-point "
            "samples (float, double or float16)"
        )
    input_dtype = dtypes[inputs[0].type]

    def run(x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().numpy().astype(input_dtype).reshape(len(x), *per_sample)
        try:
            out = session.run(None, {name: array})[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise TeacherError(f"{path}: the ONNX teacher failed on a batch ({one_line(exc)})") from None
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    declared_out = session.get_outputs()[0].shape
    probe = run(torch.zeros((1, *shape)))
    classes = declared_out[-1] if declared_out and isinstance(declared_out[-1], int) else probe.shape[-1]
    if probe.dim() != 2 or probe.shape[1] != num_classes or classes != num_classes:
        raise TeacherError(
            f"{path}: the ONNX teacher's output {session.get_outputs()[0].name!r} has shape "
            f"{tuple(probe.shape)} for one sample; expected (1, {num_classes}): one logit per class of "
            "the dataset"
        )
    return run


@torch.no_grad()
def teacher_accuracy(teacher: TeacherFn, split: ArraySplit, batch_size: int = 512) -> float:
    """Fraction of ``split`` the teacher classifies correctly (argmax of its logits)."""
    correct = 0
    for x, y in batches(split, batch_size):
        correct += int((teacher(x).argmax(dim=1) == y).sum())
    return correct / max(len(split), 1)


def _torch_fn(ann: AnnNetwork, device: torch.device | str = "cpu") -> TeacherFn:
    ann.eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return ann(x.to(device)).float().cpu()

    return run


def _load_ann(path: Path, recipe: Recipe, dataset: Dataset) -> AnnNetwork:
    ann = build_ann(recipe.model, dataset.sample_shape, dataset.num_classes)
    problem = f"not an ANN twin of recipe {recipe.name!r} for {dataset.num_classes} classes"
    try:
        ann.load_state_dict(load_torch(path, problem))
    except ToolchainError as exc:  # load_torch's one-line refusal of an unreadable file
        raise TeacherError(str(exc)) from None
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TeacherError(f"{path}: {problem} ({one_line(exc)})") from None
    return ann


def _read_info(run: Path, kind: str, source: str) -> TeacherInfo:
    path = run / TEACHER_METRICS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return TeacherInfo(
            kind,
            source,
            float(saved["test_accuracy"]),
            float(saved["train_seconds"]),
            False,
            [float(v) for v in saved.get("epoch_losses", [])],
        )
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise TeacherError(f"{path}: cannot read the teacher's figures ({exc})") from None


__all__ = [
    "TEACHER_FILE",
    "Teacher",
    "TeacherError",
    "TeacherFn",
    "TeacherInfo",
    "TeacherLogits",
    "load_teacher",
    "onnx_teacher",
    "teacher_accuracy",
    "train_ann_teacher",
]
