"""`reseg video` on a tiny model and a few 48x64 frames: counts, order, outputs, decoders, the device-side
overlay, bounded queues, --realtime, stage timings, and the refusals that protect the user's files."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import reseg.video.pipeline as pipeline_mod
import reseg.video.writer as writer_mod
from reseg.benchmark.video import benchmark_video
from reseg.cli import main
from reseg.config import load_config
from reseg.engine.checkpoint import save_checkpoint
from reseg.errors import ResegError
from reseg.models import build_model
from reseg.predictor import Predictor
from reseg.video import (
    ArraySource,
    FrameSource,
    VideoFile,
    VideoOptions,
    codec_candidates,
    lut_tensor,
    open_source,
    overlay_tensor,
    run_video,
    write_stats_json,
)
from reseg.video.sources import TorchCodecSource
from reseg.video.writer import write_video
from reseg.viz import overlay, palette_lut

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


class FakePredictor:
    """Labels from the red channel in bands (so masks vary with content), optionally slow."""

    def __init__(self, sleep: float = 0.0, on_call=None) -> None:
        self.device = torch.device("cpu")
        self.class_names, self.palette, self.num_classes = NAMES, None, len(NAMES)
        self.sleep, self.on_call, self.calls = sleep, on_call, 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        if self.sleep:
            time.sleep(self.sleep)
        red = x[:, 0]
        return torch.stack([-((red - c) ** 2) for c in torch.linspace(-2, 2, len(NAMES))], 1)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(1)


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Cheap test clips: a moving red disc and a grey band over noise, different in every frame (rendering
    synthetic streets would cost far more per frame than these tests need)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        img = (base.astype(np.int16) + rng.integers(-12, 13, size=base.shape)).clip(0, 255).astype(np.uint8)
        cx = int((0.2 + 0.6 * (i / max(1, n - 1))) * width)
        cv2.circle(img, (cx, height // 2), max(2, height // 5), (230, 40, 40), -1)
        cv2.rectangle(img, (0, int(height * 0.7)), (width - 1, height - 1), (90, 90, 90), -1)
        frames.append(img)
    return frames


def frame_folder(root: Path, n: int = 6, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(synthetic_frames(n, H, W, seed=seed)):
        cv2.imwrite(str(root / f"frame_{i + 1}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return root


def read_video(path: str | Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def count_frames(path: str | Path) -> int:
    return len(read_video(path)[0])


def torchcodec_reason() -> str | None:
    """None when torchcodec decodes here, else why not."""
    import importlib.util

    if importlib.util.find_spec("torchcodec") is None:
        return "torchcodec is not installed (`pip install 'reseg[video]'`)"
    return None


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if "partial" in p.name]


# ---------------------------------------------------------------------- counts, outputs, summary


def test_video_file_keeps_frame_count_fps_and_reports_stages(ckpt, tmp_path, capsys):
    src = write_video(synthetic_frames(7, H, W), tmp_path / "in.mp4", fps=12)
    out, stats_file, masks = tmp_path / "out.mp4", tmp_path / "stats.json", tmp_path / "masks"
    rc = main(
        [
            "video",
            str(src),
            "--checkpoint",
            str(ckpt),
            "--output",
            str(out),
            "--batch",
            "3",
            "--masks-dir",
            str(masks),
            "--stats-json",
            str(stats_file),
            "--device",
            "cpu",
            "--no-progress",
            "--decoder",
            "opencv",
        ]
    )
    assert rc == 0
    stats = json.loads(stats_file.read_text())
    assert stats["frames_in"] == stats["frames_out"] == 7 and stats["dropped"] == 0 and stats["stale_dropped"] == 0
    assert stats["decoder"] == "opencv"
    assert stats["fps_end_to_end"] == pytest.approx(7 / stats["seconds"], rel=1e-6)
    timing = stats["timing"]
    inference = sum(timing["stages"][s]["seconds"] for s in ("h2d", "preprocess", "model", "postprocess", "d2h"))
    assert stats["fps_model"] == pytest.approx(7 / inference, rel=1e-3)
    assert stats["fps_model"] >= stats["fps_end_to_end"]  # the inference thread's time is part of the wall time
    for thread, info in timing["threads"].items():  # a thread's stages are parts of its busy time
        own = sum(s["seconds"] for s in timing["stages"].values() if s["thread"] == thread)
        assert own <= info["busy_seconds"] + 1e-6 and info["busy_seconds"] <= stats["seconds"]
    assert set(timing["stages"]) == {"decode", "h2d", "preprocess", "model", "postprocess", "d2h", "overlay", "encode"}
    assert timing["bound"]["thread"] == max(timing["threads"], key=lambda t: timing["threads"][t]["busy_seconds"])
    # flicker is the mean share of pixels that change label between consecutive frames
    m = [cv2.imread(str(masks / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED) for i in range(7)]
    assert stats["flicker"] == pytest.approx(np.mean([(a != b).mean() for a, b in zip(m, m[1:])]), abs=1e-9)
    written = Path(stats["output"])
    assert written == out.with_suffix(written.suffix) and written.exists() and no_partials(tmp_path)
    frames, fps = read_video(written)
    assert len(frames) == 7 and fps == pytest.approx(12, abs=0.01) and frames[0].shape[:2] == (H, W)
    printed = capsys.readouterr().out
    assert "frames read 7, written 7, dropped 0" in printed and str(written) in printed
    assert f"bound by {timing['bound']['stage']}" in printed and "decoder opencv" in printed


def test_frame_folder_masks_equal_predict_and_extra_outputs(ckpt, tmp_path):
    frames = frame_folder(tmp_path / "frames", n=5)
    masks_dir, out = tmp_path / "masks", tmp_path / "overlay.avi"
    rc = main(
        [
            "video",
            str(frames),
            "--checkpoint",
            str(ckpt),
            "--output",
            str(out),
            "--fps",
            "7",
            "--masks-dir",
            str(masks_dir),
            "--mask-video",
            str(tmp_path / "masks.avi"),
            "--legend",
            "--side-by-side",
            "--output-size",
            "24",
            "32",
            "--batch",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    video, fps = read_video(out)
    assert len(video) == 5 and fps == pytest.approx(7, abs=0.01) and video[0].shape[:2] == (24, 64)  # 2 panels
    assert count_frames(tmp_path / "masks.avi") == 5
    pred_dir = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(frames),
                "--checkpoint",
                str(ckpt),
                "--out",
                str(pred_dir),
                "--batch",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for i in range(1, 6):
        video_mask = cv2.imread(str(masks_dir / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        pred_mask = cv2.imread(str(pred_dir / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert video_mask.shape == (H, W) and np.array_equal(video_mask, pred_mask)
    assert len({int(v) for v in np.unique(video_mask)}) > 1  # the tiny model does segment


def test_smoothing_lowers_flicker(predictor, tmp_path):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i in range(8):  # a still scene with sensor noise: every label change is flicker
        noisy = (base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), noisy)
    raw = run_video(str(folder), predictor, None, VideoOptions(batch=4, progress=False, overlay=False))
    smooth = run_video(str(folder), predictor, None, VideoOptions(batch=4, smooth=0.8, progress=False, overlay=False))
    assert raw["flicker"] > 0.005
    assert smooth["flicker"] < 0.5 * raw["flicker"]


# ---------------------------------------------------------------------- damaged inputs


def test_corrupt_image_frame_is_dropped_with_its_index(ckpt, tmp_path):
    frames = frame_folder(tmp_path / "frames", n=6)
    bad = frames / "frame_3.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    stats_file = tmp_path / "stats.json"
    rc = main(
        [
            "video",
            str(frames),
            "--checkpoint",
            str(ckpt),
            "--output",
            str(tmp_path / "out.mp4"),
            "--stats-json",
            str(stats_file),
            "--batch",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    stats = json.loads(stats_file.read_text())
    assert stats["dropped"] == 1 and stats["frames_in"] == 5 and stats["frames_out"] == 5
    assert stats["dropped_frames"] == [{"index": 2, "name": "frame_3", "file": str(bad)}]
    assert count_frames(stats["output"]) == 5


@pytest.mark.parametrize("decoder", ["opencv", "torchcodec"])
def test_truncated_video_counts_and_names_every_lost_frame(decoder, tmp_path):
    if decoder == "torchcodec" and torchcodec_reason():
        pytest.skip(torchcodec_reason())
    full = write_video(synthetic_frames(20, H, W), tmp_path / "full.avi", fps=10)
    assert full.suffix == ".avi"
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header still promises 20 frames
    try:
        src = open_source(str(cut), decoder)
    except ResegError as err:  # torchcodec installed without FFmpeg's libraries
        pytest.skip(str(err))
    decoded = len(read_video(cut)[0])
    assert 0 < decoded < 20
    stats = run_video(src, FakePredictor(), str(tmp_path / "out.avi"), VideoOptions(progress=False, batch=3))
    lost = list(range(decoded, 20))
    assert stats["frames_in"] == decoded and stats["dropped"] == 20 - decoded
    assert stats["dropped_frames"] == [{"index": i, "name": f"frame_{i:06d}"} for i in lost]
    assert stats["frames_out"] == decoded == count_frames(stats["output"])


def test_bad_inputs_name_the_input(ckpt, tmp_path, capsys):
    empty_file = tmp_path / "empty.mp4"
    empty_file.write_bytes(b"")
    zero = VideoFile(tmp_path / "zero.avi", 10, (W, H))
    zero.commit()  # a valid container with no frames
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    all_bad = tmp_path / "allbad"
    all_bad.mkdir()
    (all_bad / "a.png").write_bytes(b"\x89PNG broken")
    for spec in (tmp_path / "missing.mp4", empty_file, zero.path, empty_dir, all_bad, tmp_path / "none_*.png"):
        with pytest.raises(ResegError) as err:
            FrameSource(str(spec))
        assert str(spec) in str(err.value)
    with pytest.raises(ResegError, match="reads video files"):
        open_source(str(empty_dir), "torchcodec")
    rc = main(
        ["video", str(empty_file), "--checkpoint", str(ckpt), "--output", str(tmp_path / "o.mp4"), "--no-progress"]
    )
    assert rc == 2 and str(empty_file) in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


# ---------------------------------------------------------------------- decoders and the device overlay


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_both_decoders_give_the_same_frames(suffix, tmp_path):
    reason = torchcodec_reason()
    if reason:
        pytest.skip(reason)
    path = write_video(synthetic_frames(9, H, W), tmp_path / f"clip{suffix}", fps=10)
    try:
        tc = TorchCodecSource(str(path))
    except ResegError as err:
        pytest.skip(str(err))
    cv = FrameSource(str(path))
    a, b = list(cv), list(tc)
    assert [f.index for f in a] == [f.index for f in b] == list(range(9))
    assert [f.name for f in a] == [f.name for f in b]
    for fa, fb in zip(a, b):  # one codec, two FFmpeg builds: at most a rounding step apart
        assert np.abs(fa.image.astype(int) - np.asarray(fb.image).astype(int)).max() <= 2
    assert open_source(str(path), "auto").decoder.startswith("torchcodec")


def test_auto_decoder_falls_back_to_opencv_and_says_why(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchcodec(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise ImportError("No module named 'torchcodec'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchcodec)
    path = write_video(synthetic_frames(3, H, W), tmp_path / "clip.avi", fps=10)
    src = open_source(str(path), "auto")
    assert src.decoder == "opencv" and "torchcodec" in src.note and "reseg[video]" in src.note
    with pytest.raises(ResegError, match="torchcodec is not installed"):
        open_source(str(path), "torchcodec")
    stats = run_video(src, FakePredictor(), None, VideoOptions(progress=False, overlay=False))
    assert stats["decoder"] == "opencv" and stats["decoder_note"] == src.note


class ChoosingPredictor(FakePredictor):
    """Like `--backend auto`: the first batch first makes a slow one-off choice (prepare), then runs."""

    def __init__(self, choice_seconds: float) -> None:
        super().__init__()
        self.choice_seconds, self.backend_pending, self.prepared_on = choice_seconds, True, None

    def prepare(self, x: torch.Tensor) -> None:
        time.sleep(self.choice_seconds)
        self.backend_pending, self.prepared_on = False, tuple(x.shape)


def test_the_backend_choice_is_start_up_not_model_time(tmp_path):
    """auto's measurement on the first batch (seconds of exports and timing) is reported as start-up and left
    out of both rates: model-only FPS is the model's, and the end-to-end rate the run's without it."""
    from reseg.video import format_summary

    path = write_video(synthetic_frames(6, H, W), tmp_path / "clip.avi", fps=10)
    pred = ChoosingPredictor(choice_seconds=0.5)
    stats = run_video(str(path), pred, None, VideoOptions(progress=False, overlay=False, batch=2))
    assert pred.prepared_on == (2, 3, H, W) and not pred.backend_pending  # once, on the first real batch
    assert stats["startup_seconds"] >= 0.5
    inference = sum(
        stats["timing"]["stages"][s]["seconds"] for s in ("h2d", "preprocess", "model", "postprocess", "d2h")
    )
    assert inference < 0.5 and stats["fps_model"] == pytest.approx(6 / inference, rel=1e-3)
    assert stats["fps_end_to_end"] == pytest.approx(6 / (stats["seconds"] - stats["startup_seconds"]), rel=1e-6)
    assert "start-up 0.5 s on the first batch (the backend choice), not counted" in format_summary(stats)
    plain = run_video(str(path), FakePredictor(), None, VideoOptions(progress=False, overlay=False, batch=2))
    assert plain["startup_seconds"] == 0.0 and "start-up" not in format_summary(plain)


def test_device_overlay_equals_viz_overlay():
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        n = int(rng.integers(1, 4))
        opacity = [0.0, 1.0, 0.5, 0.25][trial] if trial < 4 else float(rng.random())
        palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(int(rng.integers(1, 12)))]
        images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        masks = rng.integers(0, len(palette) + 3, (n, h, w)).astype(np.uint8)  # also ids without a colour
        masks[rng.random((n, h, w)) < 0.1] = 255
        got = overlay_tensor(torch.from_numpy(images), torch.from_numpy(masks), lut_tensor(palette), opacity).numpy()
        for k in range(n):
            assert np.array_equal(got[k], overlay(images[k], masks[k], palette, opacity)), (trial, opacity)


def test_pipeline_with_the_overlay_on_the_device_writes_the_same_video(tmp_path):
    frames = synthetic_frames(6, H, W)
    outs = []
    for on_device in (False, True):
        stats = run_video(
            ArraySource(frames, fps=10),
            FakePredictor(),
            str(tmp_path / f"o{on_device}.avi"),
            VideoOptions(progress=False, batch=2, device_overlay=on_device, opacity=0.4),
        )
        assert stats["overlay_on"] == ("device" if on_device else "host")
        outs.append(read_video(stats["output"])[0])
    assert len(outs[0]) == len(outs[1]) == 6
    assert all(np.array_equal(a, b) for a, b in zip(*outs))


# ---------------------------------------------------------------------- order, memory, realtime, the bound


class CountingSource(ArraySource):
    """Counts frames handed out, to measure how many are alive inside the pipeline at once."""

    def __init__(self, frames, log, **kw) -> None:
        self.log = log
        super().__init__(frames, **kw)

    def _next_raw(self):
        frame = super()._next_raw()
        if frame is not None and frame.index > 0:  # frame 0 is read when the source opens
            self.log["out"] += 1
        return frame


def slow_encoder(monkeypatch, written: list[int], sleep=lambda: 0.0, log=None) -> None:
    """Patch the writer's encode step to sleep first and record the order frames reach it."""
    original = writer_mod.Writer._encode

    def encode(self, frame, *args):
        time.sleep(sleep())
        written.append(frame.index)
        if log is not None:
            log["peak"] = max(log["peak"], log["out"] + 1 - len(written))
        return original(self, frame, *args)

    monkeypatch.setattr(writer_mod.Writer, "_encode", encode)


def test_frame_order_is_kept_under_a_slow_irregular_writer(monkeypatch, tmp_path):
    frames = synthetic_frames(24, H, W)
    written: list[int] = []
    rnd = random.Random(0)
    slow_encoder(monkeypatch, written, sleep=lambda: rnd.choice([0.0, 0.0, 0.004, 0.01]))
    stats = run_video(
        ArraySource(frames, fps=10),
        FakePredictor(),
        str(tmp_path / "o.avi"),
        VideoOptions(progress=False, batch=3, masks_dir=str(tmp_path / "m")),
    )
    assert written == list(range(24)) and stats["frames_out"] == 24
    ref = run_video(
        ArraySource(frames, fps=10),
        FakePredictor(),
        None,
        VideoOptions(progress=False, batch=1, overlay=False, masks_dir=str(tmp_path / "ref")),
    )
    assert ref["frames_out"] == 24
    for i in range(24):  # each mask file holds its own frame's mask
        a = cv2.imread(str(tmp_path / "m" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "ref" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, b)


def test_queues_bound_the_frames_in_flight_under_a_slow_writer(monkeypatch, tmp_path):
    n, batch, qsize = 40, 2, 2
    log = {"out": 1, "peak": 0}
    written: list[int] = []
    slow_encoder(monkeypatch, written, sleep=lambda: 0.003, log=log)
    stats = run_video(
        CountingSource(synthetic_frames(n, H, W), log, fps=10),
        FakePredictor(),
        str(tmp_path / "o.avi"),
        VideoOptions(progress=False, batch=batch, queue_size=qsize),
    )
    assert stats["frames_out"] == n and written == list(range(n))
    q = max(2 * batch, qsize)
    # decoded queue + one the reader holds + a batch + the writer queue + the one being written
    assert log["peak"] <= q + 1 + batch + q + 1 < n


def test_realtime_drops_and_counts_stale_frames(tmp_path):
    n = 40
    stats = run_video(
        ArraySource(synthetic_frames(n, H, W), fps=400),
        FakePredictor(sleep=0.02),
        str(tmp_path / "live.avi"),
        VideoOptions(progress=False, realtime=True, batch=4),
    )
    assert stats["batch"] == 1 and stats["realtime"]
    assert stats["frames_in"] == n
    assert stats["stale_dropped"] > 0 and stats["frames_out"] + stats["stale_dropped"] == n
    kept = [i for i in range(n) if i not in set(stats["stale_frames"])]
    assert len(kept) == stats["frames_out"] == count_frames(stats["output"])
    assert stats["latency_ms"]["frames"] == stats["frames_out"]
    assert stats["latency_ms"]["median"] >= stats["model_ms_median"]  # a frame's latency includes its forward
    from reseg.video import format_summary

    text = format_summary(stats)
    assert "latency" in text and "stale" in text and "FPS" not in text


@pytest.mark.parametrize("slow", ["decode", "model", "encode"])
def test_a_deliberately_slow_stage_is_named_as_the_bound(slow, monkeypatch, tmp_path):
    frames = synthetic_frames(8, H, W)
    pause = 0.08  # well above what the other stages take per frame even with a training sharing the cores

    class SlowSource(ArraySource):
        def _next_raw(self):
            time.sleep(pause)
            return super()._next_raw()

    source = SlowSource(frames, fps=10) if slow == "decode" else ArraySource(frames, fps=10)
    if slow == "encode":
        slow_encoder(monkeypatch, [], sleep=lambda: pause)
    stats = run_video(
        source,
        FakePredictor(sleep=pause if slow == "model" else 0.0),
        str(tmp_path / "o.avi"),
        VideoOptions(progress=False, batch=1),
    )
    bound = stats["timing"]["bound"]
    assert (
        bound["stage"] == slow
        and bound["thread"] == {"decode": "reader", "model": "inference", "encode": "writer"}[slow]
    )
    # every frame but the one read when the source opened went through the slow stage inside the run
    assert stats["timing"]["stages"][slow]["ms_per_frame"] >= 1000 * pause * 0.8


def record_launches(monkeypatch, overlap: bool) -> list[str]:
    """Force the in-flight loop on or off and log the order of launches ("L") and collects ("C")."""
    events: list[str] = []
    launch, collect = pipeline_mod.BatchSegmenter.launch, pipeline_mod.BatchSegmenter.collect
    monkeypatch.setattr(pipeline_mod, "overlap_batches", lambda predictor, opts: overlap)
    monkeypatch.setattr(pipeline_mod.BatchSegmenter, "launch", lambda self, f: events.append("L") or launch(self, f))
    monkeypatch.setattr(pipeline_mod.BatchSegmenter, "collect", lambda self, b: events.append("C") or collect(self, b))
    return events


@pytest.mark.parametrize("batch", [1, 3])
def test_a_batch_in_flight_changes_no_mask_and_no_order(batch, monkeypatch, tmp_path):
    """The GPU's loop queues batch i+1 before it waits for batch i; masks, order and counts stay the same."""
    frames = synthetic_frames(10, H, W)
    runs = {}
    for overlap in (False, True):
        events = record_launches(monkeypatch, overlap)
        written: list[int] = []
        slow_encoder(monkeypatch, written)
        out = tmp_path / f"overlap{overlap}"
        stats = run_video(
            ArraySource(frames, fps=10),
            FakePredictor(),
            str(out / "o.avi"),
            VideoOptions(progress=False, batch=batch, masks_dir=str(out / "m"), smooth=0.5),
        )
        monkeypatch.undo()
        assert stats["frames_out"] == 10 and written == list(range(10)), overlap
        masks = [cv2.imread(str(out / "m" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED) for i in range(10)]
        runs[overlap] = (events, masks, read_video(out / "o.avi")[0], stats["flicker"])
    n = -(-10 // batch)
    assert runs[False][0] == ["L", "C"] * n
    assert runs[True][0] == ["L"] + ["L", "C"] * (n - 1) + ["C"]
    for a, b in zip(runs[False][1], runs[True][1]):
        assert a is not None and np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(runs[False][2], runs[True][2]))
    assert runs[False][3] == pytest.approx(runs[True][3])


def test_only_a_gpu_outside_realtime_keeps_a_batch_in_flight():
    gpu = FakePredictor()
    gpu.device = torch.device("cuda")  # only the device's type is read: no GPU needed
    assert pipeline_mod.overlap_batches(gpu, VideoOptions())
    assert not pipeline_mod.overlap_batches(gpu, VideoOptions(realtime=True))  # no frame waits for the next
    assert not pipeline_mod.overlap_batches(FakePredictor(), VideoOptions())  # a CPU runs each batch to the end


# ---------------------------------------------------------------------- interruption and atomic outputs


@pytest.mark.parametrize("overlap", [False, True])
def test_ctrl_c_keeps_what_was_written_under_the_final_name(overlap, tmp_path, capsys, monkeypatch):
    """With a batch in flight (the GPU's loop) Ctrl-C still writes that batch: it was segmented."""
    monkeypatch.setattr(pipeline_mod, "overlap_batches", lambda predictor, opts: overlap)

    def press_ctrl_c(calls):
        if calls == 3:
            raise KeyboardInterrupt

    out = tmp_path / "out.avi"
    stats = run_video(
        ArraySource(synthetic_frames(8, H, W), fps=10),
        FakePredictor(on_call=press_ctrl_c),
        str(out),
        VideoOptions(batch=2, progress=False),
    )
    assert stats["interrupted"] and stats["frames_out"] == 4 == count_frames(out)
    assert no_partials(tmp_path)
    assert f"kept the 4 frames written so far in {out}" in capsys.readouterr().err


def test_a_failed_run_leaves_the_previous_output_intact(tmp_path):
    out = tmp_path / "out.avi"
    out.write_bytes(b"the user's earlier video")
    seen = {}

    def fail(calls):
        seen.setdefault("files", sorted(p.name for p in tmp_path.iterdir()))
        if calls == 2:
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        run_video(
            ArraySource(synthetic_frames(6, H, W), fps=10),
            FakePredictor(on_call=fail),
            str(out),
            VideoOptions(batch=2, progress=False),
        )
    assert out.read_bytes() == b"the user's earlier video" and no_partials(tmp_path)
    assert any("partial" in name for name in seen["files"])  # the run wrote under a temporary name


def test_frames_the_encoder_refuses_are_not_counted(monkeypatch, tmp_path):
    original = VideoFile.write
    calls = {"n": 0}

    def flaky(self, bgr):
        calls["n"] += 1
        if calls["n"] == 3:  # refuse one frame, as a backend reports an encoder error
            self.failed += 1
            return False
        return original(self, bgr)

    monkeypatch.setattr(VideoFile, "write", flaky)
    stats = run_video(
        ArraySource(synthetic_frames(6, H, W), fps=10),
        FakePredictor(),
        str(tmp_path / "o.avi"),
        VideoOptions(progress=False),
    )
    assert stats["frames_out"] == 5 == count_frames(stats["output"]) and stats["write_failed"] == 1


def test_stats_json_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "stats.json"
    write_stats_json({"frames_out": 1}, path)

    def broken_replace(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_stats_json({"frames_out": 2}, path)
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"frames_out": 1} and no_partials(tmp_path)


# ---------------------------------------------------------------------- never write onto the input


def test_outputs_onto_the_input_are_refused_naming_both_paths(ckpt, tmp_path, capsys):
    video = write_video(synthetic_frames(3, H, W), tmp_path / "in.avi", fps=10)
    before = video.read_bytes()
    frames = frame_folder(tmp_path / "frames", n=2)
    cases = [
        (str(video), ["--output", str(video)]),
        (str(video), ["--output", str(tmp_path / "in.mp4")]),  # its .avi fallback is the input
        (str(video), ["--output", str(tmp_path / "o.mp4"), "--mask-video", str(video)]),
        (str(frames), ["--output", str(tmp_path / "o.mp4"), "--masks-dir", str(frames)]),
        (str(frames), ["--output", str(frames / "o.mp4")]),
        (str(frames / "*.png"), ["--output", str(tmp_path / "o.mp4"), "--masks-dir", str(frames / "m")]),
        (str(video), ["--output", str(tmp_path / "o.mp4"), "--stats-json", str(video)]),
    ]
    for spec, flags in cases:
        rc = main(["video", spec, "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress", *flags])
        err = capsys.readouterr().err
        target = flags[flags.index(next(f for f in flags[::-1] if f.startswith("--"))) + 1]
        assert rc == 2 and Path(target).name in err and "input" in err, (flags, err)
    assert video.read_bytes() == before
    assert sorted(p.name for p in frames.iterdir()) == ["frame_1.png", "frame_2.png"]
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.avi").exists()
    rc = main(
        [
            "video",
            str(video),
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
            "--no-progress",
            "--output",
            str(tmp_path / "same.avi"),
            "--mask-video",
            str(tmp_path / "same.avi"),
        ]
    )
    assert rc == 2 and "same file" in capsys.readouterr().err


def test_masks_from_a_glob_over_folders_keep_their_relative_paths(predictor, tmp_path):
    for k, folder in enumerate(("a", "b")):
        frame_folder(tmp_path / "data" / folder, n=2, seed=k)  # a/frame_1.png and b/frame_1.png
    masks = tmp_path / "masks"
    stats = run_video(
        str(tmp_path / "data" / "*" / "*.png"),
        predictor,
        None,
        VideoOptions(progress=False, overlay=False, masks_dir=str(masks)),
    )
    assert stats["frames_out"] == 4
    written = sorted(p.relative_to(masks).as_posix() for p in masks.rglob("*.png"))
    assert written == ["a/frame_1.png", "a/frame_2.png", "b/frame_1.png", "b/frame_2.png"]
    for rel in written:
        image = cv2.cvtColor(cv2.imread(str(tmp_path / "data" / rel)), cv2.COLOR_BGR2RGB)
        expected = predictor.predict([image])[0]
        assert np.array_equal(cv2.imread(str(masks / rel), cv2.IMREAD_UNCHANGED), expected)


# ---------------------------------------------------------------------- codecs, max frames, the benchmark


def test_the_first_codec_that_opens_is_used(predictor, tmp_path):
    for name in ("x.avi", "y.mp4"):
        expected = None
        for fourcc, target in codec_candidates(tmp_path / name):  # an independent probe, in the same order
            probe = tmp_path / "probe" / target.name
            probe.parent.mkdir(exist_ok=True)
            w = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), 5.0, (W, H))
            if w.isOpened():
                w.release()
                expected = (fourcc, target)
                break
        video = VideoFile(tmp_path / name, 5, (W, H))
        video.commit()
        assert (video.fourcc, video.path) == expected and video.path.exists()
    assert codec_candidates(tmp_path / "x.avi")[0][0] == "MJPG"
    frames = frame_folder(tmp_path / "frames", n=5)
    stats = run_video(str(frames), predictor, str(tmp_path / "z.mp4"), VideoOptions(max_frames=3, progress=False))
    assert stats["frames_in"] == stats["frames_out"] == 3 == count_frames(stats["output"])


def test_benchmark_helper_reports_both_throughputs_and_the_stages(predictor, tmp_path):
    stats = benchmark_video(predictor, size=(H, W), frames=6, batch=3, repeats=2, workdir=tmp_path)
    assert stats["frames_out"] == 6 and len(stats["runs"]["fps_end_to_end"]) == 2
    assert stats["fps_model_only"] == pytest.approx(float(np.median(stats["runs"]["fps_model_only"])))
    assert stats["fps_end_to_end"] == pytest.approx(float(np.median(stats["runs"]["fps_end_to_end"])))
    assert stats["ratio"] == pytest.approx(stats["fps_end_to_end"] / stats["fps_model_only"])
    assert stats["timing"]["bound"]["stage"] in stats["timing"]["stages"]
    assert list(tmp_path.iterdir()) == []  # the generated clip and output are removed


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
    assert (
        main(
            [
                "predict",
                str(tmp_path / "data"),
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--overlay-format",
                "png",
                "--device",
                "cpu",
                "--amp",
                "--channels-last",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and str(out.resolve()) in captured.out
    for rel in ("city/frame_1", "city/frame_2", "top"):
        mask = cv2.imread(str(out / f"{rel}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (H, W) and mask.max() < len(NAMES)
        assert (out / f"{rel}_color.png").exists() and (out / f"{rel}_overlay.png").exists()
    assert np.array_equal(cv2.imread(str(out / "top.png")), cv2.imread(str(out / "city/frame_1.png")))


def test_palette_lut_matches_the_tensor_table():
    palette = [(1, 2, 3), (250, 0, 7)]
    assert np.array_equal(lut_tensor(palette).numpy(), palette_lut(palette))


def test_video_with_backend_auto_says_what_it_chose(ckpt, tmp_path, monkeypatch, capsys):
    """`--backend auto` (fake timings: ONNX Runtime 2x eager): the masks are those of the chosen backend, the
    summary and the stats JSON name it and why; the checkpoint's training data is absent, so int8 is out."""
    pytest.importorskip("onnxruntime")
    from reseg import backend_choice

    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("reseg.predictor.cpu_has_native_bf16", lambda: False)  # the same candidates on any CPU
    monkeypatch.setattr(
        backend_choice,
        "time_nets",
        lambda nets, x, runs=5, clock=None: {name: {"eager": 1.0, "onnxruntime": 0.5}.get(name, 0.1) for name in nets},
    )
    frames = frame_folder(tmp_path / "frames", n=3)
    stats_path, masks_dir = tmp_path / "stats.json", tmp_path / "masks"
    rc = main(
        [
            "video",
            str(frames),
            "--checkpoint",
            str(ckpt),
            "--output",
            str(tmp_path / "o.avi"),
            "--device",
            "cpu",
            "--no-progress",
            "--backend",
            "auto",
            "--stats-json",
            str(stats_path),
            "--masks-dir",
            str(masks_dir),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "backend auto -> onnxruntime (2.00x eager, 100.0% mask agreement" in out
    assert "onnxruntime-int8 unavailable" in out
    stats = json.loads(stats_path.read_text())
    assert stats["backend"] == "onnxruntime" and stats["backend_choice"] in out
    ort = Predictor.from_checkpoint(ckpt, device="cpu", backend="onnxruntime", backend_cache=tmp_path / "cache")
    for i in range(1, 4):
        image = cv2.imread(str(frames / f"frame_{i}.png"))[..., ::-1]
        written = cv2.imread(str(masks_dir / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, ort.predict([np.ascontiguousarray(image)])[0])
