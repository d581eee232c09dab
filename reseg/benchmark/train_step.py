"""The training step the benchmarks time: `reseg train`'s own (Trainer.train_one_step) on a fixed random batch.

The trainer is built from the config with its own pieces (model placement, AMP, memory format, optimiser,
schedule, loss, gradient clipping), so a timing covers exactly what a training run executes per step,
without a dataset or a work dir.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from reseg.config import Config

if TYPE_CHECKING:
    from reseg.engine.trainer import Trainer


def step_trainer(cfg: Config, device: str | torch.device = "cpu") -> Trainer:
    """A Trainer set up for train_one_step alone (Trainer.for_steps): no data, no process group, nothing written.

    cfg.model.num_classes must be set (a run takes it from the dataset).
    """
    from reseg.engine.trainer import Trainer

    return Trainer.for_steps(cfg, device)


def random_batch(trainer: Trainer, batch: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Normalised-looking images and labels of every class, on the trainer's device."""
    dev = trainer.run.device
    return {
        "image": torch.randn(batch, 3, *size, device=dev),
        "mask": torch.randint(0, trainer.cfg.model.num_classes, (batch, *size), device=dev),
    }


def train_step_fn(trainer: Trainer, batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    """One call = one training step on `batch` (the model in training mode); returns the loss."""

    def step() -> float:
        trainer.opt.model.train()
        return trainer.train_one_step(batch)

    return step
