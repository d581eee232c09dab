"""Colour masks, overlays, legends and where palettes come from."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data.classes import CAMVID, CITYSCAPES
from reseg.errors import ResegError
from reseg.viz import colorize, draw_legend, legend_panel, overlay, palette_lut, resolve_palette, side_by_side

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_colorize_maps_ids_and_blackens_ignore_and_unknown():
    mask = np.array([[0, 1, 2], [255, 7, 1]], dtype=np.uint8)
    out = colorize(mask, PALETTE)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 255, 0] and out[0, 2].tolist() == [0, 0, 255]
    assert out[1, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [0, 0, 0]
    assert np.array_equal(colorize(mask.astype(np.int64), PALETTE), out)
    assert np.array_equal(colorize(mask, palette_lut(PALETTE)), out)


def test_overlay_blends_and_leaves_ignored_pixels_alone():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (4, 5)).astype(np.uint8)
    mask[0, :] = 255
    assert np.array_equal(overlay(image, mask, PALETTE, 0.0), image)
    full = overlay(image, mask, PALETTE, 1.0)
    assert np.array_equal(full[1:], colorize(mask, PALETTE)[1:])
    assert np.array_equal(full[0], image[0])
    half = overlay(image, mask, PALETTE, 0.5).astype(int)
    expect = (image.astype(int) + colorize(mask, PALETTE)) / 2
    assert np.abs(half[1:] - expect[1:]).max() <= 1
    with pytest.raises(ResegError, match="opacity"):
        overlay(image, mask, PALETTE, 1.5)
    with pytest.raises(ResegError, match="size"):
        overlay(image, mask[:2], PALETTE, 0.5)


def test_legend_panel_and_in_frame_legend():
    names = list(CAMVID.names)
    panel = legend_panel(names, CAMVID.palette, height=220)
    assert panel.shape[0] == 220 and panel.shape[2] == 3 and panel.shape[1] > 20
    # every class colour appears as a swatch
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    assert all(tuple(c) in colours for c in CAMVID.palette)
    frame = np.full((120, 160, 3), 200, np.uint8)
    drawn = draw_legend(frame, names, CAMVID.palette)
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)
    assert np.array_equal(frame, np.full((120, 160, 3), 200, np.uint8))  # input untouched
    tiny = draw_legend(np.zeros((20, 24, 3), np.uint8), names, CAMVID.palette)  # too small: still no crash
    assert tiny.shape == (20, 24, 3)
    assert side_by_side(frame, drawn).shape == (120, 320, 3)


def test_palettes_come_from_checkpoint_or_class_table():
    assert resolve_palette(["a", "b"], [[1, 2, 3], [4, 5, 6]]) == [(1, 2, 3), (4, 5, 6)]
    assert resolve_palette(list(CAMVID.names)) == [tuple(c) for c in CAMVID.palette]
    assert resolve_palette(list(CITYSCAPES.names)) == [tuple(c) for c in CITYSCAPES.palette]
    generated = resolve_palette(["x", "y", "z", "w"])
    assert len(generated) == 4 and len(set(generated)) == 4
    with pytest.raises(ResegError):
        palette_lut([(0, 0, 0)] * 256)
