"""Inference paths: plain fp32 eager against the fast path(s) this machine offers, timed interleaved."""

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
