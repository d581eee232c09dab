"""Scoring a labelled split: the one evaluation path behind `reseg evaluate` and the trainer's validation.

`evaluate_split(predictor, dataset)` reads every item at full size (the dataset is built with
transform=None), runs the predictor on the RGB image (the predictor may run the model at its
infer_size; its output is at the image's size), and scores the prediction against the full-size
label with reseg.metrics.ConfusionMatrix. With `pred_files` and no predictor it scores saved
prediction PNGs instead. Under torch.distributed each rank scores its `indices` and the counts are
summed, so every rank gets the numbers of the whole split.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError
from reseg.io import folder_problem

Pick = tuple[int, float, np.ndarray]  # (dataset index, the image's own mIoU, its prediction)


@dataclass
class EvalResult:
    """metrics: the record of reseg.report.metrics_dict; picks: the first and the worst images for samples.png;
    images: how many images were scored (all ranks together)."""

    metrics: dict[str, Any]
    picks: list[Pick] = field(default_factory=list)
    images: int = 0


# ------------------------------------------------------------------ scoring


class Scorer:
    """Accumulates one split's scores and keeps what the report needs (the worst images' predictions)."""

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_index: int = 255,
        categories: Sequence[str] | None = None,
        instance_tables: Any = None,
        n_samples: int = 4,
        device: torch.device | str = "cpu",
    ) -> None:
        from reseg.metrics import ConfusionMatrix, InstanceIoU

        self.class_names = list(class_names)
        self.categories = list(categories) if categories is not None else None
        self.cm = ConfusionMatrix(len(self.class_names), ignore_index, device=device)
        self.instance = InstanceIoU(instance_tables, device=device) if instance_tables is not None else None
        self.n_samples = max(0, n_samples)
        self.n_worst = max(0, n_samples - 1)
        self._worst: list[tuple[float, int, np.ndarray]] = []  # max-heap on score via negation
        self.first: Pick | None = None
        self.images = 0

    def add(
        self, index: int, pred: np.ndarray, truth: np.ndarray, instance_ids: np.ndarray | None = None, where: str = ""
    ) -> float:
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
        self._keep(index, score, pred)
        return score

    def _keep(self, index: int, score: float, pred: np.ndarray) -> None:
        if self.n_samples == 0:
            return
        if self.first is None:
            self.first = (index, score, pred)
        elif self.n_worst and not math.isnan(score):
            item = (-score, index, pred)
            if len(self._worst) < self.n_worst:
                heapq.heappush(self._worst, item)
            elif score < -self._worst[0][0]:
                heapq.heapreplace(self._worst, item)

    def sample_picks(self) -> list[Pick]:
        """(index, image mIoU, prediction): the first image, then the worst ones, worst first."""
        picks = [self.first] if self.first is not None else []
        picks += [(i, -s, p) for s, i, p in sorted(self._worst, key=lambda t: t[0], reverse=True)]
        return picks

    def metrics(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metrics record, with the counts of every rank summed first."""
        from reseg.engine.distributed import all_reduce_sum
        from reseg.report import metrics_dict

        self.cm.all_reduce()
        if self.instance is not None:
            self.instance.all_reduce()
        images = int(all_reduce_sum(torch.tensor([self.images], dtype=torch.int64, device=self.cm.device)))
        return metrics_dict(
            self.cm, self.class_names, self.categories, self.instance, {"num_images": images, **(info or {})}
        )


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _wh(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(tuple(shape))


def _identity(x: Any) -> Any:
    return x


# ------------------------------------------------------------------ reading items


class ItemReader(torch.utils.data.Dataset):
    """What the scoring loop needs per sample, read in worker processes; errors come back as values
    (a worker's exception would otherwise reach the user wrapped in a traceback)."""

    def __init__(
        self,
        dataset: Any,
        need_image: bool,
        pred_files: Sequence[str] | None = None,
        instance_files: Sequence[str | None] | None = None,
    ) -> None:
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
    """A saved prediction as HxW ids: one channel or a palette PNG (its indices), never colours."""
    from reseg.data.base import read_label_file

    return read_label_file(path, "prediction", colour=False)


def read_instance_ids(path: str | Path) -> np.ndarray:
    """A *_gtFine_instanceIds.png (16-bit) as int32."""
    from reseg.data.base import read_label_file

    return read_label_file(path, "instance file", colour=False).astype(np.int32)


def check_prediction_range(pred: np.ndarray, num_classes: int, path: str) -> None:
    """A saved prediction must be one channel of train ids 0..C-1."""
    if pred.ndim != 2:
        raise ResegError(f"prediction {path} has shape {pred.shape}; expected a single-channel H x W image")
    if pred.size and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise ResegError(f"prediction {path} holds values {shown} outside the train ids 0..{num_classes - 1}")


# ------------------------------------------------------------------ dataset facts


def _instance_files(dataset: Any) -> list[str | None] | None:
    """Instance-id files from the dataset's meta (Cityscapes keeps them there); None when no sample has one."""
    meta = getattr(dataset, "meta", None)
    if not meta:
        return None
    files = [m.get("instance_path") for m in meta]
    return files if any(files) else None


def _is_cityscapes(dataset: Any, dataset_name: str | None) -> bool:
    if dataset_name is not None:
        return dataset_name == "cityscapes"
    from reseg.data.cityscapes import CityscapesDataset

    return isinstance(dataset, CityscapesDataset)


def cityscapes_extras(
    dataset: Any, cityscapes: bool, quiet: bool = False
) -> tuple[list[str] | None, Any, list[str | None] | None]:
    """(categories, instance tables, instance files) for datasets that define them; iIoU needs every instance file."""
    from reseg.metrics import cityscapes_instance_tables, class_categories

    categories = class_categories(dataset.classes)
    if not cityscapes:
        return categories, None, None
    files = _instance_files(dataset)
    if files is None or not all(files):
        missing = len(dataset) if files is None else sum(f is None for f in files)
        if not quiet:
            print(
                f"note: iIoU not computed: {missing} of {len(dataset)} images have no *_gtFine_instanceIds.png",
                file=sys.stderr,
            )
        return categories, None, None
    return categories, cityscapes_instance_tables(), files


def stems(dataset: Any) -> list[str]:
    """The file stem of each image: saved predictions are named <stem>.png."""
    return [Path(img).stem for img, _ in dataset.files]


def check_unique_stems(names: list[str], dataset: Any, why: str) -> None:
    seen: dict[str, str] = {}
    for stem, (img, _) in zip(names, dataset.files):
        if stem in seen:
            raise ResegError(
                f"{why}: two images share the file stem {stem!r} ({seen[stem]} and {img}); "
                f"prediction files are named <stem>.png, so stems must be unique"
            )
        seen[stem] = img


def index_predictions(folder: str | Path) -> dict[str, Path]:
    """stem -> path of every *.png below `folder`; a stem found twice is an error."""
    root = Path(folder)
    if problem := folder_problem(root):
        raise ResegError(f"predictions folder {root} {problem}")
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() == ".png":
            if p.stem in found:
                raise ResegError(
                    f"two prediction files share the stem {p.stem!r}: {found[p.stem]} and {p}; keep one PNG per image"
                )
            found[p.stem] = p
    return found


def match_predictions(dataset: Any, folder: str | Path) -> tuple[list[str], int]:
    """(the prediction file of each image of the split, how many PNGs in `folder` match no image)."""
    names = stems(dataset)
    check_unique_stems(names, dataset, "--preds")
    found = index_predictions(folder)
    missing = [s for s in names if s not in found]
    if missing:
        shown = ", ".join(f"{s}.png" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ResegError(
            f"{len(missing)} of {len(names)} prediction(s) missing in {folder} "
            f"(searched recursively for <image stem>.png): {shown}"
        )
    return [str(found[s]) for s in names], len(found) - len(names)


def dataset_folders(dataset: Any) -> list[Path]:
    """The folders a dataset reads from (its root and every image and label folder): never write into them."""
    folders = {Path(dataset.root)}
    for img, label in dataset.files:
        folders.add(Path(img).parent)
        if label is not None:
            folders.add(Path(label).parent)
    return sorted(folders)


def check_class_count(class_names: Sequence[str], dataset: Any, source: str, where: str) -> None:
    """The model's classes must be the dataset's (by count; differing names are only warned about)."""
    names = list(class_names)
    ds_names = list(dataset.classes.names)
    if len(names) != len(ds_names):
        raise ResegError(
            f"{source} predicts {len(names)} classes but dataset {where} has {len(ds_names)}; "
            f"evaluate on the dataset the model was trained for"
        )
    if [n.lower() for n in names] != [n.lower() for n in ds_names]:
        print(
            f"warning: the class names of {source} {names} differ from the dataset's {ds_names}; "
            f"scoring by class index",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ the loop


def _read(items: ItemReader, indices: Sequence[int], workers: int) -> Iterator[dict[str, Any]]:
    """Items in order, read by `workers` processes; a reading error becomes a ResegError here."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        items, batch_size=None, shuffle=False, sampler=list(indices), num_workers=max(0, workers), collate_fn=_identity
    )
    for item in loader:
        if "error" in item:
            raise ResegError(item["error"])
        yield item


def _groups(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def evaluate_split(
    predictor: Any,
    dataset: Any,
    *,
    indices: Sequence[int] | None = None,
    workers: int = 0,
    batch_size: int = 1,
    progress: bool = False,
    samples: int = 0,
    save_dir: str | Path | None = None,
    save_format: str = "trainid",
    dataset_name: str | None = None,
    pred_files: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    info: dict[str, Any] | None = None,
    quiet: bool = False,
) -> EvalResult:
    """Score `predictor` (a reseg.predictor.Predictor, or None with `pred_files`) on every item of `dataset`.

    dataset: built with transform=None, so images and labels are the full-size files.
    indices: the items this process scores (its shard under DDP; default all); the counts of every
    rank are summed, so `metrics` covers the whole split on every rank.
    batch_size: images handed to the predictor at once (it batches equal sizes together).
    samples: how many images to keep for samples.png (the first, then the worst by mIoU).
    save_dir: also write each prediction as <image stem>.png (format trainid or cityscapes).
    dataset_name: "cityscapes" adds category IoU and iIoU (default: detected from the dataset's type).
    """
    if (predictor is None) == (pred_files is None):
        raise ResegError("evaluate_split needs a predictor or saved prediction files (exactly one)")
    names = list(class_names or getattr(predictor, "class_names", None) or dataset.classes.names)
    cityscapes = _is_cityscapes(dataset, dataset_name)
    categories, tables, inst_files = cityscapes_extras(dataset, cityscapes, quiet=quiet)
    scorer = Scorer(names, dataset.classes.ignore_index, categories, tables, samples)
    saver = None
    if save_dir is not None:
        file_stems = stems(dataset)
        check_unique_stems(file_stems, dataset, "--save-preds")
        from reseg.mask_files import PredictionSaver

        saver = PredictionSaver(save_dir, file_stems, save_format, cityscapes, len(names))
    order = list(range(len(dataset))) if indices is None else list(indices)
    items = ItemReader(dataset, predictor is not None, pred_files, inst_files)
    _score_all(scorer, dataset, items, order, predictor, saver, workers, max(1, int(batch_size)), progress)
    metrics = scorer.metrics(info)
    return EvalResult(metrics, scorer.sample_picks(), int(metrics["num_images"]))


def score_predictions(pred_files: Sequence[str], dataset: Any, **kwargs: Any) -> EvalResult:
    """Score saved prediction PNGs (one per dataset item, in order) like a model's predictions."""
    return evaluate_split(None, dataset, pred_files=pred_files, **kwargs)


def _score_all(
    scorer: Scorer,
    dataset: Any,
    items: ItemReader,
    order: list[int],
    predictor: Any,
    saver: Any,
    workers: int,
    batch_size: int,
    progress: bool,
) -> None:
    from tqdm import tqdm

    files = dataset.files
    bar = tqdm(
        total=len(order),
        desc="evaluate" if predictor is not None else "score",
        unit="img",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    try:
        for group in _groups(_read(items, order, workers), batch_size if predictor is not None else 1):
            if predictor is not None:
                preds = predictor.predict([g["image"] for g in group], batch_size=batch_size)
            else:
                preds = [g["pred"] for g in group]
            for item, pred in zip(group, preds):
                i = item["index"]
                if predictor is None:
                    check_prediction_range(pred, len(scorer.class_names), items.pred_files[i])
                    where = f"prediction {items.pred_files[i]} (label {files[i][1]}): "
                else:
                    where = f"{files[i][0]}: "
                scorer.add(i, pred, item["truth"], item.get("instance"), where)
                if saver is not None:
                    saver(i, pred)
            bar.update(len(group))
    finally:
        bar.close()


def sample_rows(result: EvalResult, dataset: Any) -> list[dict[str, Any]]:
    """The rows of samples.png (image, truth, prediction, title) for the picked images."""
    out = []
    for n, (i, score, pred) in enumerate(result.picks):
        image, truth = dataset.load_pair(i)
        tag = "first image" if n == 0 else "worst" if n == 1 else f"worst #{n}"
        iou = "n/a" if math.isnan(score) else f"{100 * score:.1f}%"
        out.append(
            {
                "image": image,
                "truth": truth,
                "pred": pred,
                "title": f"{Path(dataset.files[i][0]).name} ({tag}, mIoU {iou})",
            }
        )
    return out
