"""`reseg data-stats`: images, pixels per class, frequencies and both balancing weightings."""

from __future__ import annotations

import argparse

from reseg.config import add_set_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config to start from (its data section is used)")
    parser.add_argument("--dataset", metavar="NAME", help="data.dataset (overrides the config), e.g. camvid")
    parser.add_argument("--data-root", help="dataset root folder (overrides the config)")
    parser.add_argument("--split", default="train", help="split to count (default: train)")
    parser.add_argument("--classes-file", help="classes YAML of a folder dataset")
    parser.add_argument("--label-format", help="auto | segnet | camvid32 | labelIds | labelTrainIds")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON here")
    parser.add_argument("--cache-dir", help="read/write cached statistics in this folder")
    parser.add_argument(
        "--rare-class-temperature",
        type=float,
        metavar="T",
        help="also show what rare-class sampling at T would draw (default: the config's "
        "data.rare_class_temperature when set)",
    )
    add_set_argument(parser, "data.skip_bad_samples=true data.val_split=test")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_table(stats: dict) -> str:
    """The statistics as an aligned text table (one row per class)."""
    names = stats["class_names"]
    width = max(10, *(len(n) for n in names))
    lines = [
        f"{'class':<{width}}  {'pixels':>12}  {'share %':>8}  {'freq':>8}  {'median-freq w':>13}  {'inv-log w':>9}",
        "-" * (width + 62),
    ]
    for i, name in enumerate(names):
        lines.append(
            f"{name:<{width}}  {stats['pixels'][i]:>12,d}  {100 * stats['frequencies'][i]:>8.3f}  "
            f"{stats['median_frequencies'][i]:>8.4f}  {stats['median_frequency_weights'][i]:>13.4f}  "
            f"{stats['inverse_log_weights'][i]:>9.4f}"
        )
    lines.append("-" * (width + 62))
    lines.append(f"{stats['images']} images, {stats['labelled_pixels']:,d} labelled pixels (ignore excluded)")
    rcs = stats.get("rare_class_sampling")
    if rcs:
        lines += [
            "",
            f"rare-class sampling at temperature {rcs['temperature']:g}:",
            f"{'class':<{width}}  {'P(class)':>8}  {'share %':>8}  {'drawn share %':>13}",
        ]
        for i, name in enumerate(names):
            lines.append(
                f"{name:<{width}}  {rcs['class_probabilities'][i]:>8.3f}  {100 * stats['frequencies'][i]:>8.3f}  "
                f"{100 * rcs['drawn_shares'][i]:>13.3f}"
            )
        lines.append(
            f"the likeliest image {rcs['likeliest_image_x_uniform']:.1f}x the uniform chance, "
            f"{rcs['never_drawn']} never drawn"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from reseg.commands import dataset_config
    from reseg.data import build_dataset
    from reseg.data.balance import dataset_stats
    from reseg.io import check_output_file, write_json

    if args.json:
        check_output_file(args.json, "--json")
    cfg = dataset_config(args, classes_file=args.classes_file, label_format=args.label_format)
    dataset = build_dataset(cfg, args.split, transform=None)
    print(f"{cfg.data.dataset} {args.split!r} split at {dataset.root}: {len(dataset)} images")
    stats = dataset_stats(dataset, cache_dir=args.cache_dir, progress=not args.no_progress)
    stats = {"dataset": cfg.data.dataset, "root": str(dataset.root), "split": args.split, **stats}
    temperature = args.rare_class_temperature or cfg.data.rare_class_temperature
    if temperature:
        from reseg.data.rare_classes import image_counts, sampling_summary

        counts = image_counts(dataset, cache_dir=args.cache_dir, progress=not args.no_progress)
        stats["rare_class_sampling"] = sampling_summary(counts, temperature)
    print(format_table(stats))
    if args.json:
        write_json(args.json, stats, indent=1)
        print(f"statistics written to {args.json}")
    return 0
