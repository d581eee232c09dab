"""`reseg evaluate` as two library calls: score a checkpoint, or saved prediction PNGs, on a labelled split
and write the report.

Both score through reseg.evaluation.evaluate_split (the trainer's validation calls it too) and write the
same report (reseg.report): metrics.json, per_class.csv, report.md, confusion_matrix.png,
per_class_iou.png, samples.png. Configs come from the one loader (reseg.config.load_config), with the
checkpoint's config standing in for a file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reseg.errors import ResegError
from reseg.io import folder_problem


def checkpoint_config(
    checkpoint: str | Path, overrides: Sequence[str] = (), data_root: str | Path | None = None
) -> Any:
    """The checkpoint's config with the `--set` overrides and a new data root, checked like a config file's.

    Read before the model is built, so a bad override is a named error before any work.
    """
    from reseg.config import load_config
    from reseg.engine.checkpoint import read_checkpoint

    cfg = load_config(None, list(overrides), base=read_checkpoint(checkpoint).config.to_dict())
    if data_root:
        cfg.data.root = str(data_root)
    return cfg


def overridden_inference_settings(cfg: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """Predictor options for the inference keys the overrides set (a whole section counts as each of its keys):
    the rest stay the Predictor's own reading of the checkpoint's config."""
    from reseg.config import INFERENCE_KEYS, inference_settings, parse_overrides

    set_keys = [key for key, _ in parse_overrides(list(overrides))]
    settings = inference_settings(cfg)
    return {
        option: settings[option]
        for key, option in INFERENCE_KEYS.items()
        if any(key == k or key.startswith(k + ".") for k in set_keys)
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    overrides: Sequence[str] = (),
    data_root: str | Path | None = None,
    split: str | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    predictor_options: dict[str, Any] | None = None,
    save_preds: str | Path | None = None,
    save_format: str = "trainid",
    samples: int = 4,
    workers: int | None = None,
    batch: int | None = None,
    adapt_bn: bool = False,
    adapt_weight: float | None = None,
) -> dict[str, Any]:
    """Run the checkpoint's model on a labelled split and write the report; returns the metrics record.

    predictor_options: Predictor keyword arguments from the command line (None = the config's); they win
    over the inference keys the overrides set. out: default <checkpoint folder>/eval_<split>.
    adapt_bn: first re-estimate the batch-norm statistics on the split's images, their labels unused
    (reseg.adaptation; `adapt_weight`: their statistics' share, default adaptation.DEFAULT_WEIGHT); the
    report's inference line says so.
    """
    from reseg.data import build_dataset
    from reseg.evaluation import check_class_count, evaluate_split
    from reseg.predictor import Predictor

    cfg = checkpoint_config(checkpoint, overrides, data_root)
    options = {k: v for k, v in (predictor_options or {}).items() if v is not None}
    options = {**overridden_inference_settings(cfg, overrides), **options}
    predictor = Predictor.from_checkpoint(checkpoint, device=device, **options)
    split = split or cfg.data.val_split
    dataset = build_dataset(cfg, split, transform=None)
    check_class_count(
        predictor.class_names,
        dataset,
        f"checkpoint {checkpoint}",
        f"{cfg.data.dataset!r} ({cfg.data.root}, split {split!r})",
    )
    out = Path(out) if out else default_report_dir(checkpoint, split)
    check_outputs(out, dataset, save_preds=save_preds)
    if adapt_bn:
        from reseg.adaptation import DEFAULT_BATCH

        images = (dataset.read_image(i) for i in range(len(dataset)))
        predictor.adapt_batchnorm(images, batch_size=DEFAULT_BATCH, where=f"{split} split", weight=adapt_weight)
    print(
        f"evaluating {checkpoint} on {cfg.data.dataset} {split} ({len(dataset)} images) with {predictor.describe()}",
        file=sys.stderr,
    )
    info = {
        "dataset": cfg.data.dataset,
        "split": split,
        "data_root": str(cfg.data.root),
        "checkpoint": str(checkpoint),
        "inference": predictor.describe(),
    }
    result = evaluate_split(
        predictor,
        dataset,
        workers=cfg.data.num_workers if workers is None else workers,
        batch_size=batch or 1,
        progress=True,
        samples=samples,
        save_dir=save_preds,
        save_format=save_format,
        dataset_name=cfg.data.dataset,
        info=info,
    )
    write_results(result, dataset, out, predictor.palette, f"{Path(checkpoint).name} on {cfg.data.dataset} {split}")
    if save_preds:
        print(f"wrote {result.images} prediction PNG(s) to {Path(save_preds).resolve()}")
    return result.metrics


def default_report_dir(checkpoint: str | Path, split: str) -> Path:
    """eval_<split> beside a checkpoint file or model folder; for a Hub model, under work_dirs/evaluate."""
    if str(checkpoint).startswith("hf://"):
        return Path("work_dirs") / "evaluate" / str(checkpoint)[len("hf://") :].replace("/", "_") / f"eval_{split}"
    return Path(checkpoint).resolve().parent / f"eval_{split}"


def evaluate_predictions(
    preds: str | Path,
    *,
    dataset: str,
    data_root: str | Path,
    split: str | None = None,
    classes_file: str | None = None,
    out: str | Path | None = None,
    samples: int = 4,
    workers: int | None = None,
) -> dict[str, Any]:
    """Score saved train-id PNGs (<image stem>.png below `preds`) against a labelled split and write the report.

    dataset: a data.dataset name; out: default work_dirs/evaluate/<preds folder name>.
    """
    from reseg.config import load_config
    from reseg.data import build_dataset
    from reseg.evaluation import match_predictions, score_predictions

    if problem := folder_problem(data_root):
        hint = " (make one with `reseg make-synthetic`)" if dataset == "synthetic" else ""
        raise ResegError(f"dataset root {data_root} {problem}{hint}")
    cfg = load_config(None, base={"data": {"dataset": dataset, "classes_file": classes_file, "root": str(data_root)}})
    split = split or "val"
    data = build_dataset(cfg, split, transform=None)
    pred_files, unused = match_predictions(data, preds)
    out = Path(out) if out else Path("work_dirs") / "evaluate" / Path(preds).resolve().name
    check_outputs(out, data, preds=preds)
    print(f"scoring {len(pred_files)} prediction(s) from {preds} on {dataset} {split}", file=sys.stderr)
    info = {"dataset": dataset, "split": split, "data_root": str(data_root), "preds": str(preds)}
    result = score_predictions(
        pred_files,
        data,
        workers=cfg.data.num_workers if workers is None else workers,
        progress=True,
        samples=samples,
        dataset_name=dataset,
        info=info,
    )
    if unused:
        print(f"note: {unused} PNG(s) in {preds} match no image of the split and were not scored", file=sys.stderr)
    write_results(result, data, out, data.classes.palette, f"{Path(preds).name} on {dataset} {split}")
    return result.metrics


def check_outputs(
    out: Path, dataset: Any, preds: str | Path | None = None, save_preds: str | Path | None = None
) -> None:
    """Refuse, before any scoring, outputs that are files or lie in the dataset or the predictions read."""
    from reseg.evaluation import dataset_folders
    from reseg.io import check_output_dir, refuse_overlap

    folders = dataset_folders(dataset)
    check_output_dir(out, "--out")
    refuse_overlap(out, folders, "--out", "the dataset folder")
    if preds:
        refuse_overlap(out, [preds], "--out", "the predictions folder")
    if save_preds:
        check_output_dir(save_preds, "--save-preds")
        refuse_overlap(save_preds, folders, "--save-preds", "the dataset folder")


def write_results(result: Any, dataset: Any, out: Path, palette: Any, title: str) -> None:
    """The report of an EvalResult in `out`, and its summary line on stdout."""
    from reseg.evaluation import sample_rows
    from reseg.report import summary_line, write_report

    samples = sample_rows(result, dataset) if result.picks else None
    paths = write_report(out, result.metrics, samples=samples, palette=palette, title=title)
    print(summary_line(result.metrics))
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out.resolve()}")
