"""The one contract every model in MODELS follows (as smp's SegmentationModel does for its architectures).

A model maps (N, 3, H, W) normalised images to (N, num_classes, H, W) logits for any H and W: `forward`
pads the input to a multiple of `stride` (never crops it), runs `forward_padded` and crops the logits
back. `forward_padded` is also what export traces (no shape-dependent branch). `encoder` is the part
`param_groups` gives its own learning rate (data.encoder_lr_mult). `head_dropout` (model.decoder_dropout) is
applied to the decoder's features right before the classifier, so the regulariser is the same lever for
every model; it has no weights (checkpoints do not depend on it) and is the identity in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from reseg.errors import ResegError
from reseg.models.padding import crop_to, pad_to_multiple


class SegmentationModel(nn.Module):
    """Subclasses set `num_classes`, `stride`, `encoder` and `head_dropout` (see `dropout2d`) in __init__ and
    implement `forward_padded`."""

    num_classes: int
    stride: int
    encoder: nn.Module
    head_dropout: nn.Module

    @staticmethod
    def dropout2d(p: float) -> nn.Module:
        """The `head_dropout` for model.decoder_dropout = p: whole feature maps dropped (Dropout2d), since
        neighbouring pixels of one map are too correlated for element-wise dropout to regularise."""
        if not 0 <= p < 1:
            raise ResegError(f"model.decoder_dropout is {p!r}; expected a number in [0, 1)")
        return nn.Dropout2d(p) if p > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input's size, for any size: pad to the stride, run, crop back."""
        h, w = x.shape[-2], x.shape[-1]
        return crop_to(self.forward_padded(pad_to_multiple(x, self.stride)), h, w)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an input whose H and W are multiples of `self.stride`."""
        raise NotImplementedError

    def param_groups(self, lr: float, encoder_lr_mult: float = 1.0) -> list[dict]:
        """Trainable encoder parameters at lr * encoder_lr_mult (0 leaves them out: frozen), the rest at lr."""
        enc_ids = {id(p) for p in self.encoder.parameters()}
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in enc_ids]
        groups = [{"params": rest, "lr": lr, "name": "head"}]
        if enc and encoder_lr_mult > 0:
            groups.append({"params": enc, "lr": lr * encoder_lr_mult, "name": "encoder"})
        return groups
