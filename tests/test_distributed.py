"""Data-parallel training: real 2-process gloo runs through torchrun, and the sharding rules.

Two torchrun launches (each about 10 s of process start-up on 2 cores): the CLI trains 2 epochs,
and a script calls ``fit`` (1 epoch, failing ranks), then the CLI's ``main`` with ``--resume``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.config import load_recipe, with_overrides
from toolchain.train import evaluate, fit, load_trained
from toolchain.train.distributed import (
    DistributedContext,
    DistributedError,
    global_batches,
    init_from_env,
    reduce_or_fail,
    shard,
)

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"checkpoint.pt", "metrics.json", "model.pt", "recipe.toml", "run.json", ".lock", "history.csv"}


def torchrun(*args: str, nproc: int = 2, **extra_env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N ARGS`` (``--standalone`` picks a free port)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra_env}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    result = subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# Run by every rank under torchrun: fit() with this rank's DistributedContext, then the CLI's main().
LIBRARY_RUNS = """
    import json, os, shutil
    from pathlib import Path
    import numpy as np
    from toolchain.cli import main
    from toolchain.config import load_recipe, with_overrides
    from toolchain.data import ArraySplit, load_dataset
    from toolchain.train import fit
    from toolchain.train.distributed import barrier, init_from_env

    ctx = init_from_env("cpu")
    out = Path(os.environ["OUT"])
    digits = load_dataset("digits")
    recipe = with_overrides(load_recipe("models/digits-demo"), **{"train.batch_size": 16, "train.epochs": 1})

    def attempt(recipe, dataset, *args, **kwargs):
        try:
            fit(recipe, dataset, *args, progress=False, distributed=ctx, **kwargs)
            return "ok"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def poisoned(value):  # this rank's own copy of the data, every pixel set to value
        train = ArraySplit(np.full_like(digits.train.x[:64], value), digits.train.y[:64].copy())
        return type(digits)(digits.name, train, digits.test, digits.classes, digits.sample_shape)

    results = {"one epoch": attempt(recipe, digits, out / "one")}
    # rank 1's rate encoder rejects its inputs (2.0 is not a probability); rank 0's are fine
    rate = with_overrides(recipe, **{"encoding.scheme": "rate"})
    results["local"] = attempt(rate, poisoned(2.0) if ctx.rank == 1 else poisoned(0.5))
    # only rank 0's inputs are inf: NaN gradients, averaged into every rank's weights
    results["diverged"] = attempt(recipe, poisoned(float("inf")) if ctx.rank == 0 else poisoned(0.5))

    # the CLI continues the 1-epoch run to 2 epochs (it joins this process group and leaves it)
    if ctx.is_main:
        shutil.copytree(out / "one", out / "resumed")
    barrier(ctx)
    args = ["models/digits-demo", "--out", str(out / "resumed"), "--epochs", "2", "--batch-size", "16"]
    results["resume"] = main(["train", *args, "--resume", "--no-progress"])
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The CLI under torchrun: 2 ranks x 16 samples per step, 2 epochs."""
    out = tmp_path_factory.mktemp("ddp-cli") / "run"
    args = ["--out", str(out), "--no-progress", "--epochs", "2", "--batch-size", "16"]
    return out, torchrun("-m", "toolchain", "train", "models/digits-demo", *args)


@pytest.fixture(scope="module")
def library_runs(tmp_path_factory):
    """``LIBRARY_RUNS`` under torchrun: its folder, each rank's results, the torchrun process."""
    out = tmp_path_factory.mktemp("ddp-library")
    script = out / "library_runs.py"
    script.write_text(textwrap.dedent(LIBRARY_RUNS))
    result = torchrun(str(script), OUT=str(out))
    return out, [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)], result


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)


def _ctx(rank: int, world: int) -> DistributedContext:
    return DistributedContext(rank, world, rank, "gloo", torch.device("cpu"))


def test_two_processes_train_and_only_rank_0_writes(cli_run, digits):
    out, result = cli_run
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no stray temporary files of a second writer
    assert result.stdout.count("test accuracy") == 1  # one summary, from rank 0
    assert result.stderr.count("epoch 2/2:") == 1
    expected = "distributed: 2 processes (gloo, cpu), 16 samples per process and step (32 per step)"
    assert expected in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["test_samples"] == len(digits.test)
    assert metrics["test_accuracy"] > 0.5
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][1]["train_accuracy"] > 0.5

    # model.pt is the plain module's state_dict: it loads without DDP, and the sharded, all-reduced
    # evaluation equals a single-process one (direct encoding is deterministic)
    assert not any(key.startswith("module.") for key in _weights(out))
    recipe, model = load_trained(out, digits.sample_shape, digits.num_classes)
    evaluation = evaluate(model, digits.test, recipe.encoding, seed=recipe.train.seed)
    assert evaluation.accuracy == metrics["test_accuracy"]
    assert evaluation.spikes_per_sample == pytest.approx(metrics["spikes_per_sample"], rel=1e-9)


def test_two_ranks_of_b_train_like_one_process_of_2b(library_runs, digits):
    out, results, _ = library_runs
    assert [r["one epoch"] for r in results] == ["ok", "ok"]
    recipe = with_overrides(load_recipe("models/digits-demo"), **{"train.epochs": 1, "train.batch_size": 32})
    single = fit(recipe, digits, progress=False)
    ddp = _weights(out / "one")
    for name, weight in single.model.state_dict().items():
        torch.testing.assert_close(ddp[name], weight, rtol=0, atol=1e-5)
    record = json.loads((out / "one" / "metrics.json").read_text())["epochs"][0]
    assert record["loss"] == pytest.approx(single.history[0].loss, rel=1e-4)
    assert record["train_accuracy"] == pytest.approx(single.history[0].train_accuracy, abs=2e-3)


def test_resume_under_ddp_ends_where_an_uninterrupted_run_ends(library_runs, cli_run):
    out, results, result = library_runs
    straight, _ = cli_run  # the same recipe, 2 epochs without a break
    assert [r["resume"] for r in results] == [0, 0]  # the exit codes of toolchain.cli.main
    assert result.stderr.count("resuming") == 1
    assert result.stdout.count("test accuracy") == 1
    resumed = out / "resumed"
    for name, weight in _weights(straight).items():
        assert torch.equal(_weights(resumed)[name], weight), name
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (straight, resumed))
    assert a["test_accuracy"] == b["test_accuracy"]
    for x, y in zip(a["epochs"], b["epochs"], strict=True):
        assert (x["loss"], x["train_accuracy"]) == (y["loss"], y["train_accuracy"])


def test_a_failing_rank_stops_every_rank_cleanly(library_runs):
    _, (rank0, rank1), _ = library_runs
    assert rank1["local"].startswith("DataError: [encoding].scheme = 'rate' needs inputs in [0, 1]")
    assert (
        rank0["local"] == "PeerFailedError: rank 1 failed at epoch 1 (see its own error); all 2 ranks stopped"
    )
    for rank in (rank0, rank1):
        assert rank["diverged"].startswith("TrainingDivergedError: training diverged at epoch 1: ")


def test_shards_are_disjoint_and_cover_each_global_batch():
    order = np.random.default_rng(0).permutation(101)
    shards = [shard(order, _ctx(rank, 2)) for rank in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(np.concatenate(shards)) == list(range(101))
    assert shard(order, None) is order

    steps = [list(global_batches(order, 16, _ctx(rank, 2))) for rank in range(2)]
    assert len(steps[0]) == len(steps[1]) == 4  # ceil(101 / 32): every rank takes every step
    for start, ((a, count), (b, count_b)) in zip(range(0, 101, 32), zip(*steps, strict=True), strict=True):
        batch = order[start : start + 32]
        assert count == count_b == len(batch)
        assert list(a) == list(batch[0::2]) and list(b) == list(batch[1::2])  # halves of the global batch
    assert [len(a) for a, _ in steps[0]] == [16, 16, 16, 3] and [len(b) for b, _ in steps[1]] == [
        16,
        16,
        16,
        2,
    ]


def test_a_short_last_batch_leaves_a_rank_empty_but_in_step():
    order = np.arange(33)
    last = [list(global_batches(order, 16, _ctx(rank, 2)))[-1] for rank in range(2)]
    assert (list(last[0][0]), last[0][1]) == ([32], 1)
    assert (list(last[1][0]), last[1][1]) == ([], 1)


def test_environment_detection(monkeypatch):
    assert init_from_env("cpu", environ={}) is None
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR expected, but not set"):
        init_from_env("cpu", environ={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    with pytest.raises(DistributedError, match="LOCAL_RANK missing"):
        init_from_env("cpu", environ={"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(DistributedError, match="RANK='x': expected an integer"):
        init_from_env("cpu", environ={"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"})
    with pytest.raises(DistributedError, match="inconsistent distributed environment: RANK=2"):
        init_from_env("cpu", environ={"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


def test_without_ddp_reduce_or_fail_is_the_identity():
    assert reduce_or_fail([1, 2.5], None, None, "here") == [1.0, 2.5]
    with pytest.raises(KeyError):
        reduce_or_fail([1], None, KeyError("x"), "here")
