"""ReSeg (Visin et al., 2016): VGG encoder -> stacked ReNet layers -> transposed-conv decoder -> 1x1 classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reseg.models.renet import ReNet
from reseg.models.vgg import VGGEncoder


def _per_layer(value: int | Sequence[int], layers: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * layers
    values = list(value)
    if len(values) != layers:
        from reseg.errors import ResegError

        raise ResegError(f"{name} has {len(values)} entries but there are {layers} ReNet layers")
    return values


class ReSeg(nn.Module):
    """Defaults are the paper's CamVid setting; `renet_layers=0` gives the conv-only ablation."""

    def __init__(self, num_classes: int, encoder: str = "vgg16", encoder_cut: str = "conv3_3",
                 encoder_weights: str | None = None, freeze_encoder: bool = False, renet_layers: int = 2,
                 renet_hidden: int | Sequence[int] = 100, renet_patch: int | Sequence[int] = 1,
                 cell: str = "gru", decoder_filters: Sequence[int] = (50, 50)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = VGGEncoder(encoder, encoder_cut, encoder_weights, freeze_encoder)
        hidden = _per_layer(renet_hidden, renet_layers, "renet_hidden")
        patches = _per_layer(renet_patch, renet_layers, "renet_patch")
        layers, channels = [], self.encoder.out_channels
        for h, p in zip(hidden, patches):
            layers.append(ReNet(channels, h, p, cell))
            channels = 2 * h
        self.renet = nn.Sequential(*layers)
        # Total stride of the features the decoder sees; inputs are padded to a multiple of it.
        self.stride = self.encoder.stride
        for p in patches:
            self.stride *= p
        decoder: list[nn.Module] = []
        for f in decoder_filters:
            decoder += [nn.ConvTranspose2d(channels, f, kernel_size=2, stride=2), nn.ReLU(inplace=True)]
            channels = f
        self.decoder = nn.Sequential(*decoder)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.stride
        pad_h, pad_w = (-h) % s, (-w) % s
        if pad_h or pad_w:  # pad, never crop, so every pixel of any input size gets a prediction
            x = F.pad(x, (0, pad_w, 0, pad_h))
        y = self.classifier(self.decoder(self.renet(self.encoder(x))))
        if y.shape[-2:] != x.shape[-2:]:  # decoder upsampling does not cover the full stride
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]

    def param_groups(self, lr: float, encoder_lr_mult: float = 1.0) -> list[dict]:
        return encoder_param_groups(self, self.encoder, lr, encoder_lr_mult)


def encoder_param_groups(model: nn.Module, encoder: nn.Module, lr: float, mult: float) -> list[dict]:
    """Trainable encoder parameters at lr * mult (the transfer-learning recipe), the rest at lr.

    A multiplier of 0 leaves the encoder out, which freezes it for the optimiser.
    """
    enc_ids = {id(p) for p in encoder.parameters()}
    enc = [p for p in encoder.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = [{"params": rest, "lr": lr, "name": "head"}]
    if enc and mult > 0:
        groups.append({"params": enc, "lr": lr * mult, "name": "encoder"})
    return groups
