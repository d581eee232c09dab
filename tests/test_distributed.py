"""Data order for DDP and resume, 2 gloo processes matching one process on the same global batch, and
2 gloo processes in which one rank fails, hangs, or alone writes the class-statistics cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from reseg.engine.distributed import dist_timeout
from reseg.engine.samplers import EpochBatchSampler, ShardSampler, sample_seed
from reseg.errors import ResegError


def flat(batches):
    return [[i for i, _ in b] for b in batches]


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochBatchSampler(23, 4, seed=5), EpochBatchSampler(23, 4, seed=5)
    assert len(a) == 5 == a.batches_per_epoch()  # 23 // 4: the ragged tail is dropped
    assert list(a) == list(b)
    first = flat(a)
    a.set_epoch(1)
    assert flat(a) != first
    a.set_epoch(0)
    assert flat(a) == first
    assert flat(EpochBatchSampler(23, 4, seed=6)) != first
    # resume: skipping consumed batches gives exactly the rest of the epoch
    a.set_epoch(0, start_batch=3)
    assert flat(a) == first[3:] and len(a) == 2
    # augmentation seeds depend on (seed, epoch, index) only
    assert all(s == sample_seed(5, 0, i) for batch in EpochBatchSampler(23, 4, seed=5) for i, s in batch)
    assert sample_seed(5, 0, 1) != sample_seed(5, 1, 1) != sample_seed(6, 1, 1)


def test_ranks_split_the_single_process_global_batch() -> None:
    single = flat(EpochBatchSampler(30, 6, seed=1))
    r0 = flat(EpochBatchSampler(30, 3, seed=1, rank=0, world_size=2))
    r1 = flat(EpochBatchSampler(30, 3, seed=1, rank=1, world_size=2))
    assert len(r0) == len(r1) == len(single) == 5
    for s, a, b in zip(single, r0, r1):
        assert s == a + b


def test_shard_sampler_covers_each_index_once() -> None:
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert [len(ShardSampler(11, r, 3)) for r in range(3)] == [len(s) for s in shards]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes x batch 2 == 1 process x batch 4: same weights and validation metrics."""
    from train_utils import make_tiny_dataset, read_metrics, run_cli, subprocess_env, tiny_config, write_config

    from reseg.engine.checkpoint import load_checkpoint

    root = make_tiny_dataset(tmp_path / "data", train=16, val=4)
    train, optim = {"max_iters": 8, "val_interval": 4, "checkpoint_interval": 8}, {"lr": 0.05}
    one = write_config(tmp_path / "one.yaml", tiny_config(root, data={"batch_size": 4}, train=train, optim=optim))
    two = write_config(tmp_path / "two.yaml", tiny_config(root, data={"batch_size": 2}, train=train, optim=optim))

    single = run_cli(["train", str(one), "--work-dir", str(tmp_path / "one"), "--no-progress"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "reseg",
            "train",
            str(two),
            "--work-dir",
            str(tmp_path / "two"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("outputs in") == 1  # only rank 0 reports
    assert "device cpu x2" in (tmp_path / "two" / "train.log").read_text()

    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6), k
    assert isinstance(b["rng"], list) and len(b["rng"]) == 2  # each rank's RNG state is kept
    va, vb = read_metrics(tmp_path / "one", "val"), read_metrics(tmp_path / "two", "val")
    assert [v["iter"] for v in va] == [v["iter"] for v in vb] == [4, 8]
    assert va[-1]["aAcc"] > 0.1  # the model predicts something, so the comparison means something
    for x, y in zip(va, vb):
        for key in ("mIoU", "aAcc", "mAcc"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), key
        assert {c: s["IoU"] for c, s in x["per_class"].items()} == pytest.approx(
            {c: s["IoU"] for c, s in y["per_class"].items()}, abs=1e-6, nan_ok=True
        )
    la, lb = read_metrics(tmp_path / "one", "train"), read_metrics(tmp_path / "two", "train")
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-3)


# ---------------------------------------------------------------- failures and the one writer, 2 gloo ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _data_error(rank: int, tmp: Path) -> dict[str, Any]:
    from reseg.data.base import UnreadableImageError
    from reseg.engine import distributed as d

    if rank == 1:  # rank 1 meets a damaged image of its shard; rank 0 waits in the next all-reduce
        raise UnreadableImageError("image file train/x.png is truncated")
    return {"sum": float(d.all_reduce_sum(torch.ones(1)).item())}


def _stuck(rank: int, tmp: Path) -> dict[str, Any]:
    from reseg.engine import distributed as d

    if rank == 1:  # alive but never joins the collective (until rank 0 has given up)
        deadline = time.monotonic() + 25
        while not (tmp / "rank0.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return {"waited": True}
    return {"sum": float(d.all_reduce_sum(torch.ones(1)).item())}


def _weights(rank: int, tmp: Path) -> dict[str, Any]:
    from reseg.data.balance import class_weights
    from reseg.data.camvid import CamVidDataset
    from reseg.engine import distributed as d

    ds = CamVidDataset(tmp / "data", "train")
    if rank != 0:  # another node: its own cache folder, and it must not read a single mask

        def no_reads(self: Any, i: int) -> Any:
            raise AssertionError(f"rank {rank} read mask {i}")

        CamVidDataset.read_mask = no_reads
    cache = tmp / f"cache{rank}"
    w = d.run_on_main(lambda: class_weights(ds, "median_frequency", cache, progress=False), "class weights")
    return {"weights": w.tolist()}


def _main_fails(rank: int, tmp: Path) -> dict[str, Any]:
    from reseg.engine import distributed as d

    def build() -> int:
        if rank == 0:
            raise ResegError("synthetic dataset root /nowhere (data.root) does not exist")
        return 1

    return {"built": d.main_first(build, "building the training set")}


def _collectives(rank: int, tmp: Path) -> dict[str, Any]:
    from reseg.engine import distributed as d

    summed = d.all_reduce_sum(torch.tensor([rank + 1.0, 10.0 * (rank + 1)]))
    return {
        "sum": summed.tolist(),
        "gathered": d.all_gather_object({"rank": rank, "sq": rank * rank}),
        "broadcast": d.broadcast_object(f"from rank {rank}"),
        "world": d.get_world_size(),
        "main": d.is_main(),
    }


def _leave_together(rank: int, tmp: Path) -> dict[str, Any]:
    import torch.distributed as dist

    from reseg.engine import distributed as d

    if rank == 0:  # rank 0 is still writing its last files when rank 1 is done
        time.sleep(1.5)
    arrived = time.time()
    d.cleanup(synchronise=True)
    return {"arrived": arrived, "left": time.time(), "joined": dist.is_initialized()}


SCENARIOS = {
    "collectives": _collectives,
    "leave_together": _leave_together,
    "data_error": _data_error,
    "stuck": _stuck,
    "weights": _weights,
    "main_fails": _main_fails,
}


def _rank_main(rank: int, mode: str, tmp: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    from reseg.engine import distributed as d

    d.init_distributed("cpu")
    try:
        with d.failures_end_the_job():
            out = SCENARIOS[mode](rank, Path(tmp))
    except Exception as err:
        out = {"error": type(err).__name__, "message": str(err)}
    try:
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        d.cleanup()


def run_two_ranks(mode: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, timeout_s: float = 8) -> list[dict]:
    """Two gloo processes running SCENARIOS[mode]; each rank's result or error."""
    import torch.multiprocessing as mp

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RESEG_DIST_TIMEOUT", str(timeout_s))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ctx = mp.spawn(_rank_main, args=(mode, str(tmp)), nprocs=2, join=False)
    deadline = time.monotonic() + 40
    try:
        while not ctx.join(timeout=0.5):
            assert time.monotonic() < deadline, f"{mode}: the ranks did not end"
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_collectives_over_two_gloo_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one all-reduce (and gather/broadcast) against the sums written out by hand."""
    r0, r1 = run_two_ranks("collectives", tmp_path, monkeypatch)
    for rank, r in enumerate((r0, r1)):
        assert r["sum"] == [1.0 + 2.0, 10.0 + 20.0]
        assert r["gathered"] == [{"rank": 0, "sq": 0}, {"rank": 1, "sq": 1}]
        assert r["broadcast"] == "from rank 0"
        assert r["world"] == 2 and r["main"] == (rank == 0)


def test_a_failed_rank_is_named_on_every_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1's bad sample: rank 1 says so, and rank 0 (left in an all-reduce) names rank 1 and its error."""
    r0, r1 = run_two_ranks("data_error", tmp_path, monkeypatch)
    assert r1 == {
        "error": "RankFailedError",
        "message": "rank 1 of 2 failed: bad data in its shard: image file train/x.png is truncated",
    }
    assert r0 == {
        "error": "PeerFailedError",
        "message": "rank 1 of 2 failed: bad data in its shard: image file train/x.png is truncated; rank 0 stops too",
    }


def test_a_silent_rank_ends_the_job_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank that never joins: the others' collective gives up after RESEG_DIST_TIMEOUT (3 s here, not 30 min)."""
    r0, r1 = run_two_ranks("stuck", tmp_path, monkeypatch, timeout_s=3)
    assert r0["error"] == "PeerFailedError", r0
    assert r0["message"].startswith("rank 0 of 2: a collective operation failed")
    assert "at most 3 s, RESEG_DIST_TIMEOUT" in r0["message"]
    assert r1 == {"waited": True}


def test_class_weights_are_computed_on_rank_0_and_broadcast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No shared filesystem needed: rank 1 reads no mask and writes no cache, and gets rank 0's weights."""
    from test_data_balance import _write

    _write(tmp_path / "data")
    r0, r1 = run_two_ranks("weights", tmp_path, monkeypatch)
    # by hand (see test_data_balance): freq sky 11/16, building 8/16, road 2/8; median 0.5
    expected = [0.5 / (11 / 16), 1.0, 0.0, 2.0] + [0.0] * 7
    assert r0["weights"] == pytest.approx(expected) and r1["weights"] == r0["weights"]
    assert len(list((tmp_path / "cache0").glob("class_stats_*.json"))) == 1
    assert not (tmp_path / "cache1").exists()


def test_rank_0_failing_first_is_named_on_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r0, r1 = run_two_ranks("main_fails", tmp_path, monkeypatch)
    assert r0 == {
        "error": "RankFailedError",
        "message": "rank 0 of 2 failed: synthetic dataset root /nowhere (data.root) does not exist",
    }
    assert r1 == {
        "error": "PeerFailedError",
        "message": "rank 0 of 2 failed (building the training set): synthetic dataset root /nowhere "
        "(data.root) does not exist; rank 1 stops too",
    }


def test_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEG_DIST_TIMEOUT", raising=False)
    assert dist_timeout().total_seconds() == 600
    monkeypatch.setenv("RESEG_DIST_TIMEOUT", "45.5")
    assert dist_timeout().total_seconds() == 45.5
    for bad in ("0", "-3", "abc", "inf"):
        monkeypatch.setenv("RESEG_DIST_TIMEOUT", bad)
        with pytest.raises(ResegError, match=f"RESEG_DIST_TIMEOUT='{bad}': expected a positive number of seconds"):
            dist_timeout()


def test_torchrun_names_the_rank_with_a_bad_sample(tmp_path: Path) -> None:
    """A damaged image in rank 1's first batch: the job ends at once, and the message names rank 1 and the file."""
    from train_utils import make_tiny_dataset, subprocess_env, tiny_config, write_config

    root = make_tiny_dataset(tmp_path / "data", train=16, val=4)
    first = next(iter(EpochBatchSampler(16, 2, seed=0, rank=1, world_size=2)))[0][0]
    bad = sorted((root / "train").iterdir())[first]
    bad.write_bytes(bad.read_bytes()[:40])
    cfg = write_config(tmp_path / "c.yaml", tiny_config(root, data={"batch_size": 2, "synthetic_size": [32, 48]}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "reseg",
            "train",
            str(cfg),
            "--work-dir",
            str(tmp_path / "w"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert f"error: rank 1 of 2 failed: bad data in its shard: image file {bad} is truncated" in run.stderr
    assert "Connection closed by peer" not in run.stderr  # rank 0 names rank 1's error (or is stopped by torchrun)


def test_ranks_that_finished_leave_the_group_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a run that ended well no rank tears its connections down while a peer is still at work."""
    r0, r1 = run_two_ranks("leave_together", tmp_path, monkeypatch)
    assert r1["arrived"] < r0["arrived"] - 1.0  # rank 1 got there first ...
    assert r1["left"] >= r0["arrived"]  # ... and waited for rank 0 before leaving
    assert not r0["joined"] and not r1["joined"]
