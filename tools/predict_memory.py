"""Peak memory and time of `reseg predict` on one large photo per size: does memory stay bounded?

    python tools/predict_memory.py --checkpoint CKPT [--sizes 1500x2000 3000x4000 6000x8000] [-- PREDICT ARGS]

Each size gets a generated street-like JPEG (no real data), `reseg predict` runs on it in a fresh process, and
the table gives that process's peak resident memory (ru_maxrss), its wall time and the memory per input
pixel above the smallest size's. The image and the written mask, colours and overlay are uint8 and scale
with the input whatever is done; everything else should not. Extra arguments after `--` go to `reseg predict`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth sky-road-buildings gradient with noise, BGR uint8: cheap to make at any size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    small[:4] = (200, 160, 120)  # sky
    small[8:] = (90, 90, 90)  # road
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-8, 9, (h, 1, 3), dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def measure(checkpoint: str, size: tuple[int, int], extra: list[str], work: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one `reseg predict` process on an HxW photo."""
    h, w = size
    image = work / f"photo_{h}x{w}.jpg"
    cv2.imwrite(str(image), photo(h, w), [cv2.IMWRITE_JPEG_QUALITY, 90])
    cmd = [sys.executable, "-m", "reseg", "predict", str(image), "--checkpoint", checkpoint]
    cmd += ["--out", str(work / f"out_{h}x{w}"), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    if usage.ru_maxrss == 0 or not (work / f"out_{h}x{w}" / f"photo_{h}x{w}.png").exists():
        raise SystemExit(f"reseg predict failed on {h}x{w}:\n{stderr}")
    return usage.ru_maxrss / 1024, seconds  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sizes", nargs="+", default=["1500x2000", "3000x4000", "6000x8000"], metavar="HxW")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(size, *measure(args.checkpoint, size, extra, Path(tmp))) for size in sizes]
    base_pixels, base_mb = rows[0][0][0] * rows[0][0][1], rows[0][1]
    print(f"{'image':>11} {'MP':>5} {'peak MB':>8} {'seconds':>8} {'B/pixel above the first':>24}")
    for (h, w), mb, seconds in rows:
        pixels = h * w
        per_pixel = (mb - base_mb) * 2**20 / (pixels - base_pixels) if pixels != base_pixels else float("nan")
        print(f"{h:>5}x{w:<5} {pixels / 1e6:>5.1f} {mb:>8.0f} {seconds:>8.1f} {per_pixel:>24.1f}")


if __name__ == "__main__":
    main()
