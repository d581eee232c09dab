"""Banded bilinear resizing (reseg.banded) and the Predictor's bounded-memory path for large photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reseg import banded
from reseg.banded import resize_rows, row_bands
from reseg.predictor import Predictor
from reseg.preprocess import Normalizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((37, 53), (120, 91)),
        ((120, 91), (37, 53)),
        ((40, 60), (40, 17)),
        ((40, 60), (13, 60)),
        ((1, 5), (7, 3)),
        ((9, 9), (1, 1)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_bands_of_rows_put_together_equal_one_interpolate(src, dst, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, *src), generator=gen).to(dtype)
    whole = F.interpolate(x.float(), size=dst, mode="bilinear", align_corners=False)
    for cuts in ([0, dst[0]], [0, 1, dst[0]], list(range(dst[0] + 1))):
        bands = [resize_rows(x, dst, a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        torch.testing.assert_close(torch.cat(bands, dim=-2), whole, rtol=0, atol=1e-3)


def test_a_band_reads_only_the_rows_it_blends():
    x = torch.zeros(1, 1, 1000, 8)
    x[..., 500:, :] = float("nan")  # rows a band near the top must never touch
    assert not resize_rows(x, (100, 8), 0, 40).isnan().any()


def test_row_bands_cover_every_row_once_within_the_budget():
    bands = list(row_bands(1000, bytes_per_row=300, budget=3000))
    assert bands[0] == (0, 10) and bands[-1] == (990, 1000) and len(bands) == 100
    assert list(row_bands(5, bytes_per_row=10**9, budget=1)) == [(i, i + 1) for i in range(5)]  # a row at least


def _reference(model, image, run, flip, scales):
    """The unbanded definition: normalise the whole image, resize it per pass, run, grow every pass's
    scores back to full size, average the softmax."""
    x = Normalizer()(torch.from_numpy(image[None]))
    h, w = image.shape[:2]
    total = 0
    passes = 0
    with torch.no_grad():
        for s in scales:
            size = (round(run[0] * s), round(run[1] * s))
            xi = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for f in (False, True) if flip else (False,):
                y = model(xi.flip(-1) if f else xi)
                y = y.flip(-1) if f else y
                total = total + F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False).softmax(1)
                passes += 1
    return total / passes


@pytest.mark.parametrize(("flip", "scales"), [(False, (1.0,)), (True, (0.75, 1.0))])
def test_a_large_image_runs_banded_and_gives_the_unbanded_result(monkeypatch, flip, scales):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(5, 5, 1)).eval()
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), 8, 0), 8, 1)  # 240x320
    predictor = Predictor(model, device="cpu", max_pixels=40 * 60, size_divisor=1, flip=flip, scales=scales)
    run = predictor.run_size(240, 320)
    assert run == (42, 57)
    monkeypatch.setattr(banded, "BAND_BYTES", 5 * 320 * 4 * 12)  # a dozen rows a band at most
    normalised: list[tuple[int, int]] = []
    scale = Normalizer.scale
    monkeypatch.setattr(Normalizer, "scale", lambda self, x: normalised.append(tuple(x.shape[-2:])) or scale(self, x))
    bands: list[int] = []
    combine = Predictor._combine
    monkeypatch.setattr(
        Predictor,
        "_combine",
        staticmethod(lambda *a, **k: (lambda out: bands.append(out.shape[-2]) or out)(combine(*a, **k))),
    )

    masks, probs = predictor.predict([image], return_probs=True)
    assert max(bands) <= 12 and sum(bands) == 240  # the scores at 240x320 existed a band at a time
    assert (240, 320) not in normalised  # nor did a float copy of the whole image
    want = _reference(model, image, run, flip, scales)[0]
    torch.testing.assert_close(torch.from_numpy(probs[0]), want, rtol=0, atol=1e-4)
    assert np.mean(masks[0] == want.argmax(0).numpy()) > 0.999
    assert np.array_equal(predictor.predict([image])[0], masks[0])  # masks alone: the same ids


def test_the_memory_tool_reports_each_size(tmp_path):
    """tools/predict_memory.py, which measures the bound, runs end to end (tiny sizes, tiny model)."""
    from tests.test_predictor import save_tiny_checkpoint, tiny_model

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", *tiny_model())
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "predict_memory.py"),
            "--checkpoint",
            str(ckpt),
            "--sizes",
            "60x80",
            "120x160",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["image", "MP", "peak"] and [ln.split()[0] for ln in lines[1:]] == [
        "60x80",
        "120x160",
    ]


def test_a_read_only_photo_predicts_without_warnings_and_stays_as_it_was():
    """The single-image batch is a view of the caller's array when it can be: never written to, and a
    read-only array (a memory map, a frozen buffer) is copied instead of making torch warn."""
    import warnings

    model = torch.nn.Conv2d(3, 4, 1).eval()
    predictor = Predictor(model, device="cpu", max_pixels=16 * 16, size_divisor=1)
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    before = image.copy()
    frozen = image.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = predictor.predict([image, frozen], batch_size=1)
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(image, before)
