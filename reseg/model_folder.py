"""Model folders: a trained model as the files the Hugging Face Hub shows and other tools read, and the one
reader that every `--checkpoint` and `reseg.load` go through.

A model folder holds
    model.safetensors  the weights only (no pickle, no optimiser state)
    config.yaml        the data, model and eval sections of the training config: enough to rebuild the
                       network and to preprocess and infer as the run validated
    classes.json       {"names": [...], "palette": [[r, g, b], ...], "ignore_index": 255}
    README.md          the model card (reseg.model_card)
A training checkpoint (.pt) holds the whole training state instead; both load the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from reseg.engine.checkpoint import CheckpointError
from reseg.errors import ResegError

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CLASSES = "classes.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, CLASSES, CARD)
REQUIRED = (WEIGHTS, CONFIG, CLASSES)  # the model card is for people; loading does not need it
CONFIG_SECTIONS = ("data", "model", "eval")


class ModelFolderError(CheckpointError):
    """A model folder is incomplete, damaged, or its weights do not fit its config."""


def read_model_source(source: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights, everything else a checkpoint holds: config, class_names, palette, ...) from a checkpoint `.pt`,
    a model folder or `hf://user/repo[@revision]`. The one place model files are read for inference."""
    from reseg import hub

    if hub.is_hub_source(source):
        source = hub.download(str(source))
    path = Path(source)
    if path.is_dir():
        return read_model_folder(path)
    from reseg.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location="cpu")
    weights = state.pop("model")
    return weights, state


def read_model_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights, checkpoint-shaped info) of a model folder; every problem names the file (and tensor) at fault."""
    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        hint = ""
        checkpoints = sorted(p.name for p in folder.glob("*.pt"))
        if checkpoints and len(missing) == len(REQUIRED):
            hint = f"; it holds {', '.join(checkpoints)}: pass one of those as the checkpoint"
        raise ModelFolderError(f"model folder {folder} is incomplete: it lacks {', '.join(missing)} (a model folder "
                               f"holds {', '.join(REQUIRED)}; write one with `reseg package`){hint}")
    config = _read_config(folder / CONFIG)
    names, palette, ignore_index = _read_classes(folder / CLASSES)
    weights = _read_weights(folder / WEIGHTS)
    check_weights_fit(weights, config, len(names), f"model folder {folder}: {WEIGHTS} does not fit {CONFIG}")
    info = {"config": config, "class_names": names, "palette": palette, "ignore_index": ignore_index,
            "source": str(folder)}
    return weights, info


def _read_config(path: Path) -> dict[str, Any]:
    from reseg.config import Config, read_yaml_file

    try:
        data = read_yaml_file(path, "model config")
    except ResegError as err:
        raise ModelFolderError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelFolderError(f"{path} must be a mapping with a 'model' section (and 'data', 'eval'), "
                               f"got {type(data).__name__}")
    try:
        Config.from_dict(data)
    except ResegError as err:
        raise ModelFolderError(f"{path} holds a config this version cannot read: {err}") from None
    return data


def _read_classes(path: Path) -> tuple[list[str], list[list[int]], int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not readable JSON: {err}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelFolderError(f"{path}: 'names' must be a non-empty list of class names")
    palette = data.get("palette")
    if not (isinstance(palette, list) and len(palette) == len(names)
            and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                    for c in palette)):
        raise ModelFolderError(f"{path}: 'palette' must hold one [r, g, b] (0..255) per class name "
                               f"({len(names)} of them)")
    ignore_index = data.get("ignore_index", 255)
    if not isinstance(ignore_index, int) or not len(names) <= ignore_index <= 255:
        raise ModelFolderError(f"{path}: 'ignore_index' must be an integer in {len(names)}..255, got {ignore_index!r}")
    return names, palette, ignore_index


def _read_weights(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise ModelFolderError(f"{path} is truncated, damaged or not a safetensors file ({detail})") from None


def check_weights_fit(weights: dict[str, Any], config: dict[str, Any], num_classes: int, what: str) -> None:
    """Every tensor the config's model has, by name and shape, and no other; an error names the first that differ.

    The model is built on the meta device: shapes without the seconds of a real initialisation."""
    import torch

    from reseg.config import Config
    from reseg.models import build_model

    cfg = Config.from_dict(config)
    cfg.model.encoder_weights = None
    try:
        with torch.device("meta"):
            own = build_model(cfg, num_classes).state_dict()
    except Exception:  # a builder that cannot run on meta tensors: loading the weights checks them later
        return
    problems = [f"tensor {k!r} is missing" for k in own if k not in weights]
    problems += [f"tensor {k!r} is not part of the model" for k in weights if k not in own]
    problems += [f"tensor {k!r} is {tuple(weights[k].shape)} in the weights, {tuple(v.shape)} in the model"
                 for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelFolderError(f"{what} (model.name={cfg.model.name}, {num_classes} classes): "
                               f"{'; '.join(problems[:3])}{more}")


# ------------------------------------------------------------------ writing

def package(checkpoint: str | Path, out: str | Path, metrics: str | Path | None = None, push: str | None = None,
            overwrite: bool = False) -> Path:
    """Write the model folder of a checkpoint (or of another model folder / hf:// source) to `out`.

    The folder is built beside `out` and renamed into place, so `out` is never half written; an existing
    non-empty `out` is replaced only with `overwrite`. `metrics` (a `reseg evaluate` metrics.json) puts the
    scores in the model card; `push` ("user/repo") then uploads the folder to the Hugging Face Hub."""
    from reseg.config import Config
    from reseg.viz import resolve_palette

    out = Path(out)
    _check_out(out, checkpoint, overwrite)
    weights, info = read_model_source(checkpoint)
    names = [str(n) for n in info["class_names"]]
    try:
        cfg = Config.from_dict(info["config"])
    except ResegError as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds a config this version cannot read: {err}") from None
    scores = _read_metrics(metrics, names) if metrics else None
    palette = [list(c) for c in resolve_palette(names, info.get("palette"))]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_folder(tmp, weights, cfg, names, palette, info, scores, source=checkpoint)
        read_model_folder(tmp)  # what we hand out must load
        from reseg.io import replace_dir

        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if push:
        from reseg import hub

        hub.push(out, push)
    return out


def _check_out(out: Path, source: str | Path, overwrite: bool) -> None:
    from reseg.io import check_output_dir

    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ResegError(f"--out {out} exists and is not empty; choose a new folder or pass --overwrite to replace it")
    src = Path(source).resolve()
    if out.resolve() == src or out.resolve() in src.parents:
        raise ResegError(f"--out {out} holds the checkpoint {source} it would be made from; choose another folder")


def _read_metrics(path: str | Path, names: list[str]) -> dict[str, Any]:
    from reseg.report import load_metrics_json

    scores = load_metrics_json(path)
    scored = list(scores.get("class_names") or scores["per_class"])
    if scored != names:
        raise ResegError(f"--metrics {path} scores the classes {scored[:6]}{'...' if len(scored) > 6 else ''}, "
                         f"but the model has {names[:6]}{'...' if len(names) > 6 else ''}; pass the metrics.json "
                         f"that `reseg evaluate` wrote for this checkpoint")
    return scores


def _write_folder(folder: Path, weights: dict[str, Any], cfg: Any, names: list[str], palette: list[list[int]],
                  info: dict[str, Any], scores: dict[str, Any] | None, source: str | Path) -> None:
    from safetensors.torch import save_file

    from reseg import __version__
    from reseg.engine.checkpoint import strip_wrapper_prefix
    from reseg.model_card import model_card

    # safetensors refuses tensors that share memory; a copy of each keeps the file independent of the model
    tensors = {strip_wrapper_prefix(k): v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt", "library": "reseg",
                                                       "reseg_version": __version__})
    cfg.model.num_classes = len(names)
    cfg.model.encoder_weights = None  # the weights are here: loading never downloads
    cfg.model.sync_bn = False
    sections = {k: v for k, v in cfg.to_dict().items() if k in CONFIG_SECTIONS}
    header = ("# reseg model config: model.* rebuilds the network, data.* is what it was trained on and how images\n"
              "# are preprocessed (size_divisor, eval_size), eval.* how it infers. Load with reseg.load(<folder>).\n")
    (folder / CONFIG).write_text(header + yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    ignore_index = int(info.get("ignore_index", cfg.loss.ignore_index))
    classes = {"names": names, "palette": palette, "ignore_index": ignore_index}
    (folder / CLASSES).write_text(json.dumps(classes, indent=2) + "\n", encoding="utf-8")
    n_params = sum(int(t.numel()) for t in tensors.values())
    card = model_card(cfg, names, palette, ignore_index, info, scores, source=source, parameters=n_params)
    (folder / CARD).write_text(card, encoding="utf-8")
    for name in FILES:  # the rename into place is atomic only for data already on the disk
        with contextlib.suppress(OSError), open(folder / name, "rb") as fh:
            os.fsync(fh.fileno())
