"""Colour masks, overlays and legends for predictions.

Colours come from the class tables (reseg.data.classes) or the checkpoint; this module keeps no table
of its own, so a class has the same colour in every figure, video and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from reseg.errors import ResegError

Palette = Sequence[Sequence[int]]


def resolve_palette(class_names: Sequence[str], palette: Palette | None = None) -> list[tuple[int, int, int]]:
    """The checkpoint's palette if it has one, else the class table with the same names, else the table's default."""
    from reseg.data.classes import CLASS_TABLES, default_palette

    n = len(class_names)
    if palette is not None and len(palette) >= n:
        return [tuple(int(c) for c in rgb) for rgb in palette[:n]]  # type: ignore[misc]
    wanted = [str(c).lower() for c in class_names]
    for table in CLASS_TABLES.values():
        if [str(c).lower() for c in table.names] == wanted:
            return [tuple(int(c) for c in rgb) for rgb in table.palette]  # type: ignore[misc]
    return [tuple(c) for c in default_palette(n)]  # type: ignore[misc]


def palette_lut(palette: Palette) -> np.ndarray:
    """256x3 uint8 lookup table: class id -> colour; ids without a colour (255 = ignore) are black."""
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    if len(pal) > 255:
        raise ResegError(f"a palette has at most 255 colours (255 is the ignore label), got {len(pal)}")
    if pal.size and (pal.min() < 0 or pal.max() > 255):
        raise ResegError("palette colours must be in 0..255")
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(pal)] = pal
    return lut


def colorize(mask: np.ndarray, palette: Palette | np.ndarray) -> np.ndarray:
    """HxW train ids -> HxWx3 uint8 colours in the palette's channel order; 255 and unknown ids are black."""
    lut = palette if isinstance(palette, np.ndarray) and palette.shape == (256, 3) else palette_lut(palette)
    m = np.asarray(mask)
    if m.dtype != np.uint8:
        m = np.where((m >= 0) & (m < 256), m, 255).astype(np.uint8)
    return lut[m]


def overlay(image: np.ndarray, mask: np.ndarray, palette: Palette | np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the image; ignored pixels (255) keep the image as it is."""
    if not 0.0 <= opacity <= 1.0:
        raise ResegError(f"opacity must be in [0, 1], got {opacity}")
    img = np.asarray(image)
    if img.shape[:2] != np.shape(mask)[:2]:
        raise ResegError(f"image {img.shape[:2]} and mask {np.shape(mask)[:2]} differ in size")
    color = colorize(mask, palette)
    out = cv2.addWeighted(img, 1.0 - opacity, color, opacity, 0.0)
    ignored = np.asarray(mask) == 255
    if ignored.any():
        out[ignored] = img[ignored]
    return out


def _text_scale(row_h: int) -> float:
    return max(0.25, min(1.0, row_h / 28.0))


def legend_panel(
    class_names: Sequence[str],
    palette: Palette,
    height: int,
    width: int | None = None,
    background: tuple[int, int, int] = (30, 30, 30),
) -> np.ndarray:
    """A HxWx3 panel listing each class beside its colour, to put next to a frame."""
    n = max(1, len(class_names))
    row_h = max(6, min(28, height // n))
    scale = _text_scale(row_h)
    thick = 1
    if width is None:
        longest = max(
            (cv2.getTextSize(str(c), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for c in class_names), default=0
        )
        width = row_h + 12 + longest
    panel = np.empty((height, width, 3), dtype=np.uint8)
    panel[:] = background
    _draw_rows(panel, class_names, palette, row_h, scale, thick, 0, 0)
    return panel


def draw_legend(
    image: np.ndarray, class_names: Sequence[str], palette: Palette, corner: str = "top-left", alpha: float = 0.6
) -> np.ndarray:
    """A copy of `image` with a semi-transparent legend box in a corner (keeps the frame size).

    The box is at most half the frame's height, so on small frames (a 240x320 drive) it keeps to a
    corner (about an eighth of the frame) instead of hiding the scene.
    """
    img = np.ascontiguousarray(image).copy()
    h, w = img.shape[:2]
    n = max(1, len(class_names))
    row_h = max(6, min(22, (h // 2 - 4) // n))
    scale = _text_scale(row_h)
    longest = max((cv2.getTextSize(str(c), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for c in class_names), default=0)
    box_w = min(w, row_h + 12 + longest)
    box_h = min(h, row_h * n + 4)
    x0 = 0 if "left" in corner else w - box_w
    y0 = 0 if "top" in corner else h - box_h
    region = img[y0 : y0 + box_h, x0 : x0 + box_w]
    shade = (region.astype(np.float32) * (1 - alpha)).astype(np.uint8)
    _draw_rows(shade, class_names, palette, row_h, scale, 1, 2, 2)
    img[y0 : y0 + box_h, x0 : x0 + box_w] = shade
    return img


def _draw_rows(
    canvas: np.ndarray, names: Sequence[str], palette: Palette, row_h: int, scale: float, thick: int, x0: int, y0: int
) -> None:
    sw = max(3, row_h - 4)
    for i, name in enumerate(names):
        top = y0 + i * row_h
        if top + row_h > canvas.shape[0] + 1:
            break
        color = tuple(int(c) for c in palette[i]) if i < len(palette) else (0, 0, 0)
        cv2.rectangle(canvas, (x0 + 2, top + 2), (x0 + 2 + sw, top + 2 + sw), color, thickness=-1)
        cv2.putText(
            canvas,
            str(name),
            (x0 + sw + 6, top + row_h - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two images of one height joined horizontally (the original | overlay view)."""
    if left.shape[0] != right.shape[0]:
        right = cv2.resize(
            right,
            (int(round(right.shape[1] * left.shape[0] / right.shape[0])), left.shape[0]),
            interpolation=cv2.INTER_NEAREST,
        )
    return np.concatenate([left, right], axis=1)


def image_grid(tiles: Sequence[np.ndarray], cols: int, gap: int = 4, background: int = 255) -> np.ndarray:
    """Tiles (HxWx3, any sizes) laid out row by row, `cols` per row, in cells of the largest tile's size."""
    if not tiles:
        raise ResegError("an image grid needs at least one tile")
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * (th + gap), cols * (tw + gap), 3), background, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = r * (th + gap), c * (tw + gap)
        grid[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return grid


def with_legend(image: np.ndarray, class_names: Sequence[str], palette: Palette) -> np.ndarray:
    """`image` with the legend panel to its right, as tall as the image (for figures and sample grids)."""
    return side_by_side(image, legend_panel(class_names, palette, image.shape[0]))


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB (HxWx3) or single-channel image atomically; the format follows the file's extension."""
    from reseg.io import atomic_path

    path = Path(path)
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    with atomic_path(path) as tmp:
        try:
            ok = cv2.imwrite(str(tmp), data)
        except cv2.error:
            ok = False
        if not ok:
            raise ResegError(f"could not write {path} (is the extension an image format, e.g. .png?)")
    return path


def sample_grid(dataset, num: int, cols: int, seed: int = 0, max_width: int = 512) -> tuple[np.ndarray, int]:
    """(grid, count): `num` random samples of a dataset, each image above its colour label, plus the legend.

    Samples go through the dataset's own transform, so the grid shows what the model sees.
    """
    import torch

    from reseg.data import denormalize

    if hasattr(dataset.transform, "set_random_seed"):
        dataset.transform.set_random_seed(seed)
    n = min(num, len(dataset))
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    palette = dataset.classes.palette
    tiles = []
    for i in indices:
        sample = dataset[i]
        image = denormalize(sample["image"])
        mask = sample["mask"].numpy().astype(np.uint8)
        if image.shape[1] > max_width:  # keep the grid viewable for Cityscapes-sized images
            size = (max_width, max(1, round(image.shape[0] * max_width / image.shape[1])))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        tiles.append(np.concatenate([image, colorize(mask, palette)], axis=0))
    return with_legend(image_grid(tiles, cols), dataset.classes.names, palette), n
