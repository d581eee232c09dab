"""Tiny Cityscapes fixtures in the official layout, and the official evaluator run in-process.

The label tables here come from cityscapesscripts (the independent reference), never from reseg,
so a wrong entry in reseg's class table shows up as a mismatch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CITY = "testcity"


def official_labels():
    from cityscapesscripts.helpers.labels import labels

    return [lab for lab in labels if lab.id >= 0]


def label_to_train_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for lab in official_labels():
        lut[lab.id] = lab.trainId if 0 <= lab.trainId < 255 else 255
    return lut


def train_to_label_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for lab in official_labels():
        if 0 <= lab.trainId < 255:
            lut[lab.trainId] = lab.id
    return lut


def _scene(rng: np.random.Generator, h: int, w: int, absent: set[int]) -> np.ndarray:
    """instanceIds map: 8x8 blocks of random label ids (every id 0..33), then rectangles of
    instances (id*1000+k) and crowd regions (bare label id) of the instance classes."""
    ids = [i for i in range(34) if i not in absent]
    blocks = rng.choice(ids, size=(h // 8, w // 8))
    inst = np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.int64)
    thing_ids = [i for i in (24, 25, 26, 27, 28, 29, 30, 31, 32, 33) if i not in absent]
    counters: dict[int, int] = {}
    for _ in range(10):
        lid = int(rng.choice(thing_ids))
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        hh, ww = int(rng.integers(2, h // 2)), int(rng.integers(2, w // 3))
        if rng.random() < 0.2:
            value = lid  # crowd: no instance id
        else:
            counters[lid] = counters.get(lid, -1) + 1
            value = lid * 1000 + counters[lid]
        inst[y0 : y0 + hh, x0 : x0 + ww] = value
    return inst


def make_cityscapes_fixture(
    root: Path,
    split: str = "val",
    n: int = 3,
    size: tuple[int, int] = (64, 128),
    seed: int = 0,
    absent: tuple[int, ...] = (31,),
) -> list[dict]:
    """Write leftImg8bit/ and gtFine/ (labelIds, instanceIds, labelTrainIds) for `n` images.

    Returns one dict per image: stem, gt (labelIds path), label_ids, instance_ids, train_ids.
    Label ids in `absent` never appear in the truth (31 = train: a class absent from the truth).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    l2t = label_to_train_lut()
    for i in range(n):
        base = f"{CITY}_{i:06d}_000019"
        img_dir = root / "leftImg8bit" / split / CITY
        gt_dir = root / "gtFine" / split / CITY
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        inst = _scene(rng, h, w, set(absent))
        label_ids = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
        image = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(img_dir / f"{base}_leftImg8bit.png")
        Image.fromarray(label_ids).save(gt_dir / f"{base}_gtFine_labelIds.png")
        Image.fromarray(inst.astype(np.uint16)).save(gt_dir / f"{base}_gtFine_instanceIds.png")
        Image.fromarray(l2t[label_ids]).save(gt_dir / f"{base}_gtFine_labelTrainIds.png")
        out.append(
            {
                "stem": f"{base}_leftImg8bit",
                "gt": str(gt_dir / f"{base}_gtFine_labelIds.png"),
                "label_ids": label_ids,
                "instance_ids": inst,
                "train_ids": l2t[label_ids],
            }
        )
    return out


def noisy_predictions(
    samples: list[dict], seed: int = 1, noise: float = 0.3, never: tuple[int, ...] = (16,)
) -> list[np.ndarray]:
    """Train-id predictions: the truth with a share of random pixels, random on ignored pixels.

    Train ids in `never` are never predicted (16 = train, absent from truth too: NaN class).
    """
    rng = np.random.default_rng(seed)
    allowed = np.array([c for c in range(19) if c not in never], dtype=np.uint8)
    preds = []
    for s in samples:
        t = s["train_ids"]
        rand = rng.choice(allowed, size=t.shape).astype(np.uint8)
        flip = rng.random(t.shape) < noise
        p = np.where((t == 255) | flip | np.isin(t, never), rand, t).astype(np.uint8)
        preds.append(p)
    return preds


def write_predictions(preds: list[np.ndarray], samples: list[dict], folder: Path, label_ids: bool) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    lut = train_to_label_lut()
    paths = []
    for p, s in zip(preds, samples):
        path = folder / f"{s['stem']}.png"
        Image.fromarray(lut[p] if label_ids else p).save(path)
        paths.append(str(path))
    return paths


def run_official(pred_paths: list[str], gt_paths: list[str], monkeypatch, tmp_path: Path) -> dict:
    """cityscapesscripts' evaluateImgLists in-process (quiet, no JSON file, instance scores on)."""
    if not hasattr(np, "in1d"):  # removed in numpy 2.4; the official script still calls it
        monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    args = ev.args
    for key, value in {
        "quiet": True,
        "JSONOutput": False,
        "evalInstLevelScore": True,
        "evalPixelAccuracy": False,
        "exportFile": str(tmp_path / "official.json"),
    }.items():
        monkeypatch.setattr(args, key, value, raising=False)
    return ev.evaluateImgLists(pred_paths, gt_paths, args)
