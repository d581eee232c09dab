"""Video: `reseg video` end to end against the model alone on a generated clip."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions

def bench_video(model: nn.Module, size: tuple[int, int] = (360, 480), frames: int = 16, batch: int = 4,
                repeats: int = 1, device: str = "cpu", workdir: str | None = None) -> dict[str, Any]:
    """`reseg video` end-to-end FPS vs model-only FPS on a synthetic clip (reseg.video.benchmark_video)."""
    from reseg.predictor import Predictor
    from reseg.video import benchmark_video

    pred = Predictor(model, torch.device(device), size_divisor=0)
    stats = benchmark_video(pred, size=size, frames=frames, batch=batch, repeats=repeats, workdir=workdir)
    keys = ("fps_model_only", "fps_end_to_end", "ratio", "ratio_in_run", "frames_in", "frames_out", "decoder",
            "overlay_on", "batch", "size", "runs", "timing")
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
        rows.append(("video bound by (thread busy / wall)", f"{b['stage']} ({b['thread']}, {100 * b['busy_share']:.0f}%)"))
        per = ", ".join(f"{name} {s['ms_per_frame']:.2f}" for name, s in timing["stages"].items() if s["seconds"] > 0)
        rows.append(("video ms per frame by stage", per))
    return rows
