"""`reseg browse`: a grid of samples as the model sees them (after augmentation), with coloured labels."""

from __future__ import annotations

import argparse

from reseg.config import add_set_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (its data and augmentation settings are used)")
    parser.add_argument("--dataset", metavar="NAME", help="data.dataset (overrides the config), e.g. camvid")
    parser.add_argument("--data-root", help="dataset root folder (overrides the config)")
    parser.add_argument("--split", default="train", help="split to show (default: train)")
    parser.add_argument("--out", default="grid.png", help="output image (default: grid.png)")
    parser.add_argument("-n", "--num", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="samples per row (default 4)")
    aug = parser.add_mutually_exclusive_group()
    aug.add_argument(
        "--augment",
        dest="augment",
        action="store_true",
        default=None,
        help="apply the training augmentation (default for the training split)",
    )
    aug.add_argument("--no-augment", dest="augment", action="store_false", help="evaluation transforms only")
    parser.add_argument("--seed", type=int, default=0, help="which samples and augmentations")
    add_set_argument(parser, "data.scale_range=[0.5,2.0] data.crop_size=[360,480]")


def run(args: argparse.Namespace) -> int:
    from reseg.commands import dataset_config
    from reseg.data import build_dataset, build_transforms
    from reseg.errors import ResegError
    from reseg.io import check_output_file, refuse_overlap
    from reseg.viz import sample_grid, write_image

    if args.num < 1 or args.cols < 1:
        raise ResegError(f"--num and --cols must be >= 1, got {args.num} and {args.cols}")
    check_output_file(args.out, "--out")
    cfg = dataset_config(args)
    augment = (args.split == cfg.data.train_split) if args.augment is None else args.augment
    dataset = build_dataset(cfg, args.split, transform=build_transforms(cfg, train=augment))
    if len(dataset) == 0:
        raise ResegError(f"split {args.split!r} of {dataset.root} is empty")
    refuse_overlap(args.out, [dataset.root], "--out", "the dataset folder")
    grid, n = sample_grid(dataset, args.num, args.cols, args.seed)
    write_image(args.out, grid)
    mode = "training augmentation" if augment else "evaluation transforms"
    print(
        f"wrote {n} samples of {cfg.data.dataset} {args.split!r} ({mode}; image above label, ignore in black) "
        f"to {args.out}"
    )
    return 0
