"""`reseg evaluate`: score a checkpoint on a labelled split, or score saved prediction PNGs with no model.

    reseg evaluate --checkpoint CKPT [--data-root DIR] [--split val] [--out DIR] [--set k=v ...]
                   [--mode whole|slide --crop H W --stride H W] [--flip] [--scales 0.75 1.0 1.25]
                   [--save-preds DIR [--format trainid|cityscapes]] [--device auto] [--amp] [--adapt-bn]
    reseg evaluate --preds DIR --dataset NAME --data-root DIR --split SPLIT [--out DIR] [--classes-file YAML]

The work is reseg.evaluation_runs.evaluate_checkpoint / evaluate_predictions; this module parses the
command line and checks which flags go together.
"""

from __future__ import annotations

import argparse

from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reseg.commands.common import add_inference_arguments
    from reseg.config import add_set_argument
    from reseg.mask_files import SAVE_FORMATS

    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        help="score this checkpoint, model folder (`reseg package`) or hf://user/repo "
        "(config and classes come from it)",
    )
    src.add_argument(
        "--preds",
        metavar="DIR",
        help="score saved predictions: <image stem>.png files (searched recursively) holding train ids",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="with --preds: the data.dataset the predictions belong to (e.g. cityscapes)",
    )
    parser.add_argument("--data-root", default=None, help="dataset root (default with --checkpoint: its config's)")
    parser.add_argument("--split", default=None, help="split to score (default: the config's val split / 'val')")
    parser.add_argument("--classes-file", default=None, help="with --preds --dataset folder: the classes YAML")
    parser.add_argument(
        "--out",
        default=None,
        help="report folder (default: <checkpoint folder>/eval_<split>, or work_dirs/evaluate/<preds folder name>)",
    )
    add_set_argument(parser, "data.eval_size=[512,1024] eval.flip=true")
    parser.add_argument(
        "--save-preds",
        metavar="DIR",
        default=None,
        help="also write each prediction as <image stem>.png (never into the dataset)",
    )
    parser.add_argument(
        "--format",
        choices=SAVE_FORMATS,
        default=SAVE_FORMATS[0],
        help="--save-preds format: train ids, or official Cityscapes label ids for the server",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=4,
        help="rows in samples.png: the first image and the worst by IoU (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="data-loading processes (default: the config's data.num_workers)"
    )
    parser.add_argument(
        "--adapt-bn",
        action="store_true",
        help="first re-estimate the model's batch-norm statistics on the split's images (labels unused; "
        "test-time adaptation to unseen streets, as `reseg adapt` does with any images)",
    )
    parser.add_argument(
        "--adapt-weight",
        type=float,
        default=None,
        metavar="W",
        help="with --adapt-bn: the new statistics' share in (0, 1], the rest staying the training data's "
        "(default: 0.5)",
    )
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from reseg.commands.common import predictor_options
    from reseg.evaluation_runs import evaluate_checkpoint, evaluate_predictions

    if args.adapt_weight is not None and not args.adapt_bn:
        raise ResegError("--adapt-weight goes with --adapt-bn (it sets how much the adaptation changes)")
    if args.samples < 0:
        raise ResegError(f"--samples must be >= 0, got {args.samples}")
    if args.checkpoint:
        if args.dataset is not None or args.classes_file is not None:
            raise ResegError(
                "--dataset and --classes-file go with --preds; with --checkpoint the dataset comes "
                "from the checkpoint's config (change it with --set data.dataset=... if needed)"
            )
        evaluate_checkpoint(
            args.checkpoint,
            overrides=args.overrides,
            data_root=args.data_root,
            split=args.split,
            out=args.out,
            device=args.device,
            predictor_options=predictor_options(args),
            save_preds=args.save_preds,
            save_format=args.format,
            samples=args.samples,
            workers=args.workers,
            batch=args.batch,
            adapt_bn=args.adapt_bn,
            adapt_weight=args.adapt_weight,
        )
        return 0
    if args.dataset is None or args.data_root is None:
        raise ResegError("--preds needs --dataset NAME (a data.dataset name, e.g. cityscapes) and --data-root DIR")
    if args.adapt_bn:
        raise ResegError("--adapt-bn goes with --checkpoint; saved predictions have no model to adapt")
    if args.save_preds:
        raise ResegError("--save-preds goes with --checkpoint; with --preds the predictions are already saved")
    evaluate_predictions(
        args.preds,
        dataset=args.dataset,
        data_root=args.data_root,
        split=args.split,
        classes_file=args.classes_file,
        out=args.out,
        samples=args.samples,
        workers=args.workers,
    )
    return 0
