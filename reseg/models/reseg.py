"""ReSeg (Visin et al., 2016): VGG encoder -> stacked ReNet layers -> decoder -> 1x1 classifier.

Two decoders: "deconv", the paper's transposed convolutions from the ReNet output, and "skip", which
keeps ReNet's whole-image context and gets the detail back from earlier encoder stages: each block
upsamples bilinearly to the next skip's resolution, concatenates it and fuses with two 3x3 convs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError
from reseg.models.base import SegmentationModel
from reseg.models.renet import ReNet
from reseg.models.vgg import VGGEncoder

DECODERS = ("deconv", "skip")


def _per_layer(value: int | Sequence[int], layers: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * layers
    values = list(value)
    if len(values) != layers:
        raise ResegError(
            f"model.{name} has {len(values)} entries but there are {layers} ReNet layers (model.renet_layers)"
        )
    return values


class SkipBlock(nn.Module):
    """Upsample to the skip's size (bilinear: no checkerboard), concatenate, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in in (in_channels + skip_channels, out_channels):
            layers += [
                nn.Conv2d(c_in, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        self.fuse = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, skip], dim=1))


class SkipDecoder(nn.Module):
    """One SkipBlock per skip layer, deepest first."""

    def __init__(self, in_channels: int, skip_channels: Sequence[int], widths: Sequence[int]) -> None:
        super().__init__()
        blocks = []
        for c_skip, c_out in zip(skip_channels, widths):
            blocks.append(SkipBlock(in_channels, c_skip, c_out))
            in_channels = c_out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return x


def _check_skips(encoder: VGGEncoder, skip_layers: Sequence[str], widths: Sequence[int]) -> list[int]:
    """Channels of each skip layer; the layers must go from deep to shallow, one width each."""
    taps = [encoder.tap(name) for name in skip_layers]
    strides = [s for _, s in taps]
    if any(a <= b for a, b in zip(strides, strides[1:])):
        order = sorted(skip_layers, key=lambda n: -encoder.tap(n)[1])
        raise ResegError(
            f"model.skip_layers {list(skip_layers)} must go from deep to shallow, each layer once (e.g. {order})"
        )
    if len(widths) != len(skip_layers) or min(widths, default=1) <= 0:
        raise ResegError(
            f"model.decoder_channels {list(widths)} needs one positive width per skip layer "
            f"({len(skip_layers)}: {list(skip_layers)})"
        )
    return [c for c, _ in taps]


class ReSeg(SegmentationModel):
    """Defaults are the paper's CamVid setting; `renet_layers=0` gives the conv-only ablation.

    `encoder_width` scales the VGG encoder's channels (the skip decoder's inputs follow it); `decoder_dropout`
    drops whole decoder feature maps before the classifier while training; `ibn_blocks` gives the encoder's
    first blocks half-instance norms (IBN-a), against the colour and contrast of one street.
    """

    def __init__(
        self,
        num_classes: int,
        encoder: str = "vgg16",
        encoder_cut: str = "conv3_3",
        encoder_weights: str | None = None,
        freeze_encoder: bool = False,
        renet_layers: int = 2,
        renet_hidden: int | Sequence[int] = 100,
        renet_patch: int | Sequence[int] = 1,
        cell: str = "gru",
        decoder_filters: Sequence[int] = (50, 50),
        decoder: str = "deconv",
        skip_layers: Sequence[str] = ("conv2_2", "conv1_2"),
        decoder_channels: Sequence[int] = (64, 32),
        encoder_width: float = 1.0,
        decoder_dropout: float = 0.0,
        ibn_blocks: int = 0,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ResegError(f"unknown model.decoder {decoder!r}; valid choices: {', '.join(DECODERS)}")
        self.num_classes = num_classes
        self.encoder = VGGEncoder(encoder, encoder_cut, encoder_weights, freeze_encoder, encoder_width, ibn_blocks)
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
        self.decoder_kind = decoder
        self.skip_layers = list(skip_layers) if decoder == "skip" else []
        if decoder == "skip":
            skip_channels = _check_skips(self.encoder, self.skip_layers, decoder_channels)
            self.decoder = SkipDecoder(channels, skip_channels, decoder_channels)
            channels = self.decoder.out_channels
            out_stride = self.encoder.tap(self.skip_layers[-1])[1] if self.skip_layers else self.stride
        else:
            deconvs: list[nn.Module] = []
            for f in decoder_filters:
                deconvs += [nn.ConvTranspose2d(channels, f, kernel_size=2, stride=2), nn.ReLU(inplace=True)]
                channels = f
            self.decoder = nn.Sequential(*deconvs)
            out_stride = self.stride / 2 ** len(decoder_filters)
        self.head_dropout = self.dropout2d(decoder_dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.resize = out_stride != 1  # the decoder does not end at the input's resolution

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an input whose H and W are multiples of `self.stride`."""
        if self.decoder_kind == "skip":
            feats, skips = self.encoder.forward_taps(x, self.skip_layers)
            y = self.decoder(self.renet(feats), skips)
        else:
            y = self.decoder(self.renet(self.encoder(x)))
        y = self.classifier(self.head_dropout(y))
        if self.resize:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y
