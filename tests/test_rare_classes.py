"""Rare-class sampling: DAFormer's two-stage draw simulated literally, the weighted epoch, caching, a resumed run."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from train_utils import make_tiny_dataset, tiny_config

from reseg.config import Config
from reseg.data.camvid import CamVidDataset
from reseg.data.rare_classes import (
    MIN_SHARE,
    class_probabilities,
    drawn_shares,
    image_probabilities,
    rare_class_weights,
)
from reseg.engine import trainer as trainer_mod
from reseg.engine.checkpoint import load_checkpoint
from reseg.engine.resume import warn_if_order_differs
from reseg.engine.samplers import EpochBatchSampler, sample_seed
from reseg.errors import ResegError

# per-image pixels of four classes; class 3 is rare, class 2 never occurs
COUNTS = np.array([[900, 100, 0, 0], [500, 480, 0, 20], [1000, 0, 0, 0], [600, 390, 0, 10]])


def test_class_probabilities_are_a_softmax_of_one_minus_the_share() -> None:
    pixels = np.array([70.0, 20.0, 0.0, 10.0])
    t = 0.1
    logits = np.array([0.3, 0.8, 0.9]) / t  # 1 - share of the classes present
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(class_probabilities(pixels, t), [expected[0], expected[1], 0.0, expected[2]])
    # a large temperature tends to uniform over the classes present, a small one to the rarest
    np.testing.assert_allclose(class_probabilities(pixels, 1e6), [1 / 3, 1 / 3, 0, 1 / 3], atol=1e-6)
    assert class_probabilities(pixels, 1e-3)[3] > 0.99
    with pytest.raises(ResegError, match="temperature"):
        class_probabilities(pixels, 0)
    with pytest.raises(ResegError, match="labelled pixels"):
        class_probabilities(np.zeros(3), 0.1)


def test_image_chances_match_the_two_stage_draw_simulated() -> None:
    """DAFormer draws a class, then an image holding it: simulated here with numpy, 200,000 times."""
    t = 0.2
    rng = np.random.default_rng(0)
    probs = class_probabilities(COUNTS.sum(axis=0), t)
    holders = [np.flatnonzero((COUNTS[:, c] > 0) & (COUNTS[:, c] >= MIN_SHARE * COUNTS.sum(1))) for c in range(4)]
    classes = rng.choice(4, size=200_000, p=probs)
    drawn = np.array([rng.choice(holders[c]) for c in classes])
    observed = np.bincount(drawn, minlength=4) / len(drawn)
    np.testing.assert_allclose(image_probabilities(COUNTS, t), observed, atol=0.005)
    # the images holding the rare class come more often than the one that holds only the commonest
    chances = image_probabilities(COUNTS, t)
    assert chances[1] > chances[0] > chances[2] and chances.sum() == pytest.approx(1.0)


def test_a_few_stray_pixels_do_not_make_an_image_a_holder() -> None:
    counts = np.array([[9_999, 0, 1], [5_000, 5_000, 0], [8_000, 0, 2_000]])
    chances = image_probabilities(counts, 0.01)
    # image 0's single pixel of class 2 is under MIN_SHARE: class 2's draws all go to image 2
    assert chances[2] > 0.9 and chances[0] < 0.01
    assert image_probabilities(counts, 0.01, min_share=0.0)[0] > 0.3


def test_weighted_epochs_draw_by_the_weights_and_resume_exactly() -> None:
    weights = [0.0, 0.1, 0.6, 0.3]
    sampler = EpochBatchSampler(4000, 8, seed=3, weights=weights + [0.0] * 3996)
    drawn = [i for batch in sampler for i, _ in batch]
    assert len(drawn) == 4000 and set(drawn) <= {1, 2, 3}
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / 4000, weights, atol=0.03)
    # a pure function of (seed, epoch); repeats of one image get their own augmentation seeds
    again = EpochBatchSampler(4000, 8, seed=3, weights=weights + [0.0] * 3996)
    assert list(again) == list(sampler)
    seeds = [s for batch in sampler for i, s in batch if i == 2]
    assert len(set(seeds)) == len(seeds)
    assert seeds[0] != sample_seed(3, 0, 2)
    first = list(sampler)
    sampler.set_epoch(0, start_batch=100)
    assert list(sampler) == first[100:]
    sampler.set_epoch(1)
    assert list(sampler) != first
    # two ranks of batch 4 make the one process's batches of 8
    r0 = list(EpochBatchSampler(4000, 4, seed=3, rank=0, world_size=2, weights=weights + [0.0] * 3996))
    r1 = list(EpochBatchSampler(4000, 4, seed=3, rank=1, world_size=2, weights=weights + [0.0] * 3996))
    assert all(a + b == s for a, b, s in zip(r0, r1, first))
    with pytest.raises(ValueError, match="3 sampling weights for 4 images"):
        EpochBatchSampler(4, 2, weights=[1, 1, 1])


def test_a_resume_under_other_weights_says_the_order_differs(caplog: pytest.LogCaptureFixture) -> None:
    saved = EpochBatchSampler(10, 2).state_dict()
    with caplog.at_level(logging.WARNING, logger="reseg.train"):
        warn_if_order_differs(saved, EpochBatchSampler(10, 2))
        assert "differs" not in caplog.text
        warn_if_order_differs(saved, EpochBatchSampler(10, 2, weights=[0.1] * 10))
    assert "data order differs" in caplog.text and "weights uniform ->" in caplog.text


def _camvid(root: Path, masks: list[np.ndarray]) -> CamVidDataset:
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(masks):
        cv2.imwrite(str(root / "train" / f"m{i}.png"), np.zeros((*m.shape, 3), np.uint8))
        cv2.imwrite(str(root / "trainannot" / f"m{i}.png"), m)
    return CamVidDataset(root, "train")


def test_dataset_weights_read_the_masks_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    road, pole = 3, 2  # CamVid's SegNet ids
    masks = [np.full((20, 20), road, np.uint8) for _ in range(3)]
    masks[1][:, :2] = pole
    ds = _camvid(tmp_path / "data", masks)
    cache = tmp_path / "cache"
    weights = rare_class_weights(ds, 0.01, cache, progress=False)
    assert weights[1] > 0.9 and sum(weights) == pytest.approx(1.0)
    assert len(list(cache.glob("image_class_pixels_*.json"))) == 1

    def boom(self, i):
        raise AssertionError("mask read despite cache")

    monkeypatch.setattr(CamVidDataset, "read_mask", boom)
    assert rare_class_weights(ds, 0.01, cache, progress=False) == weights
    assert rare_class_weights(ds, 10.0, cache, progress=False)[1] < weights[1]  # other temperature, same counts


def test_training_draws_by_rarity_and_resumes_bit_identical(tmp_path: Path) -> None:
    """data.rare_class_temperature reaches the sampler, its counts are cached in the work dir, and a run
    stopped at 4 and resumed ends with the weights of one that never stopped."""
    root = make_tiny_dataset(tmp_path / "data", train=16, val=4)
    sections = {"train": {"max_iters": 8, "val_interval": 4}, "data": {"rare_class_temperature": 0.05}}
    whole = trainer_mod.Trainer(Config.from_dict(tiny_config(root, **sections)), tmp_path / "whole", progress=False)
    assert whole.fit()["iteration"] == 8
    weights = whole.data.sampler.weights
    assert weights is not None and weights.max() > 1.5 / 16  # not uniform
    assert list((tmp_path / "whole").glob("image_class_pixels_*.json"))
    state = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert state["sampler"]["weights"] != "uniform"

    cut_sections = {**sections, "train": {"max_iters": 4, "val_interval": 4}}
    trainer_mod.train(Config.from_dict(tiny_config(root, **cut_sections)), tmp_path / "cut", progress=False)
    trainer_mod.train(
        Config.from_dict(tiny_config(root, **sections)),
        tmp_path / "cut",
        resume=tmp_path / "cut" / "last.pt",
        progress=False,
    )
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in state["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def test_data_stats_shows_what_rare_class_sampling_would_draw(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from reseg.cli import main

    road, pole = 3, 2
    masks = [np.full((20, 20), road, np.uint8) for _ in range(4)]
    masks[1][:, :4] = pole
    masks.append(np.full((20, 20), 11, np.uint8))  # all void: nothing to draw it for
    _camvid(tmp_path / "data", masks)
    out = tmp_path / "stats.json"
    args = ["data-stats", "--dataset", "camvid", "--data-root", str(tmp_path / "data"), "--no-progress"]
    assert main([*args, "--rare-class-temperature", "0.01", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rare-class sampling at temperature 0.01:" in text and "1 never drawn" in text
    rcs = json.loads(out.read_text())["rare_class_sampling"]
    # pole is 16/400 of the pixels; drawn by rarity, the one image holding it comes nearly every time
    counts = np.zeros((5, 11))
    counts[:4, road] = 400
    counts[1, road], counts[1, pole] = 320, 80
    expected = drawn_shares(counts, image_probabilities(counts, 0.01))
    np.testing.assert_allclose(rcs["drawn_shares"], expected)
    assert rcs["drawn_shares"][pole] == pytest.approx(0.2, abs=0.01) and rcs["likeliest_image_x_uniform"] > 4.9
    assert main([*args, "--rare-class-temperature", "-1"]) == 2
    assert "temperature must be above 0, got -1" in capsys.readouterr().err
