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


@pytest.mark.parametrize(("size", "most"), [((240, 320), 0.15), ((360, 480), 0.13), ((720, 1280), 0.05)])
def test_the_legend_keeps_to_a_corner_of_the_frame(size, most):
    frame = np.full((*size, 3), 200, np.uint8)
    drawn = draw_legend(frame, list(CAMVID.names), CAMVID.palette)
    covered = np.any(drawn != frame, axis=2)
    rows, cols = np.nonzero(covered)
    assert covered.mean() <= most and rows.max() < size[0] // 2, covered.mean()
    assert rows.min() < 5 and cols.min() < 5  # top-left, as asked


def test_palettes_come_from_checkpoint_or_class_table():
    assert resolve_palette(["a", "b"], [[1, 2, 3], [4, 5, 6]]) == [(1, 2, 3), (4, 5, 6)]
    assert resolve_palette(list(CAMVID.names)) == [tuple(c) for c in CAMVID.palette]
    assert resolve_palette(list(CITYSCAPES.names)) == [tuple(c) for c in CITYSCAPES.palette]
    generated = resolve_palette(["x", "y", "z", "w"])
    assert len(generated) == 4 and len(set(generated)) == 4
    with pytest.raises(ResegError):
        palette_lut([(0, 0, 0)] * 256)


# ---------------------------------------------------------------- grids, the legend beside a figure, writing


def test_image_grid_places_tiles_row_by_row() -> None:
    from reseg.viz import image_grid

    tiles = [np.full((2, 3, 3), k * 40, np.uint8) for k in range(1, 6)]
    tiles[4] = np.full((1, 1, 3), 200, np.uint8)  # a smaller tile sits in the top-left of its cell
    grid = image_grid(tiles, cols=2, gap=1, background=255)
    assert grid.shape == (3 * 3, 2 * 4, 3)
    for k in range(4):
        r, c = divmod(k, 2)
        assert (grid[r * 3 : r * 3 + 2, c * 4 : c * 4 + 3] == (k + 1) * 40).all()
        assert (grid[r * 3 + 2, :] == 255).all() and (grid[:, c * 4 + 3] == 255).all()
    assert grid[6, 0, 0] == 200 and (grid[6, 1:3] == 255).all() and (grid[6:, 4:] == 255).all()
    assert image_grid(tiles[:2], cols=9).shape[1] == 2 * (3 + 4)  # never more columns than tiles
    with pytest.raises(ResegError):
        image_grid([], cols=2)


def test_with_legend_puts_every_class_colour_beside_the_image() -> None:
    from reseg.viz import with_legend

    image = np.zeros((11 * 20, 30, 3), np.uint8)
    out = with_legend(image, CAMVID.names, CAMVID.palette)
    assert out.shape[0] == image.shape[0] and out.shape[1] > image.shape[1]
    assert (out[:, :30] == 0).all()
    panel = out[:, 30:].reshape(-1, 3)
    present = {tuple(int(v) for v in c) for c in np.unique(panel, axis=0)}
    assert set(CAMVID.palette) <= present


def test_write_image_is_atomic_rgb_and_uses_the_umask(tmp_path) -> None:
    import os

    import cv2

    from reseg.viz import write_image

    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 255  # red
    old = os.umask(0o027)
    try:
        write_image(tmp_path / "sub" / "red.png", rgb)
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "red.png"
    assert path.stat().st_mode & 0o777 == 0o640
    assert (cv2.imread(str(path))[..., 2] == 255).all()  # OpenCV reads BGR: red is the last channel
    with pytest.raises(ResegError, match="image format"):
        write_image(tmp_path / "grid.nope", rgb)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["red.png", "sub"]


def test_browse_writes_a_grid_with_legend(tmp_path, capsys) -> None:
    import cv2

    from reseg.cli import main

    root = tmp_path / "camvid"
    for split in ("train",):
        for k in range(3):
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / f"f{k}.png"), np.full((8, 12, 3), 60 * k, np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"f{k}.png"), np.full((8, 12), k, np.uint8))
    out = tmp_path / "figs" / "grid.png"
    assert (
        main(
            [
                "browse",
                "--dataset",
                "camvid",
                "--data-root",
                str(root),
                "--out",
                str(out),
                "-n",
                "3",
                "--cols",
                "3",
                "--set",
                "data.crop_size=[8,12]",
                "data.scale_range=[1,1]",
                "--set",
                "data.color_jitter=0",
                "data.hflip=false",
            ]
        )
        == 0
    )
    assert str(out) in capsys.readouterr().out
    grid = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert grid.shape[1] > 3 * 16 and grid.shape[0] >= 2 * 8
    colours = {tuple(int(v) for v in c) for c in np.unique(grid.reshape(-1, 3), axis=0)}
    assert {CAMVID.palette[0], CAMVID.palette[1], CAMVID.palette[2]} <= colours
    assert main(["browse", "--dataset", "camvid", "--data-root", str(root), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    inside = root / "train" / "grid.png"
    assert main(["browse", "--dataset", "camvid", "--data-root", str(root), "--out", str(inside)]) == 2
    assert "the dataset folder" in capsys.readouterr().err and not inside.exists()
