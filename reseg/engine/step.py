"""One training step in two halves, so the Trainer's guard against a non-finite loss sits between them:
`forward_loss` (nothing updated yet) and `backward_and_step` (the weights change)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reseg.engine import distributed as dist_utils
from reseg.engine.loss import SegLoss
from reseg.engine.parts import Optimisation, RunContext
from reseg.runtime import autocast


def forward_loss(
    model: nn.Module, criterion: SegLoss, batch: dict[str, Any], run: RunContext
) -> tuple[torch.Tensor, float]:
    """The loss of `batch` under autocast, a mean over every labelled pixel of the global batch, and its value
    (the same on every rank)."""
    images = batch["image"].to(run.device, non_blocking=True, memory_format=run.memory_format)
    masks = batch["mask"].to(run.device, non_blocking=True).long()
    with autocast(run.device, run.amp_dtype):
        logits = model(images)
    denominator = None
    if run.dist.enabled:  # every rank divides by the global count, so DDP's mean is the global mean
        denominator = dist_utils.all_reduce_sum(criterion.ce_denominator(masks)) / run.dist.world_size
    loss = criterion(logits, masks, denominator)
    value = float(dist_utils.all_reduce_sum(loss.detach().clone()) / run.dist.world_size)
    return loss, value


def backward_and_step(opt: Optimisation, loss: torch.Tensor, grad_clip: float | None) -> None:
    """Backward (scaled for fp16), optional gradient clipping, the optimiser and schedule steps, the average."""
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    if grad_clip:
        opt.scaler.unscale_(opt.optimizer)
        torch.nn.utils.clip_grad_norm_(opt.params, grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    if opt.ema is not None:
        opt.ema.update(opt.model_bare)
