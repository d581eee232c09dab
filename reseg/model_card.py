"""The README.md of a model folder: what the model is, what it was trained on, how well it scores and where
it fails, from what the checkpoint and a `reseg evaluate` metrics.json record (nothing is invented)."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# what each built-in dataset is, for the limitations a user should know before trusting a mask
DATASET_NOTES = {
    "synthetic": "procedurally generated street scenes (reseg make-synthetic); a model trained only on them "
    "is a demonstration and does not transfer to camera images",
    "camvid": "CamVid: daytime driving video from one camera in Cambridge, UK (a few hundred labelled frames); "
    "other cities, night, rain and other cameras are outside what it saw",
    "cityscapes": "Cityscapes: daytime, fair-weather driving in German and neighbouring cities; night, snow, "
    "other continents and other cameras are outside what it saw",
    "folder": "a user's own folder dataset; its scope is whatever those images cover",
}


def model_card(
    cfg: Any,
    names: Sequence[str],
    palette: Sequence[Sequence[int]],
    ignore_index: int,
    info: Mapping[str, Any],
    scores: Mapping[str, Any] | None,
    source: str | Path,
    parameters: int,
) -> str:
    """The model card text (YAML front matter for the Hub, then Markdown)."""
    parts = [
        _front_matter(cfg),
        _title(cfg, names, source),
        _usage(),
        _training(cfg, names, info, parameters),
        _evaluation(scores),
        _machine(cfg, info, scores),
        _classes(names, palette, ignore_index),
        _limitations(cfg, names),
    ]
    return "\n".join(parts).rstrip() + "\n"


def _front_matter(cfg: Any) -> str:
    return (
        "---\nlibrary_name: reseg\npipeline_tag: image-segmentation\ntags:\n- semantic-segmentation\n"
        f"- street-scenes\n- {cfg.model.name}\n- {cfg.data.dataset}\n---\n"
    )


def _title(cfg: Any, names: Sequence[str], source: str | Path) -> str:
    from reseg import __version__

    return (
        f"# {cfg.model.name} on {cfg.data.dataset} ({len(names)} classes)\n\n"
        f"A semantic segmentation model for street scenes: each pixel of an RGB image gets one of the "
        f"{len(names)} classes below. Packaged by reseg {__version__} from `{Path(str(source)).name}`.\n"
    )


def _usage() -> str:
    return (
        '## Use\n\n```python\nimport reseg\n\nmodel = reseg.load("<this folder or hf://user/repo>")\n'
        'mask = model("street.jpg")           # HxW numpy array of class ids\n'
        'view = model.overlay("street.jpg", mask)  # RGB image with the class colours\n```\n\n'
        "From the command line: `reseg predict --checkpoint <folder> images/`, `reseg video`, "
        "`reseg evaluate` take the folder wherever they take a checkpoint.\n"
    )


def _training(cfg: Any, names: Sequence[str], info: Mapping[str, Any], parameters: int) -> str:
    d, m, t = cfg.data, cfg.model, cfg.train
    lines = [
        "## Training",
        "",
        f"- data: `{d.dataset}` ({DATASET_NOTES.get(d.dataset, 'see data.* in config.yaml')}); "
        f"train split `{d.train_split}`, validation split `{d.val_split}`, crops of {d.crop_size[0]}x"
        f"{d.crop_size[1]} at scales {d.scale_range[0]:g}-{d.scale_range[1]:g}",
        f"- model: `{m.name}` (encoder {m.encoder}), {parameters / 1e6:.2f}M parameters; config.yaml holds "
        "every setting",
        f"- optimiser {cfg.optim.name}, lr {cfg.optim.lr:g}, batch {d.batch_size}, schedule {cfg.sched.name}",
    ]
    if info.get("iteration") is not None:
        total = info.get("total_iters")
        lines.append(f"- weights from iteration {info['iteration']}" + (f" of {total}" if total else ""))
    if info.get("best_metric") is not None:
        lines.append(
            f"- best validation mIoU during training: {100 * float(info['best_metric']):.2f}% "
            f"(iteration {info.get('best_iteration')})"
        )
    if t.init_from:
        lines.append(f"- fine-tuned from `{Path(str(t.init_from)).name}`")
    command = info.get("command")
    lines.append(
        f"- command: `{command}`"
        if command
        else "- command: not recorded in the checkpoint; the settings are in config.yaml"
    )
    return "\n".join(lines) + "\n"


def _evaluation(scores: Mapping[str, Any] | None) -> str:
    from reseg.report import report_markdown

    if scores is None:
        return (
            "## Evaluation\n\nNo evaluation was packaged with it; score it with "
            "`reseg evaluate --checkpoint <folder> --data-root <dataset>`.\n"
        )
    table = report_markdown(scores, title="Evaluation").split("\n", 1)[1]  # its own title is a top-level heading
    where = ", ".join(f"{k} {scores[k]}" for k in ("dataset", "split") if scores.get(k))
    return f"## Evaluation\n\n`reseg evaluate`{' on ' + where if where else ''}:\n{table}"


def _machine(cfg: Any, info: Mapping[str, Any], scores: Mapping[str, Any] | None) -> str:
    import torch

    t = cfg.train
    lines = ["## Machine", ""]
    trained = f"- trained with train.device={t.device}, amp {'on' if t.amp else 'off'}"
    budget = info.get("budget") or {}
    if budget.get("spent"):
        trained += f", {float(budget['spent']) / 60:.1f} min of training"
    lines.append(trained + (f" on {info['machine']}" if info.get("machine") else ""))
    if scores and scores.get("inference"):
        lines.append(f"- evaluated with {scores['inference']}")
    lines.append(
        f"- packaged with Python {platform.python_version()}, torch {torch.__version__} on "
        f"{platform.system()} {platform.machine()}"
    )
    return "\n".join(lines) + "\n"


def _classes(names: Sequence[str], palette: Sequence[Sequence[int]], ignore_index: int) -> str:
    rows = [f"| {i} | {n} | {tuple(int(c) for c in palette[i])} |" for i, n in enumerate(names)]
    return (
        "## Classes\n\n| id | name | colour (RGB) |\n|--:|:--|:--|\n"
        + "\n".join(rows)
        + f"\n\nMasks hold these ids; {ignore_index} marks pixels that were not scored (classes.json).\n"
    )


def _limitations(cfg: Any, names: Sequence[str]) -> str:
    d = cfg.data
    lines = [
        "## Limitations",
        "",
        f"- Trained on {DATASET_NOTES.get(d.dataset, d.dataset)}.",
        f"- It knows only the {len(names)} classes above: anything else is given the nearest of them.",
        f"- Scenes at a very different resolution or viewpoint than its {d.crop_size[0]}x{d.crop_size[1]} "
        "training crops score worse; `eval_size` in config.yaml sets the size it runs at.",
        "- Not validated for safety-critical use (driving decisions, people detection).",
    ]
    return "\n".join(lines) + "\n"
