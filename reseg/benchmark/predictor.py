"""Inference paths as users get them: every candidate built from a checkpoint the way `reseg predict` and
`reseg video` build it, timed interleaved, with its start-up time and its mask agreement with eager.

A candidate is a set of the commands' inference flags (`--backend onnxruntime`, `--int8`, `--channels-last`,
`--amp`, `--compile`), parsed by the commands' own parser and turned into a Predictor by their own
builder (reseg.commands.common: Predictor.from_checkpoint), so the eval size, padding, calibration and
layout are the checkpoint's, as in `reseg predict`. Without a checkpoint an untrained demo model is saved
with the trainer's checkpoint writer and measured the same way. Each size runs RGB frames through
`Predictor.predict` (normalisation, padding, the backend, argmax), at the checkpoint's own inference size
(data.eval_size, else its training crop) and at the sizes asked for, each path in a fresh ONNX cache per
size: the start-up is the first mask's time from an empty cache (export and calibration included) and from
a filled one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions, time_interleaved
from reseg.data.synthetic import drive_frames
from reseg.errors import ResegError
from reseg.runtime import cpu_has_native_bf16

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reseg_synthetic.yaml"
PLAIN = "eager"
AGREEMENT_FRAMES = 4


def build_demo_model(num_classes: int = 11) -> tuple[nn.Module, Any]:
    """The demo's ReSeg (configs/reseg_synthetic.yaml), random weights: speed does not depend on them."""
    from reseg.config import load_config
    from reseg.models import build_model

    cfg = load_config(DEMO_CONFIG, ["model.encoder_weights=null"])
    cfg.model.num_classes = num_classes
    return build_model(cfg, num_classes).eval(), cfg


def save_demo_checkpoint(path: Path) -> Path:
    """The untrained demo model as a checkpoint, written by the trainer's checkpoint writer."""
    from reseg.engine.checkpoint import save_checkpoint

    model, cfg = build_demo_model()
    names = [f"class{i}" for i in range(cfg.model.num_classes)]
    save_checkpoint(
        {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": names, "epoch": 0, "iteration": 0}, path
    )
    return path


def inference_size(checkpoint: str | Path) -> tuple[int, int]:
    """The size the checkpoint's model runs at: data.eval_size, else the training crop it learnt on."""
    from reseg.engine.checkpoint import read_checkpoint

    data = read_checkpoint(checkpoint).config.data
    size = data.eval_size or data.crop_size
    if not size:
        raise ResegError(
            f"checkpoint {checkpoint} names neither data.eval_size nor data.crop_size; give the "
            f"sizes to measure with --sizes H W"
        )
    return int(size[0]), int(size[1])


def candidate_flags(device: str, compile: bool = False) -> dict[str, list[str]]:
    """name -> the inference flags of every path this machine offers (eager first: the reference)."""
    paths = {PLAIN: ["--backend", "eager"], "eager --channels-last": ["--backend", "eager", "--channels-last"]}
    if device == "cuda" or cpu_has_native_bf16():
        paths["eager --amp --channels-last"] = ["--backend", "eager", "--amp", "--channels-last"]
    if compile:
        paths["eager --compile"] = ["--backend", "eager", "--compile"]
    if device == "cpu" and _has_onnxruntime():
        paths["onnxruntime"] = ["--backend", "onnxruntime"]
        paths["onnxruntime-int8"] = ["--backend", "onnxruntime", "--int8"]
    return paths


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def build_like_the_commands(checkpoint: str | Path, device: str, flags: list[str]) -> Any:
    """The Predictor `reseg predict --checkpoint CKPT --device DEVICE FLAGS` runs (its parser, its builder)."""
    from reseg.commands.common import add_inference_arguments, build_predictor

    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    args = parser.parse_args(["--device", device, *flags])
    args.checkpoint = str(checkpoint)
    return build_predictor(args)


@contextlib.contextmanager
def _cache(folder: Path) -> Iterator[None]:
    """RESEG_CACHE_DIR pointed at `folder` for the duration (the commands read it)."""
    old = os.environ.get("RESEG_CACHE_DIR")
    os.environ["RESEG_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RESEG_CACHE_DIR", None)
        else:
            os.environ["RESEG_CACHE_DIR"] = old


def _first_mask_s(
    checkpoint: Path, device: str, flags: list[str], images: list[np.ndarray], batch: int
) -> tuple[float, Any]:
    """Seconds from building the Predictor to its first batch of masks, and the Predictor."""
    t0 = time.perf_counter()
    pred = build_like_the_commands(checkpoint, device, flags)
    pred.predict(images[:batch], batch_size=batch)
    return time.perf_counter() - t0, pred


def bench_size(
    checkpoint: Path,
    size: tuple[int, int],
    paths: dict[str, list[str]],
    batch: int = 1,
    repeats: int = 3,
    device: str = "cpu",
    calibration: Path | None = None,
) -> dict[str, Any]:
    """One input size: per path its images/s (timed interleaved), start-up (empty and filled cache) and mask
    agreement with eager; a path that cannot be built here is listed under `errors` with the reason."""
    count = batch * -(-AGREEMENT_FRAMES // batch)
    frames = [image for image, _ in drive_frames(count, size, seed=1)]
    preds: dict[str, Any] = {}
    startup: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="reseg-bench-onnx-") as tmp:
        for i, (name, flags) in enumerate(paths.items()):
            if "--int8" in flags and calibration is not None:
                flags = [*flags, "--calibration", str(calibration)]
            try:
                with _cache(Path(tmp) / str(i)):  # its own: int8's first run exports too, as a user's does
                    first, _ = _first_mask_s(checkpoint, device, flags, frames, batch)
                    cached, preds[name] = _first_mask_s(checkpoint, device, flags, frames, batch)
            except ResegError as err:
                if name == PLAIN:
                    raise
                errors[name] = str(err)
                continue
            startup[name] = {"first": first, "cached": cached}
        reference = preds[PLAIN].predict(frames, batch_size=batch)
        agreement = {
            name: float(np.mean([np.mean(a == b) for a, b in zip(p.predict(frames, batch_size=batch), reference)]))
            for name, p in preds.items()
        }
        images = frames[:batch]
        t = time_interleaved(
            {name: (lambda p=p: p.predict(images, batch_size=batch)) for name, p in preds.items()},
            repeats,
            1,
            torch.device(device),
        )
    img_s = {name: batch / t[name] for name in preds}
    fast = max(img_s, key=img_s.__getitem__)
    return {
        "size": list(size),
        "batch": batch,
        "paths": img_s,
        "pixel_agreement_by_path": agreement,
        "startup_s": startup,
        "errors": errors,
        "fast_path": fast,
        "speedup": img_s[fast] / img_s[PLAIN],
    }


def bench_checkpoint(
    checkpoint: Path,
    sizes: list[tuple[int, int]],
    batch: int = 1,
    repeats: int = 3,
    device: str = "cpu",
    compile: bool = False,
    calibration: Path | None = None,
) -> dict[str, Any]:
    """bench_size at each size (the checkpoint's own inference size first, then `sizes`)."""
    own = inference_size(checkpoint)
    todo = [own] + [tuple(s) for s in sizes if tuple(s) != own]
    paths = candidate_flags(device, compile)
    runs = [bench_size(checkpoint, s, paths, batch, repeats, device, calibration) for s in todo]
    first = runs[0]
    return {
        "checkpoint": str(checkpoint),
        "inference_size": list(own),
        "batch": batch,
        "runs": runs,
        "paths": first["paths"],
        "pixel_agreement_by_path": first["pixel_agreement_by_path"],
        "plain_img_s": first["paths"][PLAIN],
        "fast_path": first["fast_path"],
        "fast_img_s": first["paths"][first["fast_path"]],
        "speedup": first["speedup"],
        "pixel_agreement": first["pixel_agreement_by_path"][first["fast_path"]],
        "compile": compile,
    }


def run_predictor_section(o: BenchOptions) -> dict[str, Any]:
    """Every inference path of a checkpoint (o.checkpoint, else an untrained demo one) at its inference size
    and o.sizes, against eager."""
    with tempfile.TemporaryDirectory(prefix="reseg-bench-ckpt-") as tmp:
        calibration = None
        checkpoint = Path(o.checkpoint) if o.checkpoint else None
        if checkpoint is None:  # the demo's training split may not exist: calibrate on generated frames
            import cv2

            checkpoint = save_demo_checkpoint(Path(tmp) / "demo.pt")
            calibration = Path(tmp) / "calibration"
            calibration.mkdir()
            size = inference_size(checkpoint)
            for i, (rgb, _) in enumerate(drive_frames(2 if o.quick else 8, size, seed=2)):
                cv2.imwrite(str(calibration / f"{i:02d}.png"), rgb[..., ::-1])
        p = bench_checkpoint(checkpoint, list(o.sizes), o.predictor_batch, o.repeats, o.device, o.compile, calibration)
    if not o.checkpoint:
        p["checkpoint"] = "untrained demo (configs/reseg_synthetic.yaml)"
    res: dict[str, Any] = {"predictor": p, "fast_infer_path": p["fast_path"], "fast_infer_speedup": p["speedup"]}
    startup = p["runs"][0]["startup_s"]
    res["startup_s"] = startup[PLAIN]["cached"]
    if "onnxruntime" in startup:
        res["startup_onnxruntime_s"] = startup["onnxruntime"]["cached"]
    return res


def predictor_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    p = res["predictor"]
    rows = [("inference checkpoint (batch)", f"{p['checkpoint']} ({p['batch']})")]
    for run in p["runs"]:
        at = f"{run['size'][0]}x{run['size'][1]}"
        for name, v in run["paths"].items():
            s = run["startup_s"][name]
            rows.append(
                (
                    f"inference {name} at {at}: img/s (mask agreement with eager; start-up s first / cached)",
                    f"{v:.2f} ({run['pixel_agreement_by_path'][name] * 100:.2f}%; "
                    f"{s['first']:.2f} / {s['cached']:.2f})",
                )
            )
        for name, err in run["errors"].items():
            rows.append((f"inference {name} at {at}", f"unavailable: {' '.join(err.split())[:120]}"))
        rows.append(
            (f"fastest inference path at {at} (speed over eager)", f"{run['fast_path']} ({run['speedup']:.2f}x)")
        )
    return rows
