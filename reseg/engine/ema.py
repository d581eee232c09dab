"""train.ema_decay: an exponential moving average of the weights, the model a run validates and saves.

Small batches on a small training set make the last weights noisy; their average over the last few hundred
steps usually generalises better to data the run never saw. The average includes the buffers, so
BatchNorm's running statistics follow the averaged weights; integer buffers (num_batches_tracked) are
copied, not averaged. The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that in a
short run the average is not dominated by the first, untrained weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def decay_after(decay: float, updates: int) -> float:
    """The decay the (updates + 1)-th update uses: `decay`, warmed up over the first updates."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightEMA:
    """The averaged copy of a model (`module`), updated after every optimiser step by `update`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must be in (0, 1) for an average, got {decay!r}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self.module.eval().requires_grad_(False)  # only ever evaluated and saved

    @property
    def module(self) -> nn.Module:
        """The averaged model: what validation scores and checkpoints hold as the run's model."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        # called once per (device, dtype) group of parameters and buffers
        weight = 1.0 - decay_after(self.decay, int(updates))
        for avg, cur in zip(averaged, current):
            if avg.is_floating_point():
                avg.lerp_(cur, weight)
            else:
                avg.copy_(cur)

    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights and buffers into the average (the first call copies them)."""
        self.averaged.update_parameters(model)

    def restart_from(self, model: nn.Module) -> None:
        """Start the average again from `model` (a resumed run that had no average)."""
        self.module.load_state_dict(model.state_dict())
        self.averaged.n_averaged.fill_(0)

    def state_dict(self) -> dict[str, Any]:
        """What the checkpoint keeps besides the averaged weights themselves."""
        return {"decay": self.decay, "updates": self.updates}

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any] | None) -> None:
        """The averaged weights and update count a checkpoint saved."""
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(int((state or {}).get("updates", 1)))
