"""Class balancing: median frequency against a hand computation, inverse log, caching, data-stats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reseg.cli import main
from reseg.data.balance import class_weights, dataset_stats, inverse_log_weights, median_frequency_weights
from reseg.data.camvid import CamVidDataset
from reseg.errors import ResegError

# three 2x4 SegNet masks (11 = void); classes 0, 1, 3 occur, the other eight never do
MASKS = [
    np.array([[0, 0, 0, 0], [1, 1, 3, 3]], np.uint8),
    np.array([[0, 0, 0, 0], [0, 0, 0, 11]], np.uint8),
    np.array([[1, 1, 1, 1], [1, 1, 11, 11]], np.uint8),
]


def _write(root: Path, masks: list[np.ndarray] = MASKS) -> CamVidDataset:
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "trainannot").mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(masks):
        cv2.imwrite(str(root / "train" / f"m{i}.png"), np.zeros((*m.shape, 3), np.uint8))
        cv2.imwrite(str(root / "trainannot" / f"m{i}.png"), m)
    return CamVidDataset(root, "train")


def test_median_frequency_by_hand(tmp_path: Path) -> None:
    ds = _write(tmp_path)
    stats = dataset_stats(ds, progress=False)
    assert stats["images"] == 3 and stats["class_names"][3] == "Road"
    assert stats["pixels"][:4] == [11, 8, 0, 2] and sum(stats["pixels"]) == 21
    # freq_c = pixels of c / total pixels of the images containing c (8 pixels per image)
    f_sky, f_bld, f_road = 11 / 16, 8 / 16, 2 / 8  # sky in masks 0,1; building in 0,2; road in 0
    median = float(np.median([f_sky, f_bld, f_road]))  # = 0.5, over the classes that occur
    expected = [median / f_sky, median / f_bld, 0.0, median / f_road] + [0.0] * 7
    np.testing.assert_allclose(stats["median_frequency_weights"], expected, rtol=1e-12)
    assert stats["median_frequency_weights"][:4] == pytest.approx([0.5 / 0.6875, 1.0, 0.0, 2.0])
    # inverse log frequency: p_c over labelled pixels (void excluded)
    expected_il = [1 / math.log(1.02 + p) if p else 0.0 for p in np.array(stats["pixels"]) / 21]
    np.testing.assert_allclose(stats["inverse_log_weights"], expected_il, rtol=1e-12)
    np.testing.assert_allclose(stats["frequencies"][:4], [11 / 21, 8 / 21, 0, 2 / 21])


def test_weight_functions_edge_cases() -> None:
    assert median_frequency_weights(np.zeros(3), np.zeros(3)).tolist() == [0, 0, 0]
    assert inverse_log_weights(np.zeros(3)).tolist() == [0, 0, 0]
    w = median_frequency_weights(np.array([10, 10]), np.array([20, 20]))
    assert w.tolist() == [1.0, 1.0]


def test_cache_keyed_by_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _write(tmp_path / "data")
    cache = tmp_path / "cache"
    w = class_weights(ds, "median_frequency", cache, progress=False)
    assert isinstance(w, torch.Tensor) and w.dtype == torch.float32 and w.shape == (11,)
    files = list(cache.glob("class_stats_*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["images"] == 3

    def boom(self, i):  # a cache hit must not read a single mask
        raise AssertionError("mask read despite cache")

    with monkeypatch.context() as m:
        m.setattr(CamVidDataset, "read_mask", boom)
        torch.testing.assert_close(class_weights(ds, "median_frequency", cache, progress=False), w)
        il = class_weights(ds, "inverse_log", cache, progress=False)
        assert il.shape == (11,)
    assert class_weights(ds, "none", cache) is None
    with pytest.raises(ResegError, match="median"):
        class_weights(ds, "median", cache)
    # a changed mask (different content and size) is a new key
    _write(tmp_path / "data", [MASKS[0], MASKS[1], np.full((2, 4), 3, np.uint8)])
    ds2 = CamVidDataset(tmp_path / "data", "train")
    w2 = class_weights(ds2, "median_frequency", cache, progress=False)
    assert len(list(cache.glob("class_stats_*.json"))) == 2 and not torch.equal(w, w2)


def test_data_stats_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write(tmp_path / "data")
    out = tmp_path / "stats.json"
    rc = main(
        [
            "data-stats",
            "--dataset",
            "camvid",
            "--data-root",
            str(tmp_path / "data"),
            "--split",
            "train",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "Pedestrian" in text and "median-freq" in text and str(out) in text
    stats = json.loads(out.read_text())
    for key in ("images", "class_names", "pixels", "median_frequency_weights", "inverse_log_weights", "frequencies"):
        assert key in stats
    assert stats["images"] == 3 and len(stats["pixels"]) == 11 == len(stats["class_names"])


def test_cache_file_gets_the_users_umask(tmp_path: Path) -> None:
    """Not 0600 as tempfile.mkstemp makes it: a colleague in the group can read the shared cache."""
    import os
    import stat

    ds = _write(tmp_path / "data")
    old = os.umask(0o027)
    try:
        class_weights(ds, "median_frequency", tmp_path / "cache", progress=False)
    finally:
        os.umask(old)
    (cached,) = (tmp_path / "cache").glob("class_stats_*.json")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o640
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]  # no temporary file left
