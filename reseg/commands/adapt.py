"""`reseg adapt --checkpoint CKPT INPUT... --out ADAPTED.pt`: a copy of a checkpoint whose batch-norm statistics
come from unlabeled images of the user's own streets (image files, folders, globs or videos).

The work is reseg.adaptation_runs.adapt; the adapted checkpoint goes wherever a `--checkpoint` does.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reseg.adaptation import DEFAULT_BATCH, DEFAULT_WEIGHT
    from reseg.adaptation_runs import DEFAULT_MAX_IMAGES
    from reseg.self_training import DEFAULT_KEEP, DEFAULT_LR

    parser.add_argument("--checkpoint", required=True, help="the checkpoint or model folder to adapt")
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="unlabeled images of the target streets: files, folders, globs or videos",
    )
    parser.add_argument("--out", required=True, help="the adapted checkpoint (.pt) to write")
    parser.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        help="use at most this many images, spread evenly over the inputs (default: %(default)s)",
    )
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="images per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--weight",
        type=float,
        default=DEFAULT_WEIGHT,
        help="the new statistics' share in (0, 1]; the rest stays the training data's (default: %(default)s)",
    )
    parser.add_argument(
        "--self-train",
        type=int,
        default=0,
        metavar="ITERATIONS",
        help="then train this many steps on the model's own confident predictions on the inputs "
        "(class-balanced pseudo-labels; default: 0, statistics only)",
    )
    parser.add_argument(
        "--keep",
        type=float,
        default=DEFAULT_KEEP,
        help="with --self-train: the share of each class's predicted pixels kept as labels (default: %(default)s)",
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help="with --self-train: the learning rate (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")


def run(args: argparse.Namespace) -> int:
    from reseg.adaptation_runs import adapt

    record = adapt(
        args.checkpoint,
        args.inputs,
        args.out,
        max_images=args.max_images,
        batch_size=args.batch,
        weight=args.weight,
        self_train=args.self_train,
        keep=args.keep,
        lr=args.lr,
        overwrite=args.overwrite,
        device=args.device,
    )
    trained = record.get("self_training")
    then = f", then {trained['iterations']} self-training steps" if trained else ""
    print(f"wrote {args.out}: {args.checkpoint} with batch-norm statistics from {record['images']} image(s){then}")
    return 0
