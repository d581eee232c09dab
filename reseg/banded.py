"""Bilinear resizing a band of output rows at a time, so a 48-megapixel photo never needs a float copy of
itself or of its class scores: the Predictor shrinks a large uint8 image to the size it runs at and grows
the scores back to the image's size, one band at a time, turning each band into class ids at once.

`resize_rows` gives rows start..stop-1 of `F.interpolate(x, size, mode="bilinear", align_corners=False)`
(equal to rounding), reading only the input rows those output rows blend.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

BAND_BYTES = 64 * 2**20  # working memory for one band of float rows


def source_rows(
    in_size: int, out_size: int, start: int, stop: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output rows start..stop-1 of a bilinear resize from in_size to out_size rows (half-pixel centres,
    as F.interpolate with align_corners=False): the lower and upper input rows each blends and the weight
    of the upper one, computed in float32 as PyTorch does."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=device)
    dst = torch.arange(start, stop, dtype=torch.float32, device=device)
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0.0)
    lower = src.long().clamp_max(in_size - 1)
    upper = (lower + 1).clamp_max(in_size - 1)
    return lower, upper, (src - lower).clamp(0.0, 1.0)


def resize_rows(x: torch.Tensor, size: tuple[int, int], start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows start..stop-1 of (N, C, H, W) `x` bilinearly resized to `size`, as float32; `x` may be uint8.

    The whole output is F.interpolate itself; a band blends the two input rows of each output row, then
    resizes the band's width, so its memory is that of the band, whatever the size of `x`."""
    out_h, out_w = size
    stop = out_h if stop is None else stop
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x[..., start:stop, :].float()
    if start == 0 and stop == out_h and x.is_floating_point():
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    if in_h == out_h:
        rows = x[..., start:stop, :].float()
    else:
        lower, upper, weight = source_rows(in_h, out_h, start, stop, x.device)
        weight = weight.view(-1, 1)
        rows = x.index_select(-2, lower).float().mul_(1.0 - weight)
        rows.add_(x.index_select(-2, upper).float().mul_(weight))
    if in_w != out_w:
        rows = F.interpolate(rows, size=(rows.shape[-2], out_w), mode="bilinear", align_corners=False)
    return rows


def row_bands(height: int, bytes_per_row: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) bands covering `height` rows, each within `budget` bytes (BAND_BYTES unless given) at
    `bytes_per_row`, one row at least."""
    rows = max(1, (budget or BAND_BYTES) // max(1, bytes_per_row))
    for start in range(0, height, rows):
        yield start, min(height, start + rows)
