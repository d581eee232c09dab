"""The segmentation loss: cross-entropy over labelled pixels (DDP-exact denominators), optional Dice/Lovasz."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegLoss(nn.Module):
    """Cross-entropy (ignore 255, optional class weights, optional label smoothing) + optional Dice and Lovasz
    terms from smp.

    Label smoothing is cross-entropy's own (`label_smoothing`): each labelled pixel's target keeps 1 - eps
    and spreads eps over all classes; ignored pixels still add nothing.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_weights: torch.Tensor | None = None,
        dice_weight: float = 0.0,
        lovasz_weight: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", None if class_weights is None else class_weights.float())
        self.dice_weight, self.lovasz_weight = dice_weight, lovasz_weight
        self.dice = self.lovasz = None
        if dice_weight > 0 or lovasz_weight > 0:
            from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss

            if dice_weight > 0:
                self.dice = DiceLoss(mode="multiclass", ignore_index=ignore_index)
            if lovasz_weight > 0:
                self.lovasz = LovaszLoss(mode="multiclass", ignore_index=ignore_index)

    def ce_denominator(self, target: torch.Tensor) -> torch.Tensor:
        """What mean cross-entropy divides by: the labelled pixels (their class weights, if any)."""
        valid = target != self.ignore_index
        if self.weight is None:
            return valid.sum().float()
        return self.weight[target[valid]].sum()

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, denominator: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of a batch. `denominator` replaces this batch's own CE denominator: under DDP the trainer
        passes (global denominator / world size), so the averaged gradients equal one process's on the
        whole global batch even when ranks hold different numbers of labelled pixels."""
        logits = logits.float()
        if denominator is None:
            denominator = self.ce_denominator(target)
        ce_sum = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction="sum",
            label_smoothing=self.label_smoothing,
        )
        loss = ce_sum / denominator.clamp_min(1e-6)  # a batch with no labelled pixel adds nothing
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.lovasz is not None:
            loss = loss + self.lovasz_weight * self.lovasz(logits, target)
        return loss
