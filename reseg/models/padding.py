"""The one pad-to-stride helper: models, the predictor and export pad bottom/right and crop back.

Under tracing (TorchScript, ONNX) the pad is always applied, possibly by 0, with its amount computed
from the input's shape, so the exported graph works for any height and width with no size branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_amounts(h: int, w: int, divisor: int) -> tuple[int, int]:
    """Rows and columns to add so that (h, w) become multiples of `divisor`."""
    return (divisor - h % divisor) % divisor, (divisor - w % divisor) % divisor


def pad_to_multiple(x: torch.Tensor, divisor: int | None, mode: str = "constant") -> torch.Tensor:
    """Pad bottom/right so H and W are multiples of `divisor` (0 in normalised space = the mean colour)."""
    if divisor is None or divisor <= 1:
        return x
    ph, pw = pad_amounts(x.shape[-2], x.shape[-1], divisor)
    if torch.jit.is_tracing():
        return F.pad(x, (0, pw, 0, ph))
    return pad_bottom_right(x, ph, pw, mode)


def pad_bottom_right(x: torch.Tensor, ph: int, pw: int, mode: str = "constant") -> torch.Tensor:
    """Add `ph` rows and `pw` columns: zeros ("constant"), "reflect" (replicate when too short) or "replicate"."""
    if not ph and not pw:
        return x
    if mode == "reflect" and (ph >= x.shape[-2] or pw >= x.shape[-1]):
        mode = "replicate"  # reflection needs the pad to be smaller than the image
    if mode == "constant":
        return F.pad(x, (0, pw, 0, ph), mode="constant", value=0.0)
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def crop_to(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The top-left (h, w) of the padded result: the prediction for the original input."""
    return y[..., :h, :w]
