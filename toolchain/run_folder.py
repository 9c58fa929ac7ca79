"""A run folder is one run: its manifest, its lock, and the rules for training into it.

``toolchain train --out RUN`` writes ``RUN/recipe.toml`` (the resolved recipe) when training
starts and ``RUN/model.pt`` and ``RUN/metrics.json`` when it ends. Between those moments, or when
two processes write the same folder, the files can belong to two different runs. The manifest
``RUN/run.json`` ties them together::

    {"format": 1, "status": "training" | "finished", "recipe_sha256": ..., "weights_sha256": ...,
     "metrics_sha256": ..., "epochs_done": ..., "written": ..., "toolchain": ...}

It is written atomically when training starts (``status = "training"``, the recipe's hash) and
again after the weights and metrics (``"finished"``, their hashes): a folder killed in between
never passes for a finished run. Every command that reads a run folder calls
:meth:`RunFolder.check_finished`, which compares the hashes of the files present with the
manifest's and refuses a mismatch in one line that says what to do.

Training takes :meth:`RunFolder.lock` (an advisory ``flock`` on ``RUN/.lock``, released by the
kernel when the process dies, so a killed run never leaves a stale lock); a second writer is refused.
:meth:`RunFolder.begin_training` decides what a new training may do with the folder's contents:
start in an empty folder, resume an unfinished or finished run of the same recipe, or replace it
with ``overwrite``; anything else is refused.

Folders written before manifests existed (``model.pt`` without ``run.json``) are read with a
warning, and are finished only if their weights are newer than their recipe.

No torch here: the run folder sits below every stage.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from toolchain import __version__
from toolchain.config import Recipe, load_recipe
from toolchain.errors import ToolchainError

RECIPE_FILE = "recipe.toml"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST_FILE = "run.json"
HISTORY_FILE = "history.csv"
TEACHER_FILE = "teacher.pt"
TEACHER_METRICS_FILE = "teacher.json"
#: what ``toolchain run`` writes: the stages' record and the summary
PIPELINE_FILE = "pipeline.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
#: what training writes at the top of a run folder (``overwrite`` removes these)
TRAINING_FILES: tuple[str, ...] = (
    MODEL_FILE,
    METRICS_FILE,
    CHECKPOINT_FILE,
    TEACHER_FILE,
    TEACHER_METRICS_FILE,
    HISTORY_FILE,
    MANIFEST_FILE,
    RECIPE_FILE,
)
#: what the later stages of ``toolchain run`` write into a run folder (``overwrite`` removes these)
STAGE_OUTPUTS: tuple[str, ...] = ("export", "sim", "energy", PIPELINE_FILE, SUMMARY_FILE)
#: recipe keys a resumed run may change: they act after float training or not on the weights at all
#: (and ``train.epochs`` under a constant learning rate, where more epochs continue the same curve)
RESUMABLE_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "train.device",
    "train.fixed_point_epochs",
    "train.fixed_point_learning_rate",
    "train.test_every_epochs",
    "export.formats",
    "target.name",
)
MANIFEST_FORMAT = 1
#: the folder of ``runs/<name>``, the default ``--out``
RUNS_ROOT = Path("runs")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Status = Literal["training", "finished"]


class RunFolderError(ToolchainError):
    """A run folder that holds another run, an unfinished run, or files that do not belong together."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_run_dir(name: str) -> Path:
    """``runs/<name>``, the default ``--out`` of a recipe named ``name``.

    Raises :class:`RunFolderError` for a name that is not one plain folder name (letters, digits,
    ``.``, ``_``, ``-``; not starting with ``.``): such a name could write outside ``runs/``.
    """
    if not _NAME.fullmatch(name):
        raise RunFolderError(
            f"recipe name {name!r} cannot name a folder under runs/ (expected letters, digits, '.', '_' "
            "or '-', starting with a letter or digit, at most 128 characters): rename the recipe or "
            "pass --out"
        )
    return RUNS_ROOT / name


def recipe_changes(before: Recipe, after: Recipe, ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys whose values differ, but for ``ignore``, as ``key: old -> new`` (sorted)."""
    old, new = _flatten(before.to_dict()), _flatten(after.to_dict())
    return [
        f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}"
        for key in sorted((set(old) | set(new)) - set(ignore))
        if old.get(key) != new.get(key)
    ]


@dataclass(frozen=True)
class Manifest:
    """``run.json``: which recipe, weights and metrics make up the run, and whether it finished."""

    status: Status
    recipe_sha256: str
    weights_sha256: str | None = None
    metrics_sha256: str | None = None
    epochs_done: int | None = None
    written: str = ""
    toolchain: str = __version__
    format: int = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def read(path: Path) -> Manifest:
        """Parse ``path``; anything else than a manifest this version writes is one line."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RunFolderError(f"{path}: unreadable run manifest ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise RunFolderError(f"{path}: not a run manifest of format {MANIFEST_FORMAT}")
        fields = {
            "status": str,
            "recipe_sha256": str,
            "weights_sha256": (str, type(None)),
            "metrics_sha256": (str, type(None)),
            "epochs_done": (int, type(None)),
            "written": str,
            "toolchain": str,
        }
        for key, kind in fields.items():
            if key not in data or not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise RunFolderError(f"{path}: run manifest key {key!r} missing or of the wrong type")
        if data["status"] not in ("training", "finished"):
            raise RunFolderError(
                f"{path}: run manifest status {data['status']!r} is not training or finished"
            )
        return Manifest(**{key: data[key] for key in (*fields, "format")})


@dataclass(frozen=True)
class RunFolder:
    """The run folder at ``path`` (it need not exist yet)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def file(self, name: str) -> Path:
        return self.path / name

    # --- reading ---------------------------------------------------------------------------------

    def manifest(self) -> Manifest | None:
        """The manifest, or ``None`` when the folder has none (empty, or written before manifests)."""
        path = self.file(MANIFEST_FILE)
        return Manifest.read(path) if path.is_file() else None

    def holds_anything(self) -> bool:
        """Whether training or a later stage has written anything here."""
        return any(self.file(name).exists() for name in (*TRAINING_FILES, *STAGE_OUTPUTS))

    def state(self) -> Literal["empty", "training", "finished"]:
        """``empty`` (nothing of a run), ``training`` (started, not finished) or ``finished``."""
        manifest = self.manifest()
        if manifest is not None:
            return manifest.status
        if not self.holds_anything():
            return "empty"
        return "finished" if self._legacy_finished() else "training"

    def check_finished(self) -> Manifest:
        """Prove the folder holds one finished run: its recipe, weights and metrics those the
        manifest names. Returns the manifest; for a folder written before manifests, one made from
        the files present (with a warning on stderr). Raises :class:`RunFolderError` with what to do
        otherwise."""
        if not self.path.is_dir():
            what = "is not a folder" if self.path.exists() else "does not exist"
            raise RunFolderError(
                f"{self.path}: run folder {what} (expected the --out folder of `toolchain train`)"
            )
        manifest = self.manifest()
        if manifest is None:
            return self._check_legacy()
        if manifest.status != "finished":
            raise RunFolderError(
                f"{self.path}: training has not finished in this run folder"
                + (f" ({manifest.epochs_done} epoch(s) done)" if manifest.epochs_done else "")
                + f"; finish it with `toolchain train {self.path} --out {self.path} --resume`"
            )
        for name, expected in (
            (RECIPE_FILE, manifest.recipe_sha256),
            (MODEL_FILE, manifest.weights_sha256),
            (METRICS_FILE, manifest.metrics_sha256),
        ):
            path = self.file(name)
            if not path.is_file():
                raise RunFolderError(
                    f"{path}: missing from a finished run folder; train again with --overwrite"
                )
            if file_sha256(path) != expected:
                raise RunFolderError(
                    f"{path}: changed since the run finished (it is not the file {MANIFEST_FILE} names), "
                    "so this folder's files may belong to two runs; train again with --overwrite, or "
                    "restore the file"
                )
        return manifest

    # --- writing ---------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock; a second process is refused at once (re-entrant in one
        process, e.g. ``run`` training through ``fit``)."""
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.file(LOCK_FILE), "a+")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunFolderError(
                f"{self.path}: another toolchain process is writing this run folder; wait for it to end "
                "or choose another --out"
            ) from None
        _HELD[key] = [handle, 1]
        try:
            yield
        finally:
            _HELD[key][1] -= 1
            if _HELD[key][1] == 0:
                del _HELD[key]
                handle.close()

    def begin_training(self, recipe: Recipe, *, resume: bool, overwrite: bool) -> str:
        """Decide what training ``recipe`` may do here and write the manifest of a started run.

        - empty folder: start;
        - ``overwrite``: remove the previous run's files (``TRAINING_FILES`` and ``STAGE_OUTPUTS``),
          then start;
        - ``resume`` and the folder's recipe equals ``recipe`` up to :data:`RESUMABLE_KEYS`: resume;
        - otherwise refuse, saying what is there and what to pass.

        Returns what happened: ``"new"``, ``"overwritten"`` or ``"resumed"``. Call under :meth:`lock`.
        """
        state = self.state()
        if state == "empty":
            outcome = "new"
        elif overwrite:
            self.remove_run()
            outcome = "overwritten"
        elif resume:
            self._check_same_recipe(recipe)
            outcome = "resumed"
        else:
            what = "a finished run" if state == "finished" else "an unfinished run"
            raise RunFolderError(
                f"{self.path}: the folder holds {what}; pass --resume to continue it with the same recipe, "
                "--overwrite to replace it, or choose another --out"
            )
        from toolchain.config import save_recipe

        save_recipe(recipe, self.file(RECIPE_FILE))
        previous = self.manifest() if outcome == "resumed" else None
        self._write(
            Manifest(
                "training",
                file_sha256(self.file(RECIPE_FILE)),
                epochs_done=previous.epochs_done if previous is not None else 0,
                written=_now(),
            )
        )
        return outcome

    def record_epoch(self, epochs_done: int) -> None:
        """Note in the manifest of a run in training how many epochs its checkpoint holds."""
        manifest = self.manifest()
        if manifest is not None and manifest.status == "training":
            self._write(Manifest("training", manifest.recipe_sha256, epochs_done=epochs_done, written=_now()))

    def finish(self, epochs_done: int) -> Manifest:
        """Write the manifest of the finished run, after ``model.pt`` and ``metrics.json``."""
        manifest = Manifest(
            "finished",
            file_sha256(self.file(RECIPE_FILE)),
            weights_sha256=file_sha256(self.file(MODEL_FILE)),
            metrics_sha256=file_sha256(self.file(METRICS_FILE)),
            epochs_done=epochs_done,
            written=_now(),
        )
        self._write(manifest)
        return manifest

    def refresh_metrics(self) -> None:
        """Re-hash ``metrics.json`` after a training method adds to it (TTFS's simulator figures)."""
        manifest = self.manifest()
        if manifest is not None and manifest.status == "finished":
            self._write(
                Manifest(**{**manifest.to_dict(), "metrics_sha256": file_sha256(self.file(METRICS_FILE))})
            )

    # --- internals -------------------------------------------------------------------------------

    def _write(self, manifest: Manifest) -> None:
        from toolchain.io import write_json

        write_json(self.file(MANIFEST_FILE), manifest.to_dict())

    def _legacy_finished(self) -> bool:
        """A folder without a manifest holds a finished run if its weights are newer than its recipe
        (training writes the recipe first and the weights last)."""
        recipe, model = self.file(RECIPE_FILE), self.file(MODEL_FILE)
        return recipe.is_file() and model.is_file() and model.stat().st_mtime >= recipe.stat().st_mtime

    def _check_legacy(self) -> Manifest:
        for name in (RECIPE_FILE, MODEL_FILE):
            if not self.file(name).is_file():
                raise RunFolderError(
                    f"{self.path}: not a run folder: {name} is missing (`toolchain train --out {self.path}` "
                    "writes it)"
                )
        if not self._legacy_finished():
            raise RunFolderError(
                f"{self.path}: {RECIPE_FILE} is newer than the weights (a training started after them "
                "did not finish), so the files may belong to two runs; resume that training with "
                "--resume or train again with --overwrite"
            )
        if str(self.path) not in _WARNED:
            _WARNED.add(str(self.path))
            print(
                f"warning: {self.path} has no {MANIFEST_FILE} (written by an older toolchain): its recipe "
                "and weights are not checked against each other",
                file=sys.stderr,
            )
        metrics = self.file(METRICS_FILE)
        return Manifest(
            "finished",
            file_sha256(self.file(RECIPE_FILE)),
            weights_sha256=file_sha256(self.file(MODEL_FILE)),
            metrics_sha256=file_sha256(metrics) if metrics.is_file() else None,
        )

    def _check_same_recipe(self, recipe: Recipe) -> None:
        path = self.file(RECIPE_FILE)
        if not path.is_file():
            raise RunFolderError(
                f"{self.path}: --resume: the folder has no {RECIPE_FILE} to resume; pass --overwrite "
                "to start over"
            )
        manifest = self.manifest()
        if manifest is not None and file_sha256(path) != manifest.recipe_sha256:
            raise RunFolderError(
                f"{path}: changed since training started here; pass --overwrite to start over"
            )
        try:
            before = load_recipe(path)
        except ToolchainError as exc:
            raise RunFolderError(
                f"{self.path}: --resume: the folder's recipe is unreadable ({exc})"
            ) from None
        resumable = RESUMABLE_KEYS
        done = manifest.epochs_done if manifest is not None and manifest.epochs_done else 0
        if before.train.schedule == recipe.train.schedule == "constant" and done <= min(
            before.train.epochs, recipe.train.epochs
        ):  # a constant rate, still in float training: other epoch counts continue the same curve
            resumable = (*resumable, "train.epochs")
        changes = recipe_changes(before, recipe, ignore=resumable)
        if changes:
            shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
            raise RunFolderError(
                f"{self.path}: --resume with another recipe than the one this run was trained with "
                f"({shown}); resume with the same recipe, pass --overwrite to start over, or choose "
                "another --out"
            )

    def remove_run(self) -> None:
        """Delete the run this folder holds: ``TRAINING_FILES`` and ``STAGE_OUTPUTS`` (nothing else)."""
        for name in (*TRAINING_FILES, *STAGE_OUTPUTS):
            path = self.file(name)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


#: the writer locks this process holds: resolved path -> [open file, depth]
_HELD: dict[str, list[Any]] = {}
#: folders without a manifest this process has warned about (once each)
_WARNED: set[str] = set()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "CHECKPOINT_FILE",
    "HISTORY_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "PIPELINE_FILE",
    "RECIPE_FILE",
    "RESUMABLE_KEYS",
    "SUMMARY_FILE",
    "TEACHER_FILE",
    "TEACHER_METRICS_FILE",
    "Manifest",
    "RunFolder",
    "RunFolderError",
    "default_run_dir",
    "file_sha256",
    "recipe_changes",
]
