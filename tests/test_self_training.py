"""Self-training on new streets (reseg.self_training): class-balanced pseudo-labels against a NumPy reference,
crops that keep labels on their pixels, a training that learns the labels and leaves the batch norms alone,
and `reseg adapt --self-train` writing what the library computes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from train_utils import one_thread, tiny_checkpoint  # noqa: F401  (one_thread: a fixture)

from reseg.adaptation import batchnorm_layers
from reseg.cli import main
from reseg.engine.checkpoint import load_checkpoint
from reseg.errors import ResegError
from reseg.self_training import IGNORE, class_balanced_pseudo_labels, random_view, self_train


def _reference_labels(probs: np.ndarray, keep: float, valid: np.ndarray) -> np.ndarray:
    """Per class, drop the floor((1 - keep) * n) least confident of the n valid pixels predicted as it."""
    confidence, labels = probs.max(axis=1), probs.argmax(axis=1)
    out = np.where(valid, labels, IGNORE)
    for c in np.unique(labels[valid]):
        chosen = (labels == c) & valid
        order = np.argsort(confidence[chosen], kind="stable")
        drop = int(np.floor((1 - keep) * chosen.sum()))
        flat = np.flatnonzero(chosen)[order[:drop]]
        out.reshape(-1)[flat] = IGNORE
    return out


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_pseudo_labels_keep_each_classes_most_confident_share(keep):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 9, 11, generator=gen) * 2
    logits[:, 4] -= 4  # a rare class: one global threshold would drop most of it
    probs = logits.softmax(dim=1)
    valid = torch.ones(3, 9, 11, dtype=torch.bool)
    valid[:, 7:, :] = False  # padding below the image
    ours = class_balanced_pseudo_labels(probs, keep, valid)
    expected = _reference_labels(probs.numpy(), keep, valid.numpy())
    np.testing.assert_array_equal(ours.numpy(), expected)
    assert (ours[:, 7:] == IGNORE).all()
    predicted = probs.argmax(dim=1)
    for c in range(5):
        n = int(((predicted == c) & valid).sum())
        assert int((ours == c).sum()) == n - int(np.floor((1 - keep) * n))


def test_keeping_everything_labels_every_valid_pixel():
    probs = torch.rand(2, 3, 4, 4).softmax(dim=1)
    np.testing.assert_array_equal(class_balanced_pseudo_labels(probs, 1.0), probs.argmax(dim=1))


def test_a_random_view_moves_labels_with_their_pixels():
    """Blocks of constant colour whose label is that colour: wherever the view is constant around a pixel
    (inside a block, away from bilinear edges), the pixel's label must be that block's."""
    blocks = torch.arange(16).reshape(1, 1, 4, 4).float()
    image = blocks.repeat_interleave(16, -1).repeat_interleave(16, -2).repeat(2, 3, 1, 1)  # (2, 3, 64, 64)
    labels = image[:, 0].long()
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        x, y = random_view(image, labels, gen)
        assert x.shape == image.shape and y.shape == labels.shape
        colour = x[:, :1]
        highest, lowest = F.max_pool2d(colour, 3, 1, 1), -F.max_pool2d(-colour, 3, 1, 1)
        inside = (highest == lowest)[:, 0]
        assert inside.float().mean() > 0.5
        assert torch.equal(y[inside], x[:, 0][inside].long())


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def _inputs() -> list[tuple[torch.Tensor, tuple[int, int]]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 16, 20, generator=gen), (16, 18)) for _ in range(2)]


def test_self_training_fits_its_labels_and_leaves_the_batch_norms_alone():
    model, batches = _net().eval(), _inputs()
    for m in batchnorm_layers(model):  # statistics the training must keep
        m.running_mean.fill_(0.3)
        m.running_var.fill_(2.0)
    first_layer = model[0].weight
    first_layer.requires_grad_(False)  # a frozen encoder stays frozen
    frozen = first_layer.detach().clone()
    plain = contextlib.nullcontext
    record = self_train(
        model, batches, iterations=60, keep=0.5, lr=3e-2, batch_size=4, teacher_autocast=plain, train_autocast=plain
    )
    assert record["iterations"] == 60 and 0.4 < record["labelled_share"] < 0.5  # half of the 18 of 20 columns
    assert record["last_loss"] < record["first_loss"] / 2
    assert not model.training
    bn = batchnorm_layers(model)[0]
    assert torch.all(bn.running_mean == 0.3) and torch.all(bn.running_var == 2.0)
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(model[0].weight, frozen)


def test_bad_self_training_settings_name_the_option():
    plain = contextlib.nullcontext
    for kwargs, message in [
        ({"iterations": 0}, "--self-train needs a number of iterations >= 1"),
        ({"iterations": 5, "keep": 0.0}, "--keep must be a share of pixels in"),
        ({"iterations": 5, "lr": -1.0}, "--lr must be a positive number"),
    ]:
        with pytest.raises(ResegError, match=message):
            self_train(_net(), _inputs(), teacher_autocast=plain, train_autocast=plain, **kwargs)


def _images(folder: Path, count: int = 5) -> None:
    folder.mkdir(parents=True)
    gen = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(gen.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(folder / f"f{i}.png")


def test_adapt_self_train_writes_trained_weights(tmp_path, capsys, one_thread):  # noqa: F811
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, [f"class{i}" for i in range(11)], "model.encoder=vgg16_bn", "data.size_divisor=16")
    _images(tmp_path / "frames")
    base = ["adapt", "--checkpoint", str(ckpt), str(tmp_path / "frames")]
    assert main([*base, "--out", str(tmp_path / "bn.pt")]) == 0
    assert main([*base, "--out", str(tmp_path / "st.pt"), "--self-train", "4", "--lr", "1e-3"]) == 0
    assert "then 4 self-training steps" in capsys.readouterr().out
    bn, st = load_checkpoint(tmp_path / "bn.pt"), load_checkpoint(tmp_path / "st.pt")
    record = st["adapted"]["self_training"]
    assert record["iterations"] == 4 and record["lr"] == 1e-3 and record["keep"] == 0.5
    changed = {k for k, v in st["model"].items() if not torch.equal(v, bn["model"][k])}
    assert changed and not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert main([*base, "--out", str(tmp_path / "x.pt"), "--self-train", "2", "--keep", "1.5"]) == 2
    assert "--keep must be a share of pixels in (0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_crop_without_labels_leaves_the_weights_finite():
    """Inputs that are all padding get no label: every step sees only ignored pixels and must not divide by
    zero."""
    model = _net().eval()
    plain = contextlib.nullcontext
    padding_only = [(x, (0, 0)) for x, _ in _inputs()]
    record = self_train(model, padding_only, iterations=3, batch_size=4, teacher_autocast=plain, train_autocast=plain)
    assert record["labelled_share"] == 0.0
    assert record["last_loss"] == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())
