"""Write a synthetic dataset in the CamVid SegNet layout, in parallel, appearing at its path atomically."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2

from reseg.data.classes import CAMVID
from reseg.data.synthetic.difficulty import get_difficulty
from reseg.data.synthetic.labels import VOID
from reseg.data.synthetic.render import synth_sample
from reseg.errors import ResegError
from reseg.io import replace_dir

log = logging.getLogger("reseg.data")

GENERATOR_VERSION = 1
META_FILE = "synthetic.json"
SPLITS = ("train", "val", "test")
PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


@dataclass(frozen=True)
class _Chunk:
    """A run of consecutive images of one split, the unit a worker process draws and writes."""

    out: str
    seed: int
    split: str
    indices: list[int]
    size: tuple[int, int]
    difficulty: str


def make_synthetic(
    out_dir: str | Path = "datasets/synthetic",
    train: int = 300,
    val: int = 60,
    test: int = 60,
    seed: int = 0,
    size: tuple[int, int] = (360, 480),
    workers: int | None = None,
    progress: bool = False,
    difficulty: str = "standard",
) -> Path:
    """Write a synthetic dataset in the CamVid SegNet layout and return its root.

    Layout: train/ trainannot/ val/ valannot/ test/ testannot/ + train.txt val.txt test.txt
    ("train/x.png trainannot/x.png" per line) + synthetic.json (seed, sizes, difficulty, generator version).
    The folder appears atomically (written beside it, then renamed); an existing synthetic dataset
    there is replaced, any other non-empty folder is refused.
    """
    out = Path(out_dir)
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    h, w = _check_request(out, counts, size, difficulty)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.partial"  # mkdir, not mkdtemp: the user's umask, not 0700
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process with this pid that was killed
    tmp.mkdir()
    start = time.perf_counter()
    try:
        _draw_splits(tmp, counts, int(seed), (h, w), difficulty, workers)
        _write_lists(tmp, counts)
        _write_meta(tmp, int(seed), counts, (h, w), difficulty, round(time.perf_counter() - start, 2))
        if out.exists() and not (out / META_FILE).is_file():
            out.rmdir()  # an empty folder (anything else was refused above)
        replace_dir(tmp, out)  # old set aside, new one in, old deleted: `out` is always a whole dataset
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "synthetic dataset (%d images, %dx%d) written to %s in %.1f s",
        sum(counts.values()),
        h,
        w,
        out,
        time.perf_counter() - start,
    )
    return out


def _check_request(out: Path, counts: dict[str, int], size: tuple[int, int], difficulty: str) -> tuple[int, int]:
    """The image size (H, W) once counts, size, difficulty and the target folder are known to be usable,
    so that a bad request fails before anything is written."""
    if any(n < 0 for n in counts.values()):
        raise ResegError(f"image counts must be >= 0, got {counts}")
    h, w = int(size[0]), int(size[1])
    get_difficulty(difficulty)
    if h < 16 or w < 16:
        raise ResegError(f"synthetic image size must be at least 16x16, got {h}x{w}")
    if out.exists() and any(out.iterdir()) and not (out / META_FILE).is_file():
        raise ResegError(
            f"{out} exists and is not a synthetic dataset (no {META_FILE}); refusing to overwrite it; "
            f"choose another --out"
        )
    return h, w


def _draw_splits(
    root: Path, counts: dict[str, int], seed: int, size: tuple[int, int], difficulty: str, workers: int | None
) -> None:
    """Every split's images and labels under `root`, in worker processes for a large set."""
    for split in SPLITS:
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if sum(counts.values()) >= 64 else 1
    chunks = []
    for split, n in counts.items():
        step = max(1, math.ceil(n / max(1, workers * 4)))  # ~4 chunks per worker balance the load
        chunks += [
            _Chunk(str(root), seed, split, list(range(a, min(n, a + step))), size, difficulty)
            for a in range(0, n, step)
        ]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            list(pool.map(_write_chunk, chunks))
    else:
        for chunk in chunks:
            _write_chunk(chunk)


def _write_chunk(chunk: _Chunk) -> list[str]:
    cv2.setNumThreads(1)  # the processes are the parallelism
    names = []
    for i in chunk.indices:
        img, lab = synth_sample(chunk.seed, chunk.split, i, chunk.size, chunk.difficulty)
        name = f"{chunk.split}_{i:05d}.png"
        image_path = os.path.join(chunk.out, chunk.split, name)
        if not cv2.imwrite(image_path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), PNG):
            raise ResegError(f"could not write {image_path}")
        cv2.imwrite(os.path.join(chunk.out, f"{chunk.split}annot", name), lab, PNG)
        names.append(name)
    return names


def _write_meta(
    root: Path, seed: int, counts: dict[str, int], size: tuple[int, int], difficulty: str, seconds: float
) -> None:
    """synthetic.json: how the set was made, so a later run can tell whether it fits its config."""
    meta = {
        "generator": "reseg.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": counts,
        "size": list(size),
        "difficulty": difficulty,
        "classes": list(CAMVID.names),
        "void_label": VOID,
        "seconds": seconds,
    }
    (root / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _write_lists(root: Path, counts: dict[str, int]) -> None:
    """train.txt, val.txt, test.txt: "split/x.png splitannot/x.png" per image, as CamVid's loader reads."""
    for split, n in counts.items():
        lines = [f"{split}/{split}_{i:05d}.png {split}annot/{split}_{i:05d}.png" for i in range(n)]
        (root / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
