"""Adapt a trained model to new streets by training it on its own confident predictions there (self-training).

Re-estimating the batch norms (reseg.adaptation) moves the inputs' statistics; it does not change what the
layers compute. Self-training does: the model labels the unlabeled images of the target streets, each class
keeps only its most confident share of pixels (class-balanced, as in Zou et al. 2018, so that the road does
not crowd out poles and signs), and the model trains briefly on those labels. No training data is needed
(source-free). Crops, scales and flips of each image must agree with the labels its whole view gave, which is
what carries the confident regions into the less certain ones.

The batch norms keep their (adapted) statistics during the training: they normalise each batch the way
inference will, and a few batches of one street would otherwise replace the training drives' statistics
altogether (which cost 3.5 points on CamVid's daylight drive, docs/results.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from reseg.errors import ResegError

if TYPE_CHECKING:  # torch loads on first use, so that `reseg adapt --help` stays light
    import torch
    from torch import nn

DEFAULT_KEEP = 0.5  # each class keeps its most confident half of the pixels it was predicted on
DEFAULT_LR = 1e-4  # a thirtieth of the CPU recipes' peak: the model refines, it does not relearn
IGNORE = 255
CROP_RANGE = (0.5, 1.0)  # the side of each training crop, as a share of the image's, resized back to full


def check_self_training(iterations: int, keep: float, lr: float) -> None:
    """Refuse values that would do nothing or diverge, naming the option."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ResegError(f"--self-train needs a number of iterations >= 1, got {iterations!r}")
    if not 0 < keep <= 1:
        raise ResegError(f"--keep must be a share of pixels in (0, 1], got {keep!r}")
    if not lr > 0 or not math.isfinite(lr):
        raise ResegError(f"--lr must be a positive number, got {lr!r}")


def class_balanced_pseudo_labels(
    probs: torch.Tensor, keep: float, valid: torch.Tensor | None = None, ignore_index: int = IGNORE
) -> torch.Tensor:
    """(N, H, W) labels from (N, C, H, W) probabilities: each pixel's most likely class, kept where its
    confidence is among the top `keep` share of the pixels predicted as that class over all N images, else
    `ignore_index` (as is every pixel outside `valid`, e.g. padding). A per-class threshold keeps rare classes
    in the labels where one global threshold would keep mostly road and sky."""
    import torch

    confidence, labels = probs.max(dim=1)
    if valid is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    out = torch.where(valid, labels, torch.full_like(labels, ignore_index))
    for c in labels[valid].unique().tolist():
        chosen = (labels == c) & valid
        values = confidence[chosen]
        drop = int(math.floor((1 - keep) * values.numel()))
        if drop == 0:
            continue
        threshold = torch.kthvalue(values.float().cpu(), drop).values.to(confidence.device)
        out[chosen & (confidence <= threshold)] = ignore_index
    return out


def teacher_probs(model: nn.Module, x: torch.Tensor, autocast: Callable[[], Any]) -> torch.Tensor:
    """Softmax probabilities of `model` (in eval mode) on `x`, averaged with those of the mirrored image."""
    import torch

    with torch.no_grad(), autocast():
        direct = model(x).float().softmax(dim=1)
        mirrored = model(x.flip(-1)).float().softmax(dim=1).flip(-1)
    return (direct + mirrored) / 2


def random_view(
    images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random crop (side CROP_RANGE of the image's, anywhere) of the whole batch, resized back to full
    size (images bilinear, labels nearest), mirrored with probability one half."""
    import torch
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    share = CROP_RANGE[0] + (CROP_RANGE[1] - CROP_RANGE[0]) * float(torch.rand((), generator=generator))
    ch, cw = max(1, round(h * share)), max(1, round(w * share))
    top = int(torch.randint(0, h - ch + 1, (), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (), generator=generator))
    x = images[..., top : top + ch, left : left + cw]
    y = labels[..., top : top + ch, left : left + cw]
    if (ch, cw) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        y = F.interpolate(y[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    if bool(torch.rand((), generator=generator) < 0.5):
        x, y = x.flip(-1), y.flip(-1)
    return x, y


def self_train(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, tuple[int, int]]],
    *,
    iterations: int,
    keep: float = DEFAULT_KEEP,
    lr: float = DEFAULT_LR,
    batch_size: int = 8,
    teacher_autocast: Callable[[], Any],
    train_autocast: Callable[[], Any],
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train `model` in place for `iterations` steps on class-balanced pseudo-labels of `batches` (normalised
    network inputs with the size of the image in each, the rest being padding, as
    Predictor.sized_network_inputs gives them); returns what it did. The labels come once, from
    the model as given, mirrored and not; AdamW at `lr` with a cosine decay to zero; batch norms frozen."""
    import torch
    import torch.nn.functional as F

    check_self_training(iterations, keep, lr)
    batches = [(x, size) for x, size in batches if x.shape[0] > 0]
    if not batches:
        raise ResegError("no images to self-train on")
    was_training = model.training
    model.eval()
    probs = [teacher_probs(model, x, teacher_autocast).cpu() for x, _ in batches]
    groups: dict[tuple[int, int], list[int]] = {}  # batches of one padded size train together
    for i, (x, _) in enumerate(batches):
        groups.setdefault(tuple(x.shape[-2:]), []).append(i)
    data = []
    for members in groups.values():
        valid = torch.cat([_inside(batches[i][0], batches[i][1]) for i in members])
        labels = class_balanced_pseudo_labels(torch.cat([probs[i] for i in members]), keep, valid)
        data.append((torch.cat([batches[i][0] for i in members]), labels))
    labelled = sum(int((y != IGNORE).sum()) for _, y in data) / sum(y.numel() for _, y in data)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([float(len(y)) for _, y in data])
    losses: list[float] = []
    _train_all_but_batchnorm(model)
    try:
        for step in range(iterations):
            images, labels = data[int(torch.multinomial(sizes, 1, generator=generator))]
            pick = torch.randint(0, len(labels), (min(batch_size, len(labels)),), generator=generator)
            x, y = random_view(images[pick], labels[pick].to(images.device), generator)
            with train_autocast():
                logits = model(x)
            labelled_pixels = max(int((y != IGNORE).sum()), 1)  # a crop of ignored pixels only adds nothing
            loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE, reduction="sum") / labelled_pixels
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if log is not None and (step + 1) % 20 == 0:
                log(f"self-training {step + 1}/{iterations}: loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    finally:
        model.train(was_training)
    return {
        "iterations": iterations,
        "keep": keep,
        "lr": lr,
        "labelled_share": round(labelled, 4),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


def _inside(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) True on the image and False on the padding below and right of it."""
    import torch

    valid = torch.zeros((x.shape[0], *x.shape[-2:]), dtype=torch.bool)
    valid[:, : size[0], : size[1]] = True
    return valid


def _train_all_but_batchnorm(model: nn.Module) -> None:
    """Training mode (dropout on) with every batch norm left in eval mode: they normalise with their stored
    statistics and do not update them."""
    from torch import nn

    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
