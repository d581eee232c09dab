"""segmentation_models_pytorch baselines on VGG-16, behind the same interface as ReSeg."""

from __future__ import annotations

import contextlib

import segmentation_models_pytorch as smp
import torch
from torch import nn

from reseg.models.padding import crop_to, pad_to_multiple
from reseg.models.reseg import encoder_param_groups
from reseg.models.vgg import VGGEncoder

ARCHS = {"unet": smp.Unet, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus}


@contextlib.contextmanager
def _no_dilation():
    """smp asks VGG to dilate for DeepLabV3+, which it refuses; at depth 4 VGG already has stride 16."""
    from segmentation_models_pytorch.encoders.vgg import VGGEncoder as SmpVGG

    original = SmpVGG.make_dilated
    SmpVGG.make_dilated = lambda self, *a, **k: None
    try:
        yield
    finally:
        SmpVGG.make_dilated = original


class SmpBaseline(nn.Module):
    """Pads inputs to a multiple of 32 (what smp's decoders need) and crops logits back."""

    multiple = 32

    def __init__(self, arch: str, num_classes: int, encoder: str = "vgg16", encoder_weights: str | None = None,
                 freeze_encoder: bool = False) -> None:
        super().__init__()
        smp_weights = "imagenet" if encoder_weights == "imagenet" else None
        kwargs = {"encoder_name": encoder, "encoder_weights": smp_weights, "classes": num_classes}
        if arch == "deeplabv3plus":
            with _no_dilation():
                self.net = ARCHS[arch](encoder_depth=4, **kwargs)
            self.multiple = 16
        else:
            self.net = ARCHS[arch](**kwargs)
        self.num_classes = num_classes
        if encoder_weights not in (None, "imagenet", "none"):
            # torchvision's key names load into smp's VGG encoder (it is a torchvision VGG subclass).
            probe = VGGEncoder(encoder, "conv5_3", encoder_weights)
            self.net.encoder.features[: len(probe.features)].load_state_dict(probe.features.state_dict())
        if freeze_encoder:
            for p in self.net.encoder.parameters():
                p.requires_grad_(False)

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def stride(self) -> int:
        return self.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        return crop_to(self.forward_padded(pad_to_multiple(x, self.multiple)), h, w)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an input whose H and W are multiples of `self.multiple`."""
        return self.net(x)

    def param_groups(self, lr: float, encoder_lr_mult: float = 1.0) -> list[dict]:
        return encoder_param_groups(self, self.net.encoder, lr, encoder_lr_mult)
