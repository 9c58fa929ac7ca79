"""Tests of :mod:`toolchain.lava_compat`: Lava imports and runs bit-accurately on this interpreter.

The Lava tests need lava-nc / lava-dl (``make install``) and are skipped with a reason otherwise; the
others check the compat module itself (laziness, idempotence, how it fails on foreign sources).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import multiprocessing
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from toolchain import lava_compat
from toolchain.errors import LavaUnavailableError

REPO = Path(__file__).resolve().parents[1]
HAS_LAVA = importlib.util.find_spec("lava") is not None
skip_without_lava = pytest.mark.skipif(
    not HAS_LAVA, reason=f"Lava is not installed (`make install`: {lava_compat.INSTALL_COMMAND})"
)


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (fresh sys.modules and multiprocessing state)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --------------------------------------------------------------------------------------------------
# The compat module itself (no Lava needed)
# --------------------------------------------------------------------------------------------------


def test_importing_compat_does_not_import_lava() -> None:
    proc = _run_python(
        """
        import sys
        import toolchain.lava_compat
        print(sorted(m for m in sys.modules if m == "lava" or m.startswith(("lava.", "torch"))))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_install_is_idempotent() -> None:
    lava_compat.install()
    lava_compat.install()
    finders = [f for f in sys.meta_path if isinstance(f, lava_compat._LavaCompatFinder)]
    assert len(finders) == 1
    assert lava_compat.installed()
    # Removed by someone else: install() puts the same finder back (its state is kept).
    sys.meta_path.remove(finders[0])
    assert not lava_compat.installed()
    lava_compat.install()
    assert [f for f in sys.meta_path if isinstance(f, lava_compat._LavaCompatFinder)] == finders


def test_rewrite_checks_the_declared_pattern() -> None:
    patch = lava_compat._PATCHES["lava.magma.compiler.var_model"]
    fields = "".join(f"    f{i}: ByteEncoder = ByteEncoder()\n" for i in range(8))
    source = f"@dataclass\nclass CoreEncoder:\n{fields}"
    rewritten = lava_compat._rewrite("lava.magma.compiler.var_model", source, patch)
    assert "ByteEncoder()" not in rewritten
    assert rewritten.count("_lava_compat_field(default_factory=ByteEncoder)") == 8
    assert rewritten.count("\n") == source.count("\n")  # line numbers are kept
    # Another lava version (here: already fixed upstream) must fail loudly, not run unpatched.
    fixed_upstream = source.replace("ByteEncoder()", "field(default_factory=ByteEncoder)")
    with pytest.raises(LavaUnavailableError, match=r"var_model\.py.*matched .* 0 times instead of 8"):
        lava_compat._rewrite("lava.magma.compiler.var_model", fixed_upstream, patch)


def test_missing_lava_is_a_one_line_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lava_compat, "lava_available", lambda: False)
    with pytest.raises(LavaUnavailableError) as info:
        lava_compat.import_lava()
    message = str(info.value)
    assert "\n" not in message
    assert "make install" in message
    assert "pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0" in message


# --------------------------------------------------------------------------------------------------
# Lava itself
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lava() -> lava_compat.LavaModules:
    return lava_compat.import_lava()


@pytest.mark.lava
@skip_without_lava
class TestLava:
    def test_imports(self, lava: lava_compat.LavaModules) -> None:
        assert lava.magma.__name__ == "lava.magma"
        assert lava.proc.__name__ == "lava.proc"
        assert hasattr(lava.netx.hdf5, "Network")
        assert hasattr(lava.run_configs, "Loihi2SimCfg")
        from lava.magma.compiler import var_model

        encoder = var_model.CoreEncoder()
        assert encoder.x is not var_model.CoreEncoder().x  # default_factory: one ByteEncoder each
        assert lava_compat.applied_fixes()["lava.magma.compiler.var_model"]

    def test_object_detection_placeholder(self, lava: lava_compat.LavaModules) -> None:
        from lava.lib.dl import slayer

        stubbed = lava_compat.stubbed_modules()
        deps_ok = all(importlib.util.find_spec(d) is not None for d in ("cv2", "torchvision"))
        if deps_ok and not stubbed:
            pytest.skip("torchvision and cv2 import here: object_detection is the real module")
        assert "lava.lib.dl.slayer.object_detection" in stubbed
        assert not hasattr(slayer.obd, "YOLOBase")
        with pytest.raises(lava_compat.ObjectDetectionUnavailableError, match="torchvision"):
            slayer.obd.YOLOBase  # noqa: B018
        assert hasattr(slayer, "block")  # the rest of slayer is the real thing

    def test_project_tests_are_not_shadowed(self, lava: lava_compat.LavaModules) -> None:
        here = Path(__file__).resolve()
        # lava-nc / lava-dl install a top-level regular package `tests` into site-packages, which a
        # plain `import tests` would find before this repo's tests/ (no __init__.py: a namespace).
        site_tests = importlib.machinery.PathFinder.find_spec("tests")
        assert site_tests is not None and "site-packages" in str(site_tests.origin)
        assert not (REPO / "tests" / "__init__.py").exists()
        # With lava imported, this module still is this repo's file, and (pytest --import-mode=importlib
        # names it after its path) its parent package is this repo's tests/, not site-packages'.
        assert Path(sys.modules[__name__].__file__ or "").resolve() == here
        parent = __name__.rpartition(".")[0]
        if parent:
            paths = [Path(p).resolve() for p in getattr(sys.modules[parent], "__path__", [])]
            assert paths == [REPO / "tests"], paths

    def test_importing_lava_does_not_import_its_tests_package(self) -> None:
        proc = _run_python(
            """
            import sys
            from toolchain import lava_compat
            lava_compat.import_lava()
            import lava.lib.dl.slayer, lava.proc.lif.process, lava.proc.dense.process
            print(sorted(m for m in sys.modules if m == "tests" or m.startswith("tests.")))
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]"

    def test_fork_start_method(self, lava: lava_compat.LavaModules) -> None:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401

        assert multiprocessing.get_start_method() == "fork"
        assert lava_compat.applied_fixes()["lava.magma.runtime.message_infrastructure.multiprocessing"]

    def test_fork_after_multiprocessing_was_used(self) -> None:
        # Unpatched lava raises "RuntimeError: context has already been set" here.
        proc = _run_python(
            """
            import multiprocessing as mp
            mp.Queue()  # any use of multiprocessing fixes the start method
            from toolchain import lava_compat
            lava_compat.install()
            import lava.magma.runtime.message_infrastructure.multiprocessing
            print(mp.get_start_method())
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "fork"

    def test_other_start_method_is_a_clear_error(self) -> None:
        proc = _run_python(
            """
            import multiprocessing as mp
            mp.set_start_method("spawn")
            from toolchain import lava_compat
            from toolchain.errors import LavaUnavailableError
            lava_compat.install()
            try:
                import lava.magma.runtime.message_infrastructure.multiprocessing
            except LavaUnavailableError as e:
                print("error:", e)
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert "needs the multiprocessing start method 'fork'" in proc.stdout


# --------------------------------------------------------------------------------------------------
# A small LIF + Dense network, checked against an independent fixed-point reference
# --------------------------------------------------------------------------------------------------
#
# Lava's bit-accurate models (lava/proc/dense/models.py PyDenseModelBitAcc, lava/proc/lif/models.py
# PyLifModelBitAcc, selected by Loihi2SimCfg(select_tag="fixed_pt")) compute, per time step t = 1, 2 ...:
#
#   Dense:  a_out(t) = (W' @ s_in(t - 1)) << weight_exp      (one step of delay, a_out(1) = 0)
#           W' = W for single-sign weights; mixed-sign weights (default num_weight_bits = 8, of which
#           one is the sign) lose their LSB: W' = (W >> 1) << 1, e.g. 3 -> 2, 7 -> 6
#           (lava/utils/weightutils.py truncate_weights; without it neuron 1 would spike at t=4)
#   LIF:    u = sign(u * (4096 - du - 1)) * (|u * (4096 - du - 1)| >> 12) + (a_in << 6)
#           v = sign(v * (4096 - dv)) * (|v * (4096 - dv)| >> 12) + u + (bias_mant << bias_exp)
#           spike iff v > (vth << 6), then v = 0
#
# Note the ``- 1`` in the current decay: PyLifModelBitAcc adds ds_offset = 1 to du (Loihi 1's
# 1-bit offset register, lif/models.py line 145), dm_offset = 0 to dv; without it the final u differs.
# (u and v are 24-bit and wrap / saturate; the values below stay far from 2**23, as the reference asserts.)
#
# Hand check, neuron 0 (W row [6, 0, 0], weight_exp 1, du 1024, dv 256, vth 40 -> threshold 2560),
# input 0 spikes every step:
#   t=1: a_in = 0                      u = 0                                v = 0
#   t=2: a_in = 6 << 1 = 12            u = 12 << 6 = 768                    v = 768
#   t=3: u = (768*3071 >> 12) + 768 = 575 + 768 = 1343;   v = (768*3840 >> 12) + 1343 = 720 + 1343 = 2063
#   t=4: u = (1343*3071 >> 12) + 768 = 1006 + 768 = 1774; v = (2063*3840 >> 12) + 1774 = 1934 + 1774
#        = 3708 > 2560 -> first spike at t=4, v = 0
# Neuron 2 has no input and bias 7 << 6 = 448: v = 448, 868, 1261, ... first exceeds 2560 at t=7.

T_STEPS = 12


@dataclass(frozen=True)
class NetParams:
    spikes_in: np.ndarray  # (3, T) input spikes, column t-1 is sent at step t
    weights: np.ndarray  # (4, 3)
    weight_exp: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray


def _params() -> NetParams:
    spikes = np.zeros((3, T_STEPS), dtype=np.int32)
    spikes[0, :] = 1  # every step
    spikes[1, 0::2] = 1  # steps 1, 3, 5 ...
    spikes[2, [1, 4, 5]] = 1  # steps 2, 5, 6
    return NetParams(
        spikes_in=spikes,
        weights=np.array([[6, 0, 0], [3, 0, 7], [0, 0, 0], [-20, 6, 0]], dtype=np.int32),
        weight_exp=1,
        du=1024,
        dv=256,
        vth=40,
        bias_mant=np.array([0, 0, 7, 0], dtype=np.int32),
        bias_exp=np.array([0, 0, 6, 0], dtype=np.int32),
    )


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def reference_lif_dense(p: NetParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent integer reference of the equations above: (spikes (4, T), final u, final v)."""
    w = p.weights.astype(np.int64)
    if w.min() < 0 < w.max():
        w = (w >> 1) << 1
    n, steps = w.shape[0], p.spikes_in.shape[1]
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    dense_buffer = np.zeros(n, np.int64)
    bias = p.bias_mant.astype(np.int64) << p.bias_exp.astype(np.int64)
    out = np.zeros((n, steps), np.int64)
    for t in range(steps):
        a_in = dense_buffer
        acc = w @ p.spikes_in[:, t].astype(np.int64)
        dense_buffer = acc << p.weight_exp if p.weight_exp >= 0 else acc >> -p.weight_exp
        u = _decay(u, p.du + 1) + (a_in << 6)
        v = _decay(v, p.dv) + u + bias
        assert np.abs(u).max() < 2**23 and np.abs(v).max() < 2**23  # no 24-bit wrap / saturation
        spiked = v > (p.vth << 6)
        out[:, t] = spiked
        v[spiked] = 0
    return out, u, v


def u_of_reference_after(steps: int) -> np.ndarray:
    """u of the reference after ``steps`` time steps."""
    p = _params()
    short = NetParams(**{**p.__dict__, "spikes_in": p.spikes_in[:, :steps]})
    return reference_lif_dense(short)[1]


@dataclass(frozen=True)
class LavaRun:
    spikes: np.ndarray
    u: np.ndarray
    v: np.ndarray


@pytest.fixture(scope="module")
def lava_run(lava: lava_compat.LavaModules) -> LavaRun:
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    p = _params()
    source = Source(data=p.spikes_in)
    dense = Dense(weights=p.weights, weight_exp=p.weight_exp)
    lif = LIF(shape=(4,), du=p.du, dv=p.dv, vth=p.vth, bias_mant=p.bias_mant, bias_exp=p.bias_exp)
    sink = Sink(shape=(4,), buffer=T_STEPS)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        sink.run(
            condition=lava.run_conditions.RunSteps(num_steps=T_STEPS),
            run_cfg=lava.run_configs.Loihi2SimCfg(select_tag="fixed_pt"),
        )
        spikes = np.asarray(sink.data.get()).astype(np.int64)
        u = np.asarray(lif.u.get()).astype(np.int64)
        v = np.asarray(lif.v.get()).astype(np.int64)
    finally:
        sink.stop()
    return LavaRun(spikes=spikes, u=u, v=v)


@pytest.mark.lava
@skip_without_lava
class TestLifDenseNetwork:
    def test_matches_reference(self, lava_run: LavaRun) -> None:
        expected, u, v = reference_lif_dense(_params())
        np.testing.assert_array_equal(lava_run.spikes, expected)
        np.testing.assert_array_equal(lava_run.u, u)
        np.testing.assert_array_equal(lava_run.v, v)

    def test_hand_checked_values(self, lava_run: LavaRun) -> None:
        s = lava_run.spikes
        assert s[0, :4].tolist() == [0, 0, 0, 1]  # neuron 0: first spike at t=4 (worked out above)
        assert np.flatnonzero(s[1]).tolist() == [4, 6, 8, 10]  # neuron 1: t=5, 7, 9, 11
        assert np.flatnonzero(s[2]).tolist() == [6]  # neuron 2: bias only, once, at t=7
        assert s[3].sum() == 0  # neuron 3: inhibited, never spikes
        assert u_of_reference_after(2)[0] == 768  # neuron 0: u after t=2 is 12 << 6

    def test_pattern_is_not_trivial(self, lava_run: LavaRun) -> None:
        first = [int(np.flatnonzero(row)[0]) if row.any() else None for row in lava_run.spikes]
        assert first[3] is None
        assert len({f for f in first if f is not None}) == 3  # three neurons start at different steps
