"""Albumentations pipelines built from the config, and the normalisation used by every entry point.

Padding and every geometric warp fill masks with 255 (ignore), never with 0, which is a real class in every
dataset here; masks are warped with nearest-neighbour interpolation, so no blended label value appears.
Masks leave the pipeline as int64 tensors, ready for the loss.

data.augment picks a preset: "standard" (scale, crop, flip, colour jitter) or "strong", which adds what
changes between drives and cameras, the gap a model meets on streets it never saw: exposure and tone
curve, white balance and hue, contrast, lens and motion blur, sensor noise, JPEG compression, a wider
scale range, small rotations (a camera mounted askew) and perspective (another mounting height or pitch).
"photometric" is "strong" without its geometry (the standard scale range, no rotation or perspective): what
another camera or another day changes, with the shapes the model sees left as in "standard".
"""

from __future__ import annotations

import os
from typing import Any

# albumentations 2 asks PyPI for a newer release on import (a 2-second network wait, a warning offline);
# reseg pins its version, so the check is off unless the user set the variable themselves
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from reseg.data.classes import IGNORE_INDEX

# The statistics of the ImageNet-trained VGG-16 encoder (torchvision weights).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class MaskToLong(A.DualTransform):
    """Cast the mask to int64 so ToTensorV2 yields the dtype the loss expects."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return mask.astype(np.int64, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


def _pair(value: Any, name: str) -> tuple[int, int]:
    if value is None or len(value) != 2:
        raise ValueError(f"{name} must be [height, width], got {value!r}")
    return int(value[0]), int(value[1])


AUGMENT_PRESETS = ("standard", "photometric", "strong")
STRONG_SCALE_WIDENING = 1.25  # "strong" scales from data.scale_range's min / 1.25 to its max * 1.25


def _warp_args() -> dict[str, Any]:
    """How every geometric warp treats the two targets: bilinear image with black borders, nearest-neighbour
    mask with ignored borders."""
    return {
        "interpolation": cv2.INTER_LINEAR,
        "mask_interpolation": cv2.INTER_NEAREST,
        "border_mode": cv2.BORDER_CONSTANT,
        "fill": 0,
        "fill_mask": IGNORE_INDEX,
    }


def strong_geometry() -> list[Any]:
    """Small rotations and perspective changes, before the crop (so few border pixels reach it)."""
    return [
        A.Affine(rotate=(-5.0, 5.0), p=0.5, **_warp_args()),
        A.Perspective(scale=(0.02, 0.05), keep_size=True, p=0.3, **_warp_args()),
    ]


def strong_photometric() -> list[Any]:
    """What another camera, another day or another compression does to the same street (image only)."""
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),  # exposure, contrast
        A.RandomGamma(gamma_limit=(70, 150), p=0.5),  # the camera's tone curve
        A.OneOf(
            [
                A.PlanckianJitter(mode="blackbody", p=1.0),  # white balance: another colour temperature
                A.RGBShift(r_shift_limit=15, g_shift_limit=15, b_shift_limit=15, p=1.0),
            ],
            p=0.5,
        ),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=25, val_shift_limit=0, p=0.4),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.MotionBlur(blur_limit=(3, 7), p=1.0)], p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.3),  # sensor noise, up to 5% of the range
        A.ImageCompression(quality_range=(40, 95), p=0.3),
    ]


def build_transforms(cfg: Any, train: bool) -> A.Compose:
    """Train: scale -> [strong: rotate, perspective] -> pad (image 0, mask 255) -> crop -> flip -> jitter ->
    [strong, photometric: photometric] -> normalise -> tensor (data.augment names the preset).

    Eval: optional resize to data.eval_size -> normalise -> tensor. No padding here: the
    predictor pads to data.size_divisor (mask fill 255) and crops back after prediction.
    `cfg` is a Config (cfg.data is read).
    """
    data = cfg.data
    steps = _train_steps(data) if train else _eval_steps(data)
    steps += [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=255.0), MaskToLong(), ToTensorV2()]
    return A.Compose(steps)


def _train_steps(data: Any) -> list[Any]:
    """The augmentations of build_transforms' train pipeline, up to normalising."""
    crop_h, crop_w = _pair(data.crop_size, "data.crop_size")
    preset = data.augment
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"data.augment must be one of {', '.join(AUGMENT_PRESETS)}, got {preset!r}")
    strong = preset == "strong"
    steps = _random_scale(data.scale_range, strong)
    if strong:
        steps += strong_geometry()
    steps += [
        A.PadIfNeeded(
            min_height=crop_h,
            min_width=crop_w,
            position="center",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
        ),
        A.RandomCrop(height=crop_h, width=crop_w),
    ]
    if data.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    jitter = float(data.color_jitter)
    if jitter > 0:
        steps.append(
            A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(0.5, jitter / 4), p=0.8)
        )
    if preset in ("photometric", "strong"):
        steps += strong_photometric()
    return steps


def _random_scale(scale_range: Any, strong: bool) -> list[Any]:
    """data.scale_range [lo, hi] as a RandomScale step (none for [1, 1]); the strong preset widens it."""
    lo, hi = (float(v) for v in scale_range)
    if lo <= 0 or hi < lo:
        raise ValueError(f"data.scale_range must be [lo, hi] with 0 < lo <= hi, got {scale_range}")
    if strong:
        lo, hi = lo / STRONG_SCALE_WIDENING, hi * STRONG_SCALE_WIDENING
    if (lo, hi) == (1.0, 1.0):
        return []
    # albumentations adds 1 to scale_limit: (-0.5, 1.0) means 0.5x .. 2x
    return [
        A.RandomScale(
            scale_limit=(lo - 1.0, hi - 1.0),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        )
    ]


def _eval_steps(data: Any) -> list[Any]:
    """The optional resize to data.eval_size of the eval pipeline."""
    if data.eval_size is None:
        return []
    eval_h, eval_w = _pair(data.eval_size, "data.eval_size")
    return [A.Resize(height=eval_h, width=eval_w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)]


def normalize(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 (or NxHxWx3) -> float32 tensor 3xHxW (Nx3xHxW) with ImageNet statistics."""
    t = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    return ((t - mean) / std).contiguous()


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of `normalize`: 3xHxW (or Nx3xHxW) float tensor -> RGB uint8 HxWx3 (NxHxWx3)."""
    t = tensor.detach().float().cpu()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    t = (t * std + mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    t = t.permute(0, 2, 3, 1) if t.ndim == 4 else t.permute(1, 2, 0)
    return np.ascontiguousarray(t.numpy())
