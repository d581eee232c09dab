"""Rare-class sampling (DAFormer, Hoyer et al., CVPR 2022): draw the training images so rare classes come often.

A class c is drawn with probability softmax((1 - f_c) / T) over f_c, its share of the labelled pixels, then
one of the images that hold it (c covers at least `MIN_SHARE` of the image's labelled pixels) uniformly. The
chance of an image is the sum of that over its classes. Why: where a rare class lives in a few images (a
train or a bus in a city's frames), uniform sampling shows it a handful of times an epoch however the loss
weighs it; a small T (DAFormer's 0.01) puts most draws on the rarest classes, a large one tends to uniform.
`reseg data-stats --rare-class-temperature T` shows what it would change for a dataset before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import ResegError

# An image holds a class when the class covers this share of its labelled pixels (DAFormer: 3,000 pixels of a
# ~2 M-pixel frame); fewer pixels are a few stray labels at an object's border, not an instance to learn from.
MIN_SHARE = 0.0015


def class_probabilities(pixels: np.ndarray, temperature: float) -> np.ndarray:
    """softmax((1 - f_c) / T) over the classes that hold any pixel, f_c = pixels_c / all; 0 for the others."""
    if temperature <= 0:
        raise ResegError(f"the rare-class temperature must be above 0, got {temperature}")
    pixels = np.asarray(pixels, np.float64)
    present = pixels > 0
    if not present.any():
        raise ResegError("rare-class sampling needs labelled pixels, and the training masks hold none")
    logits = (1.0 - pixels[present] / pixels.sum()) / temperature
    probs = np.zeros_like(pixels)
    probs[present] = np.exp(logits - logits.max())
    return probs / probs.sum()


def image_probabilities(counts: np.ndarray, temperature: float, min_share: float = MIN_SHARE) -> np.ndarray:
    """Each image's chance of a draw, from its per-class pixel counts ([N, C]); sums to 1.

    Classes that no image holds by `min_share` cannot be drawn: their chance goes to the others.
    """
    holds, probs = _drawable(counts, temperature, min_share)
    holders = holds.sum(axis=0)
    per_holder = np.divide(probs, holders, out=np.zeros_like(probs), where=holders > 0)
    weights = holds @ per_holder
    return weights / weights.sum()


def _drawable(counts: np.ndarray, temperature: float, min_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Which image holds which class ([N, C] booleans), and each class's chance of a draw (0 if none holds it)."""
    counts = np.asarray(counts, np.int64)
    holds = (counts > 0) & (counts >= min_share * counts.sum(axis=1, keepdims=True))
    return holds, class_probabilities(counts.sum(axis=0) * holds.any(axis=0), temperature)


def drawn_shares(counts: np.ndarray, chances: np.ndarray) -> np.ndarray:
    """Each class's share of the labelled pixels an epoch drawn with `chances` shows (uniform: the dataset's)."""
    pixels = np.asarray(chances, np.float64) @ np.asarray(counts, np.float64)
    return pixels / pixels.sum()


def image_counts(dataset: Any, cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """The dataset's per-image class pixel counts ([N, C]), cached in `cache_dir` when given."""
    from reseg.data.balance import cached, image_class_pixels

    def count() -> dict[str, Any]:
        counts, _ = image_class_pixels(dataset, progress)
        return {"class_names": list(dataset.classes.names), "pixels": counts.tolist()}

    stats = cached(dataset, cache_dir, "image_class_pixels", count)
    return np.asarray(stats["pixels"], np.int64).reshape(len(dataset), dataset.classes.num_classes)


def rare_class_weights(
    dataset: Any, temperature: float, cache_dir: str | Path | None = None, progress: bool = True
) -> list[float]:
    """`image_probabilities` of a dataset's masks: what the training sampler draws by."""
    return image_probabilities(image_counts(dataset, cache_dir, progress), temperature).tolist()


def sampling_summary(counts: np.ndarray, temperature: float) -> dict[str, Any]:
    """What rare-class sampling at `temperature` would change, for `reseg data-stats`: each class's chance of a
    draw and its pixel share in a drawn epoch, the likeliest image's chance against uniform sampling's."""
    chances = image_probabilities(counts, temperature)
    return {
        "temperature": temperature,
        "class_probabilities": _drawable(counts, temperature, MIN_SHARE)[1].tolist(),
        "drawn_shares": drawn_shares(counts, chances).tolist(),
        "likeliest_image_x_uniform": float(chances.max() * len(chances)),
        "never_drawn": int((chances == 0).sum()),
    }
