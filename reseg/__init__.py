"""ReSeg: recurrent semantic segmentation of street scenes.

    import reseg
    model = reseg.load("work_dirs/reseg_synthetic/best.pt")   # or a model folder, or "hf://user/repo"
    mask = model("street.jpg")                                # H x W uint8 class ids
    view = model.overlay("street.jpg", mask)                  # H x W x 3 RGB

Images are RGB uint8 numpy arrays (H x W x 3) or image paths. The names below load on first use
(reseg.api), so `import reseg` stays fast and imports no torch; this module imports no other reseg module,
so every module may read __version__ from it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "Segmenter", "build_model", "train", "evaluate", "adapt", "package", "ResegError"]

_LAZY = {
    "load": "reseg.api",
    "Segmenter": "reseg.api",
    "build_model": "reseg.api",
    "train": "reseg.api",
    "evaluate": "reseg.api",
    "adapt": "reseg.adaptation_runs",
    "package": "reseg.packaging",
    "ResegError": "reseg.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'reseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
