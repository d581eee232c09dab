"""build_dataset and build_loader: the dataset table (name -> builder) and the DataLoader settings."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from reseg.data.base import DatasetError, SegmentationDataset, collate
from reseg.data.camvid import CamVidDataset
from reseg.data.cityscapes import CityscapesDataset
from reseg.data.classes import CLASS_TABLES, ClassInfo
from reseg.data.folder import FolderDataset, load_folder_classes
from reseg.data.synthetic import SYNTHETIC_KEYS, ensure_synthetic
from reseg.data.transforms import build_transforms
from reseg.io import folder_problem

log = logging.getLogger("reseg.data")


def _synthetic_root(cfg: Any, root: str | Path, generate: bool, key: str) -> Path:
    """A generated dataset's folder (`key` names where the config gives it); generated there only when
    `generate`, otherwise a missing folder is an error."""
    data = cfg.data
    if generate:
        asked = [k for k in SYNTHETIC_KEYS if cfg.was_given(f"data.{k}")] if hasattr(cfg, "was_given") else None
        return ensure_synthetic(
            root,
            data.synthetic_sizes,
            data.synthetic_seed,
            tuple(data.synthetic_size),
            data.synthetic_difficulty,
            asked=asked,
        )
    root = Path(root)
    if problem := folder_problem(root):
        hint = (
            f"; only `reseg train` and `reseg make-synthetic --out {root}` generate one (check the path for a typo)"
            if not root.exists()
            else "; expected the folder of a generated dataset"
        )
        raise DatasetError(f"synthetic dataset root {root} {problem} ({key}){hint}")
    return root


def _synthetic(cfg: Any, split: str, generate: bool, **kwargs: Any) -> SegmentationDataset:
    """The generated street scenes (CamVid classes, SegNet layout); generated here only when `generate`."""
    root = _synthetic_root(cfg, cfg.data.root, generate, "data.root")
    return CamVidDataset(root, split, label_format="segnet", **kwargs)


def _camvid(cfg: Any, split: str, generate: bool, **kwargs: Any) -> SegmentationDataset:
    return CamVidDataset(cfg.data.root, split, label_format=cfg.data.label_format, **kwargs)


def _cityscapes(cfg: Any, split: str, generate: bool, **kwargs: Any) -> SegmentationDataset:
    return CityscapesDataset(cfg.data.root, split, label_format=cfg.data.label_format, **kwargs)


def _folder(cfg: Any, split: str, generate: bool, **kwargs: Any) -> SegmentationDataset:
    data = cfg.data
    if data.label_format not in ("auto",):
        raise DatasetError(
            f"data.label_format {data.label_format!r} does not apply to folder datasets "
            f"(mask format is detected per file); use 'auto'"
        )
    return FolderDataset(data.root, split, classes_file=data.classes_file, **kwargs)


# The one table of dataset names (data.dataset) and what builds each one: builder(cfg, split, generate, ...).
DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "synthetic": _synthetic,
    "camvid": _camvid,
    "cityscapes": _cityscapes,
    "folder": _folder,
}


def _builder(name: str) -> Callable[..., SegmentationDataset]:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_classes(cfg: Any) -> ClassInfo:
    """The classes a config's dataset has, without listing its files (for building a model)."""
    name = cfg.data.dataset
    _builder(name)
    if name in CLASS_TABLES:
        return CLASS_TABLES[name]
    path = cfg.data.classes_file or next(
        (Path(cfg.data.root) / n for n in ("classes.yaml", "classes.yml") if (Path(cfg.data.root) / n).is_file()),
        Path(cfg.data.root) / "classes.yaml",
    )
    return load_folder_classes(path).info


def build_dataset(
    cfg: Any, split: str, transform: Any = "auto", require_labels: bool = True, generate: bool = False
) -> SegmentationDataset:
    """The dataset named by cfg.data for `split`.

    transform: "auto" (training augmentation for cfg.data.train_split, evaluation transforms
    otherwise), None (raw RGB uint8 image, int64 mask tensor) or any callable taking
    image=/mask= keywords. require_labels=False loads images alone (prediction, e.g. on the
    Cityscapes test split, whose labels are not public); samples then have no "mask".
    generate: a synthetic dataset whose root does not exist is generated there (only training
    sets this); otherwise a missing root is an error, so a typo never scores a fresh dataset.
    """
    data = cfg.data
    build = _builder(data.dataset)
    if transform == "auto":
        transform = build_transforms(cfg, train=(split == data.train_split))

    def one(name: str) -> SegmentationDataset:
        return build(
            cfg,
            name,
            generate,
            transform=transform,
            skip_bad_samples=data.skip_bad_samples,
            require_labels=require_labels,
        )

    return _by_sequences(cfg, split, one)


def build_training_set(cfg: Any, transform: Any = "auto", generate: bool = False) -> SegmentationDataset:
    """What the trainer learns from: cfg.data's training split, joined by generated scenes when
    data.synthetic_mix asks for them. Everything else that reads the training split (int8 calibration,
    data-stats, browse) takes build_dataset's real frames alone."""
    dataset = build_dataset(cfg, cfg.data.train_split, transform=transform, generate=generate)
    if cfg.data.synthetic_mix:
        dataset = mix_in_synthetic(dataset, cfg, generate)
    return dataset


def _by_sequences(cfg: Any, split: str, one: Callable[[str], SegmentationDataset]) -> SegmentationDataset:
    """`split` as data.val_sequences / data.train_sequences choose it from the train and val splits together."""
    data = cfg.data
    if data.val_sequences is None:  # train_sequences alone narrow the train split; val stays as it is
        if data.train_sequences and split == data.train_split:
            return select_sequences(one(split), data.train_sequences, "data.train_sequences")
        return one(split)
    if split not in (data.train_split, data.val_split):
        return one(split)
    pooled = one(split)
    other = one(data.val_split if split == data.train_split else data.train_split)
    pooled.files, pooled.meta = pooled.files + other.files, pooled.meta + other.meta
    pooled.split = f"{split} ({data.train_split}+{data.val_split} by sequence)"
    if split == data.val_split:
        return select_sequences(pooled, data.val_sequences, "data.val_sequences")
    if data.train_sequences:
        return select_sequences(pooled, data.train_sequences, "data.train_sequences")
    return select_sequences(pooled, data.val_sequences, "data.val_sequences", keep=False)


def mix_in_synthetic(dataset: SegmentationDataset, cfg: Any, generate: bool) -> SegmentationDataset:
    """Joint training with the generated streets: scenes of the synthetic set at data.synthetic_mix_root join a
    CamVid-class training split, in place, until they make up data.synthetic_mix of it.

    The scenes are spread evenly over the generated set (not its first ones), and they join the file list, so
    class statistics, sampling, ClassMix and `--resume` treat them as any other frame."""
    data = cfg.data
    share = float(data.synthetic_mix)
    if not isinstance(dataset, CamVidDataset) or data.label_format == "camvid32":  # CamVidDataset: CamVid's classes
        raise DatasetError(
            f"data.synthetic_mix={share:g} adds generated scenes in CamVid's 11 classes (SegNet ids) to the "
            f"training split; data.dataset {data.dataset!r} (label_format {data.label_format!r}) is not such a "
            f"dataset: use it with camvid (label_format auto or segnet), or set data.synthetic_mix to 0"
        )
    root = _synthetic_root(cfg, data.synthetic_mix_root, generate, "data.synthetic_mix_root")
    scenes = CamVidDataset(root, "train", label_format="segnet")
    wanted = round(len(dataset) * share / (1 - share))
    if wanted > len(scenes):
        raise DatasetError(
            f"data.synthetic_mix={share:g} needs {wanted} generated scenes beside the {len(dataset)} training "
            f"frames, but {root} (data.synthetic_mix_root) holds {len(scenes)}: lower the share, or generate more "
            f"(`reseg make-synthetic --out NEW_FOLDER --train {wanted}`, then data.synthetic_mix_root=NEW_FOLDER)"
        )
    picks = np.linspace(0, len(scenes) - 1, wanted).round().astype(int)
    dataset.files = dataset.files + [scenes.files[i] for i in picks]
    dataset.meta = dataset.meta + [scenes.meta[i] for i in picks]
    dataset.split = f"{dataset.split} + {wanted} generated scenes"
    log.info(
        "joint training: %d of the %d generated scenes in %s join %d frames",
        wanted,
        len(scenes),
        root,
        len(dataset) - wanted,
    )
    return dataset


def sequence_of(path: str | Path) -> str:
    """A frame's sequence: its file name up to the last '_' (CamVid's 0016E5_07959.png -> 0016E5)."""
    stem = Path(path).stem
    return stem.rpartition("_")[0] or stem


def select_sequences(
    dataset: SegmentationDataset, prefixes: list[str], key: str, keep: bool = True
) -> SegmentationDataset:
    """The frames whose file names start with one of `prefixes` (keep=False: all the others), in place.

    A prefix that matches no frame is an error naming the key and the sequences there are."""
    names = [Path(img).name for img, _ in dataset.files]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            found = sorted({sequence_of(n) for n in names})
            raise DatasetError(
                f"{key}: no frame of {dataset.root} ({dataset.split}) has a file name starting with "
                f"{prefix!r}; its sequences: {', '.join(found[:20]) or 'none'}"
            )
    chosen = [i for i, name in enumerate(names) if any(name.startswith(p) for p in prefixes) == keep]
    if not chosen:
        raise DatasetError(f"{key}={prefixes} leaves no frame of {dataset.root} ({dataset.split}) to train on")
    dataset.files = [dataset.files[i] for i in chosen]
    dataset.meta = [dataset.meta[i] for i in chosen]
    return dataset


def _set_transform_seed(dataset: Any, seed: int) -> None:
    """Albumentations keeps its own RNG (not numpy's global one): seed it, through wrappers too."""
    seen = 0
    while dataset is not None and seen < 8:
        transform = getattr(dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)
        dataset = getattr(dataset, "dataset", None)  # torch Subset and similar wrappers
        seen += 1


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: one OpenCV thread, and numpy/random/albumentations seeded from torch.

    torch gives each worker base_seed + worker_id, and base_seed comes from the main process's
    torch RNG, so torch.manual_seed(...) makes every worker's augmentation reproducible.
    """
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        _set_transform_seed(info.dataset, seed)


def build_loader(
    dataset: Dataset,
    cfg: Any,
    train: bool,
    distributed: bool = False,
    generator: torch.Generator | None = None,
    sampler: Any = None,
    batch_sampler: Any = None,
) -> DataLoader:
    """A DataLoader with the settings every entry point shares (the trainer passes its own samplers).

    Train: shuffled, drop_last (only when there is at least one full batch), cfg.data.batch_size.
    Eval: in order, cfg.data.val_batch_size. Distributed: a DistributedSampler (call
    loader.sampler.set_epoch(epoch) each epoch). Workers are persistent, pinned memory is used
    when CUDA is available, and worker seeds follow torch's RNG (see seed_worker).
    """
    data = cfg.data
    workers = int(data.num_workers)
    if workers == 0:
        # no worker processes: seed the transforms here, from torch's RNG, for the same reproducibility
        _set_transform_seed(
            dataset, int(torch.empty((), dtype=torch.int64).random_(generator=generator).item()) % 2**32
        )
    common = dict(
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=generator,
        prefetch_factor=2 if workers > 0 else None,
    )
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    batch_size = int(data.batch_size if train else data.val_batch_size)
    drop_last = bool(train and len(dataset) >= batch_size)
    if distributed and sampler is None:
        sampler = DistributedSampler(dataset, shuffle=train, seed=int(cfg.train.seed), drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=(train and sampler is None),
        sampler=sampler,
        drop_last=drop_last,
        **common,
    )
