"""The one confusion matrix, and every score derived from it.

Training, evaluation, reports and the benchmark all use this module, so a number printed during
training is the number in the paper table. Definitions follow the Cityscapes evaluation
(`cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`): rows are ground truth, pixels
whose truth is the ignore label are left out, a class absent from both truth and prediction
scores NaN and is left out of every mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError

# Official average instance sizes (pixels at 1024x2048) that weight each instance in iIoU,
# from cityscapesscripts' evalPixelLevelSemanticLabeling. Used only when the class table
# (reseg.data.classes) does not carry them itself.
CITYSCAPES_AVG_INSTANCE_SIZE: dict[str, float] = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}


def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ResegError(f"label maps must hold integers, got dtype {x.dtype}")
    return x.to(device, non_blocking=True)


def _values(hist_1d: torch.Tensor, offset: int = 0, limit: int = 8) -> str:
    vals = (torch.nonzero(hist_1d).flatten() + offset).tolist()
    more = f" and {len(vals) - limit} more" if len(vals) > limit else ""
    return ", ".join(map(str, vals[:limit])) + more


def _describe(values: torch.Tensor, limit: int = 8) -> str:
    vals = torch.unique(values).tolist()
    more = f" and {len(vals) - limit} more" if len(vals) > limit else ""
    return ", ".join(map(str, vals[:limit])) + more


def nanmean(x: torch.Tensor) -> float:
    """Mean over the finite entries; NaN when there are none (no class was seen)."""
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def confusion(
    pred: Any, target: Any, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None
) -> torch.Tensor:
    """C x C int64 matrix (rows = truth, columns = prediction) of one batch.

    Pixels whose truth is `ignore_index` are left out. A truth value outside 0..C-1 that is not
    the ignore index, or a prediction outside 0..C-1 on a scored pixel, raises ResegError: such
    values are bugs (a wrong label format, a model with the wrong head), never data to drop.
    """
    C = int(num_classes)
    if device is None:
        device = target.device if isinstance(target, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    t = _as_tensor(target, device)
    p = _as_tensor(pred, device)
    if t.shape != p.shape:
        raise ResegError(f"prediction shape {tuple(p.shape)} differs from the label shape {tuple(t.shape)}")
    t = t.reshape(-1)
    p = p.reshape(-1)
    if t.numel() == 0:
        return torch.zeros((C, C), dtype=torch.int64, device=device)
    if _fits_joint_histogram(t, p, C, ignore_index):
        return _confusion_joint(t, p, C, ignore_index)
    return _confusion_general(t, p, C, ignore_index)


def _fits_joint_histogram(t: torch.Tensor, p: torch.Tensor, C: int, ignore_index: int) -> bool:
    """Whether every class, the ignore index and every value present fit in 0..255."""
    if not (0 <= ignore_index <= 255 and C <= 255):
        return False
    if t.dtype == torch.uint8 and p.dtype == torch.uint8:
        return True
    # One cheap range check decides whether the 256x256 joint histogram can hold everything.
    tmin, tmax = torch.aminmax(t)
    pmin, pmax = torch.aminmax(p)
    return bool((tmin >= 0) & (tmax <= 255) & (pmin >= 0) & (pmax <= 255))


def _confusion_joint(t: torch.Tensor, p: torch.Tensor, C: int, ignore_index: int) -> torch.Tensor:
    """A single bincount of (truth << 8 | pred) gives the matrix and every range error at once."""
    idx = t.to(torch.int32)
    idx <<= 8
    idx |= p if p.dtype != torch.int64 else p.to(torch.int32)
    hist = torch.bincount(idx, minlength=65536).view(256, 256)
    rows = hist.sum(1)
    rows[ignore_index] = 0
    if bool(rows[C:].any()):
        raise ResegError(
            f"label map holds values {_values(rows[C:], C)} outside 0..{C - 1} "
            f"that are not the ignore index {ignore_index}"
        )
    bad_pred = hist[:C, C:].sum(0)
    if bool(bad_pred.any()):
        raise ResegError(f"prediction holds values {_values(bad_pred, C)} outside 0..{C - 1}")
    return hist[:C, :C].contiguous()


def _confusion_general(t: torch.Tensor, p: torch.Tensor, C: int, ignore_index: int) -> torch.Tensor:
    """The path for negative values, ids above 255, or an unusual ignore index."""
    t = t.long()
    p = p.long()
    keep = t != ignore_index
    t = t[keep]
    p = p[keep]
    bad_t = (t < 0) | (t >= C)
    if bool(bad_t.any()):
        raise ResegError(
            f"label map holds values {_describe(t[bad_t])} outside 0..{C - 1} "
            f"that are not the ignore index {ignore_index}"
        )
    bad_p = (p < 0) | (p >= C)
    if bool(bad_p.any()):
        raise ResegError(f"prediction holds values {_describe(p[bad_p])} outside 0..{C - 1}")
    return torch.bincount(t * C + p, minlength=C * C).view(C, C)


def scores_from_matrix(mat: torch.Tensor) -> dict[str, Any]:
    """Per-class IoU/Acc/Dice and the means, from a truth x prediction count matrix.

    IoU = TP / (TP + FP + FN), NaN when the class is in neither truth nor prediction.
    Acc = TP / (TP + FN) (recall), NaN when the class is not in the truth.
    mIoU and mAcc average the defined entries; aAcc is the share of scored pixels that are right;
    fwIoU weights each class's IoU by its share of truth pixels.
    """
    m = mat.detach().to("cpu", torch.float64)
    tp = torch.diagonal(m)
    gt = m.sum(1)
    pr = m.sum(0)
    union = gt + pr - tp
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
    dice = torch.where(gt + pr > 0, 2 * tp / (gt + pr).clamp(min=1), nan)
    total = gt.sum()
    if total > 0:
        freq = gt / total
        seen = gt > 0
        fw = float((freq[seen] * iou[seen]).sum())
        aacc = float(tp.sum() / total)
    else:
        fw = aacc = float("nan")
    return {
        "mIoU": nanmean(iou),
        "mAcc": nanmean(acc),
        "aAcc": aacc,
        "fwIoU": fw,
        "mDice": nanmean(dice),
        "IoU": iou,
        "Acc": acc,
        "Dice": dice,
    }


class ConfusionMatrix:
    """Accumulates a C x C truth-by-prediction count matrix on the model's device.

    `update` is a single bincount over the flattened pixels, so scoring a 1024x2048 pair costs a
    few milliseconds and never leaves the GPU. Under DDP call `all_reduce()` before `compute()`.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        if int(num_classes) < 1:
            raise ResegError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.mat = torch.zeros(
            (self.num_classes, self.num_classes),
            dtype=torch.int64,
            device=torch.device(device) if device is not None else None,
        )

    @property
    def device(self) -> torch.device:
        return self.mat.device

    def update(self, pred: Any, target: Any) -> torch.Tensor:
        """Add a batch (tensors or arrays of train ids, any equal shape); returns the batch's own matrix.

        Returning the batch matrix lets a caller score single images (e.g. to find the worst ones)
        without a second pass over the pixels.
        """
        batch = confusion(pred, target, self.num_classes, self.ignore_index, self.mat.device)
        self.mat += batch
        return batch

    def reset(self) -> None:
        self.mat.zero_()

    def all_reduce(self) -> None:
        """Sum the counts of every process when torch.distributed is initialised; no-op otherwise."""
        from reseg.engine.distributed import all_reduce_sum

        all_reduce_sum(self.mat)

    def compute(self) -> dict[str, Any]:
        """{"mIoU", "mAcc", "aAcc", "fwIoU", "mDice": float, "IoU", "Acc", "Dice": float64 tensor[C]}."""
        return scores_from_matrix(self.mat)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.mat.sum())})"


# ------------------------------------------------------------------ Cityscapes extras


def _category_order(categories: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for c in categories:
        if c not in seen:
            seen.append(c)
    return seen


def category_iou(mat: torch.Tensor, categories: Sequence[str]) -> dict[str, float]:
    """IoU of class groups (Cityscapes' 7 categories): the matrix summed over each group's rows and columns.

    `categories[i]` names the group of train class i. Because ignored truth is not in the matrix,
    this equals the official definition (false positives counted only on non-ignored truth).
    """
    m = mat.detach().to("cpu", torch.float64)
    C = m.shape[0]
    if len(categories) != C:
        raise ResegError(f"category table has {len(categories)} entries for {C} classes")
    names = _category_order(categories)
    onehot = torch.zeros((C, len(names)), dtype=torch.float64)
    for i, c in enumerate(categories):
        onehot[i, names.index(c)] = 1.0
    cm = onehot.T @ m @ onehot
    iou = scores_from_matrix(cm)["IoU"]
    return {n: float(v) for n, v in zip(names, iou.tolist())}


@dataclass(frozen=True)
class InstanceTables:
    """What iIoU needs to know about the classes.

    label_to_train: train id (or the ignore index) of each raw label id (instance id // 1000).
    categories:     category name of each train class.
    instance_size:  official average instance size of each train class; None for classes without
                    instances (their iIoU is NaN).
    """

    label_to_train: tuple[int, ...]
    categories: tuple[str, ...]
    instance_size: tuple[float | None, ...]
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def instance_categories(self) -> list[str]:
        """Categories whose classes all have instances (Cityscapes: human, vehicle): only these get a category iIoU."""
        out = []
        for name in _category_order(self.categories):
            members = [i for i, c in enumerate(self.categories) if c == name]
            if all(self.instance_size[i] is not None for i in members):
                out.append(name)
        return out


def class_categories(info: Any) -> list[str] | None:
    """Category name of each class from a reseg.data.classes.ClassInfo; None if it has no categories."""
    cats = getattr(info, "categories", None)
    if cats is None:
        return None
    names = getattr(info, "category_names", None)
    return [names[c] if names is not None and isinstance(c, int) else str(c) for c in cats]


def instance_tables(
    info: Any, id_to_train: Sequence[int], avg_instance_size: Mapping[str, float] | None = None
) -> InstanceTables | None:
    """InstanceTables for a class table with categories and instance classes; None where it has neither.

    `id_to_train` maps raw label ids (instance id // 1000) to train ids; `avg_instance_size` maps
    class names to the average instance size that weights iIoU (default: the official Cityscapes sizes).
    """
    cats = class_categories(info)
    has = getattr(info, "has_instances", None)
    if cats is None or has is None:
        return None
    sizes = {k.lower(): float(v) for k, v in (avg_instance_size or CITYSCAPES_AVG_INSTANCE_SIZE).items()}
    inst: list[float | None] = []
    for name, h in zip(info.names, has):
        if h and name.lower() not in sizes:
            raise ResegError(f"class {name!r} has instances but no average instance size for iIoU")
        inst.append(sizes[name.lower()] if h else None)
    ignore = int(getattr(info, "ignore_index", 255))
    l2t = tuple(int(v) if 0 <= int(v) < len(info.names) else ignore for v in id_to_train)
    return InstanceTables(l2t, tuple(cats), tuple(inst), ignore)


def cityscapes_instance_tables() -> InstanceTables:
    """The iIoU tables of Cityscapes, from reseg.data.classes and the official average sizes."""
    from reseg.data.classes import CITYSCAPES, CITYSCAPES_ID_TO_TRAIN_ID

    tables = instance_tables(CITYSCAPES, [int(v) for v in CITYSCAPES_ID_TO_TRAIN_ID])
    assert tables is not None
    return tables


class InstanceIoU:
    """Accumulates the instance-weighted true positives and false negatives of Cityscapes' iIoU.

    Each ground-truth instance (instance id > 1000, id // 1000 = raw label id) adds its TP/FN
    pixel counts times (average instance size of its class / its own size), so small objects
    count as much as large ones. False positives come from the pixel confusion matrix, as in the
    official script. Per-category sums cover the categories whose classes all have instances.
    """

    def __init__(self, tables: InstanceTables, device: torch.device | str | None = None):
        self.tables = tables
        C = tables.num_classes
        dev = torch.device(device) if device is not None else torch.device("cpu")
        self.inst_categories = tables.instance_categories()
        cat_names = _category_order(tables.categories)
        self._cat_names = cat_names
        # lookups: raw label id -> train id (ignore for unknown/ignored), train id -> category index
        self._l2t = torch.tensor(list(tables.label_to_train), dtype=torch.long, device=dev)
        cat_idx = [cat_names.index(c) for c in tables.categories] + [-1]  # last: "no class"
        self._cat = torch.tensor(cat_idx, dtype=torch.long, device=dev)
        sizes = [s if s is not None else 0.0 for s in tables.instance_size]
        self._size = torch.tensor(sizes, dtype=torch.float64, device=dev)
        self._has = torch.tensor([s is not None for s in tables.instance_size] + [False], device=dev)
        self._cat_has = torch.tensor([c in self.inst_categories for c in cat_names], device=dev)
        self.tp = torch.zeros(C, dtype=torch.float64, device=dev)
        self.fn = torch.zeros(C, dtype=torch.float64, device=dev)
        self.cat_tp = torch.zeros(len(cat_names), dtype=torch.float64, device=dev)
        self.cat_fn = torch.zeros(len(cat_names), dtype=torch.float64, device=dev)

    def reset(self) -> None:
        for t in (self.tp, self.fn, self.cat_tp, self.cat_fn):
            t.zero_()

    def all_reduce(self) -> None:
        """Sum across processes when torch.distributed is initialised."""
        from reseg.engine.distributed import all_reduce_sum

        for t in (self.tp, self.fn, self.cat_tp, self.cat_fn):
            all_reduce_sum(t)

    def update(self, pred: Any, instance_ids: Any) -> None:
        """Add one image: `pred` train ids (H x W), `instance_ids` the *_gtFine_instanceIds.png values."""
        dev = self.tp.device
        p = _as_tensor(pred, dev)
        inst = _as_tensor(instance_ids, dev)
        if p.shape != inst.shape:
            raise ResegError(
                f"prediction shape {tuple(p.shape)} differs from the instance map shape {tuple(inst.shape)}"
            )
        inst = inst.reshape(-1).long()
        sel = inst > 1000
        if not bool(sel.any()):
            return
        ids = inst[sel]
        p = p.reshape(-1)[sel].long()
        lid = ids // 1000
        if int(lid.max()) >= self._l2t.numel():
            raise ResegError(
                f"instance map holds ids {_describe(ids[lid >= self._l2t.numel()])} whose label id "
                f"(id // 1000) is not a Cityscapes label"
            )
        C = self.tables.num_classes
        tid = self._l2t[lid]
        tid = torch.where((tid >= 0) & (tid < C), tid, C)  # C = ignored label
        keep = self._has[tid]
        if not bool(keep.any()):
            return
        ids, p, tid = ids[keep], p[keep], tid[keep]
        uniq, inv = torch.unique(ids, return_inverse=True)
        size = torch.bincount(inv, minlength=uniq.numel()).to(torch.float64)
        hit = torch.bincount(inv, weights=(p == tid).to(torch.float64), minlength=uniq.numel())
        pc = torch.where((p >= 0) & (p < C), p, C)
        cat_hit = torch.bincount(
            inv, weights=(self._cat[pc] == self._cat[tid]).to(torch.float64), minlength=uniq.numel()
        )
        inst_tid = self._l2t[uniq // 1000]
        weight = self._size[inst_tid] / size
        self.tp.index_add_(0, inst_tid, hit * weight)
        self.fn.index_add_(0, inst_tid, (size - hit) * weight)
        inst_cat = self._cat[inst_tid]
        ok = self._cat_has[inst_cat]
        self.cat_tp.index_add_(0, inst_cat[ok], (cat_hit * weight)[ok])
        self.cat_fn.index_add_(0, inst_cat[ok], ((size - cat_hit) * weight)[ok])

    def compute(self, mat: torch.Tensor) -> dict[str, Any]:
        """{"iIoU": mean over classes, "per_class_iIoU": tensor[C] (NaN for non-instance classes),
        "category_iIoU": {category: value}, "mean_category_iIoU": float}; `mat` is the pixel confusion matrix."""
        m = mat.detach().to("cpu", torch.float64)
        C = self.tables.num_classes
        if m.shape != (C, C):
            raise ResegError(f"confusion matrix is {tuple(m.shape)}, iIoU tables have {C} classes")
        tp, fn = self.tp.cpu(), self.fn.cpu()
        fp = m.sum(0) - torch.diagonal(m)
        denom = tp + fp + fn
        has = self._has[:C].cpu()
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        per_class = torch.where(has & (denom > 0), tp / denom.clamp(min=1e-300), nan)
        cats: dict[str, float] = {}
        for k, name in enumerate(self._cat_names):
            if name not in self.inst_categories:
                continue
            members = [i for i, c in enumerate(self.tables.categories) if c == name]
            others = [i for i in range(C) if i not in members]
            cfp = float(m[others][:, members].sum())
            d = float(self.cat_tp[k]) + cfp + float(self.cat_fn[k])
            cats[name] = float(self.cat_tp[k]) / d if d > 0 else float("nan")
        return {
            "iIoU": nanmean(per_class),
            "per_class_iIoU": per_class,
            "category_iIoU": cats,
            "mean_category_iIoU": nanmean(torch.tensor(list(cats.values()), dtype=torch.float64))
            if cats
            else float("nan"),
        }
