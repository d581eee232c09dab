"""ClassMix (Olsson et al., WACV 2021) on a training batch: an image, with probability p, gets the pixels of
half the classes of its neighbour in the batch pasted over it, and their labels with them.

The pasted objects keep their shapes and land on another street, so with three drives to learn from a model
still sees pedestrians, cyclists and signs in front of backgrounds they never stood in; a lever of the
unseen-drive study (docs/results.md), model-agnostic, applied to the batch so it costs a few tensor ops.
"""

from __future__ import annotations

import torch


def class_mix(
    images: torch.Tensor, masks: torch.Tensor, p: float, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) images and (N, H, W) labels -> a mixed copy (the inputs when nothing mixes).

    Image i takes from image i-1 (the batch rolled by one; the sources are the unmixed images) every pixel of
    a random half (rounded down) of the classes labelled there; a source with one class gives nothing, and
    ignored pixels are never pasted. Draws from torch's global generator, so a seeded run and its `--resume`
    mix alike."""
    n = images.shape[0]
    if p <= 0 or n < 2:
        return images, masks
    mixes = torch.rand(n) < p
    if not bool(mixes.any()):
        return images, masks
    source_images, source_masks = images.roll(1, 0), masks.roll(1, 0)
    pasted = torch.zeros(masks.shape, dtype=torch.bool, device=masks.device)
    for i in torch.nonzero(mixes).flatten().tolist():
        classes = source_masks[i].unique()
        classes = classes[classes != ignore_index]
        half = len(classes) // 2
        if half:
            picked = classes[torch.randperm(len(classes))[:half].to(classes.device)]
            pasted[i] = torch.isin(source_masks[i], picked)
    return torch.where(pasted[:, None], source_images, images), torch.where(pasted, source_masks, masks)
