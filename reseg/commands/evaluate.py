"""`reseg evaluate`: score a checkpoint on a labelled split, or score saved prediction PNGs with no model.

    reseg evaluate --checkpoint CKPT [--data-root DIR] [--split val] [--out DIR] [--set k=v ...]
                   [--mode whole|slide --crop H W --stride H W] [--flip] [--scales 0.75 1.0 1.25]
                   [--save-preds DIR [--format trainid|cityscapes]] [--device auto] [--amp]
    reseg evaluate --preds DIR --dataset {cityscapes,camvid,folder,synthetic} --data-root DIR --split SPLIT
                   [--out DIR] [--classes-file YAML]

Both paths feed the same Scorer (reseg.metrics.ConfusionMatrix, plus category IoU and iIoU for
Cityscapes) and write the same report (reseg.report): metrics.json, per_class.csv, report.md,
confusion_matrix.png, per_class_iou.png, samples.png.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError

DATASETS = ("cityscapes", "camvid", "folder", "synthetic")

# --set keys that change inference, and the Predictor argument each one sets
_EVAL_KEYS = {"eval.mode": "mode", "eval.crop": "crop", "eval.stride": "stride", "eval.flip": "flip",
              "eval.scales": "scales", "data.eval_size": "infer_size"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="score this checkpoint (config and classes come from it)")
    src.add_argument("--preds", metavar="DIR",
                     help="score saved predictions: <image stem>.png files (searched recursively) holding train ids")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="with --preds: which dataset the predictions belong to")
    parser.add_argument("--data-root", default=None, help="dataset root (default with --checkpoint: its config's)")
    parser.add_argument("--split", default=None, help="split to score (default: the config's val split / 'val')")
    parser.add_argument("--classes-file", default=None, help="with --preds --dataset folder: the classes YAML")
    parser.add_argument("--out", default=None,
                        help="report folder (default: <checkpoint folder>/eval_<split>, or "
                             "work_dirs/evaluate/<preds folder name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the checkpoint's config, e.g. --set data.eval_size=[512,1024] (repeatable)")
    parser.add_argument("--save-preds", metavar="DIR", default=None,
                        help="also write each prediction as <image stem>.png")
    parser.add_argument("--format", choices=("trainid", "cityscapes"), default="trainid",
                        help="--save-preds format: train ids, or official Cityscapes label ids for the server")
    parser.add_argument("--samples", type=int, default=4,
                        help="rows in samples.png: the first image and the worst by IoU (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes (default: the config's data.num_workers)")
    from reseg.commands.predict import add_inference_arguments

    add_inference_arguments(parser)


# ------------------------------------------------------------------ scoring

class Scorer:
    """Accumulates one split's scores and keeps what the report needs (the worst images' predictions)."""

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255, categories: Sequence[str] | None = None,
                 instance_tables: Any = None, n_samples: int = 4, device: torch.device | str = "cpu") -> None:
        from reseg.metrics import ConfusionMatrix, InstanceIoU

        self.class_names = list(class_names)
        self.categories = list(categories) if categories is not None else None
        self.cm = ConfusionMatrix(len(self.class_names), ignore_index, device=device)
        self.instance = InstanceIoU(instance_tables, device=device) if instance_tables is not None else None
        self.n_samples = max(0, n_samples)
        self.n_worst = max(0, n_samples - 1)
        self._worst: list[tuple[float, int, np.ndarray]] = []  # max-heap on score via negation
        self.first: tuple[int, float, np.ndarray] | None = None
        self.images = 0

    def add(self, index: int, pred: np.ndarray, truth: np.ndarray, instance_ids: np.ndarray | None = None,
            where: str = "") -> float:
        """Score one image; returns its own mIoU (NaN if every pixel is ignored)."""
        from reseg.metrics import scores_from_matrix

        if pred.shape != truth.shape:
            raise ResegError(f"{where}prediction is {_wh(pred.shape)} (WxH) but the label is {_wh(truth.shape)}")
        try:
            batch = self.cm.update(_tensor(pred), _tensor(truth))
            if self.instance is not None and instance_ids is not None:
                self.instance.update(_tensor(pred), _tensor(instance_ids))
        except ResegError as err:
            raise ResegError(f"{where}{err}") from None
        self.images += 1
        score = scores_from_matrix(batch)["mIoU"]
        if self.n_samples == 0:
            pass
        elif self.first is None:
            self.first = (index, score, pred)
        elif self.n_worst and not math.isnan(score):
            item = (-score, index, pred)
            if len(self._worst) < self.n_worst:
                heapq.heappush(self._worst, item)
            elif score < -self._worst[0][0]:
                heapq.heapreplace(self._worst, item)
        return score

    def sample_picks(self) -> list[tuple[int, float, np.ndarray]]:
        """(index, image mIoU, prediction): the first image, then the worst ones, worst first."""
        picks = [self.first] if self.first is not None else []
        picks += [(i, -s, p) for s, i, p in sorted(self._worst, key=lambda t: t[0], reverse=True)]
        return picks

    def metrics(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        from reseg.report import metrics_dict

        self.cm.all_reduce()
        if self.instance is not None:
            self.instance.all_reduce()
        return metrics_dict(self.cm, self.class_names, self.categories, self.instance,
                            {"num_images": self.images, **(info or {})})


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _wh(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(tuple(shape))


def _identity(x: Any) -> Any:
    return x


class _Items(torch.utils.data.Dataset):
    """What the scoring loop needs per sample, read in worker processes; errors come back as values
    (a worker's exception would otherwise reach the user wrapped in a traceback)."""

    def __init__(self, dataset: Any, need_image: bool, pred_files: Sequence[str] | None,
                 instance_files: Sequence[str | None] | None) -> None:
        self.dataset = dataset
        self.need_image = need_image
        self.pred_files = pred_files
        self.instance_files = instance_files

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            item: dict[str, Any] = {"index": i}
            if self.need_image:
                item["image"], item["truth"] = self.dataset.load_pair(i)
            else:
                item["truth"] = self.dataset.read_mask(i)
            if item["truth"] is None:
                raise ResegError(f"{self.dataset.files[i][0]} has no label file")
            if self.pred_files is not None:
                item["pred"] = read_prediction(self.pred_files[i])
            if self.instance_files is not None and self.instance_files[i] is not None:
                item["instance"] = read_instance_ids(self.instance_files[i])
            return item
        except ResegError as err:
            return {"index": i, "error": str(err)}


def read_prediction(path: str | Path) -> np.ndarray:
    """A prediction PNG as HxW integers: one channel or a palette PNG (its indices), never colours."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                raise ResegError(f"prediction {path} is a colour ({im.mode}) image; expected a single-channel PNG "
                                 f"of train ids (as written by `reseg predict` or `reseg evaluate --save-preds`)")
            arr = np.asarray(im.convert("L") if im.mode in ("1", "LA") else im)
    except FileNotFoundError:
        raise ResegError(f"prediction {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ResegError(f"prediction {path} is not a readable image: {err}") from None
    return arr


def read_instance_ids(path: str | Path) -> np.ndarray:
    """A *_gtFine_instanceIds.png (16-bit) as int32."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im).astype(np.int32)
    except (OSError, SyntaxError, ValueError) as err:
        raise ResegError(f"instance file {path} is not a readable image: {err}") from None


def _instance_files(dataset: Any) -> list[str | None] | None:
    """Instance-id files from the dataset's meta (Cityscapes keeps them there); None when no sample has one."""
    meta = getattr(dataset, "meta", None)
    if not meta:
        return None
    files = [m.get("instance_path") for m in meta]
    return files if any(files) else None


def _cityscapes_extras(dataset: Any, dataset_name: str) -> tuple[list[str] | None, Any, list[str | None] | None]:
    """(categories, instance tables, instance files) for datasets that define them; iIoU needs every instance file."""
    from reseg.metrics import class_categories, cityscapes_instance_tables

    categories = class_categories(dataset.classes)
    if dataset_name != "cityscapes":
        return categories, None, None
    files = _instance_files(dataset)
    if files is None or not all(files):
        missing = len(dataset) if files is None else sum(f is None for f in files)
        print(f"note: iIoU not computed: {missing} of {len(dataset)} images have no *_gtFine_instanceIds.png",
              file=sys.stderr)
        return categories, None, None
    return categories, cityscapes_instance_tables(), files


def _stems(dataset: Any) -> list[str]:
    return [Path(img).stem for img, _ in dataset.files]


def _check_unique_stems(stems: list[str], dataset: Any, why: str) -> None:
    seen: dict[str, str] = {}
    for stem, (img, _) in zip(stems, dataset.files):
        if stem in seen:
            raise ResegError(f"{why}: two images share the file stem {stem!r} ({seen[stem]} and {img}); "
                             f"prediction files are named <stem>.png, so stems must be unique")
        seen[stem] = img


def _loop(scorer: Scorer, dataset: Any, items: _Items, workers: int, predict: Any, save: Any, desc: str) -> None:
    """Read (in workers), predict (in batches of one size), score and save every sample, with a progress bar."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(items, batch_size=None, shuffle=False, num_workers=max(0, workers), collate_fn=_identity)
    files = dataset.files
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        preds = predict([p["image"] for p in pending]) if predict is not None else [p["pred"] for p in pending]
        for item, pred in zip(pending, preds):
            i = item["index"]
            if predict is None:
                _check_range(pred, len(scorer.class_names), items.pred_files[i])
                where = f"prediction {items.pred_files[i]} (label {files[i][1]}): "
            else:
                where = f"{files[i][0]}: "
            scorer.add(i, pred, item["truth"], item.get("instance"), where)
            if save is not None:
                save(i, pred)
        bar.update(len(pending))
        pending.clear()

    bar = tqdm(total=len(items), desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr)
    try:
        for item in loader:
            if "error" in item:
                raise ResegError(item["error"])
            if predict is not None and pending and (len(pending) >= predict.batch
                                                    or item["image"].shape != pending[0]["image"].shape):
                flush()
            pending.append(item)
            if predict is None:
                flush()
        flush()
    finally:
        bar.close()


def _check_range(pred: np.ndarray, num_classes: int, path: str) -> None:
    if pred.ndim != 2:
        raise ResegError(f"prediction {path} has shape {pred.shape}; expected a single-channel H x W image")
    if pred.size and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise ResegError(f"prediction {path} holds values {shown} outside the train ids 0..{num_classes - 1}")


class _Predict:
    """Callable wrapper so the loop can ask for the batch size."""

    def __init__(self, predictor: Any, batch: int) -> None:
        self.predictor = predictor
        self.batch = max(1, batch)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.predictor.predict(images, batch_size=self.batch)


def _saver(folder: str | None, fmt: str, stems: list[str], dataset_name: str, num_classes: int):
    if folder is None:
        return None
    lut = None
    if fmt == "cityscapes":
        from reseg.data.classes import CITYSCAPES_TRAIN_ID_TO_ID

        if dataset_name != "cityscapes" or num_classes != len(CITYSCAPES_TRAIN_ID_TO_ID):
            raise ResegError(f"--format cityscapes needs the 19-class Cityscapes dataset, not {dataset_name!r} "
                             f"with {num_classes} classes; use --format trainid")
        lut = np.zeros(256, np.uint8)
        lut[: len(CITYSCAPES_TRAIN_ID_TO_ID)] = CITYSCAPES_TRAIN_ID_TO_ID
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def save(i: int, pred: np.ndarray) -> None:
        from PIL import Image

        data = lut[pred] if lut is not None else pred.astype(np.uint8)
        Image.fromarray(data).save(out / f"{stems[i]}.png")

    return save


def _samples(scorer: Scorer, dataset: Any) -> list[dict[str, Any]]:
    out = []
    for n, (i, score, pred) in enumerate(scorer.sample_picks()):
        image, truth = dataset.load_pair(i)
        tag = "first image" if n == 0 else "worst" if n == 1 else f"worst #{n}"
        iou = "n/a" if math.isnan(score) else f"{100 * score:.1f}%"
        out.append({"image": image, "truth": truth, "pred": pred,
                    "title": f"{Path(dataset.files[i][0]).name} ({tag}, mIoU {iou})"})
    return out


def _finish(scorer: Scorer, dataset: Any, out: Path, info: dict[str, Any], palette: Any, title: str,
            save_dir: str | None) -> dict[str, Any]:
    from reseg.report import write_report

    metrics = scorer.metrics(info)
    samples = _samples(scorer, dataset) if scorer.first is not None else None
    paths = write_report(out, metrics, samples=samples, palette=palette, title=title)
    fmt = lambda k: "n/a" if metrics.get(k) is None else f"{100 * metrics[k]:.2f}%"  # noqa: E731
    line = f"mIoU {fmt('mIoU')}  mAcc {fmt('mAcc')}  aAcc {fmt('aAcc')}  fwIoU {fmt('fwIoU')}"
    if "iIoU" in metrics:
        line += f"  iIoU {fmt('iIoU')}"
    if "mean_category_IoU" in metrics:
        line += f"  category IoU {fmt('mean_category_IoU')}"
    print(line)
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out.resolve()}")
    if save_dir:
        print(f"wrote {scorer.images} prediction PNG(s) to {Path(save_dir).resolve()}")
    return metrics


# ------------------------------------------------------------------ the two modes

def _parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ResegError(f"--set {item!r} must look like key=value, e.g. data.eval_size=[512,1024]")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Run the checkpoint's model on a labelled split and write the report."""
    from reseg.commands.predict import build_predictor
    from reseg.config import Config, apply_overrides, validate
    from reseg.data import build_dataset

    # the --set keys that change inference go to the Predictor unless a command-line flag says otherwise
    set_values = _parse_overrides(args.overrides)
    for key, name in _EVAL_KEYS.items():
        if key in set_values and getattr(args, name, None) is None:
            value = set_values[key]
            if name == "infer_size" and value is not None:
                value = [value[1], value[0]]  # --infer-size is W H, the config H W
            setattr(args, name, value)
    predictor = build_predictor(args)
    if set_values.get("data.size_divisor") is not None:
        predictor.size_divisor = int(set_values["data.size_divisor"])

    data = predictor.config.to_dict()
    sources: dict[str, str] = {}
    apply_overrides(data, list(args.overrides), sources)
    if args.data_root:
        data.setdefault("data", {})["root"] = args.data_root
    cfg = Config.from_dict(data, sources)
    validate(cfg)
    split = args.split or cfg.data.val_split
    dataset = build_dataset(cfg, split, transform=None)
    names = list(predictor.class_names)
    ds_names = list(dataset.classes.names)
    if len(names) != len(ds_names):
        raise ResegError(f"checkpoint {args.checkpoint} predicts {len(names)} classes but dataset "
                         f"{cfg.data.dataset!r} ({cfg.data.root}, split {split!r}) has {len(ds_names)}; "
                         f"evaluate on the dataset the model was trained for")
    if [n.lower() for n in names] != [n.lower() for n in ds_names]:
        print(f"warning: the checkpoint's class names {names} differ from the dataset's {ds_names}; "
              f"scoring by class index", file=sys.stderr)
    stems = _stems(dataset)
    if args.save_preds:
        _check_unique_stems(stems, dataset, "--save-preds")
    categories, tables, inst_files = _cityscapes_extras(dataset, cfg.data.dataset)
    scorer = Scorer(names, dataset.classes.ignore_index, categories, tables, args.samples)
    workers = cfg.data.num_workers if args.workers is None else args.workers
    print(f"evaluating {args.checkpoint} on {cfg.data.dataset} {split} ({len(dataset)} images) with "
          f"{predictor.describe()}", file=sys.stderr)
    _loop(scorer, dataset, _Items(dataset, True, None, inst_files), workers,
          _Predict(predictor, args.batch or 1),
          _saver(args.save_preds, args.format, stems, cfg.data.dataset, len(names)), "evaluate")
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval_{split}"
    info = {"dataset": cfg.data.dataset, "split": split, "data_root": str(cfg.data.root),
            "checkpoint": str(args.checkpoint), "inference": predictor.describe()}
    return _finish(scorer, dataset, out, info, predictor.palette,
                   f"{Path(args.checkpoint).name} on {cfg.data.dataset} {split}", args.save_preds)


def index_predictions(folder: str | Path) -> dict[str, Path]:
    """stem -> path of every *.png below `folder`; a stem found twice is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise ResegError(f"predictions folder {root} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() == ".png":
            if p.stem in found:
                raise ResegError(f"two prediction files share the stem {p.stem!r}: {found[p.stem]} and {p}; "
                                 f"keep one PNG per image")
            found[p.stem] = p
    return found


def evaluate_predictions(args: argparse.Namespace) -> dict[str, Any]:
    """Score saved train-id PNGs against a labelled split and write the report."""
    from reseg.config import Config
    from reseg.data import build_dataset

    if args.dataset is None or args.data_root is None:
        raise ResegError("--preds needs --dataset {cityscapes,camvid,folder,synthetic} and --data-root DIR")
    if args.save_preds:
        raise ResegError("--save-preds goes with --checkpoint; with --preds the predictions are already saved")
    if not Path(args.data_root).is_dir():
        hint = " (make one with `reseg make-synthetic`)" if args.dataset == "synthetic" else ""
        raise ResegError(f"dataset root {args.data_root} does not exist or is not a folder{hint}")
    cfg = Config()
    cfg.data.dataset = args.dataset
    cfg.data.root = args.data_root
    cfg.data.classes_file = args.classes_file
    split = args.split or "val"
    dataset = build_dataset(cfg, split, transform=None)
    stems = _stems(dataset)
    _check_unique_stems(stems, dataset, "--preds")
    found = index_predictions(args.preds)
    missing = [s for s in stems if s not in found]
    if missing:
        shown = ", ".join(f"{s}.png" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ResegError(f"{len(missing)} of {len(stems)} prediction(s) missing in {args.preds} "
                         f"(searched recursively for <image stem>.png): {shown}")
    pred_files = [str(found[s]) for s in stems]
    names = list(dataset.classes.names)
    categories, tables, inst_files = _cityscapes_extras(dataset, args.dataset)
    scorer = Scorer(names, dataset.classes.ignore_index, categories, tables, args.samples)
    workers = cfg.data.num_workers if args.workers is None else args.workers
    print(f"scoring {len(stems)} prediction(s) from {args.preds} on {args.dataset} {split}", file=sys.stderr)
    _loop(scorer, dataset, _Items(dataset, False, pred_files, inst_files), workers, None, None, "score")
    unused = len(found) - len(stems)
    if unused:
        print(f"note: {unused} PNG(s) in {args.preds} match no image of the split and were not scored", file=sys.stderr)
    out = Path(args.out) if args.out else Path("work_dirs") / "evaluate" / Path(args.preds).resolve().name
    info = {"dataset": args.dataset, "split": split, "data_root": str(args.data_root), "preds": str(args.preds)}
    return _finish(scorer, dataset, out, info, dataset.classes.palette,
                   f"{Path(args.preds).name} on {args.dataset} {split}", None)


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
