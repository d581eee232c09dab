"""How RGB uint8 images become the network's input, in one place.

The Predictor, the video pipeline, int8 calibration and the export report all normalise with the
statistics the training transforms use, so a model sees the same numbers whichever path feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from reseg.banded import resize_rows
from reseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reseg.errors import ResegError

T = TypeVar("T")


def normalization_stats() -> tuple[np.ndarray, np.ndarray]:
    """Mean and std on the 0..255 scale, taken from the training transforms so every path agrees."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float64).reshape(3)
    std = np.asarray(IMAGENET_STD, dtype=np.float64).reshape(3)
    if mean.max() <= 1.0:  # albumentations convention: fractions of max_pixel_value=255
        mean, std = mean * 255.0, std * 255.0
    return mean, std


class Normalizer:
    """(N, H, W, 3) uint8 RGB tensor -> normalised float32 (N, 3, H, W), the statistics kept on `device`."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        mean, std = normalization_stats()
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale(images.permute(0, 3, 1, 2).float())

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB on the 0..255 scale (e.g. a uint8 image already resized) -> normalised."""
        return (x - self.mean) / self.std

    def at_size(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> normalised float32 (N, 3, h, w) at `size`, resized from the uint8 pixels
        (reseg.banded) so a large photo never gets a float copy; inference and int8 calibration both use it."""
        return self.scale(resize_rows(images.permute(0, 3, 1, 2), size))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 view of an RGB(A) or grey uint8 image; anything else is an error naming its shape/dtype."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ResegError(f"expected an RGB image HxWx3, got an array of shape {a.shape}")
    if a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8:
        raise ResegError(f"expected a uint8 RGB image, got dtype {a.dtype}")
    return a


def rgb_batch(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """RGB images of one size (or a single HxWx3 image) -> one contiguous (N, H, W, 3) uint8 array."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    arrays = [as_rgb(im) for im in images]
    if not arrays:
        raise ResegError("preprocess got no images")
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ResegError(f"a batch needs images of one size, got {sorted({a.shape for a in arrays})}")
    if len(arrays) == 1 and arrays[0].flags.writeable:  # a view, not a copy: a large photo is held once
        return np.ascontiguousarray(arrays[0][None])
    return np.ascontiguousarray(np.stack(arrays))


def run_size(h: int, w: int, infer_size: Sequence[int] | None, max_pixels: int | None) -> tuple[int, int]:
    """The size an HxW image runs at: `infer_size` if set, else its own size, scaled down (aspect kept) to
    `max_pixels` when larger, so a 12-megapixel photo runs at the scale the model was trained at instead of
    at a size it never saw (and, resized in bands by reseg.banded, in bounded memory). Inference and int8
    calibration both size images here."""
    if infer_size:
        return int(infer_size[0]), int(infer_size[1])
    if max_pixels and h * w > max_pixels:
        scale = math.sqrt(max_pixels / (h * w))
        return max(1, round(h * scale)), max(1, round(w * scale))
    return h, w


def same_size_batches(items: Iterable[T], batch: int, shape: Callable[[T], Any]) -> Iterator[list[T]]:
    """Consecutive runs of at most `batch` items whose `shape(item)` is equal (a batch is one tensor), in order."""
    if batch < 1:
        raise ResegError(f"the batch size must be >= 1, got {batch}")
    pending: list[T] = []
    for item in items:
        if pending and (len(pending) >= batch or shape(item) != shape(pending[0])):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending


def class_ids(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The class of each pixel (the index of the largest logit along `dim`, the first on ties), as uint8.

    `max(dim).indices` rather than `argmax(dim)`: on the CPU, argmax over the channels of an NCHW tensor
    walks them with a stride and was about 13x slower (11x360x480 logits); the result is the same."""
    return logits.max(dim).indices.to(torch.uint8)
