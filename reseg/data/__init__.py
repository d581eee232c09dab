"""Datasets, transforms, loaders and class statistics; `build_dataset(cfg, split)` is the entry point.

Names load on first use (PEP 562), so importing one light piece (`reseg.data.base`, the class
tables) does not pull in albumentations, OpenCV's video code or the synthetic generator.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "reseg.data.factory": (
        "DATASETS",
        "build_dataset",
        "build_training_set",
        "build_loader",
        "dataset_classes",
        "seed_worker",
    ),
    "reseg.data.balance": ("class_weights", "dataset_stats"),
    "reseg.data.base": (
        "BadSampleError",
        "DatasetError",
        "DatasetLayoutError",
        "LabelsUnavailableError",
        "LabelValueError",
        "MissingPairError",
        "SegmentationDataset",
        "SizeMismatchError",
        "UnreadableImageError",
        "collate",
        "read_image",
    ),
    "reseg.data.camvid": ("CamVidDataset",),
    "reseg.data.cityscapes": ("CityscapesDataset",),
    "reseg.data.classes": ("CAMVID", "CITYSCAPES", "IGNORE_INDEX", "ClassInfo"),
    "reseg.data.folder": ("FolderDataset",),
    "reseg.data.synthetic": ("make_synthetic", "make_synthetic_video"),
    "reseg.data.transforms": ("IMAGENET_MEAN", "IMAGENET_STD", "build_transforms", "denormalize", "normalize"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
