"""`reseg data-stats`: images, pixels per class, frequencies and both balancing weightings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reseg.commands import dataset_config
from reseg.data import DATASETS, build_dataset
from reseg.data.balance import dataset_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config to start from (its data section is used)")
    parser.add_argument("--dataset", choices=DATASETS, help="dataset kind (overrides the config)")
    parser.add_argument("--data-root", help="dataset root folder (overrides the config)")
    parser.add_argument("--split", default="train", help="split to count (default: train)")
    parser.add_argument("--classes-file", help="classes YAML of a folder dataset")
    parser.add_argument("--label-format", help="auto | segnet | camvid32 | labelIds | labelTrainIds")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON here")
    parser.add_argument("--cache-dir", help="read/write cached statistics in this folder")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. data.skip_bad_samples=true")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_table(stats: dict) -> str:
    """The statistics as an aligned text table (one row per class)."""
    names = stats["class_names"]
    width = max(10, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'pixels':>12}  {'share %':>8}  {'freq':>8}  {'median-freq w':>13}  {'inv-log w':>9}",
             "-" * (width + 62)]
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}}  {stats['pixels'][i]:>12,d}  {100 * stats['frequencies'][i]:>8.3f}  "
                     f"{stats['median_frequencies'][i]:>8.4f}  {stats['median_frequency_weights'][i]:>13.4f}  "
                     f"{stats['inverse_log_weights'][i]:>9.4f}")
    lines.append("-" * (width + 62))
    lines.append(f"{stats['images']} images, {stats['labelled_pixels']:,d} labelled pixels (ignore excluded)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = dataset_config(args)
    if args.classes_file:
        cfg.data.classes_file = args.classes_file
    if args.label_format:
        cfg.data.label_format = args.label_format
    dataset = build_dataset(cfg, args.split, transform=None)
    print(f"{cfg.data.dataset} {args.split!r} split at {dataset.root}: {len(dataset)} images")
    stats = dataset_stats(dataset, cache_dir=args.cache_dir, progress=not args.no_progress)
    stats = {"dataset": cfg.data.dataset, "root": str(dataset.root), "split": args.split, **stats}
    print(format_table(stats))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stats, indent=1), encoding="utf-8")
        print(f"statistics written to {path}")
    return 0
