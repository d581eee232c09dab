"""Inference paths (plain fp32 vs the fast path) and video end-to-end vs model-only FPS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions, time_interleaved
from reseg.runtime import cpu_has_native_bf16

# --------------------------------------------------------------------------------------------------
# inference paths and video


def bench_predictor_paths(model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3,
                          device: str = "cpu", compile: bool = False) -> dict[str, Any]:
    """Images/s of the Predictor's plain fp32 path and of its fast path (channels-last, inference mode,
    bf16 autocast where the hardware has it), interleaved, and the agreement of their predicted masks."""
    from reseg.predictor import Predictor

    dev = torch.device(device)
    bf16 = dev.type == "cuda" or cpu_has_native_bf16()
    plain = Predictor(model, dev, size_divisor=0)
    fast = Predictor(model, dev, size_divisor=0, channels_last=True, amp="bf16" if bf16 else False, compile=compile)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *size, device=dev)

    def run(pred: Any) -> Callable[[], Any]:
        def f() -> torch.Tensor:
            with torch.inference_mode():
                return pred.logits(x)
        return f

    t = time_interleaved({"plain": run(plain), "fast": run(fast)}, repeats, 1, dev)
    a, b = run(plain)().argmax(1), run(fast)().argmax(1)
    return {"plain_img_s": batch / t["plain"], "fast_img_s": batch / t["fast"], "speedup": t["plain"] / t["fast"],
            "bf16": bf16, "channels_last": True, "compile": compile,
            "pixel_agreement": float((a == b).float().mean())}


def bench_video(model: nn.Module, size: tuple[int, int] = (360, 480), frames: int = 16, batch: int = 4,
                repeats: int = 1, device: str = "cpu", workdir: str | None = None) -> dict[str, Any]:
    """`reseg video` end-to-end FPS vs model-only FPS on a synthetic clip (reseg.video.benchmark_video)."""
    from reseg.predictor import Predictor
    from reseg.video import benchmark_video

    pred = Predictor(model, torch.device(device), size_divisor=0)
    stats = benchmark_video(pred, size=size, frames=frames, batch=batch, repeats=repeats, workdir=workdir)
    return {k: stats[k] for k in ("fps_model_only", "fps_end_to_end", "ratio", "ratio_in_run") if k in stats}


def run_predictor_section(o: BenchOptions) -> dict[str, Any]:
    """The fast inference path against plain fp32, interleaved."""
    from reseg.benchmark.models import build_bench_model

    p = bench_predictor_paths(build_bench_model("reseg"), o.batch, o.size, o.repeats, o.device, compile=o.compile)
    return {"predictor": p, "fast_infer_speedup": p["speedup"]}


def predictor_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    p = res["predictor"]
    what = "channels-last" + (" + bf16" if p["bf16"] else "") + (" + compile" if p["compile"] else "")
    return [(f"inference plain fp32 / fast ({what}) img/s", f"{p['plain_img_s']:.2f} / {p['fast_img_s']:.2f}"),
            ("fast path speed-up (pixel agreement)", f"{p['speedup']:.2f}x ({p['pixel_agreement'] * 100:.2f}%)")]


def run_video_section(o: BenchOptions) -> dict[str, Any]:
    """`reseg video` end to end against the model alone on a generated clip."""
    from reseg.benchmark.models import build_bench_model

    v = bench_video(build_bench_model("reseg"), o.size, 4 if o.quick else 16, o.batch, 1, o.device)
    return {"video": v, "video_fps_end_to_end": v["fps_end_to_end"], "video_fps_model_only": v["fps_model_only"]}


def video_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    v = res["video"]
    return [("video FPS end-to-end / model-only", f"{v['fps_end_to_end']:.2f} / {v['fps_model_only']:.2f}")]
