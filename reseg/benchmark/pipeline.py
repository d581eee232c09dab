"""Data pipeline samples/s and the evaluator's confusion matrix against cityscapesscripts."""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from reseg.benchmark.timing import BenchOptions, fmt, time_fn, time_interleaved

# --------------------------------------------------------------------------------------------------
# data pipeline


def bench_data(
    size: tuple[int, int] = (360, 480), samples: int = 24, repeats: int = 3, workdir: str | None = None
) -> dict[str, float]:
    """Training samples/s of one worker (read, decode, augment, normalise) on generated synthetic data."""
    from reseg.config import load_config
    from reseg.data import build_dataset
    from reseg.data.synthetic import make_synthetic

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        count = min(samples, 16)
        root = make_synthetic(Path(tmp) / "synthetic", train=count, val=0, test=0, seed=0, size=size, workers=1)
        cfg = load_config(
            None,
            [
                "data.dataset=synthetic",
                f"data.root={root}",
                f"data.synthetic_sizes=[{count}, 0, 0]",
                f"data.crop_size=[{size[0]}, {size[1]}]",
            ],
        )
        ds = build_dataset(cfg, cfg.data.train_split)
        n = len(ds)

        def run() -> None:
            for i in range(samples):
                ds[i % n]

        t = time_fn(run, repeats, 1)
    return {"samples_s_per_worker": samples / t, "size": list(size)}


# --------------------------------------------------------------------------------------------------
# evaluator: our confusion matrix vs cityscapesscripts


def _label_pairs(
    n: int, size: tuple[int, int], num_classes: int = 19, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocky truth maps with some ignore, and predictions that agree on most pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    pairs = []
    for _ in range(n):
        blocks = rng.integers(0, num_classes, (h // 64 + 1, w // 64 + 1)).astype(np.uint8)
        gt = np.kron(blocks, np.ones((64, 64), np.uint8))[:h, :w].copy()
        gt[rng.random((h, w)) < 0.05] = 255
        pred = gt.copy()
        flip = rng.random((h, w)) < 0.2
        pred[flip] = rng.integers(0, num_classes, int(flip.sum()))
        pred[pred == 255] = 0
        pairs.append((pred, gt))
    return pairs


def bench_evaluator(
    pairs: int = 4, size: tuple[int, int] = (1024, 2048), repeats: int = 3, workdir: str | None = None
) -> dict[str, Any]:
    """Image pairs/s of reseg.metrics.ConfusionMatrix and of cityscapesscripts' evaluator on the same pairs.

    cityscapesscripts reads label-id PNGs, so its figure includes decoding; ours is given as both
    in-memory and file-reading throughput to compare like with like. Agreement of mIoU is reported.
    """
    from reseg.metrics import ConfusionMatrix

    data = _label_pairs(pairs, size)
    res: dict[str, Any] = {"pairs": pairs, "size": list(size)}
    tensors = [(torch.from_numpy(p), torch.from_numpy(g)) for p, g in data]

    def ours_mem() -> ConfusionMatrix:
        cm = ConfusionMatrix(19)
        for p, g in tensors:
            cm.update(p, g)
        return cm

    res["ours_pairs_s"] = pairs / time_fn(ours_mem, repeats)
    res["ours_miou"] = float(ours_mem().compute()["mIoU"])
    try:
        import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval
    except Exception:  # not installed
        res["cityscapes_pairs_s"] = None
        return res
    res.update(_bench_from_png(cs_eval, data, repeats, workdir))
    res["speedup_vs_cityscapes"] = res["ours_pairs_s"] / res["cityscapes_pairs_s"]
    return res


def _bench_from_png(
    cs_eval: Any, data: list[tuple[np.ndarray, np.ndarray]], repeats: int, workdir: str | None
) -> dict[str, float]:
    """Pairs/s of cityscapesscripts' evaluator and of ours, both reading the same label-id PNGs, and its mIoU."""
    import cv2
    from cityscapesscripts.helpers.labels import trainId2label

    from reseg.metrics import ConfusionMatrix

    lut = np.zeros(256, np.uint8)  # train id -> label id (255 -> 0, "unlabeled", ignored by the evaluator)
    inv = np.full(256, 255, np.uint8)  # label id -> train id, what a reader of these files does first
    for tid in range(19):
        lut[tid] = trainId2label[tid].id
        inv[lut[tid]] = tid
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, _numpy_in1d():
        files = _write_label_pngs(data, Path(tmp), lut)
        args = _quiet_pixel_args(cs_eval)

        def theirs() -> np.ndarray:
            conf = cs_eval.generateMatrix(args)
            for pf, gf in files:
                cs_eval.evaluatePair(pf, gf, conf, {}, {}, args)
            return conf

        def ours_files() -> None:
            cm = ConfusionMatrix(19)
            for pf, gf in files:
                p = inv[cv2.imread(pf, cv2.IMREAD_UNCHANGED)]
                g = inv[cv2.imread(gf, cv2.IMREAD_UNCHANGED)]
                cm.update(torch.from_numpy(p), torch.from_numpy(g))

        t = time_interleaved({"theirs": theirs, "ours_files": ours_files}, repeats, 1)
        conf = theirs()
        ious = [cs_eval.getIouScoreForLabel(trainId2label[tid].id, conf, args) for tid in range(19)]
    return {
        "cityscapes_pairs_s": len(data) / t["theirs"],
        "ours_files_pairs_s": len(data) / t["ours_files"],
        "cityscapes_miou": float(np.nanmean([v for v in ious if not np.isnan(v)])),
    }


def _write_label_pngs(
    data: list[tuple[np.ndarray, np.ndarray]], folder: Path, lut: np.ndarray
) -> list[tuple[str, str]]:
    """Each (prediction, truth) pair as label-id PNGs, the files cityscapesscripts' evaluator reads."""
    import cv2

    files = []
    for i, (p, g) in enumerate(data):
        pf, gf = folder / f"p{i}.png", folder / f"g{i}.png"
        cv2.imwrite(str(pf), lut[p])
        cv2.imwrite(str(gf), lut[g])
        files.append((str(pf), str(gf)))
    return files


def _quiet_pixel_args(cs_eval: Any) -> Any:
    """The evaluator's settings for pixel-level scores only, without its printing."""
    args = copy.copy(cs_eval.args)  # a copy: the module-level args are shared with anyone else using the evaluator
    args.quiet = True
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = True
    args.avgClassSize = {}
    return args


@contextlib.contextmanager
def _numpy_in1d() -> Iterator[None]:
    """np.in1d (removed in numpy 2.4, still called by cityscapesscripts 2.3) while the official evaluator runs,
    and gone again afterwards: no other code sees a numpy that is not the installed one."""
    if hasattr(np, "in1d"):
        yield
        return
    with mock.patch.object(np, "in1d", np.isin, create=True):
        yield


def run_data_section(o: BenchOptions) -> dict[str, Any]:
    """Training samples/s of one loader worker at the CamVid size (tiny with --quick)."""
    data = bench_data((48, 64) if o.quick else (360, 480), 4 if o.quick else 24, o.repeats)
    return {"data": data, "data_samples_s_per_worker": data["samples_s_per_worker"]}


def data_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    d = res["data"]
    return [(f"data: train samples/s per worker at {d['size'][0]}x{d['size'][1]}", fmt(d["samples_s_per_worker"], 1))]


def run_evaluator_section(o: BenchOptions) -> dict[str, Any]:
    """Confusion-matrix pairs/s at the Cityscapes size, ours and cityscapesscripts' where installed."""
    ev = bench_evaluator(2 if o.quick else 4, (64, 128) if o.quick else (1024, 2048), o.repeats)
    res: dict[str, Any] = {"evaluator": ev, "confmat_pairs_s": ev["ours_pairs_s"]}
    if ev.get("cityscapes_pairs_s"):
        res["confmat_vs_cityscapes"] = ev["speedup_vs_cityscapes"]
    return res


def evaluator_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    e = res["evaluator"]
    tag = f"{e['size'][0]}x{e['size'][1]}"
    rows = [
        (
            f"evaluator: ConfusionMatrix pairs/s at {tag} (in memory / from PNG)",
            f"{e['ours_pairs_s']:.1f} / {fmt(e.get('ours_files_pairs_s'), 1)}",
        )
    ]
    if e.get("cityscapes_pairs_s"):
        rows.append(("evaluator: cityscapesscripts pairs/s (from PNG)", fmt(e["cityscapes_pairs_s"], 2)))
        rows.append(("evaluator: mIoU ours / cityscapesscripts", f"{e['ours_miou']:.4f} / {e['cityscapes_miou']:.4f}"))
    return rows
