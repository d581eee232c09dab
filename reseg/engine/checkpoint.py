"""Checkpoints that survive a kill at any moment, loaded without unpickling arbitrary code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from reseg.errors import ResegError

FORMAT = "reseg"
VERSION = 1


class CheckpointError(ResegError):
    """The file is missing, damaged, or not a reseg checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A crash before the rename leaves the previous file untouched; the rename itself is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`; any failure names the file and says what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is damaged or not a PyTorch file "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a reseg checkpoint (expected a dict with format={FORMAT!r}, "
                              f"model, config and class_names; train one with `reseg train`)")
    for key in ("model", "config", "class_names"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks the key {key!r}; it may be truncated or from another tool")
    return state
