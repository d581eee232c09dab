"""The training step the benchmarks time: `reseg train`'s own (Trainer.train_one_step) on a fixed random batch.

The trainer is built from the config with its own pieces (model placement, AMP, memory format, optimiser,
schedule, loss, gradient clipping), so a timing covers exactly what a training run executes per step,
without a dataset or a work dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from reseg.errors import ResegError


def step_trainer(cfg: Any, device: str | torch.device = "cpu") -> Any:
    """A Trainer set up for train_one_step alone: no data, no process group, nothing written.

    cfg.model.num_classes must be set (a run takes it from the dataset).
    """
    from reseg.engine.distributed import DistInfo
    from reseg.engine.trainer import Trainer

    if cfg.model.num_classes is None:
        raise ResegError("step_trainer needs model.num_classes (a training run takes it from its dataset)")
    trainer = Trainer(cfg, work_dir=os.devnull)  # a copy of cfg; only fit() creates or writes anything there
    trainer.cfg.data.class_weights = "none"  # weights are dataset statistics; a weighted loss costs the same
    trainer.dist = DistInfo()
    trainer.device = torch.device(device)
    trainer.main = True
    trainer.num_classes = trainer.cfg.model.num_classes
    trainer.iters_per_epoch = 1
    trainer.iteration = 0
    trainer.last_saved = None
    trainer._setup_model()
    trainer._setup_optimization()
    return trainer


def random_batch(trainer: Any, batch: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Normalised-looking images and labels of every class, on the trainer's device."""
    dev = trainer.device
    return {"image": torch.randn(batch, 3, *size, device=dev),
            "mask": torch.randint(0, trainer.num_classes, (batch, *size), device=dev)}


def train_step_fn(trainer: Any, batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    """One call = one training step on `batch` (the model in training mode); returns the loss."""

    def step() -> float:
        trainer.model.train()
        return trainer.train_one_step(batch)

    return step
