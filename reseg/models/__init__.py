"""Model factory: a plain dict of builders (name -> builder(model config, classes)), as timm and smp do.

The model modules load on first use, so `reseg.models.padding` stays a light import.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from reseg.errors import ResegError

__all__ = ["ReNet", "ReSeg", "VGGEncoder", "build_model", "config_kwargs", "MODELS"]
_LAZY = {"ReNet": "reseg.models.renet", "ReSeg": "reseg.models.reseg", "VGGEncoder": "reseg.models.vgg"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_kwargs(cls: type, m: Any) -> dict[str, Any]:
    """The constructor arguments of `cls` that the model config holds, matched by name, so that a new model
    argument is written twice only: in the constructor and in `ModelConfig`."""
    params = inspect.signature(cls).parameters
    return {name: getattr(m, name) for name in params if name != "num_classes" and hasattr(m, name)}


def _reseg(m: Any, classes: int) -> nn.Module:
    from reseg.models.reseg import ReSeg

    return ReSeg(classes, **config_kwargs(ReSeg, m))


def _smp(arch: str) -> Callable[[Any, int], nn.Module]:
    def build(m: Any, classes: int) -> nn.Module:
        from reseg.models.baselines import SmpBaseline  # imports segmentation_models_pytorch: only when asked

        if m.encoder_width != 1:
            raise ResegError(
                f"model.encoder_width={m.encoder_width:g} applies to model.name=reseg only; "
                f"smp's VGG encoder of model.name={m.name} has a fixed width (use 1.0)"
            )
        return SmpBaseline(arch, classes, **config_kwargs(SmpBaseline, m))

    return build


MODELS: dict[str, Callable[[Any, int], nn.Module]] = {
    "reseg": _reseg,
    "unet_vgg16": _smp("unet"),
    "fpn_vgg16": _smp("fpn"),
    "deeplabv3plus_vgg16": _smp("deeplabv3plus"),
}


def build_model(cfg: Any, num_classes: int | None = None) -> nn.Module:
    """Build from a Config (or its `model` section); `num_classes` overrides cfg.model.num_classes.

    Batch norm stays per-process here; the trainer converts it to SyncBatchNorm under DDP.
    """
    m = getattr(cfg, "model", cfg)
    classes = num_classes if num_classes is not None else m.num_classes
    if not classes:
        raise ResegError("model.num_classes is not set and no dataset gave a class count")
    if m.name not in MODELS:
        raise ResegError(f"unknown model.name {m.name!r}; valid choices: {', '.join(MODELS)}")
    return MODELS[m.name](m, classes)
