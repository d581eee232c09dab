"""Video: `reseg video` end to end against the model alone on a generated clip, at the same size and batch,
with the run's per-stage timings.

The clip is a synthetic drive (reseg.data.synthetic.drive_frames), rendered once into memory: street
frames encode and decode like a real drive does, and the model-only rate reads the same frames.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions
from reseg.data.synthetic import drive_frames
from reseg.video.options import VideoOptions
from reseg.video.pipeline import run_video
from reseg.video.writer import write_video


def model_only_fps(predictor: Any, frames: Sequence[np.ndarray], batch: int, repeats: int = 1) -> float:
    """Frames/s of preprocess + inference + mask copy alone, on frames already in memory."""
    with torch.inference_mode():
        predictor.masks(predictor.preprocess(frames[:batch])).cpu()  # warm-up
        done, t0 = 0, time.perf_counter()
        for _ in range(repeats):
            for i in range(0, len(frames), batch):
                chunk = frames[i : i + batch]
                predictor.masks(predictor.preprocess(chunk)).cpu()
                done += len(chunk)
        return done / (time.perf_counter() - t0)


def benchmark_video(
    predictor: Any,
    size: tuple[int, int] = (360, 480),
    frames: int = 32,
    batch: int = 4,
    fps: float = 30.0,
    repeats: int = 1,
    workdir: str | Path | None = None,
    decoder: str = "auto",
) -> dict[str, Any]:
    """End-to-end `reseg video` throughput vs model-only throughput at the same batch and size (H, W).

    Writes a synthetic video, then `repeats` times measures the model alone on its frames (in memory)
    and runs the full pipeline on the file (decode, inference, overlay, encode), in ABBA order so that a
    machine whose load drifts slows both alike. Returns the last run's stats (with its per-stage `timing` and the
    bound) plus the medians in `fps_model_only` and `fps_end_to_end`, `ratio` = their quotient, and
    `ratio_in_run` = end-to-end over the same run's inference-thread rate (how much of the rest is hidden).
    """
    h, w = size
    imgs = [image for image, _ in drive_frames(frames, (h, w), fps=fps)]
    model_runs: list[float] = []
    e2e_runs: list[float] = []
    in_run: list[float] = []
    stats: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src = write_video(imgs, Path(tmp) / "input.mp4", fps)
        for r in range(max(1, repeats)):
            for step in ("model", "video") if r % 2 == 0 else ("video", "model"):  # ABBA: drift cancels
                if step == "model":
                    model_runs.append(model_only_fps(predictor, imgs, batch))
                    continue
                stats = run_video(
                    str(src),
                    predictor,
                    str(Path(tmp) / "output.mp4"),
                    VideoOptions(batch=batch, progress=False, decoder=decoder),
                )
                e2e_runs.append(stats["fps_end_to_end"])
                in_run.append(stats["fps_model"])
    stats["fps_model_only"] = float(np.median(model_runs))
    stats["fps_end_to_end"] = float(np.median(e2e_runs))
    stats["ratio"] = stats["fps_end_to_end"] / stats["fps_model_only"] if stats["fps_model_only"] > 0 else 0.0
    stats["ratio_in_run"] = float(np.median([e / m for e, m in zip(e2e_runs, in_run) if m > 0] or [0.0]))
    stats["runs"] = {"fps_model_only": model_runs, "fps_end_to_end": e2e_runs, "fps_model_in_run": in_run}
    stats["size"] = [h, w]
    return stats


def bench_video(
    model: nn.Module,
    size: tuple[int, int] = (360, 480),
    frames: int = 16,
    batch: int = 4,
    repeats: int = 1,
    device: str = "cpu",
    workdir: str | None = None,
) -> dict[str, Any]:
    """`reseg video` end-to-end FPS vs model-only FPS on a synthetic clip (benchmark_video)."""
    from reseg.predictor import Predictor

    pred = Predictor(model, torch.device(device), size_divisor=0)
    stats = benchmark_video(pred, size=size, frames=frames, batch=batch, repeats=repeats, workdir=workdir)
    keys = (
        "fps_model_only",
        "fps_end_to_end",
        "ratio",
        "ratio_in_run",
        "frames_in",
        "frames_out",
        "decoder",
        "overlay_on",
        "batch",
        "size",
        "runs",
        "timing",
    )
    return {k: stats[k] for k in keys if k in stats}


def run_video_section(o: BenchOptions) -> dict[str, Any]:
    """`reseg video` end to end against the model alone on a generated clip."""
    from reseg.benchmark.models import build_bench_model

    v = bench_video(build_bench_model("reseg"), o.size, 4 if o.quick else 16, o.batch, o.repeats, o.device)
    return {"video": v, "video_fps_end_to_end": v["fps_end_to_end"], "video_fps_model_only": v["fps_model_only"]}


def video_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    v = res["video"]
    rows = [("video FPS end-to-end / model-only", f"{v['fps_end_to_end']:.2f} / {v['fps_model_only']:.2f}")]
    timing = v.get("timing")
    if timing and timing.get("bound"):
        b = timing["bound"]
        rows.append(
            ("video bound by (thread busy / wall)", f"{b['stage']} ({b['thread']}, {100 * b['busy_share']:.0f}%)")
        )
        per = ", ".join(f"{name} {s['ms_per_frame']:.2f}" for name, s in timing["stages"].items() if s["seconds"] > 0)
        rows.append(("video ms per frame by stage", per))
    return rows
