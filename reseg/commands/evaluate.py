"""`reseg evaluate`: score a checkpoint on a labelled split, or score saved prediction PNGs with no model.

    reseg evaluate --checkpoint CKPT [--data-root DIR] [--split val] [--out DIR] [--set k=v ...]
                   [--mode whole|slide --crop H W --stride H W] [--flip] [--scales 0.75 1.0 1.25]
                   [--save-preds DIR [--format trainid|cityscapes]] [--device auto] [--amp]
    reseg evaluate --preds DIR --dataset NAME --data-root DIR --split SPLIT [--out DIR] [--classes-file YAML]

Both paths call reseg.evaluation.evaluate_split (the trainer's validation calls it too) and write
the same report (reseg.report): metrics.json, per_class.csv, report.md, confusion_matrix.png,
per_class_iou.png, samples.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reseg.config import INFERENCE_KEYS as _EVAL_KEYS
from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="score this checkpoint (config and classes come from it)")
    src.add_argument("--preds", metavar="DIR",
                     help="score saved predictions: <image stem>.png files (searched recursively) holding train ids")
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="with --preds: the data.dataset the predictions belong to (e.g. cityscapes)")
    parser.add_argument("--data-root", default=None, help="dataset root (default with --checkpoint: its config's)")
    parser.add_argument("--split", default=None, help="split to score (default: the config's val split / 'val')")
    parser.add_argument("--classes-file", default=None, help="with --preds --dataset folder: the classes YAML")
    parser.add_argument("--out", default=None,
                        help="report folder (default: <checkpoint folder>/eval_<split>, or "
                             "work_dirs/evaluate/<preds folder name>)")
    from reseg.config import add_set_argument

    add_set_argument(parser, "data.eval_size=[512,1024] eval.flip=true")
    parser.add_argument("--save-preds", metavar="DIR", default=None,
                        help="also write each prediction as <image stem>.png (never into the dataset)")
    parser.add_argument("--format", choices=("trainid", "cityscapes"), default="trainid",
                        help="--save-preds format: train ids, or official Cityscapes label ids for the server")
    parser.add_argument("--samples", type=int, default=4,
                        help="rows in samples.png: the first image and the worst by IoU (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes (default: the config's data.num_workers)")
    from reseg.commands.common import add_inference_arguments

    add_inference_arguments(parser)


def _checked_config(base: dict[str, Any], overrides: list[str], data_root: str | None) -> Any:
    """`base` with the --set overrides and --data-root applied, type- and range-checked (errors name the key)."""
    from reseg.config import Config, apply_overrides, validate

    sources: dict[str, str] = {}
    apply_overrides(base, list(overrides), sources)
    if data_root:
        base.setdefault("data", {})["root"] = data_root
    cfg = Config.from_dict(base, sources)
    validate(cfg)
    return cfg


def _eval_overrides(args: argparse.Namespace) -> None:
    """The --set keys that change inference go to the Predictor unless a command-line flag says otherwise."""
    from reseg.config import Config, apply_overrides

    given: dict[str, Any] = {}
    apply_overrides(given, list(args.overrides), {})
    typed = Config.from_dict(given)  # a value of the wrong type is a named error here, before any work
    for key, name in _EVAL_KEYS.items():
        section, field = key.split(".")
        if field in given.get(section, {}) and getattr(args, name, None) is None:
            setattr(args, name, getattr(getattr(typed, section), field))


def _check_outputs(args: argparse.Namespace, dataset: Any, out: Path) -> None:
    from reseg.evaluation import dataset_folders
    from reseg.io import check_output_dir, refuse_overlap

    folders = dataset_folders(dataset)
    check_output_dir(out, "--out")
    refuse_overlap(out, folders, "--out", "the dataset folder")
    if args.preds:
        refuse_overlap(out, [args.preds], "--out", "the predictions folder")
    if args.save_preds:
        check_output_dir(args.save_preds, "--save-preds")
        refuse_overlap(args.save_preds, folders, "--save-preds", "the dataset folder")


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Run the checkpoint's model on a labelled split and write the report."""
    from reseg.commands.common import build_predictor
    from reseg.data import build_dataset
    from reseg.evaluation import check_class_count, evaluate_split

    _eval_overrides(args)
    predictor = build_predictor(args)
    cfg = _checked_config(predictor.config.to_dict(), args.overrides, args.data_root)
    predictor.size_divisor = int(cfg.data.size_divisor or 0)
    split = args.split or cfg.data.val_split
    dataset = build_dataset(cfg, split, transform=None)
    check_class_count(predictor.class_names, dataset, f"checkpoint {args.checkpoint}",
                      f"{cfg.data.dataset!r} ({cfg.data.root}, split {split!r})")
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval_{split}"
    _check_outputs(args, dataset, out)
    print(f"evaluating {args.checkpoint} on {cfg.data.dataset} {split} ({len(dataset)} images) with "
          f"{predictor.describe()}", file=sys.stderr)
    info = {"dataset": cfg.data.dataset, "split": split, "data_root": str(cfg.data.root),
            "checkpoint": str(args.checkpoint), "inference": predictor.describe()}
    result = evaluate_split(predictor, dataset, workers=_workers(args, cfg), batch_size=args.batch or 1,
                            progress=True, samples=args.samples, save_dir=args.save_preds,
                            save_format=args.format, dataset_name=cfg.data.dataset, info=info)
    return _write(result, dataset, out, predictor.palette, f"{Path(args.checkpoint).name} on {cfg.data.dataset} "
                  f"{split}", args.save_preds)


def evaluate_predictions(args: argparse.Namespace) -> dict[str, Any]:
    """Score saved train-id PNGs against a labelled split and write the report."""
    from reseg.data import build_dataset
    from reseg.evaluation import match_predictions, score_predictions

    if args.dataset is None or args.data_root is None:
        raise ResegError("--preds needs --dataset NAME (a data.dataset name, e.g. cityscapes) and --data-root DIR")
    if args.save_preds:
        raise ResegError("--save-preds goes with --checkpoint; with --preds the predictions are already saved")
    if not Path(args.data_root).is_dir():
        hint = " (make one with `reseg make-synthetic`)" if args.dataset == "synthetic" else ""
        raise ResegError(f"dataset root {args.data_root} does not exist or is not a folder{hint}")
    base = {"data": {"dataset": args.dataset, "classes_file": args.classes_file}}
    cfg = _checked_config(base, [], args.data_root)
    split = args.split or "val"
    dataset = build_dataset(cfg, split, transform=None)
    pred_files, unused = match_predictions(dataset, args.preds)
    out = Path(args.out) if args.out else Path("work_dirs") / "evaluate" / Path(args.preds).resolve().name
    _check_outputs(args, dataset, out)
    print(f"scoring {len(pred_files)} prediction(s) from {args.preds} on {args.dataset} {split}", file=sys.stderr)
    info = {"dataset": args.dataset, "split": split, "data_root": str(args.data_root), "preds": str(args.preds)}
    result = score_predictions(pred_files, dataset, workers=_workers(args, cfg), progress=True,
                               samples=args.samples, dataset_name=args.dataset, info=info)
    if unused:
        print(f"note: {unused} PNG(s) in {args.preds} match no image of the split and were not scored", file=sys.stderr)
    return _write(result, dataset, out, dataset.classes.palette, f"{Path(args.preds).name} on {args.dataset} {split}",
                  None)


def _workers(args: argparse.Namespace, cfg: Any) -> int:
    return cfg.data.num_workers if args.workers is None else args.workers


def _write(result: Any, dataset: Any, out: Path, palette: Any, title: str, save_dir: str | None) -> dict[str, Any]:
    from reseg.evaluation import sample_rows
    from reseg.report import summary_line, write_report

    samples = sample_rows(result, dataset) if result.picks else None
    paths = write_report(out, result.metrics, samples=samples, palette=palette, title=title)
    print(summary_line(result.metrics))
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out.resolve()}")
    if save_dir:
        print(f"wrote {result.images} prediction PNG(s) to {Path(save_dir).resolve()}")
    return result.metrics


def run(args: argparse.Namespace) -> int:
    if args.samples < 0:
        raise ResegError(f"--samples must be >= 0, got {args.samples}")
    if args.checkpoint:
        if args.dataset is not None or args.classes_file is not None:
            raise ResegError("--dataset and --classes-file go with --preds; with --checkpoint the dataset comes "
                             "from the checkpoint's config (change it with --set data.dataset=... if needed)")
        evaluate_checkpoint(args)
    else:
        evaluate_predictions(args)
    return 0
