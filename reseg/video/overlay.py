"""The overlay of `reseg.viz.overlay`, computed on torch tensors (on the GPU: only uint8 frames come back).

Why on the device: on a fast GPU, colourising and blending full-size frames on the host costs more
than the model. The arithmetic reproduces OpenCV's `addWeighted` for uint8 bit for bit (the colour
term rounded to float32, then a fused multiply-add with the image term, rounded half to even), so a
frame looks the same whichever side drew it.
"""

from __future__ import annotations

import numpy as np
import torch

from reseg.errors import ResegError
from reseg.viz import Palette, palette_lut


def lut_tensor(palette: Palette | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 256x3 uint8 class-colour table of `viz.palette_lut` on `device`."""
    lut = palette if isinstance(palette, np.ndarray) and palette.shape == (256, 3) else palette_lut(palette)
    return torch.from_numpy(np.ascontiguousarray(lut)).to(device)


def colorize_tensor(masks: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """(..., H, W) uint8 train ids -> (..., H, W, 3) uint8 colours; 255 and ids without a colour are black."""
    return lut[masks.long()]


def overlay_tensor(images: torch.Tensor, masks: torch.Tensor, lut: torch.Tensor, opacity: float = 0.5) -> torch.Tensor:
    """(N, H, W, 3) uint8 images and (N, H, W) uint8 masks -> (N, H, W, 3) uint8 overlays, as `viz.overlay`."""
    if not 0.0 <= opacity <= 1.0:
        raise ResegError(f"opacity must be in [0, 1], got {opacity}")
    if images.shape[:-1] != masks.shape or images.shape[-1] != 3:
        raise ResegError(
            f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not match "
            f"(expected (N, H, W, 3) and (N, H, W))"
        )
    alpha = float(np.float32(1.0 - opacity))
    beta = float(np.float32(opacity))
    color = colorize_tensor(masks, lut)
    # image * alpha is exact in float64 and so is the sum: one rounding to float32, as a fused multiply-add
    term = (color.to(torch.float32) * beta).to(torch.float64)
    mixed = images.to(torch.float64).mul_(alpha).add_(term).to(torch.float32)
    out = mixed.round_().clamp_(0, 255).to(torch.uint8)
    ignored = (masks == 255).unsqueeze(-1)
    return torch.where(ignored, images, out)
