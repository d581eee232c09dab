"""`reseg video` and `reseg predict` end to end on a tiny model and a few 48x64 frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reseg.cli import main
from reseg.config import load_config
from reseg.engine.checkpoint import save_checkpoint
from reseg.errors import ResegError
from reseg.models import build_model
from reseg.predictor import Predictor
from reseg.video import (FrameSource, VideoOptions, benchmark_video, open_video_writer, run_video,
                         synthetic_frames, write_frames_video)

NAMES = ["sky", "road", "car", "tree", "person"]
H, W = 48, 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A real tiny ReSeg whose head is re-drawn so that its labels vary with the frame content."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.renet_hidden=4", "model.decoder_filters=[4,4]"])
    cfg.model.num_classes = len(NAMES)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("encoder"):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.1))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": NAMES}, path)
    return path


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor.from_checkpoint(ckpt, device="cpu")


def frame_folder(root: Path, n: int = 6, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(synthetic_frames(n, H, W, seed=seed)):
        cv2.imwrite(str(root / f"frame_{i + 1}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return root


def count_frames(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps = cap.get(cv2.CAP_PROP_FPS)
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, (frame.shape[1], frame.shape[0])
    cap.release()
    return n, fps, size


def test_video_file_keeps_frame_count_and_fps(ckpt, tmp_path, capsys):
    src = write_frames_video(synthetic_frames(7, H, W), tmp_path / "in.mp4", fps=12)
    out, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    rc = main(["video", str(src), "--checkpoint", str(ckpt), "--output", str(out), "--batch", "3",
               "--stats-json", str(stats_file), "--device", "cpu", "--no-progress"])
    assert rc == 0
    stats = json.loads(stats_file.read_text())
    assert stats["frames_in"] == stats["frames_out"] == 7 and stats["dropped"] == 0
    for key in ("fps_end_to_end", "fps_model", "flicker"):
        assert stats[key] is not None and stats[key] >= 0
    written = Path(stats["output"])
    assert written.exists() and stats["fourcc"] in ("avc1", "mp4v", "MJPG")
    n, fps, size = count_frames(written)
    assert n == 7 and fps == pytest.approx(12, abs=0.01) and size == (W, H)
    printed = capsys.readouterr().out
    assert "frames read 7, written 7, dropped 0" in printed and str(written) in printed


def test_frame_folder_masks_equal_predict_and_extra_outputs(ckpt, tmp_path):
    frames = frame_folder(tmp_path / "frames", n=5)
    masks_dir, out = tmp_path / "masks", tmp_path / "overlay.avi"
    rc = main(["video", str(frames), "--checkpoint", str(ckpt), "--output", str(out), "--fps", "7",
               "--masks-dir", str(masks_dir), "--mask-video", str(tmp_path / "masks.avi"), "--legend",
               "--side-by-side", "--output-size", "32", "24", "--batch", "2", "--device", "cpu", "--no-progress"])
    assert rc == 0
    n, fps, size = count_frames(out)
    assert n == 5 and fps == pytest.approx(7, abs=0.01) and size == (64, 24)  # two 32x24 panels
    assert count_frames(tmp_path / "masks.avi")[0] == 5
    pred_dir = tmp_path / "pred"
    assert main(["predict", str(frames), "--checkpoint", str(ckpt), "--out", str(pred_dir), "--batch", "2",
                 "--device", "cpu"]) == 0
    for i in range(1, 6):
        video_mask = cv2.imread(str(masks_dir / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        pred_mask = cv2.imread(str(pred_dir / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert video_mask.shape == (H, W) and np.array_equal(video_mask, pred_mask)
        assert (pred_dir / f"frame_{i}_color.png").exists() and (pred_dir / f"frame_{i}_overlay.jpg").exists()
    assert len({int(v) for v in np.unique(video_mask)}) > 1  # the tiny model does segment


def test_corrupt_frame_is_dropped_and_output_stays_readable(ckpt, tmp_path):
    frames = frame_folder(tmp_path / "frames", n=6)
    bad = frames / "frame_3.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    stats_file = tmp_path / "stats.json"
    rc = main(["video", str(frames), "--checkpoint", str(ckpt), "--output", str(tmp_path / "out.mp4"),
               "--stats-json", str(stats_file), "--batch", "2", "--device", "cpu", "--no-progress"])
    assert rc == 0
    stats = json.loads(stats_file.read_text())
    assert stats["dropped"] == 1 and stats["frames_in"] == 5 and stats["frames_out"] == 5
    assert stats["dropped_frames"] == [str(bad)]
    assert count_frames(stats["output"])[0] == 5


def test_smoothing_lowers_flicker(predictor, tmp_path):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i in range(8):  # a still scene with sensor noise: every label change is flicker
        noisy = (base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), noisy)
    raw = run_video(str(folder), predictor, None, VideoOptions(batch=4, progress=False, overlay=False))
    smooth = run_video(str(folder), predictor, None, VideoOptions(batch=4, smooth=0.8, progress=False,
                                                                  overlay=False))
    assert raw["frames_out"] == smooth["frames_out"] == 8
    assert raw["flicker"] > 0.005
    assert smooth["flicker"] < 0.5 * raw["flicker"]


def test_bad_inputs_name_the_input(ckpt, tmp_path, capsys):
    empty_file = tmp_path / "empty.mp4"
    empty_file.write_bytes(b"")
    zero = tmp_path / "zero.avi"
    writer, _, _ = open_video_writer(zero, 10, (W, H))
    writer.release()  # a valid container with no frames
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    all_bad = tmp_path / "allbad"
    all_bad.mkdir()
    (all_bad / "a.png").write_bytes(b"\x89PNG broken")
    for spec in (tmp_path / "missing.mp4", empty_file, zero, empty_dir, all_bad, tmp_path / "none_*.png"):
        with pytest.raises(ResegError) as err:
            FrameSource(str(spec))
        assert str(spec) in str(err.value)
    rc = main(["video", str(empty_file), "--checkpoint", str(ckpt), "--output", str(tmp_path / "o.mp4"),
               "--no-progress"])
    assert rc == 2 and str(empty_file) in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


class InterruptAfter:
    """Wraps a predictor and presses Ctrl-C during the n-th batch."""

    def __init__(self, inner: Predictor, batches: int) -> None:
        self.inner, self.left = inner, batches
        self.class_names, self.palette, self.num_classes = inner.class_names, inner.palette, inner.num_classes

    def preprocess(self, images):
        return self.inner.preprocess(images)

    def masks(self, x):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.inner.masks(x)


def test_ctrl_c_closes_a_playable_output(predictor, tmp_path):
    frames = frame_folder(tmp_path / "frames", n=8)
    stats = run_video(str(frames), InterruptAfter(predictor, 2), str(tmp_path / "out.mp4"),
                      VideoOptions(batch=2, progress=False))
    assert stats["interrupted"] and stats["frames_out"] == 4
    assert count_frames(stats["output"])[0] == 4


def test_writer_fallback_and_max_frames(predictor, tmp_path):
    writer, path, fourcc = open_video_writer(tmp_path / "x.avi", 5, (W, H))
    writer.release()
    assert fourcc == "MJPG" and path.suffix == ".avi"
    writer, path, fourcc = open_video_writer(tmp_path / "y.mp4", 5, (W, H))
    writer.release()
    assert (fourcc, path.suffix) in (("avc1", ".mp4"), ("mp4v", ".mp4"), ("MJPG", ".avi"))
    frames = frame_folder(tmp_path / "frames", n=5)
    stats = run_video(str(frames), predictor, str(tmp_path / "z.mp4"), VideoOptions(max_frames=3, progress=False))
    assert stats["frames_in"] == stats["frames_out"] == 3 and count_frames(stats["output"])[0] == 3


def test_benchmark_helper_reports_both_throughputs(predictor, tmp_path):
    stats = benchmark_video(predictor, size=(H, W), frames=6, batch=3, workdir=tmp_path)
    assert stats["frames_out"] == 6 and stats["fps_model_only"] > 0 and stats["ratio"] > 0


def test_predict_inputs_folders_globs_and_unreadable_images(ckpt, tmp_path, capsys):
    from reseg.data.base import collect_images

    frames = frame_folder(tmp_path / "data" / "city", n=2)
    (tmp_path / "data" / "top.png").write_bytes((frames / "frame_1.png").read_bytes())
    (tmp_path / "data" / "broken.png").write_bytes(b"\x89PNG truncated")
    items = collect_images([str(tmp_path / "data"), str(frames / "*.png")])
    rels = [str(rel) for _, rel in items]
    assert rels == ["broken", "city/frame_1", "city/frame_2", "top", "frame_1", "frame_2"]
    with pytest.raises(ResegError, match="input not found"):
        collect_images([str(tmp_path / "nope.png")])
    with pytest.raises(ResegError, match="matches no images"):
        collect_images([str(tmp_path / "nothing_*.png")])
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "data"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--overlay-format", "png", "--device", "cpu", "--amp", "--channels-last"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and str(out.resolve()) in captured.out
    for rel in ("city/frame_1", "city/frame_2", "top"):
        mask = cv2.imread(str(out / f"{rel}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (H, W) and mask.max() < len(NAMES)
        assert (out / f"{rel}_color.png").exists() and (out / f"{rel}_overlay.png").exists()
    assert np.array_equal(cv2.imread(str(out / "top.png")), cv2.imread(str(out / "city/frame_1.png")))
