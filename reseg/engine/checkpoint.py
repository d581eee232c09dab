"""Checkpoints that survive a kill at any moment, loaded without unpickling arbitrary code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reseg.errors import ResegError

FORMAT = "reseg"
VERSION = 1


class CheckpointError(ResegError):
    """The file is missing, damaged, or not a reseg checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target (reseg.io).

    A crash or a full disk before the rename leaves the previous file untouched (a full disk is a
    DiskFullError naming the file and the free space); the rename itself is atomic.
    """
    from reseg.io import atomic_open

    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`; any failure names the file and says what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was never written completely. "
                              f"Use another checkpoint (e.g. best.pt or last.pt of the run)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for damaged files, some with no message at all
        detail = " ".join(str(err).split())[:200] or "no detail"
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is truncated, damaged or not a PyTorch file "
                              f"({type(err).__name__}: {detail})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a reseg checkpoint (expected a dict with format={FORMAT!r}, "
                              f"model, config and class_names; train one with `reseg train`)")
    for key in ("model", "config", "class_names"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks the key {key!r}; it may be truncated or from another tool")
    return state


def strip_wrapper_prefix(key: str) -> str:
    """Weights saved from DDP (`module.`) or torch.compile (`_orig_mod.`) wrappers load into the bare model."""
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def init_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Start `model` from a checkpoint's weights (train.init_from: fine-tuning, e.g. after pretraining on the
    synthetic streets); the optimiser, schedule and iteration start afresh. Every tensor must match by name
    and shape: a different architecture or class count is an error naming the first keys that differ."""
    state = load_checkpoint(path)
    weights = {strip_wrapper_prefix(k): v for k, v in state["model"].items()}
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [f"{k}: {tuple(weights[k].shape)} in the checkpoint, {tuple(v.shape)} here"
                 for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        raise CheckpointError(f"train.init_from {path}: its weights do not fit this model ({'; '.join(problems[:4])}"
                              f"{'; ...' if len(problems) > 4 else ''}); it must have the same model.* settings "
                              "and class count")
    model.load_state_dict(weights)
