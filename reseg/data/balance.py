"""Class statistics and balancing weights, computed once over the raw masks and cached.

Median-frequency balancing as in ReSeg (after Eigen & Fergus): freq_c = pixels of class c divided
by the total pixels of the images that contain c; w_c = median(freq) / freq_c. Inverse log
frequency (ENet): w_c = 1 / ln(1.02 + p_c) with p_c the share of labelled pixels that are class c.
Classes that never occur get weight 0 under both methods: they add nothing to the loss anyway, and
a huge weight would only surprise a reader of the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reseg.data.base import BadSampleError
from reseg.errors import ResegError
from reseg.io import write_json

log = logging.getLogger("reseg.data")

METHODS = ("none", "median_frequency", "inverse_log")
CACHE_VERSION = 1
CACHE_LABELS = {"class_stats": "class statistics", "image_class_pixels": "per-image class counts"}


def image_class_pixels(dataset: Any, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per image: labelled pixels of each class ([N, C]) and the mask's size ([N]); what every statistic sums.

    Reads `dataset.read_mask(i)` (raw masks, no augmentation); ignore (255) is never counted as a class. A bad
    mask skipped under data.skip_bad_samples keeps its row, all zeros, and size 0, so rows stay the indices.
    """
    num_classes = dataset.classes.num_classes
    n = len(dataset)
    counts = np.zeros((n, num_classes), np.int64)
    sizes = np.zeros(n, np.int64)
    skip = bool(getattr(dataset, "skip_bad_samples", False))
    for i in tqdm(range(n), desc="class statistics", unit="mask", disable=not progress, dynamic_ncols=True):
        try:
            mask = dataset.read_mask(i)
        except BadSampleError as err:
            if not skip:
                raise
            log.warning("class statistics skip a bad mask (data.skip_bad_samples=true): %s", err)
            continue
        counts[i] = np.bincount(mask.ravel(), minlength=256)[:num_classes]
        sizes[i] = mask.size
    return counts, sizes


def class_pixel_counts(dataset: Any, progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Per class: labelled pixels, and total pixels of the images containing the class; and #images read."""
    counts, sizes = image_class_pixels(dataset, progress)
    image_pixels = ((counts > 0) * sizes[:, None]).sum(axis=0)
    return counts.sum(axis=0), image_pixels, int((sizes > 0).sum())


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """w_c = median(freq) / freq_c, freq_c = pixels_c / image_pixels_c; 0 for absent classes."""
    pixels = np.asarray(pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    present = pixels > 0
    weights = np.zeros_like(pixels)
    if present.any():
        freq = pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights


def inverse_log_weights(pixels: np.ndarray, c: float = 1.02) -> np.ndarray:
    """w_c = 1 / ln(c + p_c), p_c = pixels_c / all labelled pixels; 0 for absent classes."""
    pixels = np.asarray(pixels, np.float64)
    total = pixels.sum()
    weights = np.zeros_like(pixels)
    if total > 0:
        present = pixels > 0
        weights[present] = 1.0 / np.log(c + pixels[present] / total)
    return weights


def dataset_key(dataset: Any) -> str:
    """Hash of the dataset's files (paths, sizes, modification times) and classes: the cache key."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{type(dataset).__name__}|{getattr(dataset, 'label_format', '')}|".encode())
    h.update("|".join(dataset.classes.names).encode())
    for _, mask in dataset.files:
        h.update(b"\0" + str(mask).encode())
        if mask is not None:
            try:
                st = os.stat(mask)
                h.update(f":{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                pass
    return h.hexdigest()[:20]


def compute_stats(dataset: Any, progress: bool = True) -> dict[str, Any]:
    """All statistics in the JSON form data-stats writes (lists, not arrays)."""
    pixels, image_pixels, n = class_pixel_counts(dataset, progress)
    total = pixels.sum()
    absent = [name for name, p in zip(dataset.classes.names, pixels) if p == 0]
    if absent:
        log.warning("classes never present in %d masks (weight 0): %s", n, ", ".join(absent))
    freq = np.where(image_pixels > 0, pixels / np.maximum(image_pixels, 1), 0.0)
    return {
        "images": int(n),
        "class_names": list(dataset.classes.names),
        "pixels": [int(v) for v in pixels],
        "labelled_pixels": int(total),
        "image_pixels": [int(v) for v in image_pixels],
        "frequencies": [float(v) for v in (pixels / total if total else np.zeros_like(pixels, np.float64))],
        "median_frequencies": [float(v) for v in freq],
        "median_frequency_weights": [float(v) for v in median_frequency_weights(pixels, image_pixels)],
        "inverse_log_weights": [float(v) for v in inverse_log_weights(pixels)],
    }


def cached(
    dataset: Any, cache_dir: str | Path | None, what: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`compute()`, read from / written to `cache_dir/<what>_<key>.json` when a cache dir is given.

    The key hashes the dataset's mask files and classes, so an edited or replaced mask recomputes.
    """
    label = CACHE_LABELS.get(what, what)
    if cache_dir is None:
        return compute()
    key = dataset_key(dataset)
    path = Path(cache_dir) / f"{what}_{key}.json"
    if path.is_file():
        try:
            stats = json.loads(path.read_text(encoding="utf-8"))
            if stats.get("key") == key and stats.get("class_names") == list(dataset.classes.names):
                log.info("%s read from %s", label, path)
                return stats
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s cache %s", label, path)
    stats = {**compute(), "key": key}
    write_json(path, stats, indent=1)  # atomic, with the user's umask (mkstemp would make it 0600)
    log.info("%s cached in %s", label, path)
    return stats


def dataset_stats(dataset: Any, cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """`compute_stats`, cached in `cache_dir/class_stats_<key>.json` when a cache dir is given."""
    return cached(dataset, cache_dir, "class_stats", lambda: compute_stats(dataset, progress))


def class_weights(
    dataset: Any, method: str, cache_dir: str | Path | None = None, progress: bool = True
) -> torch.Tensor | None:
    """Per-class loss weights (float32, one per class) by `method`; None for "none"."""
    if method not in METHODS:
        raise ResegError(f"class weighting {method!r} is unknown; expected one of {', '.join(METHODS)}")
    if method == "none":
        return None
    stats = dataset_stats(dataset, cache_dir, progress)
    return torch.tensor(stats[f"{method}_weights"], dtype=torch.float32)
