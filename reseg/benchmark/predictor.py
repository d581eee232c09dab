"""Inference paths: every candidate against plain fp32 eager, timed interleaved, and the start-up of `reseg predict`.

The candidates are the Predictor's own paths (what `--backend`, `--int8`, `--amp`, `--channels-last` and
`--compile` select), so the fastest one here is the one to use on this machine: channels-last fp32, bf16
autocast (CPUs with native bf16 and GPUs only), ONNX Runtime fp32 and int8 (CPU), torch.compile (with
--compile: a minute of compiling).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions, time_interleaved
from reseg.runtime import cpu_has_native_bf16

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reseg_synthetic.yaml"
PLAIN = "eager_fp32"


def build_demo_model(num_classes: int = 11) -> tuple[nn.Module, Any]:
    """The demo's ReSeg (configs/reseg_synthetic.yaml), random weights: speed does not depend on them."""
    from reseg.config import load_config
    from reseg.models import build_model

    cfg = load_config(DEMO_CONFIG, ["model.encoder_weights=null"])
    cfg.model.num_classes = num_classes
    return build_model(cfg, num_classes).eval(), cfg


def candidate_predictors(model: nn.Module, device: torch.device, calibration: list[np.ndarray], cache: str,
                         compile: bool = False) -> dict[str, Any]:
    """name -> Predictor for every inference path this machine offers (the plain fp32 path first)."""
    from reseg.predictor import Predictor

    def make(**kw: Any) -> Any:  # a copy each: channels-last converts a module's weights in place
        return Predictor(copy.deepcopy(model), device, size_divisor=0, **kw)

    paths: dict[str, Any] = {PLAIN: make(), "eager_channels_last": make(channels_last=True)}
    if device.type == "cuda" or cpu_has_native_bf16():
        paths["eager_bf16_channels_last"] = make(channels_last=True, amp="bf16" if device.type == "cpu" else True)
    if compile:
        paths["eager_compile"] = make(compile=True)
    if device.type == "cpu" and _has_onnxruntime():
        paths["onnxruntime_fp32"] = make(backend="onnxruntime", backend_cache=cache)
        paths["onnxruntime_int8"] = make(int8=True, calibration=calibration, backend_cache=cache)
    return paths


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def bench_predictor_paths(model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3,
                          device: str = "cpu", compile: bool = False, calibration_images: int = 8,
                          cache: str | None = None) -> dict[str, Any]:
    """Images/s of every inference path, timed interleaved, with each path's mask agreement with plain fp32;
    the fastest is `fast_path` (`speedup` = its images/s over plain fp32's)."""
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(calibration_images)]
    with tempfile.TemporaryDirectory(prefix="reseg-bench-onnx-") as tmp:
        paths = candidate_predictors(model, dev, calibration, cache or tmp, compile)
        torch.manual_seed(0)
        x = torch.randn(batch, 3, *size, device=dev)

        def run(pred: Any) -> Callable[[], torch.Tensor]:
            def f() -> torch.Tensor:
                with torch.inference_mode():
                    return pred.logits(x)
            return f

        t = time_interleaved({name: run(p) for name, p in paths.items()}, repeats, 1, dev)
        ref = run(paths[PLAIN])().argmax(1)
        agreement = {name: float((run(p)().argmax(1) == ref).float().mean()) for name, p in paths.items()}
    img_s = {name: batch / t[name] for name in paths}
    fast = max((n for n in img_s if n != PLAIN), key=img_s.__getitem__)
    return {"paths": img_s, "pixel_agreement_by_path": agreement, "plain_img_s": img_s[PLAIN],
            "fast_path": fast, "fast_img_s": img_s[fast], "speedup": t[PLAIN] / t[fast],
            "pixel_agreement": agreement[fast], "bf16": "eager_bf16_channels_last" in paths, "compile": compile}


def measure_startup(model: nn.Module, cfg: Any, size: tuple[int, int], backends: tuple[str, ...] = ("eager",),
                    ) -> dict[str, float]:
    """Seconds from process start to the first mask written by `reseg predict --checkpoint CKPT one.png`
    (a fresh Python process per backend; the ONNX cache is filled first, so it is the second-run figure)."""
    import cv2

    from reseg.engine.checkpoint import save_checkpoint
    from reseg.predictor import Predictor

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="reseg-bench-startup-") as tmp:
        ckpt, image = Path(tmp) / "model.pt", Path(tmp) / "one.png"
        names = [f"class{i}" for i in range(cfg.model.num_classes)]
        save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": names,
                         "epoch": 0, "iteration": 0}, ckpt)
        rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(image), rgb[..., ::-1])
        env = dict(os.environ, RESEG_CACHE_DIR=str(Path(tmp) / "cache"))
        for backend in backends:
            if backend != "eager":  # fill the cache: the figure is every later start's
                Predictor.from_checkpoint(ckpt, device="cpu", backend=backend, backend_cache=env["RESEG_CACHE_DIR"])
            cmd = [sys.executable, "-m", "reseg", "predict", "--checkpoint", str(ckpt), str(image), "--device", "cpu",
                   "--backend", backend, "--out", str(Path(tmp) / f"out_{backend}")]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            elapsed = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"`reseg predict` failed during the start-up benchmark: {r.stderr[-500:]}")
            out[backend] = elapsed
    return out


def run_predictor_section(o: BenchOptions) -> dict[str, Any]:
    """Every inference path against plain fp32 (interleaved), and `reseg predict`'s start-up time."""
    model, cfg = build_demo_model()
    p = bench_predictor_paths(model, o.batch, o.size, o.repeats, o.device, compile=o.compile,
                              calibration_images=2 if o.quick else 8)
    res: dict[str, Any] = {"predictor": p, "fast_infer_path": p["fast_path"], "fast_infer_speedup": p["speedup"]}
    if o.device == "cpu":
        backends = ("eager", "onnxruntime") if "onnxruntime_fp32" in p["paths"] else ("eager",)
        startup = measure_startup(model, cfg, o.size, backends)
        res["startup_s"] = startup["eager"]
        if "onnxruntime" in startup:
            res["startup_onnxruntime_s"] = startup["onnxruntime"]
    return res


def predictor_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    p = res["predictor"]
    rows = [(f"inference {name} img/s (pixel agreement with {PLAIN})",
             f"{v:.2f} ({p['pixel_agreement_by_path'][name] * 100:.2f}%)") for name, v in p["paths"].items()]
    rows.append(("fastest inference path (speed-up over plain fp32)", f"{p['fast_path']} ({p['speedup']:.2f}x)"))
    if "startup_s" in res:
        rows.append(("`reseg predict` one image, process start to mask s (eager)", f"{res['startup_s']:.2f}"))
    if "startup_onnxruntime_s" in res:
        rows.append(("`reseg predict` one image, process start to mask s (onnxruntime, cached)",
                     f"{res['startup_onnxruntime_s']:.2f}"))
    return rows
