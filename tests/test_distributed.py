"""Data order for DDP and resume, and 2 gloo processes matching one process on the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reseg.engine.distributed import EpochBatchSampler, ShardSampler, sample_seed


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
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "reseg", "train", str(two), "--work-dir", str(tmp_path / "two"), "--no-progress"],
                         cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=180)
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
        assert x["IoU"] == pytest.approx(y["IoU"], abs=1e-6, nan_ok=True)
    la, lb = read_metrics(tmp_path / "one", "train"), read_metrics(tmp_path / "two", "train")
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-3)
