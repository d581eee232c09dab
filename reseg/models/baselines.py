"""segmentation_models_pytorch baselines on VGG-16, behind the same interface as ReSeg."""

from __future__ import annotations

import contextlib

import segmentation_models_pytorch as smp
import torch
from torch import nn

from reseg.models.base import SegmentationModel
from reseg.models.vgg import VGGEncoder, use_instance_norm

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


class SmpBaseline(SegmentationModel):
    """An smp architecture on VGG-16; inputs are padded to a multiple of 32 (16 for DeepLabV3+), what smp's
    decoders need. `decoder_dropout` acts between smp's decoder and its segmentation head; `ibn_blocks` swaps
    the batch norms of the encoder's first blocks for IBN-a's, as ReSeg's encoder does."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        encoder: str = "vgg16",
        encoder_weights: str | None = None,
        freeze_encoder: bool = False,
        decoder_dropout: float = 0.0,
        ibn_blocks: int = 0,
    ) -> None:
        super().__init__()
        smp_weights = "imagenet" if encoder_weights == "imagenet" else None
        kwargs = {"encoder_name": encoder, "encoder_weights": smp_weights, "classes": num_classes}
        if arch == "deeplabv3plus":
            with _no_dilation():
                self.net = ARCHS[arch](encoder_depth=4, **kwargs)
            self.stride = 16
        else:
            self.net = ARCHS[arch](**kwargs)
            self.stride = 32
        self.num_classes = num_classes
        self.head_dropout = self.dropout2d(decoder_dropout)
        if encoder_weights not in (None, "imagenet", "none"):
            # torchvision's key names load into smp's VGG encoder (it is a torchvision VGG subclass).
            probe = VGGEncoder(encoder, "conv5_3", encoder_weights)
            self.net.encoder.features[: len(probe.features)].load_state_dict(probe.features.state_dict())
        use_instance_norm(self.net.encoder.features, ibn_blocks)  # after the weights: it keeps their state
        if freeze_encoder:
            for p in self.net.encoder.parameters():
                p.requires_grad_(False)

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        # smp's own forward, with the dropout slotted in before the head (smp has no such option)
        features = self.net.decoder(self.net.encoder(x))
        return self.net.segmentation_head(self.head_dropout(features))
