"""Checkpoints that survive a kill at any moment, loaded without unpickling arbitrary code.

Every checkpoint file is read here (`load_checkpoint`); `read_checkpoint` adds what inference and export
need (the config, the class names, the model rebuilt with the weights), so no other module parses one.
"""

from __future__ import annotations

import itertools
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.config import Config
from reseg.errors import ResegError
from reseg.io import atomic_open
from reseg.models import build_model

FORMAT = "reseg"
VERSION = 1


class CheckpointError(ResegError):
    """The file is missing, damaged, or not a reseg checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target (reseg.io).

    A crash or a full disk before the rename leaves the previous file untouched (a full disk is a
    DiskFullError naming the file and the free space); the rename itself is atomic.
    """
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
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes); it was never written completely. "
            f"Use another checkpoint (e.g. best.pt or last.pt of the run)"
        )
    not_torch = _not_a_torch_file(path)
    if not_torch:
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint ({not_torch}); expected a file written by "
            f"`reseg train` (e.g. a run's best.pt) or a model folder from `reseg package`"
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing with its own text
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise _damaged(path, size, err) from None
        raise CheckpointError(
            f"checkpoint {path} holds Python objects other than tensors and plain containers; reseg reads "
            f"checkpoints with weights_only=True so that opening one cannot run code from it (expected a "
            f"checkpoint written by `reseg train`)"
        ) from None
    except Exception as err:  # torch raises many types for damaged files, some with no message at all
        raise _damaged(path, size, err) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a reseg checkpoint (expected a dict with format={FORMAT!r}, "
            f"model, config and class_names; train one with `reseg train`)"
        )
    for key in ("model", "config", "class_names"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks the key {key!r}; it may be truncated or from another tool")
    return state


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_LEGACY_MAGIC = (
    b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # older torch.save: its magic number, pickled
)


def _not_a_torch_file(path: Path) -> str | None:
    """What the file looks like instead, when its first bytes are neither of torch.save's formats."""
    with path.open("rb") as fh:
        head = fh.read(len(_LEGACY_MAGIC))
    if head.startswith(_ZIP_MAGIC) or head == _LEGACY_MAGIC or len(head) < len(_ZIP_MAGIC):
        return None
    if head[:1] == b"\x80":
        return "it is a plain Python pickle"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return f"it is text, starting {head.decode('ascii')!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _damaged(path: Path, size: int, err: Exception) -> CheckpointError:
    detail = " ".join(str(err).split())[:200] or "no detail"
    return CheckpointError(
        f"checkpoint {path} ({size} bytes) is truncated or damaged ({type(err).__name__}: {detail}); "
        f"use another checkpoint of the run (best.pt or last.pt)"
    )


def read_model_source(source: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, everything else: config, class_names, palette, ...) of a checkpoint `.pt`, a model folder
    (reseg.model_folder) or a Hub model `hf://user/repo[@revision]`: the one place model files are read."""
    from reseg.hub import download, is_hub_source
    from reseg.model_folder import read_model_folder

    if is_hub_source(source):
        source = download(str(source))
    if Path(source).is_dir():
        return read_model_folder(source)
    state = load_checkpoint(source, map_location="cpu")
    return state.pop("model"), state


def strip_wrapper_prefix(key: str) -> str:
    """Weights saved from DDP (`module.`) or torch.compile (`_orig_mod.`) wrappers load into the bare model."""
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def model_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A checkpoint's model weights under the bare model's names (wrapper prefixes stripped)."""
    return {strip_wrapper_prefix(k): v for k, v in state["model"].items()}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read for inference or export: the raw state, its Config (set up to rebuild the model
    from the checkpoint alone: its class count, no weight download, no SyncBatchNorm) and its class names."""

    path: Path
    state: dict[str, Any]
    config: Config
    class_names: list[str]

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        return model_weights(self.state)

    def build_model(self) -> nn.Module:
        """The model the config describes with the checkpoint's weights, in eval mode.

        It is built on the meta device and the weights are assigned, so no time goes into random
        initialisation (orthogonal GRU matrices: seconds on a busy CPU) that the weights then replace.
        """
        weights = self.weights
        model = None
        try:
            with torch.device("meta"):
                model = build_model(self.config)
        except Exception:  # a builder that cannot run on meta tensors: build it the ordinary way
            model = None
        try:
            if model is not None:
                model.load_state_dict(weights, strict=True, assign=True)
                if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
                    model = None  # a buffer the state dict does not hold: it needs its real initial value
            if model is None:
                model = build_model(self.config)
                model.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            detail = " ".join(str(err).split())[:400]
            raise CheckpointError(
                f"checkpoint {self.path} does not match the model its config describes "
                f"({self.config.model.name}, {self.config.model.num_classes} classes): "
                f"{detail}"
            ) from None
        return model.eval()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at `path` with its config and class names checked; every mismatch is a CheckpointError
    naming the file."""
    weights, info = read_model_source(path)
    state = {**info, "model": weights}
    names = [str(n) for n in state["class_names"]]
    if not names:
        raise CheckpointError(f"checkpoint {path} has an empty class list")
    try:
        cfg = Config.from_dict(state["config"])
    except ResegError as err:
        raise CheckpointError(f"checkpoint {path} holds a config this version cannot read: {err}") from None
    cfg.model.num_classes = len(names)
    cfg.model.encoder_weights = None  # the checkpoint has the weights; never download
    cfg.model.sync_bn = False
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict")
    return Checkpoint(Path(path), state, cfg, names)


def init_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Start `model` from a checkpoint's weights (train.init_from: fine-tuning, e.g. after pretraining on the
    synthetic streets); the optimiser, schedule and iteration start afresh. Every tensor must match by name
    and shape: a different architecture or class count is an error naming the first keys that differ."""
    weights = model_weights({"model": read_model_source(path)[0]})  # a checkpoint or a model folder
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [
        f"{k}: {tuple(weights[k].shape)} in the checkpoint, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if problems:
        raise CheckpointError(
            f"train.init_from {path}: its weights do not fit this model ({'; '.join(problems[:4])}"
            f"{'; ...' if len(problems) > 4 else ''}); it must have the same model.* settings "
            "and class count"
        )
    model.load_state_dict(weights)
