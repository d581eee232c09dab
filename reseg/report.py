"""Evaluation reports: metrics.json, per_class.csv, report.md and the figures, plus run comparisons.

Everything here reads the one metrics record built by `metrics_dict`, the schema of metrics.json,
of the trainer's metrics.jsonl validation records, of TensorBoard scalars (`scalars`) and of
`reseg compare`, so the JSON, the CSV, the markdown table and the plots can never disagree.
One unit: files hold fractions in [0, 1] (None where a class was never seen); what people read
(console, report.md, compare.md) is percent with a % sign (`percent`). Every file is written
atomically (reseg.io). Figures use matplotlib's object API on an Agg canvas: no display, no global
pyplot state.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError
from reseg.io import atomic_open, atomic_path, check_output_dir, write_text
from reseg.metrics import ConfusionMatrix, InstanceIoU, category_iou, scores_from_matrix

Sample = Mapping[str, Any]  # {"image": HxWx3 uint8, "truth": HxW uint8, "pred": HxW uint8, "title": str}

ERROR_COLORS = {"correct": (0, 0, 0), "wrong": (230, 30, 30), "ignore": (140, 140, 140)}


# ------------------------------------------------------------------ the metrics dict


def _num(x: Any) -> float | None:
    """float, with NaN/inf as None so the JSON stays standard (no bare NaN tokens)."""
    v = float(x)
    return None if math.isnan(v) or math.isinf(v) else v


def _val(x: Any) -> float:
    """Back from JSON: None -> NaN."""
    return float("nan") if x is None else float(x)


def metrics_dict(
    confusion: ConfusionMatrix | torch.Tensor,
    class_names: Sequence[str],
    categories: Sequence[str] | None = None,
    instance: InstanceIoU | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """JSON-ready scores: mIoU, mAcc, aAcc, fwIoU, mDice, per_class {name: {IoU, Acc}}, per_class_Dice,
    and with `categories` category_IoU / mean_category_IoU, with `instance` iIoU, per_class_iIoU,
    category_iIoU, mean_category_iIoU. `info` (dataset, split, source, ...) is copied in as it is."""
    mat = confusion.mat if isinstance(confusion, ConfusionMatrix) else confusion
    names = [str(n) for n in class_names]
    if mat.shape != (len(names), len(names)):
        raise ResegError(f"confusion matrix is {tuple(mat.shape)} but there are {len(names)} class names")
    r = scores_from_matrix(mat)
    out: dict[str, Any] = {
        "mIoU": _num(r["mIoU"]),
        "mAcc": _num(r["mAcc"]),
        "aAcc": _num(r["aAcc"]),
        "fwIoU": _num(r["fwIoU"]),
        "mDice": _num(r["mDice"]),
        "per_class": {
            n: {"IoU": _num(i), "Acc": _num(a)} for n, i, a in zip(names, r["IoU"].tolist(), r["Acc"].tolist())
        },
        "per_class_Dice": {n: _num(d) for n, d in zip(names, r["Dice"].tolist())},
    }
    if categories is not None:
        cats = category_iou(mat, categories)
        out["category_IoU"] = {k: _num(v) for k, v in cats.items()}
        vals = [v for v in cats.values() if not math.isnan(v)]
        out["mean_category_IoU"] = _num(sum(vals) / len(vals)) if vals else None
    if instance is not None:
        ii = instance.compute(mat)
        out["iIoU"] = _num(ii["iIoU"])
        has = instance.tables.instance_size
        out["per_class_iIoU"] = {
            n: _num(v) for n, v, h in zip(names, ii["per_class_iIoU"].tolist(), has) if h is not None
        }
        out["category_iIoU"] = {k: _num(v) for k, v in ii["category_iIoU"].items()}
        out["mean_category_iIoU"] = _num(ii["mean_category_iIoU"])
    out["class_names"] = names
    out["pixels"] = int(mat.sum())
    out["confusion_matrix"] = mat.detach().cpu().tolist()
    if info:
        out.update(dict(info))
    return out


def percent(x: Any, digits: int = 2, missing: str = "n/a") -> str:
    """A fraction as people read it: 0.4512 -> '45.12%'; None/NaN -> `missing`."""
    v = _val(x)
    return missing if math.isnan(v) else f"{100.0 * v:.{digits}f}%"


_HEADLINE = ("mIoU", "mAcc", "aAcc", "fwIoU")


def summary_line(metrics: Mapping[str, Any]) -> str:
    """One console line: mIoU 45.12%  mAcc ...  (and iIoU / category IoU where there are any)."""
    parts = [f"{k} {percent(metrics.get(k))}" for k in _HEADLINE]
    if "iIoU" in metrics:
        parts.append(f"iIoU {percent(metrics.get('iIoU'))}")
    if "mean_category_IoU" in metrics:
        parts.append(f"category IoU {percent(metrics.get('mean_category_IoU'))}")
    return "  ".join(parts)


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The record as flat TensorBoard tags (fractions): mIoU, mAcc, aAcc, fwIoU, iIoU, IoU/<class>, Acc/<class>."""
    out: dict[str, float] = {}
    for key in _HEADLINE + ("mDice", "iIoU", "mean_category_IoU"):
        v = metrics.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = float(v)
    for name, s in (metrics.get("per_class") or {}).items():
        for key in ("IoU", "Acc"):
            v = s.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"{key}/{name}"] = float(v)
    return out


# ------------------------------------------------------------------ files


def write_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    return write_text(path, json.dumps(metrics, indent=2, allow_nan=False) + "\n")


def load_metrics_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ResegError(f"metrics file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ResegError(f"{path} is not a readable metrics.json: {err}") from None
    if not isinstance(data, dict) or "per_class" not in data or "mIoU" not in data:
        raise ResegError(f"{path} is not a reseg metrics.json (expected keys mIoU and per_class)")
    return data


def write_per_class_csv(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """One row per class: IoU, Acc, Dice (and iIoU for Cityscapes) as fractions; empty cell = not seen."""
    path = Path(path)
    iiou = metrics.get("per_class_iIoU")
    dice = metrics.get("per_class_Dice", {})
    with atomic_open(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["class", "IoU", "Acc", "Dice"] + (["iIoU"] if iiou is not None else []))
        for name, s in metrics["per_class"].items():
            row = [name] + [_csv(s.get("IoU")), _csv(s.get("Acc")), _csv(dice.get(name))]
            if iiou is not None:
                row.append(_csv(iiou.get(name)))
            w.writerow(row)
    return path


def _csv(x: Any) -> str:
    return "" if x is None else f"{float(x):.6f}"


def report_markdown(metrics: Mapping[str, Any], title: str = "Evaluation") -> str:
    """The table for papers: class | IoU | Acc (percent), then aAcc, mIoU, mAcc (and Cityscapes extras)."""
    lines = [f"# {title}", ""]
    described = [
        (k, metrics[k])
        for k in ("dataset", "split", "num_images", "checkpoint", "preds", "inference")
        if metrics.get(k) not in (None, "")
    ]
    for key, value in described:
        lines.append(f"- {key}: {value}")
    if described:
        lines.append("")
    lines += ["| Class | IoU | Acc |", "|:--|--:|--:|"]
    for name, s in metrics["per_class"].items():
        lines.append(f"| {name} | {percent(s.get('IoU'))} | {percent(s.get('Acc'))} |")
    lines += ["", "| Metric | Value |", "|:--|--:|"]
    for key in ("aAcc", "mIoU", "mAcc", "fwIoU"):
        lines.append(f"| {key} | {percent(metrics.get(key))} |")
    if "iIoU" in metrics:
        lines.append(f"| iIoU | {percent(metrics.get('iIoU'))} |")
    if "category_IoU" in metrics:
        cat_i = metrics.get("category_iIoU")
        if cat_i is None:
            lines += ["", "| Category | IoU |", "|:--|--:|"]
            lines += [f"| {name} | {percent(v)} |" for name, v in metrics["category_IoU"].items()]
            lines.append(f"| **mean** | **{percent(metrics.get('mean_category_IoU'))}** |")
        else:
            lines += ["", "| Category | IoU | iIoU |", "|:--|--:|--:|"]
            for name, v in metrics["category_IoU"].items():
                lines.append(f"| {name} | {percent(v)} | {percent(cat_i[name]) if name in cat_i else ''} |")
            lines.append(
                f"| **mean** | **{percent(metrics.get('mean_category_IoU'))}** | "
                f"**{percent(metrics.get('mean_category_iIoU'))}** |"
            )
    lines += [
        "",
        "n/a: the class is in neither the truth nor the prediction (left out of the means); "
        "Acc is n/a for classes absent from the truth.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ figures


def _figure(width: float, height: float, layout: str | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def plot_confusion_matrix(
    mat: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix (rows: truth, normalised)",
) -> Path:
    """Row-normalised matrix (each truth class sums to 1) with class names on both axes."""
    m = np.asarray(mat.detach().cpu() if isinstance(mat, torch.Tensor) else mat, dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = len(class_names)
    size = max(4.0, 0.42 * n + 2.5)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90)
    ax.set_yticks(range(n), [str(c) for c in class_names])
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            if rows[i, 0] == 0:
                continue
            for j in range(n):
                v = norm[i, j]
                if v >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if v > 0.5 else "black",
                    )
    return _save(fig, path)


def plot_per_class_iou(
    metrics: Mapping[str, Any], path: str | Path, palette: Sequence[Sequence[int]] | None = None
) -> Path:
    """Horizontal bars of per-class IoU in %, in class order, with the mIoU as a dashed line."""
    names = list(metrics["per_class"])
    vals = [_val(metrics["per_class"][n]["IoU"]) for n in names]
    n = len(names)
    fig = _figure(7.0, max(2.5, 0.3 * n + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    colors = [
        tuple(c / 255 for c in palette[i]) if palette is not None and i < len(palette) else (0.3, 0.5, 0.8)
        for i in range(n)
    ]
    y = np.arange(n)
    ax.barh(y, [0 if math.isnan(v) else 100 * v for v in vals], color=colors, edgecolor="black", linewidth=0.5)
    for i, v in enumerate(vals):
        ax.text(
            (0 if math.isnan(v) else 100 * v) + 1,
            i,
            "n/a" if math.isnan(v) else f"{100 * v:.1f}",
            va="center",
            fontsize=8,
        )
    miou = _val(metrics.get("mIoU"))
    if not math.isnan(miou):
        ax.axvline(100 * miou, color="black", linestyle="--", linewidth=1, label=f"mIoU {100 * miou:.1f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU (%)")
    ax.set_title("Per-class IoU")
    return _save(fig, path)


def error_map(truth: np.ndarray, pred: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """RGB map: black = right, red = wrong, grey = ignored (not scored)."""
    out = np.empty(truth.shape + (3,), np.uint8)
    out[:] = ERROR_COLORS["correct"]
    out[truth != pred] = ERROR_COLORS["wrong"]
    out[truth == ignore_index] = ERROR_COLORS["ignore"]
    return out


def _shrink(a: np.ndarray, max_w: int, nearest: bool) -> np.ndarray:
    if a.shape[1] <= max_w:
        return a
    import cv2

    h = max(1, round(a.shape[0] * max_w / a.shape[1]))
    return cv2.resize(a, (max_w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def plot_samples(
    samples: Sequence[Sample],
    palette: Sequence[Sequence[int]],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    ignore_index: int = 255,
    max_width: int = 512,
) -> Path:
    """Rows of image | truth | prediction | error map (each sample's `title` above its row)."""
    from reseg.viz import colorize

    if not samples:
        raise ResegError("plot_samples needs at least one sample")
    first = samples[0]["image"]
    aspect = first.shape[0] / first.shape[1]
    panel_w = 3.2
    fig = _figure(
        4 * panel_w, len(samples) * (panel_w * aspect + 0.3) + (0.5 if class_names else 0.0), layout="constrained"
    )
    heads = ("image", "truth", "prediction", "errors (red: wrong, grey: ignored)")
    for r, s in enumerate(samples):
        truth = np.asarray(s["truth"])
        pred = np.asarray(s["pred"])
        panels = [
            _shrink(np.asarray(s["image"]), max_width, False),
            _shrink(colorize(truth, palette), max_width, True),
            _shrink(colorize(pred, palette), max_width, True),
            _shrink(error_map(truth, pred, ignore_index), max_width, True),
        ]
        for c, panel in enumerate(panels):
            ax = fig.add_subplot(len(samples), 4, r * 4 + c + 1)
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(str(s.get("title", "")), fontsize=8, loc="left")
            elif r == 0:
                ax.set_title(heads[c], fontsize=8)
    if class_names:
        from matplotlib.patches import Patch

        handles = [
            Patch(color=tuple(v / 255 for v in palette[i]), label=str(n))
            for i, n in enumerate(class_names)
            if i < len(palette)
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 10), fontsize=7, frameon=False)
    return _save(fig, path)


# ------------------------------------------------------------------ all at once


def write_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    samples: Sequence[Sample] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    title: str = "Evaluation",
) -> dict[str, Path]:
    """Write metrics.json, per_class.csv, report.md, confusion_matrix.png, per_class_iou.png (and samples.png)."""
    out = check_output_dir(out_dir, "report folder")
    out.mkdir(parents=True, exist_ok=True)
    names = list(metrics["class_names"])
    paths = {
        "metrics": write_metrics_json(metrics, out / "metrics.json"),
        "per_class": write_per_class_csv(metrics, out / "per_class.csv"),
    }
    paths["report"] = write_text(out / "report.md", report_markdown(metrics, title))
    paths["confusion_matrix"] = plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), names, out / "confusion_matrix.png"
    )
    paths["per_class_iou"] = plot_per_class_iou(metrics, out / "per_class_iou.png", palette)
    if samples:
        from reseg.viz import resolve_palette

        pal = palette if palette is not None else resolve_palette(names)
        paths["samples"] = plot_samples(samples, pal, out / "samples.png", names)
    return paths


# ------------------------------------------------------------------ comparing runs


def find_metrics(path: str | Path) -> Path:
    """The metrics file of a run: a metrics.json (or a training metrics.jsonl) given directly, a
    metrics.json in the folder or (newest) below it, else the folder's training log metrics.jsonl."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise ResegError(f"{p} does not exist (expected a run folder or a metrics.json)")
    if (p / "metrics.json").is_file():
        return p / "metrics.json"
    found = sorted(p.rglob("metrics.json"), key=lambda f: f.stat().st_mtime, reverse=True)
    if found:
        return found[0]
    if (p / "metrics.jsonl").is_file():
        return p / "metrics.jsonl"
    raise ResegError(
        f"no metrics.json (or training metrics.jsonl) in {p} or below it; "
        f"run `reseg evaluate --checkpoint ... --out {p}` first"
    )


def _per_class(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """per_class {name: {IoU, Acc}} of a validation record: the current schema, or the older one
    that kept IoU {name: v} and Acc {name: v} side by side."""
    if isinstance(rec.get("per_class"), dict):
        return dict(rec["per_class"])
    if isinstance(rec.get("IoU"), dict):
        acc = rec.get("Acc") if isinstance(rec.get("Acc"), dict) else {}
        return {n: {"IoU": v, "Acc": acc.get(n)} for n, v in rec["IoU"].items()}
    return None


def metrics_from_training_log(path: str | Path) -> dict[str, Any]:
    """The validation record with the best mIoU in a trainer's metrics.jsonl, as a metrics record.

    Reads the current record schema and the one of earlier runs (IoU {name: v}); a torn last line
    (a run killed mid-write) is skipped.
    """
    path = Path(path)
    best: dict[str, Any] | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ResegError(f"cannot read {path}: {err}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue  # torn last record
            raise ResegError(f"{path}:{n} is not valid JSON") from None
        is_val = isinstance(rec, dict) and rec.get("type") == "val" and _per_class(rec) is not None
        if is_val and (
            best is None or _val(rec.get("mIoU")) > _val(best.get("mIoU")) or math.isnan(_val(best.get("mIoU")))
        ):
            best = rec
    if best is None:
        raise ResegError(f"{path} holds no validation record (type 'val' with per-class IoU)")
    out = {k: v for k, v in best.items() if k not in ("IoU", "Acc", "type", "iter")}
    out["per_class"] = _per_class(best)
    out["iteration"] = best.get("iter")
    return out


def load_run(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(metrics file, metrics dict) of a run folder, metrics.json or training metrics.jsonl."""
    mfile = find_metrics(path)
    if mfile.suffix == ".jsonl":
        return mfile, metrics_from_training_log(mfile)
    return mfile, load_metrics_json(mfile)


def _is_default_eval_folder(name: str) -> bool:
    return name == "eval" or (name.startswith("eval_") and name[len("eval_") :] in ("train", "val", "test"))


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(label, metrics) for each run; labels are the given ones, or folder names made unique.

    `reseg evaluate` writes into <run>/eval_<split> by default, so such a folder is labelled by its
    run's name; a folder the user named (e.g. --out runs/eval_unet) keeps its own name.
    """
    if labels is not None:
        if len(labels) != len(paths):
            raise ResegError(f"--labels got {len(labels)} names for {len(paths)} runs; give one name per run")
        if len(set(labels)) != len(labels):
            raise ResegError(f"--labels must be distinct, got {list(labels)}")
        return [(label, load_run(given)[1]) for label, given in zip(labels, paths)]
    runs: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for given in paths:
        mfile, metrics = load_run(given)
        g = Path(given)
        folder = g if g.is_dir() else mfile.parent
        label = folder.name or mfile.stem
        if _is_default_eval_folder(label) and folder.resolve().parent.name:
            label = folder.resolve().parent.name
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        runs.append((label, metrics))
    return runs


_SUMMARY_KEYS = ("mIoU", "mAcc", "aAcc", "fwIoU", "iIoU")


def _class_union(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    names: list[str] = []
    for _, m in runs:
        for n in m["per_class"]:
            if n not in names:
                names.append(n)
    return names


def compare_markdown(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Class | run1 | run2 ... (IoU as percent), the best of each row in bold; then the summary rows."""
    labels = [label.replace("|", "/") for label, _ in runs]
    lines = ["| Class | " + " | ".join(labels) + " |", "|:--|" + "--:|" * len(runs)]

    def row(name: str, values: list[float]) -> str:
        finite = [v for v in values if not math.isnan(v)]
        best = max(finite) if len(finite) > 1 else None
        cells = []
        for v in values:
            text = percent(v, missing="-")
            cells.append(f"**{text}**" if best is not None and v == best else text)
        return f"| {name} | " + " | ".join(cells) + " |"

    for name in _class_union(runs):
        lines.append(row(name, [_val(m["per_class"].get(name, {}).get("IoU")) for _, m in runs]))
    for key in _SUMMARY_KEYS:
        if any(key in m for _, m in runs):
            lines.append(row(f"**{key}**", [_val(m.get(key)) for _, m in runs]))
    return "\n".join(lines) + "\n"


def plot_compare(runs: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path) -> Path:
    """Grouped bars of per-class IoU (%), one colour per run, mIoU in the legend."""
    names = _class_union(runs)
    k = len(runs)
    fig = _figure(max(6.0, 0.35 * len(names) * max(1, k) / 1.5 + 2), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, k)
    x = np.arange(len(names))
    for i, (label, m) in enumerate(runs):
        vals = [_val(m["per_class"].get(n, {}).get("IoU")) for n in names]
        miou = _val(m.get("mIoU"))
        ax.bar(
            x + (i - (k - 1) / 2) * width,
            [0 if math.isnan(v) else 100 * v for v in vals],
            width,
            label=f"{label} (mIoU {'n/a' if math.isnan(miou) else f'{100 * miou:.1f}'})",
        )
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Per-class IoU")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_compare(runs: Sequence[tuple[str, Mapping[str, Any]]], out_dir: str | Path) -> dict[str, Path]:
    """compare.md (the table), compare.csv and compare.png in `out_dir`."""
    out = check_output_dir(out_dir, "--out")
    out.mkdir(parents=True, exist_ok=True)
    md = write_text(out / "compare.md", compare_markdown(runs))
    csv_path = out / "compare.csv"
    with atomic_open(csv_path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["class"] + [label for label, _ in runs])
        for name in _class_union(runs):
            w.writerow([name] + [_csv(m["per_class"].get(name, {}).get("IoU")) for _, m in runs])
        for key in _SUMMARY_KEYS:
            if any(key in m for _, m in runs):
                w.writerow([key] + [_csv(m.get(key)) for _, m in runs])
    return {"markdown": md, "csv": csv_path, "chart": plot_compare(runs, out / "compare.png")}
