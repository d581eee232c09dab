"""Optimizers over the model's parameter groups and the per-iteration learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reseg.config import Config
from reseg.errors import ResegError
from reseg.models.base import SegmentationModel

def param_groups(model: nn.Module, lr: float, encoder_lr_mult: float) -> list[dict[str, Any]]:
    """A SegmentationModel's own groups (encoder at lr*mult, frozen parameters absent); for any other module
    all its trainable parameters at lr."""
    if isinstance(model, SegmentationModel):
        groups = model.param_groups(lr, encoder_lr_mult)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    groups = [g for g in groups if len(list(g["params"])) > 0]
    if not groups:
        raise ResegError("the model has no trainable parameters (is everything frozen?)")
    return groups


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam, AdamW or Adadelta over the model's parameter groups."""
    o = cfg.optim
    groups = param_groups(model, o.lr, o.encoder_lr_mult)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                               weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adadelta":
        return torch.optim.Adadelta(groups, lr=o.lr, rho=o.rho, eps=o.eps, weight_decay=o.weight_decay)
    raise ResegError(f"optim.name must be sgd, adam, adamw or adadelta, got {o.name!r}")


def lr_factor(cfg: Config, total_iters: int | Callable[[], int], iters_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate after `it` iterations.

    poly: (1 - t/T)^power, cosine: half a cosine, step: gamma^(t // step_size), constant: 1; poly and
    cosine decay towards sched.min_lr. With sched.by_epoch, t, T and step_size count epochs. A linear
    warm-up from warmup_ratio over warmup_iters iterations multiplies any of them. `total_iters` may be a
    callable: a time-budgeted run fixes its length only after calibrating, and the schedule follows it.
    """
    s = cfg.sched
    floor = min(1.0, s.min_lr / cfg.optim.lr) if cfg.optim.lr > 0 else 0.0
    ipe = max(1, iters_per_epoch)
    length = total_iters if callable(total_iters) else (lambda: total_iters)

    def factor(it: int) -> float:
        total = length()
        t, T = (it // ipe, max(1, math.ceil(total / ipe))) if s.by_epoch else (it, max(1, total))
        t = min(t, T)
        if s.name == "poly":
            f = floor + (1 - floor) * (1 - t / T) ** s.power
        elif s.name == "cosine":
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / T))
        elif s.name == "step":
            f = s.gamma ** (t // max(1, s.step_size))
        else:
            f = 1.0
        if s.warmup_iters > 0 and it < s.warmup_iters:
            f *= s.warmup_ratio + (1 - s.warmup_ratio) * it / s.warmup_iters
        return f

    return factor


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_iters: int | Callable[[], int],
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration (epoch-based schedules change value only at epoch ends)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_iters, iters_per_epoch))


