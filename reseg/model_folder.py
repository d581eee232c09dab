"""Model folders: a trained model as the files the Hugging Face Hub shows and other tools read.

A model folder holds
    model.safetensors  the weights only (no pickle, no optimiser state)
    config.yaml        the data, model and eval sections of the training config: enough to rebuild the
                       network and to preprocess and infer as the run validated
    classes.json       {"names": [...], "palette": [[r, g, b], ...], "ignore_index": 255}
    README.md          the model card (reseg.model_card)
A training checkpoint (.pt) holds the whole training state instead; both load the same way, through
reseg.engine.checkpoint.read_model_source. Writing a folder is reseg.packaging's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reseg.errors import ResegError

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CLASSES = "classes.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, CLASSES, CARD)
REQUIRED = (WEIGHTS, CONFIG, CLASSES)  # the model card is for people; loading does not need it
CONFIG_SECTIONS = ("data", "model", "eval")


class ModelFolderError(ResegError):
    """A model folder is incomplete, damaged, or its weights do not fit its config."""


def read_model_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights, checkpoint-shaped info) of a model folder; every problem names the file (and tensor) at fault."""
    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        hint = ""
        checkpoints = sorted(p.name for p in folder.glob("*.pt"))
        if checkpoints and len(missing) == len(REQUIRED):
            hint = f"; it holds {', '.join(checkpoints)}: pass one of those as the checkpoint"
        raise ModelFolderError(
            f"model folder {folder} is incomplete: it lacks {', '.join(missing)} (a model folder "
            f"holds {', '.join(REQUIRED)}; write one with `reseg package`){hint}"
        )
    config = _read_config(folder / CONFIG)
    names, palette, ignore_index = _read_classes(folder / CLASSES)
    weights = _read_weights(folder / WEIGHTS)
    check_weights_fit(weights, config, len(names), f"model folder {folder}: {WEIGHTS} does not fit {CONFIG}")
    info = {
        "config": config,
        "class_names": names,
        "palette": palette,
        "ignore_index": ignore_index,
        "source": str(folder),
    }
    return weights, info


def _read_config(path: Path) -> dict[str, Any]:
    from reseg.config import Config, read_yaml_file

    try:
        data = read_yaml_file(path, "model config")
    except ResegError as err:
        raise ModelFolderError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelFolderError(
            f"{path} must be a mapping with a 'model' section (and 'data', 'eval'), got {type(data).__name__}"
        )
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
    if not (
        isinstance(palette, list)
        and len(palette) == len(names)
        and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette
        )
    ):
        raise ModelFolderError(
            f"{path}: 'palette' must hold one [r, g, b] (0..255) per class name ({len(names)} of them)"
        )
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
    problems += [
        f"tensor {k!r} is {tuple(weights[k].shape)} in the weights, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelFolderError(
            f"{what} (model.name={cfg.model.name}, {num_classes} classes): {'; '.join(problems[:3])}{more}"
        )
