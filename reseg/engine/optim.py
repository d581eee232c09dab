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
        return torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0, weight_decay=o.weight_decay
        )
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adadelta":
        return torch.optim.Adadelta(groups, lr=o.lr, rho=o.rho, eps=o.eps, weight_decay=o.weight_decay)
    raise ResegError(f"optim.name must be sgd, adam, adamw or adadelta, got {o.name!r}")


class RunLength:
    """The run's length in iterations, and how far through the schedule an iteration is (0 .. 1).

    poly and cosine are functions of this progress. A time-budgeted run changes its length after it
    started (calibration fixes it, a re-plan corrects it once the pace is known better); `change` then
    adds a knot so that the progress reached so far is kept and the rest of the schedule stretches or
    shrinks over the new remaining iterations: the learning rate never jumps, and the schedule still ends
    exactly at the new length. Progress is piecewise linear between the knots. The knots go into the
    checkpoint, so a resumed run follows the same schedule as one that never stopped.

    With sched.by_epoch, progress moves at epoch starts only (`granularity` = iterations per epoch) and the
    length rounds up to whole epochs.
    """

    def __init__(self, total: int, granularity: int = 1) -> None:
        self.total = int(total)
        self.granularity = max(1, int(granularity))
        self.knots: list[tuple[int, float]] = [(0, 0.0)]  # (iteration, progress there), iterations increasing

    def _end(self) -> int:
        g = self.granularity
        return g * max(1, math.ceil(self.total / g))

    def progress(self, it: int) -> float:
        """Fraction of the schedule done after `it` iterations, in [0, 1]."""
        it = self._quantize(it)
        points = [*self.knots, (self._end(), 1.0)]
        for (a, done_a), (b, done_b) in zip(points, points[1:]):
            if it < b and b > a:
                return done_a + (done_b - done_a) * max(0, it - a) / (b - a)
        return 1.0

    def change(self, at_iter: int, total: int) -> None:
        """Make the run `total` iterations long from iteration `at_iter` on, keeping the progress reached."""
        at = self._quantize(at_iter)
        if at > 0:
            reached = self.progress(at)
            self.knots = [k for k in self.knots if k[0] < at] + [(at, reached)]
        self.total = int(total)

    def _quantize(self, it: int) -> int:
        return self.granularity * (int(it) // self.granularity)

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "knots": [[int(i), float(p)] for i, p in self.knots]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = int(state["total"])
        self.knots = [(int(i), float(p)) for i, p in state["knots"]]


def lr_factor(cfg: Config, total_iters: int | RunLength, iters_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate after `it` iterations.

    poly: (1 - p)^power, cosine: half a cosine, step: gamma^(t // step_size), constant: 1, where p is the
    progress through the run (RunLength: t / T while the length never changed); poly and cosine decay
    towards sched.min_lr. With sched.by_epoch, t, T and step_size count epochs. A linear warm-up from
    warmup_ratio over warmup_iters iterations multiplies any of them. `total_iters` may be a RunLength
    that the trainer changes later (a time-budgeted run fixes its length only after calibrating), and the
    schedule follows it.
    """
    s = cfg.sched
    floor = min(1.0, s.min_lr / cfg.optim.lr) if cfg.optim.lr > 0 else 0.0
    ipe = max(1, iters_per_epoch)
    length = total_iters if isinstance(total_iters, RunLength) else RunLength(total_iters, ipe if s.by_epoch else 1)

    def factor(it: int) -> float:
        if s.name == "poly":
            f = floor + (1 - floor) * (1 - length.progress(it)) ** s.power
        elif s.name == "cosine":
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * length.progress(it)))
        elif s.name == "step":
            t = min(it // ipe, math.ceil(length.total / ipe)) if s.by_epoch else min(it, length.total)
            f = s.gamma ** (t // max(1, s.step_size))
        else:
            f = 1.0
        if s.warmup_iters > 0 and it < s.warmup_iters:
            f *= s.warmup_ratio + (1 - s.warmup_ratio) * it / s.warmup_iters
        return f

    return factor


def build_scheduler(
    cfg: Config, optimizer: torch.optim.Optimizer, total_iters: int | RunLength, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration (epoch-based schedules change value only at epoch ends)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_iters, iters_per_epoch))
