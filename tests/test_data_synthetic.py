"""Synthetic street scenes: layout, determinism, class coverage, not a colour lookup, video, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from reseg.cli import main
from reseg.config import Config
from reseg.data import build_dataset
from reseg.data.classes import CAMVID
from reseg.data.synthetic import get_difficulty, make_street, make_synthetic, make_synthetic_video, synth_sample
from reseg.errors import ResegError

SIZE = (48, 64)


def test_layout_and_loader(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "synth", train=3, val=2, test=1, seed=0, size=SIZE)
    assert root == tmp_path / "synth"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        assert len(list((root / split).glob("*.png"))) == n == len(list((root / f"{split}annot").glob("*.png")))
        assert len((root / f"{split}.txt").read_text().splitlines()) == n
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["seed"] == 0 and meta["sizes"] == {"train": 3, "val": 2, "test": 1} and meta["size"] == list(SIZE)
    label = cv2.imread(str(root / "trainannot" / "train_00000.png"), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.shape == SIZE and label.max() <= 11
    image = cv2.imread(str(root / "train" / "train_00000.png"))
    assert image.shape == (*SIZE, 3)
    cfg = Config()
    cfg.data.dataset, cfg.data.root = "camvid", str(root)
    ds = build_dataset(cfg, "val", transform=None)
    assert len(ds) == 2 and ds.classes is CAMVID and ds[0]["mask"].shape == SIZE
    # no temporary folders left behind
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", train=2, val=0, test=0, seed=7, size=SIZE)
    b = make_synthetic(tmp_path / "b", train=2, val=0, test=0, seed=7, size=SIZE, workers=2)
    c = make_synthetic(tmp_path / "c", train=2, val=0, test=0, seed=8, size=SIZE)
    for name in ("train/train_00001.png", "trainannot/train_00001.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train/train_00001.png").read_bytes() != (c / "train/train_00001.png").read_bytes()
    img1, lab1 = synth_sample(3, "val", 5, SIZE)
    img2, lab2 = synth_sample(3, "val", 5, SIZE)
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2)
    assert not np.array_equal(synth_sample(3, "train", 5, SIZE)[1], lab1)  # splits differ


def test_regenerate_replaces_only_synthetic_folders(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", train=1, val=1, test=1, size=SIZE)
    make_synthetic(root, train=2, val=0, test=0, size=SIZE)
    assert len(list((root / "train").iterdir())) == 2 and not list((root / "val").iterdir())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    with pytest.raises(ResegError, match="refusing to overwrite"):
        make_synthetic(tmp_path / "mine", train=1, val=0, test=0, size=SIZE)
    assert (tmp_path / "mine" / "precious.txt").is_file()


def test_scenes_have_the_classes_and_colour_is_not_enough() -> None:
    size = (90, 120)
    labels, images = [], []
    for i in range(14):
        img, lab = synth_sample(0, "train", i, size)
        labels.append(lab)
        images.append(img)
    lab = np.stack(labels)
    img = np.stack(images).reshape(-1, 3).astype(np.float32)
    present = set(np.unique(lab).tolist())
    assert set(range(11)) <= present, f"missing classes: {set(range(11)) - present}"
    assert present <= set(range(12))
    # colour alone must not decide the class: even the best colour lookup (the majority class of each of
    # 4096 colour bins, fitted on these very pixels) stays far from perfect
    flat = lab.reshape(-1)
    keep = flat < 11
    q = (img[keep] // 16).astype(np.int64)
    bins = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
    table = np.zeros((4096, 11), np.int64)
    np.add.at(table, (bins, flat[keep]), 1)
    acc = table.max(1).sum() / keep.sum()
    assert acc < 0.75, f"a colour lookup reaches {acc:.2f} pixel accuracy"


def test_easy_difficulty_makes_small_classes_bigger_and_the_camera_clean() -> None:
    """Same streets (same seed), but the thin and rare classes cover more pixels and the camera has no
    haze, blur, vignette, roll or bonnet, and less noise."""
    size = (90, 120)
    small = [2, 6, 7, 9, 10]  # Pole, SignSymbol, Fence, Pedestrian, Bicyclist
    share = {
        level: np.mean(
            [np.isin(synth_sample(0, "train", i, size, difficulty=level)[1], small).mean() for i in range(24)]
        )
        for level in ("standard", "easy")
    }
    assert share["easy"] > 1.4 * share["standard"], share
    effects = ("haze", "blur", "vignette", "roll", "hood")
    for level, want_effects in (("standard", True), ("easy", False)):
        lights = [
            make_street(np.random.default_rng(i), size, difficulty=get_difficulty(level)).light for i in range(40)
        ]
        assert any(getattr(L, e) for L in lights for e in effects) == want_effects, level
        assert max(L.noise for L in lights) <= get_difficulty(level).max_noise
    assert get_difficulty("easy").max_noise < get_difficulty("standard").max_noise
    _, lab_s = synth_sample(0, "train", 0, size)
    _, lab_e = synth_sample(0, "train", 0, size, difficulty="easy")
    assert not np.array_equal(lab_s, lab_e)
    with pytest.raises(ResegError, match="difficulty 'hard'.*standard, easy"):
        synth_sample(0, "train", 0, size, difficulty="hard")


def test_difficulty_is_recorded_and_a_mismatch_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_synthetic(tmp_path / "easy", train=2, val=1, test=0, size=SIZE, difficulty="easy")
    assert json.loads((root / "synthetic.json").read_text())["difficulty"] == "easy"
    cfg = Config()
    cfg.data.dataset, cfg.data.root, cfg.data.synthetic_sizes = "synthetic", str(root), [2, 1, 0]
    cfg.data.synthetic_size, cfg.data.crop_size = list(SIZE), list(SIZE)
    with caplog.at_level("WARNING", logger="reseg.data"):
        build_dataset(cfg, "train", generate=True)
    assert "data.synthetic_difficulty asks for standard, it has easy" in caplog.text
    assert "--difficulty standard" in caplog.text  # a config not read from a file: every key counts as asked
    caplog.clear()
    cfg.data.synthetic_difficulty = "easy"
    with caplog.at_level("WARNING", logger="reseg.data"):
        assert len(build_dataset(cfg, "train", generate=True)) == 2
    assert "difficulty" not in caplog.text


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "synthetic dataset" in r.getMessage()
    ]


def test_mismatch_warned_once_only_for_what_the_config_gives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    """Once per run (train and val splits, twice built), only for keys the config file gives, and its command
    makes what the config asks for while keeping the settings the config leaves to their defaults."""
    import shlex

    import yaml

    from reseg.config import load_config

    root = make_synthetic(tmp_path / "synth", train=2, val=1, test=0, seed=3, size=SIZE)
    data = {"dataset": "synthetic", "root": str(root), "crop_size": list(SIZE), "synthetic_seed": 3}
    quiet = tmp_path / "quiet.yaml"  # sizes, image size, difficulty left to their defaults (300/60/60, 360x480)
    quiet.write_text(yaml.safe_dump({"data": data}))
    with caplog.at_level("WARNING", logger="reseg.data"):
        build_dataset(load_config(quiet), "train", generate=True)
    assert _warnings(caplog) == []

    asks = tmp_path / "asks.yaml"
    asks.write_text(yaml.safe_dump({"data": {**data, "synthetic_sizes": [3, 1, 1], "synthetic_difficulty": "easy"}}))
    cfg = load_config(asks)
    with caplog.at_level("WARNING", logger="reseg.data"):
        build_dataset(cfg, "train", generate=True)
        build_dataset(cfg, "val", generate=True)
        build_dataset(cfg, "val")  # not a generating command (evaluate, benchmark): never warns
    (message,) = _warnings(caplog)
    assert "data.synthetic_sizes asks for [3, 1, 1], it has [2, 1, 0]" in message
    assert "data.synthetic_difficulty asks for easy, it has standard" in message
    assert "data.synthetic_size asks" not in message and "data.synthetic_seed" not in message
    command = message.split("To make it as the config asks: ")[1]
    assert command.startswith("reseg make-synthetic ")
    assert main(shlex.split(command)[1:]) == 0  # regenerate exactly as suggested
    meta = json.loads((root / "synthetic.json").read_text())
    assert (meta["sizes"], meta["difficulty"], meta["seed"], meta["size"]) == (
        {"train": 3, "val": 1, "test": 1},
        "easy",
        3,
        list(SIZE),
    )  # the size the config left alone is kept
    caplog.clear()
    with caplog.at_level("WARNING", logger="reseg.data"):
        assert len(build_dataset(cfg, "train", generate=True)) == 3
    assert _warnings(caplog) == []
    capsys.readouterr()


def test_generated_dataset_gets_the_users_umask(tmp_path: Path) -> None:
    """Not 0700 as tempfile.mkdtemp makes the root: the folder and its files follow the umask."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        root = make_synthetic(tmp_path / "synth", train=1, val=0, test=0, size=SIZE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "train").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "synthetic.json").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_build_dataset_generates_when_absent(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = Config()
    cfg.data.dataset, cfg.data.root = "synthetic", str(tmp_path / "gen")
    cfg.data.synthetic_sizes, cfg.data.synthetic_seed = [2, 1, 1], 3
    cfg.data.crop_size = [32, 48]
    ds = build_dataset(cfg, "train", generate=True)
    assert len(ds) == 2 and (tmp_path / "gen" / "synthetic.json").is_file()
    assert "generating" in capsys.readouterr().out
    sample = ds[0]
    assert tuple(sample["image"].shape) == (3, 32, 48)
    mtime = (tmp_path / "gen" / "synthetic.json").stat().st_mtime_ns
    assert len(build_dataset(cfg, "val", generate=True)) == 1
    assert (tmp_path / "gen" / "synthetic.json").stat().st_mtime_ns == mtime  # not generated twice


@pytest.mark.parametrize("ext", [".avi", ".mp4"])
def test_video(tmp_path: Path, ext: str) -> None:
    path = make_synthetic_video(
        tmp_path / f"drive{ext}",
        frames=6,
        size=SIZE,
        fps=10,
        seed=1,
        frames_dir=tmp_path / "frames",
        labels_dir=tmp_path / "labels",
    )
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 6 and frames[0].shape == (*SIZE, 3)
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 6
    labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "labels").glob("*.png"))]
    assert len(labels) == 6 and not np.array_equal(labels[0], labels[-1])  # the camera moves


def test_make_synthetic_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    rc = main(
        [
            "make-synthetic",
            "--out",
            str(out),
            "--train",
            "2",
            "--val",
            "1",
            "--test",
            "0",
            "--seed",
            "4",
            "--size",
            "48",
            "64",
        ]
    )
    assert rc == 0 and str(out) in capsys.readouterr().out
    assert len(list((out / "train").glob("*.png"))) == 2


def test_browse_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_synthetic(tmp_path / "s", train=3, val=0, test=0, size=SIZE)
    grid = tmp_path / "grid.png"
    rc = main(
        [
            "browse",
            "--dataset",
            "synthetic",
            "--data-root",
            str(root),
            "--split",
            "train",
            "--out",
            str(grid),
            "-n",
            "3",
            "--cols",
            "2",
            "--set",
            "data.crop_size=[32,40]",
        ]
    )
    assert rc == 0 and str(grid) in capsys.readouterr().out
    img = cv2.imread(str(grid))
    from reseg.viz import legend_panel

    legend_w = legend_panel(CAMVID.names, CAMVID.palette, img.shape[0]).shape[1]
    # two columns of (image above label) tiles, 4 px gaps, then the class legend
    assert img.shape[1] == 2 * (40 + 4) + legend_w and img.shape[0] == 2 * (2 * 32 + 4)


def test_regenerating_swaps_the_whole_set_and_a_failure_keeps_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import reseg.io as io_mod

    out = make_synthetic(tmp_path / "s", train=2, val=1, test=0, seed=0, size=SIZE)
    old = (out / "train" / "train_00000.png").read_bytes()
    real_replace = os.replace
    calls = {"n": 0}

    def failing_second_rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # the new set moving in
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", failing_second_rename)
    with pytest.raises(OSError):
        make_synthetic(out, train=3, val=1, test=0, seed=1, size=SIZE)
    monkeypatch.undo()
    assert (out / "train" / "train_00000.png").read_bytes() == old and len(list((out / "train").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no half-made or set-aside folder left
    make_synthetic(out, train=3, val=1, test=0, seed=1, size=SIZE)
    assert len(list((out / "train").iterdir())) == 3
    assert (out / "train" / "train_00000.png").read_bytes() != old
