"""Make lava-nc 0.10.0 / lava-dl 0.6.0 importable and runnable on this interpreter, without editing them.

Both projects are archived and declare ``Requires-Python: >=3.10,<3.11`` (and lava-dl pins
``torch<2.4`` and ``torchvision<0.19``), so the Makefile installs them with
``pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0`` and the run-time
dependencies they really use are pinned by this project instead (see ``docs/lava.md``).
:func:`install` then puts one :data:`sys.meta_path` finder in front of the normal ones that fixes,
at import time and only in memory, what breaks on Python 3.11 / numpy 1.26 / torch 2.x.
No installed file is changed. Each fix is declared once below, matches an exact source pattern
and checks how often it matched: if lava's source no longer looks as expected (another version),
the import fails with a :class:`~toolchain.errors.LavaUnavailableError` that says so, instead of
silently running unpatched code.

The fixes:

1. ``lava/magma/compiler/var_model.py`` lines 221-223, 229-231 and 237-238 declare dataclass fields
   as ``x: ByteEncoder = ByteEncoder()``. ``ByteEncoder`` is itself a (non-frozen) dataclass, hence
   unhashable, and since Python 3.11 ``dataclasses`` rejects every unhashable default
   ("mutable default ... use default_factory"), so importing this module (which the compiler of
   every Lava run imports) raises ``ValueError``. The loader rewrites those eight fields to
   ``field(default_factory=ByteEncoder)``; ``field`` is bound in the module as
   ``_lava_compat_field`` before its code runs (so no line is added and tracebacks keep lava's line
   numbers). As a side effect every encoder now gets its own ``ByteEncoder`` instead of all sharing
   one instance, which is what the code meant. A scan of every dataclass of the installed
   lava-nc / lava-dl sources (annotated class attributes whose default is a call or an expression)
   found no other unhashable default: the remaining ones are enum members, ints and class-level
   lists that are not fields.

2. ``lava/lib/dl/slayer/__init__.py`` line 15 imports ``object_detection`` (the YOLO helpers),
   which imports ``cv2`` and ``torchvision`` (``object_detection/boundingbox/utils.py`` lines 6 and
   13, and two dataset modules). ``lava.lib.dl.netx`` imports ``slayer``, so without them netx
   cannot be imported at all, although neither netx nor the rest of slayer use them. torchvision is
   not installed here: its PyPI wheels are built against one exact torch and fail at import beside
   another one with a ``RuntimeError`` (not an ``ImportError``); opencv-python-headless (``cv2``) is
   not installed either (nothing else needs it). When ``import cv2`` or ``import torchvision``
   raises any exception, ``lava.lib.dl.slayer.object_detection`` (and its submodules) are replaced
   by a placeholder module whose public attributes raise :class:`ObjectDetectionUnavailableError`
   naming the failed import. When both import, nothing is stubbed.

3. ``lava/magma/runtime/message_infrastructure/multiprocessing.py`` line 47 calls
   ``mp.set_start_method('fork')`` at import (on every OS but Windows). ``set_start_method`` without
   ``force`` raises ``RuntimeError: context has already been set`` as soon as anything in the
   process has fixed the start method, and merely *using* multiprocessing does (a
   ``torch.utils.data.DataLoader`` with workers, ``multiprocessing.Queue()``, a ``Pool``,
   ``get_start_method()``): afterwards no Lava network could be run in that process. The call is
   rewritten to :func:`_ensure_fork_start_method`, which sets ``fork`` when nothing is set yet
   (what Lava wants), does nothing when it already is ``fork``, and raises a clear error when
   another start method was chosen: Lava's runtime relies on ``fork`` (its actor processes inherit
   the parent's modules, these fixes included; a ``spawn`` child would re-import lava unpatched).
   On Linux, ``fork`` is Python 3.11's default anyway, so this changes nothing for the rest of the
   toolchain.

4. Same file, line 68 (``SystemProcess.run``, the body of every Lava actor process): a torch op
   that uses OpenMP in a child forked after the parent ran a multi-threaded torch op (training,
   a large matmul) hangs for ever, because GNU libgomp's thread pool does not survive ``fork``.
   Lava's own CPU process models use numpy only, but a process model that calls torch would hang
   the whole run (reproduced: it never finishes without this fix, 1.3 s with it). The line is
   rewritten to call :func:`_actor_setup` first, which sets ``torch.set_num_threads(1)`` in the
   actor when torch was imported, as torch's own ``DataLoader`` workers do. The parent is untouched.

5. ``lava/proc/conv/models.py`` line 79 (``PyConvModelFixed.clamp_precision``): the ``Conv``
   process declares a ``weight_exp`` ("weight * pow(2, weight_exp)", ``lava/proc/conv/process.py``
   lines 41-44, stored as a ``Var`` at line 106) that the fixed-point model never applies, while
   ``PyDenseModelBitAcc`` shifts its sums by it (``lava/proc/dense/models.py`` lines 103-107). A
   conv layer fed 8-bit graded input (weight exponent -8) therefore computed sums 256 times too
   large. The line is rewritten to shift the sum by ``weight_exp`` exactly as the dense model does
   (:func:`_conv_weight_shift`: ``<<`` for a positive exponent, an arithmetic ``>>``, a floor, for
   a negative one) before the 24-bit clamp. With the default ``weight_exp = 0`` nothing changes.

Not fixes, checked: importing every module of lava-nc and lava-dl with these fixes succeeds;
lava-nc and lava-dl use none of the numpy aliases removed in 1.24 (``np.bool``, ``np.int``,
``np.float``, ``np.object`` ...); slayer's only deprecated torch API is ``torch.nn.utils.weight_norm``
(a ``FutureWarning``, still works), its C++/CUDA extensions are only built on CUDA, and a slayer
network exported to HDF5 loads and runs in ``netx`` on the CPU. Both wheels also install a
top-level ``tests`` package into site-packages; this project's ``tests/`` has no ``__init__.py``,
pytest runs with ``--import-mode=importlib`` (test modules are imported by file path) and importing
Lava never imports that package, so neither shadows the other; nothing here does ``import tests``.

Importing this module imports no part of Lava; only modules that use Lava call :func:`install`
(or :func:`import_lava`, which calls it).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import multiprocessing
import os
import re
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolchain.errors import LavaUnavailableError

__all__ = [
    "INSTALL_COMMAND",
    "LavaModules",
    "ObjectDetectionUnavailableError",
    "applied_fixes",
    "import_lava",
    "import_module",
    "install",
    "installed",
    "lava_available",
    "lava_versions",
    "stubbed_modules",
]

#: How Lava is installed (``make install`` runs exactly this).
INSTALL_COMMAND = "pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0"

_NOT_INSTALLED = f"Lava is not installed: run `make install` (or `{INSTALL_COMMAND}`)"

#: The lava versions whose sources the patterns below were written against.
_EXPECTED_VERSIONS = {"lava-nc": "0.10.0", "lava-dl": "0.6.0"}

_OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"
#: What ``object_detection`` imports beyond slayer's own needs (opencv-python-headless, torchvision).
_OBJECT_DETECTION_DEPS = ("cv2", "torchvision")


class ObjectDetectionUnavailableError(LavaUnavailableError, AttributeError):
    """Raised when the stubbed ``lava.lib.dl.slayer.object_detection`` (torchvision, cv2) is used.

    It is also an :class:`AttributeError`, so ``hasattr``/``getattr(..., default)`` and
    introspection treat the placeholder's attributes as absent instead of crashing.
    """


def _ensure_fork_start_method() -> None:
    """Replacement for lava's ``mp.set_start_method('fork')`` (see fix 3 in the module docstring)."""
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None:
        multiprocessing.set_start_method("fork")
    elif current != "fork":
        raise LavaUnavailableError(
            f"Lava's runtime needs the multiprocessing start method 'fork', but this process already "
            f"uses {current!r}; do not call multiprocessing.set_start_method({current!r}) in a process "
            "that runs Lava"
        )


def _actor_setup() -> None:
    """Run first in every forked Lava actor process (see fix 4 in the module docstring).

    A torch op that uses OpenMP in a child forked after the parent ran a multi-threaded torch op
    hangs for ever (GNU libgomp's thread pool does not survive ``fork``); one thread per actor
    avoids it, as torch's own ``DataLoader`` workers do.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _conv_weight_shift(a_out: Any, weight_exp: Any) -> Any:
    """The conv sums scaled by the process's weight exponent (see fix 5 in the module docstring):
    the shift ``PyDenseModelBitAcc`` applies to its sums."""
    import numpy as np

    exp = int(np.asarray(weight_exp).reshape(-1)[0])
    if exp == 0:
        return a_out
    return np.left_shift(a_out, exp) if exp > 0 else np.right_shift(a_out, -exp)


@dataclass(frozen=True)
class _SourcePatch:
    """One textual rewrite of a lava module: ``pattern`` (multiline regex) must match ``count`` times."""

    pattern: str
    replacement: str
    count: int
    where: str  # the lava file and line(s) it fixes, for error messages and docs


@dataclass(frozen=True)
class _ModulePatch:
    """The rewrites of one module plus the names bound in its namespace before its code runs."""

    patches: tuple[_SourcePatch, ...]
    bindings: Mapping[str, Any]


_PATCHES: dict[str, _ModulePatch] = {
    "lava.magma.compiler.var_model": _ModulePatch(
        patches=(
            _SourcePatch(
                pattern=(
                    r"^(?P<head>[ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*=[ \t]*)"
                    r"ByteEncoder\(\)(?P<tail>[ \t]*(?:#.*)?)$"
                ),
                replacement=r"\g<head>_lava_compat_field(default_factory=ByteEncoder)\g<tail>",
                count=8,
                where="lava/magma/compiler/var_model.py:221-223,229-231,237-238",
            ),
        ),
        bindings={"_lava_compat_field": dataclasses.field},
    ),
    "lava.magma.runtime.message_infrastructure.multiprocessing": _ModulePatch(
        patches=(
            _SourcePatch(
                pattern=r"^(?P<head>[ \t]*)mp\.set_start_method\(['\"]fork['\"]\)(?P<tail>[ \t]*(?:#.*)?)$",
                replacement=r"\g<head>_lava_compat_ensure_fork()\g<tail>",
                count=1,
                where="lava/magma/runtime/message_infrastructure/multiprocessing.py:47",
            ),
            _SourcePatch(
                pattern=r"^(?P<head>[ \t]+)mp\.Process\.run\(self\)(?P<tail>[ \t]*(?:#.*)?)$",
                replacement=r"\g<head>_lava_compat_actor_setup(); mp.Process.run(self)\g<tail>",
                count=1,
                where="lava/magma/runtime/message_infrastructure/multiprocessing.py:68",
            ),
        ),
        bindings={
            "_lava_compat_ensure_fork": _ensure_fork_start_method,
            "_lava_compat_actor_setup": _actor_setup,
        },
    ),
    "lava.proc.conv.models": _ModulePatch(
        patches=(
            _SourcePatch(
                pattern=(
                    r"^(?P<head>[ \t]+return )utils\.signed_clamp\(x, bits=24\)(?P<tail>[ \t]*(?:#.*)?)$"
                ),
                replacement=(
                    r"\g<head>utils.signed_clamp(_lava_compat_conv_weight_shift(x, self.weight_exp), bits=24)"
                    r"\g<tail>"
                ),
                count=1,
                where="lava/proc/conv/models.py:79",
            ),
        ),
        bindings={"_lava_compat_conv_weight_shift": _conv_weight_shift},
    ),
}


def _installed_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _rewrite(fullname: str, source: str, module_patch: _ModulePatch) -> str:
    """Apply ``module_patch`` to ``source``; raise if a pattern did not match exactly as declared."""
    for patch in module_patch.patches:
        source, n = re.subn(patch.pattern, patch.replacement, source, flags=re.MULTILINE)
        if n != patch.count:
            versions = ", ".join(f"{d} {_installed_version(d)}" for d in _EXPECTED_VERSIONS)
            expected = ", ".join(f"{d} {v}" for d, v in _EXPECTED_VERSIONS.items())
            raise LavaUnavailableError(
                f"toolchain.lava_compat: {patch.where} ({fullname}) matched its compat pattern {n} times "
                f"instead of {patch.count}; the fixes were written for {expected}, installed: {versions}"
            )
    return source


class _PatchingLoader(importlib.abc.InspectLoader):
    """Loads a lava source file with its declared rewrites applied (in memory, no bytecode cache)."""

    def __init__(self, fullname: str, path: str, module_patch: _ModulePatch) -> None:
        self._fullname = fullname
        self._path = path
        self._patch = module_patch
        self.applied = False

    def get_filename(self, fullname: str) -> str:
        return self._path

    def is_package(self, fullname: str) -> bool:
        return False

    def get_source(self, fullname: str) -> str:
        with open(self._path, "rb") as f:
            source = importlib.util.decode_source(f.read())
        return _rewrite(self._fullname, source, self._patch)

    def exec_module(self, module: types.ModuleType) -> None:
        source = self.get_source(self._fullname)
        module.__dict__.update(self._patch.bindings)
        code = compile(source, self._path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
        self.applied = True


class _PlaceholderModule(types.ModuleType):
    """Stands in for a module that cannot be imported; using any public attribute raises."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, f"Placeholder for {name}, which cannot be imported: {reason}")
        self._lava_compat_reason = reason

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise ObjectDetectionUnavailableError(
            f"{self.__name__}.{attr} is unavailable: {self._lava_compat_reason} "
            "(lava-dl's YOLO object_detection needs torchvision and opencv; the rest of slayer and netx "
            "do not)"
        )


class _PlaceholderLoader(importlib.abc.Loader):
    def __init__(self, reason: str) -> None:
        self._reason = reason

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _PlaceholderModule(spec.name, self._reason)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package, so that its submodules also come to this finder


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that routes the few lava modules needing a fix to the loaders above."""

    def __init__(self) -> None:
        self._object_detection_blocker: str | None = None
        self._object_detection_checked = False
        self.loaders: dict[str, _PatchingLoader] = {}
        self.stubbed: list[str] = []

    def _object_detection_failure(self) -> str | None:
        """Why ``object_detection`` cannot be imported (its own imports fail), or ``None``."""
        if not self._object_detection_checked:
            failures = []
            for dep in _OBJECT_DETECTION_DEPS:
                try:
                    importlib.import_module(dep)
                except Exception as exc:  # a torchvision built for another torch raises RuntimeError
                    failures.append(f"`import {dep}` failed ({type(exc).__name__}: {exc})")
            self._object_detection_blocker = "; ".join(failures) or None
            self._object_detection_checked = True
        return self._object_detection_blocker

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """Return a patching/placeholder spec for the handled lava modules, else ``None``."""
        if fullname in _PATCHES:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                return spec
            loader = _PatchingLoader(fullname, spec.origin, _PATCHES[fullname])
            self.loaders[fullname] = loader
            return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)
        if fullname == _OBJECT_DETECTION or fullname.startswith(_OBJECT_DETECTION + "."):
            reason = self._object_detection_failure()
            if reason is None:
                return None
            self.stubbed.append(fullname)
            return importlib.util.spec_from_loader(fullname, _PlaceholderLoader(reason), is_package=True)
        return None


_lock = threading.Lock()
_finder: _LavaCompatFinder | None = None
_fork_hook = False
_forking_parent = 0  # the pid of the process about to fork (set in it, read in the child)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def install() -> None:
    """Put the fixing finder first on :data:`sys.meta_path` (idempotent, thread-safe, imports no Lava),
    and make every process this one forks from now on die with it (:func:`_die_with_parent`).

    Call it before the first ``import lava...``; :func:`import_lava` and :func:`import_module` do.
    """
    global _finder, _fork_hook
    with _lock:
        if _finder is None:
            _finder = _LavaCompatFinder()
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        if not _fork_hook and sys.platform.startswith("linux"):
            os.register_at_fork(before=_note_forking_parent, after_in_child=_die_with_parent)
            _fork_hook = True


def _note_forking_parent() -> None:
    global _forking_parent
    _forking_parent = os.getpid()


def _die_with_parent() -> None:
    """In a forked child: ask the kernel for SIGKILL when the parent dies (``PR_SET_PDEATHSIG``).

    Lava's runtime forks an actor process per Lava process and a shared-memory manager; when the
    toolchain process is killed (SIGKILL, SIGTERM, a crash), nothing of Python runs in it to stop
    them, and they lived on for minutes holding hundreds of MB each. With this, the kernel kills
    them. A child whose parent died before the request took effect exits at once.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the children outlive a killed parent, as before
        return
    if os.getppid() != _forking_parent:  # reparented already: the parent died before the request
        os._exit(1)


def installed() -> bool:
    """Whether :func:`install` has put the finder on :data:`sys.meta_path`."""
    return _finder is not None and _finder in sys.meta_path


def applied_fixes() -> dict[str, bool]:
    """For each patched lava module: whether it has been imported through its patching loader."""
    loaders = _finder.loaders if _finder is not None else {}
    return {name: name in loaders and loaders[name].applied for name in _PATCHES}


def stubbed_modules() -> list[str]:
    """The ``object_detection`` modules replaced by placeholders (none when cv2 and torchvision import)."""
    return list(_finder.stubbed) if _finder is not None else []


def lava_versions() -> dict[str, str | None]:
    """Installed versions of lava-nc and lava-dl (``None`` when absent), read from package metadata."""
    out: dict[str, str | None] = {}
    for dist in _EXPECTED_VERSIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def lava_available() -> bool:
    """Whether lava-nc and lava-dl are installed (checked without importing them)."""
    if importlib.util.find_spec("lava") is None:
        return False
    return all(v is not None for v in lava_versions().values())


@dataclass(frozen=True)
class LavaModules:
    """The Lava entry points the toolchain uses, imported with the fixes installed."""

    magma: types.ModuleType  # lava.magma (namespace package: compiler, runtime, core)
    proc: types.ModuleType  # lava.proc (LIF, Dense, io ...)
    netx: types.ModuleType  # lava.lib.dl.netx (hdf5 network import)
    run_configs: types.ModuleType  # lava.magma.core.run_configs (Loihi2SimCfg ...)
    run_conditions: types.ModuleType  # lava.magma.core.run_conditions (RunSteps ...)


def import_module(name: str) -> types.ModuleType:
    """Import one lava module with the fixes installed; a missing Lava raises LavaUnavailableError."""
    install()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == "lava" or missing.startswith("lava.") or not lava_available():
            raise LavaUnavailableError(_NOT_INSTALLED) from exc
        raise LavaUnavailableError(
            f"Lava is installed but `import {name}` needs the missing module {missing!r}; "
            "run `make install` to install the toolchain's pinned dependencies"
        ) from exc


def import_lava() -> LavaModules:
    """Install the fixes and import the Lava entry points the toolchain uses.

    Raises :class:`LavaUnavailableError` with a one-line install hint if Lava is not installed.
    """
    if not lava_available():
        raise LavaUnavailableError(_NOT_INSTALLED)
    return LavaModules(
        magma=import_module("lava.magma"),
        proc=import_module("lava.proc"),
        netx=import_module("lava.lib.dl.netx"),
        run_configs=import_module("lava.magma.core.run_configs"),
        run_conditions=import_module("lava.magma.core.run_conditions"),
    )
