"""Model factory: a plain dict of builders, one `build_model(cfg)` for every tool."""

from __future__ import annotations

from typing import Any

from torch import nn

from reseg.errors import ResegError
from reseg.models.renet import ReNet
from reseg.models.reseg import ReSeg
from reseg.models.vgg import VGGEncoder

__all__ = ["ReNet", "ReSeg", "VGGEncoder", "build_model", "MODELS"]

MODELS = ("reseg", "unet_vgg16", "fpn_vgg16", "deeplabv3plus_vgg16")


def build_model(cfg: Any, num_classes: int | None = None) -> nn.Module:
    """Build from a Config (or its `model` section); `num_classes` overrides cfg.model.num_classes."""
    m = getattr(cfg, "model", cfg)
    classes = num_classes if num_classes is not None else m.num_classes
    if not classes:
        raise ResegError("model.num_classes is not set and no dataset gave a class count")
    if m.name == "reseg":
        model = ReSeg(classes, encoder=m.encoder, encoder_cut=m.encoder_cut, encoder_weights=m.encoder_weights,
                      freeze_encoder=m.freeze_encoder, renet_layers=m.renet_layers, renet_hidden=m.renet_hidden,
                      renet_patch=m.renet_patch, cell=m.cell, decoder_filters=m.decoder_filters)
    elif m.name in MODELS:
        from reseg.models.baselines import SmpBaseline

        model = SmpBaseline(m.name.split("_")[0], classes, encoder=m.encoder,
                            encoder_weights=m.encoder_weights, freeze_encoder=m.freeze_encoder)
    else:
        raise ResegError(f"unknown model.name {m.name!r}; valid choices: {', '.join(MODELS)}")
    if getattr(m, "sync_bn", False):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
