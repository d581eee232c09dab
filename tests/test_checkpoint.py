"""Checkpoints survive anything: interrupted writes leave the old file loadable, and a training process
killed with SIGKILL and resumed ends bit-identical to one that never stopped."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from train_utils import make_tiny_dataset, read_metrics, subprocess_env, tiny_config, write_config

from reseg.engine import checkpoint as ckpt_mod
from reseg.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def state(i: int, size: int = 10) -> dict:
    return {"model": {"w": torch.full((size,), float(i))}, "config": {}, "class_names": ["a"], "iteration": i}


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(state(1), path)

    def half_write(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04" + b"\0" * 1000)  # a partial zip stream, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", half_write)
    from reseg.io import DiskFullError

    with pytest.raises(DiskFullError, match=r"no space left on the device while writing .*last\.pt \(.* free\)"):
        save_checkpoint(state(2), path)
    monkeypatch.undo()
    loaded = load_checkpoint(path)
    assert loaded["iteration"] == 1 and loaded["format"] == "reseg"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


KILL_INSIDE_SAVE = textwrap.dedent("""
    # Saves checkpoint 1, then dies with SIGKILL inside the save of checkpoint 2, at the named call.
    import os, signal, sys, torch
    from reseg.engine.checkpoint import save_checkpoint
    path, where = sys.argv[1], sys.argv[2]
    def state(i):
        return {"model": {"w": torch.full((1000,), float(i))}, "config": {}, "class_names": ["a"], "iteration": i}
    save_checkpoint(state(1), path)
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(os, where, die)
    save_checkpoint(state(2), path)
    print("the save returned", flush=True)
""")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_kill_inside_save_keeps_the_previous_checkpoint(tmp_path: Path, where: str) -> None:
    """SIGKILL once checkpoint 2 is fully written but not yet synced (fsync) or renamed (replace)."""
    path = tmp_path / "last.pt"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_INSIDE_SAVE, str(path), where],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "the save returned" not in proc.stdout
    loaded = load_checkpoint(path)
    assert loaded["iteration"] == 1 and torch.equal(loaded["model"]["w"], torch.full((1000,), 1.0))
    left = [p for p in tmp_path.iterdir() if p != path]
    assert len(left) == 1 and left[0].name.startswith(".")  # the half-finished save: hidden, never last.pt
    assert load_checkpoint(left[0])["iteration"] == 2  # it was complete: the kill came after the write


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupt_inside_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C (or any error) at the same two points: the previous file is intact and no temporary is left."""
    path = tmp_path / "last.pt"
    save_checkpoint(state(1), path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(state(2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_checkpoint_gets_the_users_umask(tmp_path: Path) -> None:
    """Not 0600 as tempfile.mkstemp makes it."""
    import stat

    old = os.umask(0o027)
    try:
        save_checkpoint(state(1), tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o640


def test_damaged_or_foreign_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt is not a PyTorch checkpoint \(it is text, starting 'not a c"):
        load_checkpoint(bad)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"weights": [1.0]}))
    with pytest.raises(CheckpointError, match=r"pickled\.pt is not a PyTorch checkpoint \(it is a plain Python pickle"):
        load_checkpoint(pickled)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(state(1), truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"truncated\.pt \(300 bytes\) is truncated or damaged"):
        load_checkpoint(truncated)
    for legacy in (False, True):  # both torch.save formats, holding an object weights_only refuses to build
        code = tmp_path / f"code_{legacy}.pt"
        torch.save({"format": "reseg", "hook": Path("x")}, code, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(code)
        message = str(err.value)
        assert code.name in message and "weights_only=True" in message, message
        assert "In PyTorch 2.6" not in message and "truncated or damaged" not in message, message
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a reseg checkpoint"):
        load_checkpoint(foreign)


# ---------------------------------------------------------------- kill -9 and resume

LAUNCHER = textwrap.dedent("""
    # Slows each sample down so the test can kill the run in the middle; nothing else changes.
    import sys, time
    from reseg.engine.reproducibility import SeededView
    _get = SeededView.__getitem__
    def slow(self, item):
        time.sleep(float(sys.argv[1]))
        return _get(self, item)
    SeededView.__getitem__ = slow
    from reseg.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_kill_9_and_resume_is_bit_identical(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path / "data")
    cfg = tiny_config(
        root,
        data={"num_workers": 1},
        train={"max_iters": 16, "checkpoint_interval": 3, "val_interval": 8, "log_interval": 1},
    )
    config = write_config(tmp_path / "tiny.yaml", cfg)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = subprocess_env()

    def cmd(delay: float, work: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(launcher),
            str(delay),
            "train",
            str(config),
            "--work-dir",
            str(work),
            "--no-progress",
            *extra,
        ]

    ref, cut = tmp_path / "uninterrupted", tmp_path / "killed"
    done = subprocess.run(cmd(0.0, ref), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(cmd(0.03, cut), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    try:
        while time.time() < deadline:  # kill once iteration 10 is logged: last.pt is at 9, mid-epoch
            metrics = cut / "metrics.jsonl"
            if metrics.exists() and any(r["iter"] >= 10 for r in read_metrics(cut, "train")):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(cut / "last.pt")["iteration"]
    assert 9 <= killed_at < 16
    (cut / ".last.pt.stale.tmp").write_bytes(b"half a checkpoint")  # what a kill inside save leaves

    resumed = subprocess.run(
        cmd(0.0, cut, "--resume"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (cut / ".last.pt.stale.tmp").exists()
    assert f"resumed from {cut / 'last.pt'} at iteration {killed_at}" in (cut / "train.log").read_text()

    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["iteration"] == b["iteration"] == 16
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert all(torch.equal(v[n], b["optimizer"]["state"][k][n]) for n in v if isinstance(v[n], torch.Tensor))
    assert a["best_metric"] == b["best_metric"]
    assert load_checkpoint(ref / "best.pt")["iteration"] == load_checkpoint(cut / "best.pt")["iteration"]

    def strip(recs):
        drop = ("time", "img_per_s", "data_wait")
        return [{k: v for k, v in r.items() if k not in drop} for r in recs]

    assert strip(read_metrics(ref)) == strip(read_metrics(cut))  # same losses, lrs and val metrics, once each


# ---------------------------------------------------------------- empty and truncated files, in every command


def _real_checkpoint(path: Path) -> Path:
    from reseg.config import load_config
    from reseg.models import build_model

    cfg = load_config(None, ["model.renet_hidden=4", "model.decoder_filters=[4, 4]", "model.encoder_width=0.125"])
    save_checkpoint(
        {"config": cfg.to_dict(), "model": build_model(cfg, 3).state_dict(), "class_names": ["a", "b", "c"]}, path
    )
    return path


def _damage(tmp_path: Path, kind: str) -> Path:
    good = _real_checkpoint(tmp_path / "good.pt")
    data = good.read_bytes()
    bad = tmp_path / f"{kind}.pt"
    bad.write_bytes({"empty": b"", "half": data[: len(data) // 2], "tail_cut": data[:-10]}[kind])
    good.unlink()
    return bad


@pytest.mark.parametrize("kind", ["empty", "half", "tail_cut"])
def test_load_checkpoint_empty_or_truncated_is_one_named_line(tmp_path: Path, kind: str) -> None:
    bad = _damage(tmp_path, kind)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    msg = str(err.value)
    assert str(bad) in msg and "\n" not in msg
    assert (
        ("empty (0 bytes)" in msg)
        if kind == "empty"
        else ("truncated" in msg and f"({bad.stat().st_size} bytes)" in msg)
    )


@pytest.mark.parametrize("kind", ["empty", "half", "tail_cut"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "video", "export"])
def test_every_command_names_an_empty_or_truncated_checkpoint(tmp_path: Path, capsys, kind: str, command: str) -> None:
    import numpy as np
    from PIL import Image

    from reseg.cli import main

    bad = _damage(tmp_path, kind)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.full((24, 32, 3), 40 * i, np.uint8)).save(frames / f"f{i}.png")
    args = {
        "evaluate": ["evaluate", "--checkpoint", str(bad), "--out", str(tmp_path / "eval")],
        "predict": ["predict", "--checkpoint", str(bad), str(frames), "--out", str(tmp_path / "pred")],
        "video": ["video", str(frames), "--checkpoint", str(bad), "--output", str(tmp_path / "v.mp4"), "--no-progress"],
        "export": ["export", "--checkpoint", str(bad), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
    }
    assert main(args[command]) == 2  # a ResegError, not the crash path
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint ") and str(bad) in err[0], err
    assert "Traceback" not in err[0] and "IndexError" not in err[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "v.mp4").exists()


def test_init_from_starts_from_the_weights_and_refuses_another_architecture(tmp_path) -> None:
    """train.init_from loads every tensor by name and shape; a different class count is a named error."""
    import pytest
    import torch

    from reseg.config import load_config
    from reseg.engine.checkpoint import CheckpointError, init_weights, save_checkpoint
    from reseg.models import build_model

    cfg = load_config(None, ["model.renet_hidden=4", "model.decoder_filters=[4,4]"])
    source = build_model(cfg, 5)
    path = tmp_path / "pre.pt"
    save_checkpoint(
        {
            "config": cfg.to_dict(),
            "model": {f"module.{k}": v for k, v in source.state_dict().items()},
            "class_names": [str(i) for i in range(5)],
        },
        path,
    )
    target = build_model(cfg, 5)
    init_weights(target, path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    with pytest.raises(CheckpointError, match=r"train.init_from .*classifier.weight: \(5, "):
        init_weights(build_model(cfg, 7), path)


def test_read_checkpoint_gives_the_config_classes_and_the_model(tmp_path) -> None:
    """The one reading for inference and export: class count and no weight download set in the config, the
    model rebuilt with the checkpoint's weights (saved from a DDP wrapper here: prefixes stripped), in eval
    mode; a checkpoint without classes is a named error."""
    import torch

    from reseg.engine.checkpoint import read_checkpoint

    path = _real_checkpoint(tmp_path / "plain.pt")
    state = load_checkpoint(path)
    state["config"]["model"]["encoder_weights"] = "imagenet"
    state["model"] = {f"module.{k}": v for k, v in state["model"].items()}
    save_checkpoint(state, path)
    ckpt = read_checkpoint(path)
    assert ckpt.path == path and ckpt.class_names == ["a", "b", "c"]
    assert ckpt.config.model.num_classes == 3 and ckpt.config.model.encoder_weights is None
    model = ckpt.build_model()
    assert not model.training
    saved = {k.removeprefix("module."): v for k, v in state["model"].items()}
    got = model.state_dict()
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved)
    state["class_names"] = []
    save_checkpoint(state, tmp_path / "no_classes.pt")
    with pytest.raises(CheckpointError, match=r"no_classes\.pt has an empty class list"):
        read_checkpoint(tmp_path / "no_classes.pt")
