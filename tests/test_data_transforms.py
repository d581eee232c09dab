"""Augmentation pipelines, normalisation and the DataLoader helper."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reseg.config import Config
from reseg.data import build_dataset, build_loader
from reseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, denormalize, normalize


def _cfg(**data) -> Config:
    cfg = Config()
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_train_pads_with_ignore_and_zero_image() -> None:
    cfg = _cfg(crop_size=[24, 32], scale_range=[1.0, 1.0], hflip=False, color_jitter=0.0)
    t = build_transforms(cfg, train=True)
    image = np.full((10, 12, 3), 200, np.uint8)
    mask = np.zeros((10, 12), np.uint8)  # class 0 everywhere: padding must not look like it
    out = t(image=image, mask=mask)
    img, m = out["image"], out["mask"]
    assert img.dtype == torch.float32 and tuple(img.shape) == (3, 24, 32)
    assert m.dtype == torch.int64 and tuple(m.shape) == (24, 32)
    assert (m == 0).sum().item() == 10 * 12 and (m == 255).sum().item() == 24 * 32 - 120
    pad_value = torch.tensor([-a / b for a, b in zip(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(img[:, m == 255].T, pad_value.expand(24 * 32 - 120, 3), rtol=0, atol=1e-5)


def test_train_scale_crop_flip_jitter_shapes() -> None:
    cfg = _cfg(crop_size=[16, 20], scale_range=[0.5, 2.0], hflip=True, color_jitter=0.3)
    t = build_transforms(cfg, train=True)
    t.set_random_seed(0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    mask = rng.integers(0, 11, (30, 40), dtype=np.uint8)
    values = set()
    for _ in range(6):
        out = t(image=image, mask=mask)
        assert tuple(out["image"].shape) == (3, 16, 20) and tuple(out["mask"].shape) == (16, 20)
        values |= set(out["mask"].unique().tolist())
    assert values <= set(range(11)) | {255}  # nearest-neighbour masks: no blended label values
    names = [type(s).__name__ for s in t.transforms]
    assert names[:4] == ["RandomScale", "PadIfNeeded", "RandomCrop", "HorizontalFlip"] and "ColorJitter" in names
    pad = t.transforms[1]
    assert pad.fill == 0 and pad.fill_mask == 255


def test_eval_keeps_full_image_or_resizes() -> None:
    image = np.zeros((21, 35, 3), np.uint8)
    mask = np.ones((21, 35), np.uint8)
    out = build_transforms(_cfg(), train=False)(image=image, mask=mask)
    assert tuple(out["image"].shape) == (3, 21, 35) and out["mask"].dtype == torch.int64  # no padding here
    out = build_transforms(_cfg(eval_size=[16, 24]), train=False)(image=image, mask=mask)
    assert tuple(out["image"].shape) == (3, 16, 24) and (out["mask"] == 1).all()
    only = build_transforms(_cfg(), train=False)(image=image)
    assert "mask" not in only or only.get("mask") is None


def test_normalize_roundtrip() -> None:
    image = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    t = normalize(image)
    assert t.shape == (3, 5, 7)
    ref = build_transforms(_cfg(), train=False)(image=image)["image"]
    torch.testing.assert_close(t, ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(denormalize(t), image)
    batch = normalize(np.stack([image, image]))
    assert batch.shape == (2, 3, 5, 7) and np.array_equal(denormalize(batch)[1], image)


def _tiny_camvid(root: Path, n: int = 6, same: bool = False) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "trainannot"):
        (root / split).mkdir(parents=True)
    for i in range(n):
        r = np.random.default_rng(0) if same else rng
        cv2.imwrite(str(root / "train" / f"f{i}.png"), r.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "trainannot" / f"f{i}.png"), r.integers(0, 12, (12, 16), dtype=np.uint8))


def _epoch(loader) -> list[torch.Tensor]:
    return [b["image"].clone() for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_reproducible_and_seeded(tmp_path: Path, workers: int) -> None:
    _tiny_camvid(tmp_path)
    cfg = _cfg(
        dataset="camvid",
        root=str(tmp_path),
        crop_size=[8, 8],
        scale_range=[0.5, 1.5],
        batch_size=2,
        num_workers=workers,
    )
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        ds = build_dataset(cfg, "train")
        loader = build_loader(ds, cfg, train=True)
        assert loader.drop_last and loader.persistent_workers == (workers > 0)
        runs.append(_epoch(loader))
        del loader
    assert len(runs[0]) == 3
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_workers_do_not_replay_one_augmentation_stream(tmp_path: Path) -> None:
    _tiny_camvid(tmp_path, n=4, same=True)  # identical samples: only the augmentation differs
    cfg = _cfg(
        dataset="camvid", root=str(tmp_path), crop_size=[8, 8], scale_range=[0.5, 1.5], batch_size=2, num_workers=2
    )
    torch.manual_seed(5)
    loader = build_loader(build_dataset(cfg, "train"), cfg, train=True)
    first, second = _epoch(loader)  # one batch from each worker
    assert first.shape == (2, 3, 8, 8)
    assert not torch.equal(first, second)


def test_loader_eval_and_small_datasets(tmp_path: Path) -> None:
    _tiny_camvid(tmp_path, n=3)
    cfg = _cfg(dataset="camvid", root=str(tmp_path), batch_size=8, val_batch_size=2, num_workers=0)
    train = build_loader(build_dataset(cfg, "train"), cfg, train=True)
    assert not train.drop_last and len(list(train)) == 1  # fewer samples than a batch: still one batch
    ev = build_loader(build_dataset(cfg, "train", transform=build_transforms(cfg, train=False)), cfg, train=False)
    batches = list(ev)
    assert [b["image"].shape[0] for b in batches] == [2, 1] and batches[0]["path"][0].endswith("f0.png")


def _two_tone_checkerboard(h: int = 96, w: int = 128, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A grey checkerboard whose label is its colour: class 0 dark (40), class 1 light (215)."""
    yy, xx = np.mgrid[:h, :w]
    label = (((yy // block) + (xx // block)) % 2).astype(np.uint8)
    image = np.where(label[..., None] == 1, 215, 40).astype(np.uint8).repeat(3, axis=2)
    return image, label


def test_standard_preset_is_the_pipeline_it_was() -> None:
    names = [type(s).__name__ for s in build_transforms(_cfg(crop_size=[16, 20]), train=True).transforms]
    assert names == [
        "RandomScale",
        "PadIfNeeded",
        "RandomCrop",
        "HorizontalFlip",
        "ColorJitter",
        "Normalize",
        "MaskToLong",
        "ToTensorV2",
    ]


def test_strong_preset_keeps_labels_valid_and_aligned_with_the_image() -> None:
    """Every warp moves image and label together (nearest labels, ignore in new borders); every photometric
    change keeps the dark and light squares apart: so wherever a label is away from a square's edge, the
    image's brightness there must say the same class. A label warped differently from its image would not."""
    cfg = _cfg(augment="strong", crop_size=[96, 128], scale_range=[1.0, 1.0], hflip=True, color_jitter=0.2)
    t = build_transforms(cfg, train=True)
    names = [type(s).__name__ for s in t.transforms]
    for name in ("Affine", "Perspective", "RandomGamma", "GaussNoise", "ImageCompression"):
        assert name in names, name
    scale = t.transforms[0]
    assert scale.scale_limit == pytest.approx((1 / 1.25 - 1, 1.25 - 1))  # the wider scale range
    image, label = _two_tone_checkerboard()
    borders = changed = 0
    kernel = np.ones((9, 9), np.uint8)  # 4 pixels from any edge: blur, resampling and JPEG stay out
    for seed in range(40):
        t.set_random_seed(seed)
        out = t(image=image, mask=label)
        mask = out["mask"].numpy()
        assert set(np.unique(mask).tolist()) <= {0, 1, 255}
        borders += int((mask == 255).any())
        grey = denormalize(out["image"]).astype(np.float32).mean(axis=2)
        interiors = [cv2.erode((mask == c).astype(np.uint8), kernel).astype(bool) for c in (0, 1)]
        if not all(i.sum() > 50 for i in interiors):
            continue
        dark, light = (np.median(grey[i]) for i in interiors)
        assert light > dark + 40, seed
        threshold = (dark + light) / 2
        agree = np.concatenate([grey[interiors[0]] < threshold, grey[interiors[1]] > threshold]).mean()
        assert agree > 0.98, (seed, agree)
        changed += int(abs(dark - 40) > 3 or abs(light - 215) > 3)
    assert borders >= 5 and changed >= 20  # the warps and the photometric changes did happen


def test_photometric_preset_is_strong_without_its_geometry() -> None:
    """The photometric preset adds every image-only change of "strong" and none of its warps or its wider scale
    range: the label comes out exactly as the standard preset's crop of it."""
    kw = {"crop_size": [96, 128], "scale_range": [0.8, 1.2], "hflip": True, "color_jitter": 0.2}
    photometric = build_transforms(_cfg(augment="photometric", **kw), train=True)
    strong = build_transforms(_cfg(augment="strong", **kw), train=True)
    standard = build_transforms(_cfg(augment="standard", **kw), train=True)
    names = [type(s).__name__ for s in photometric.transforms]
    strong_names = [type(s).__name__ for s in strong.transforms]
    assert names == [n for n in strong_names if n not in ("Affine", "Perspective")]
    assert photometric.transforms[0].scale_limit == pytest.approx(standard.transforms[0].scale_limit)
    image, label = _two_tone_checkerboard()
    changed = 0
    for seed in range(10):
        photometric.set_random_seed(seed)
        standard.set_random_seed(seed)
        a, b = photometric(image=image, mask=label), standard(image=image, mask=label)
        assert torch.equal(a["mask"], b["mask"])  # same scale, crop and flip: the geometry is the standard one
        changed += int(not torch.equal(a["image"], b["image"]))
    assert changed >= 5
