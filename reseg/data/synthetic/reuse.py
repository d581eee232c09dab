"""Use an existing synthetic set when there is one, and say when it was made otherwise than the config asks."""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Collection
from pathlib import Path
from typing import Any

from reseg.data.synthetic.dataset import META_FILE, SPLITS, make_synthetic
from reseg.errors import ResegError
from reseg.io import folder_problem

log = logging.getLogger("reseg.data")

# The data.* keys that say how to generate the set; a mismatch with synthetic.json is warned about.
SYNTHETIC_KEYS = ("synthetic_sizes", "synthetic_size", "synthetic_seed", "synthetic_difficulty")
_WARNED: set[tuple[str, str]] = set()  # (root, message): a warning is given once per process


def ensure_synthetic(
    root: str | Path,
    sizes: list[int] | tuple[int, ...] = (300, 60, 60),
    seed: int = 0,
    size: tuple[int, int] = (360, 480),
    difficulty: str = "standard",
    asked: Collection[str] | None = None,
) -> Path:
    """Generate the synthetic dataset at `root` unless a dataset is already there.

    An existing one made otherwise than the config asks (only the keys in `asked` count; None: all
    four) is used as it is, with one warning per process (on rank 0 of a torchrun job).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ResegError(f"synthetic dataset root {root} {folder_problem(root)} (data.root expects a folder)")
    if (root / META_FILE).is_file():
        _warn_if_made_otherwise(root, sizes, seed, size, difficulty, asked)
        return root
    if (root / "train").is_dir() or (root / "train.txt").is_file():
        return root
    if len(sizes) != 3:
        raise ResegError(f"data.synthetic_sizes must be [train, val, test], got {list(sizes)}")
    print(f"generating the synthetic street dataset ({sum(sizes)} images) in {root} ...", flush=True)
    return make_synthetic(root, *sizes, seed=seed, size=size, difficulty=difficulty)


def _warn_if_made_otherwise(
    root: Path, sizes: Any, seed: Any, size: Any, difficulty: Any, asked: Collection[str] | None
) -> None:
    try:
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an unreadable record says nothing about how the set was made; the loader reads the images
    message = mismatch_warning(root, meta, _recipe(sizes, seed, size, difficulty), asked)
    key = (str(root.resolve()), message or "")
    if message and key not in _WARNED and os.environ.get("RANK", "0") == "0":
        _WARNED.add(key)
        log.warning("%s", message)


def mismatch_warning(
    root: str | Path, meta: dict[str, Any], want: dict[str, Any], asked: Collection[str] | None = None
) -> str | None:
    """The warning for a synthetic set made otherwise than the config asks, or None when it fits.

    Only the keys in `asked` (the data.* keys the user's config gave; None: all) count. The suggested
    command makes what the config asks for and keeps the recorded value of every other setting.
    """
    made = _recorded(meta)
    keys = [k for k in SYNTHETIC_KEYS if asked is None or k in asked]
    differ = [k for k in keys if made[k] is not None and made[k] != want[k]]
    if not differ:
        return None
    target = {k: (want[k] if k in keys or made[k] is None else made[k]) for k in SYNTHETIC_KEYS}
    sizes, (h, w) = target["synthetic_sizes"], target["synthetic_size"]
    command = (
        f"reseg make-synthetic --out {shlex.quote(str(root))} --train {sizes['train']} --val {sizes['val']} "
        f"--test {sizes['test']} --seed {target['synthetic_seed']} --size {h} {w} "
        f"--difficulty {target['synthetic_difficulty']}"
    )
    what = "; ".join(f"data.{k} asks for {_show(want[k])}, it has {_show(made[k])}" for k in differ)
    return (
        f"the synthetic dataset at {root} was made otherwise than the config asks ({what}); using it as it "
        f"is. To make it as the config asks: {command}"
    )


def _recipe(sizes: Any, seed: Any, size: Any, difficulty: Any) -> dict[str, Any]:
    """The generation settings as synthetic.json records them, keyed by their data.* config key."""
    return {
        "synthetic_sizes": dict(zip(SPLITS, map(int, sizes))),
        "synthetic_size": [int(v) for v in size],
        "synthetic_seed": int(seed),
        "synthetic_difficulty": str(difficulty),
    }


def _recorded(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings synthetic.json holds (older files lack size and difficulty: unknown size, standard)."""
    return {
        "synthetic_sizes": meta.get("sizes"),
        "synthetic_size": meta.get("size"),
        "synthetic_seed": meta.get("seed"),
        "synthetic_difficulty": meta.get("difficulty", "standard"),
    }


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "[" + ", ".join(str(value.get(s)) for s in SPLITS) + "]"
    return str(value)
