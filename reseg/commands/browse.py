"""`reseg browse`: a grid of samples as the model sees them (after augmentation), with coloured labels."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from reseg.commands import dataset_config
from reseg.data import DATASETS, build_dataset, build_transforms, denormalize
from reseg.data.classes import ClassInfo
from reseg.errors import ResegError
from reseg.viz import colorize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (its data and augmentation settings are used)")
    parser.add_argument("--dataset", choices=DATASETS, help="dataset kind (overrides the config)")
    parser.add_argument("--data-root", help="dataset root folder (overrides the config)")
    parser.add_argument("--split", default="train", help="split to show (default: train)")
    parser.add_argument("--out", default="grid.png", help="output image (default: grid.png)")
    parser.add_argument("-n", "--num", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="samples per row (default 4)")
    aug = parser.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=None,
                     help="apply the training augmentation (default for the training split)")
    aug.add_argument("--no-augment", dest="augment", action="store_false", help="evaluation transforms only")
    parser.add_argument("--seed", type=int, default=0, help="which samples and augmentations")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. data.scale_range=[0.5,2.0]")


def _legend(classes: ClassInfo, width: int) -> np.ndarray:
    """Colour swatches with class names, wrapped to `width` pixels."""
    cell_w, cell_h = 150, 22
    per_row = max(1, width // cell_w)
    rows = -(-classes.num_classes // per_row)
    out = np.full((rows * cell_h + 6, width, 3), 255, np.uint8)
    for i, (name, color) in enumerate(zip(classes.names, classes.palette)):
        r, c = divmod(i, per_row)
        x, y = c * cell_w + 6, r * cell_h + 4
        cv2.rectangle(out, (x, y), (x + 16, y + 16), tuple(int(v) for v in color), -1)
        cv2.rectangle(out, (x, y), (x + 16, y + 16), (0, 0, 0), 1)
        cv2.putText(out, name, (x + 22, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def run(args: argparse.Namespace) -> int:
    cfg = dataset_config(args)
    augment = (args.split == cfg.data.train_split) if args.augment is None else args.augment
    dataset = build_dataset(cfg, args.split, transform=build_transforms(cfg, train=augment))
    if len(dataset) == 0:
        raise ResegError(f"split {args.split!r} of {dataset.root} is empty")
    if hasattr(dataset.transform, "set_random_seed"):
        dataset.transform.set_random_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    n = min(args.num, len(dataset))
    indices = torch.randperm(len(dataset), generator=g)[:n].tolist()
    tiles = []
    for i in indices:
        sample = dataset[i]
        image = denormalize(sample["image"])
        mask = sample["mask"].numpy().astype(np.uint8)
        if image.shape[1] > 512:  # keep the grid viewable for Cityscapes-sized images
            size = (512, max(1, round(image.shape[0] * 512 / image.shape[1])))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        tiles.append(np.concatenate([image, colorize(mask, dataset.classes.palette)], axis=0))
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    cols = max(1, min(args.cols, n))
    rows = -(-n // cols)
    grid = np.full((rows * (th + 4), cols * (tw + 4), 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * (th + 4): r * (th + 4) + tile.shape[0], c * (tw + 4): c * (tw + 4) + tile.shape[1]] = tile
    grid = np.concatenate([grid, _legend(dataset.classes, grid.shape[1])], axis=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise ResegError(f"could not write {out} (is the extension an image format, e.g. .png?)")
    mode = "training augmentation" if augment else "evaluation transforms"
    print(f"wrote {n} samples of {cfg.data.dataset} {args.split!r} ({mode}; image above label, ignore in black) "
          f"to {out}")
    return 0
