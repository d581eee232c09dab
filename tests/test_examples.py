"""The scripts in examples/ run as a user would run them, on tiny generated data (a few seconds each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from train_utils import REPO, subprocess_env

from reseg.engine.checkpoint import save_checkpoint
from reseg.packaging import package

EXAMPLES = REPO / "examples"
NAMES = ["background", "road", "car"]
H, W = 32, 48


def _run(script: str, *args: str | Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    from reseg.config import Config
    from reseg.models import build_model

    cfg = Config.from_dict(
        {
            "data": {"crop_size": [H, W]},
            "model": {
                "name": "reseg",
                "renet_layers": 1,
                "renet_hidden": 4,
                "decoder_filters": [4, 4],
                "encoder_width": 0.25,
                "num_classes": len(NAMES),
            },
        }
    )
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("model")
    save_checkpoint(
        {"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "class_names": NAMES}, tmp / "best.pt"
    )
    return package(tmp / "best.pt", tmp / "folder")


def test_predict_folder(model_folder, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"frame{i}.png"), _rgb(i))
    printed = _run("predict_folder.py", model_folder, images, tmp_path / "out", "--device", "cpu")
    for i in range(2):
        mask = cv2.imread(str(tmp_path / "out" / f"frame{i}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (H, W) and mask.max() < len(NAMES)
        assert cv2.imread(str(tmp_path / "out" / f"frame{i}_overlay.png")).shape == (H, W, 3)
    assert "wrote 2 mask(s)" in printed


def test_finetune_folder_dataset(model_folder, tmp_path):
    data = tmp_path / "data"
    for split, count in (("train", 4), ("val", 2)):
        (data / "images" / split).mkdir(parents=True)
        (data / "masks" / split).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(data / "images" / split / f"{split}{i}.png"), _rgb(10 + i))
            mask = np.zeros((H, W), np.uint8)
            mask[H // 2 :] = 1
            mask[H // 2 :, : W // 3] = 2
            cv2.imwrite(str(data / "masks" / split / f"{split}{i}.png"), mask)
    (data / "classes.yaml").write_text(f"names: {NAMES}\n")
    work = tmp_path / "run"
    printed = _run(
        "finetune_folder.py",
        data,
        "--init-from",
        model_folder,
        "--work-dir",
        work,
        "--iters",
        "2",
        "--batch",
        "2",
        "--crop",
        H,
        W,
        "--device",
        "cpu",
    )
    assert "training finished at iteration 2" in printed
    assert sorted(p.name for p in (work / "model").iterdir()) == [
        "README.md",
        "classes.json",
        "config.yaml",
        "model.safetensors",
    ]
    card = (work / "model" / "README.md").read_text()
    assert "fine-tuned from `folder`" in card and "- data: `folder`" in card


def test_video(model_folder, tmp_path):
    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(5):
        writer.write(_rgb(i))
    writer.release()
    out = tmp_path / "out.avi"
    printed = _run("video.py", model_folder, source, out, "--max-frames", "3", "--device", "cpu")
    assert "wrote 3 frame(s)" in printed
    video = cv2.VideoCapture(str(out))
    frames = 0
    while video.read()[0]:
        frames += 1
    video.release()
    assert frames == 3
