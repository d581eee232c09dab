"""A training checkpoint's contents (`checkpoint_state`) and how a resumed run gets every piece back.

The checkpoint carries every piece of state the data order and augmentation do not already fix, so a run
resumed from last.pt continues exactly: weights (and the weight average), optimiser, schedule, grad scaler,
RNG states, sampler position, the run's length with its schedule knots, the time spent, the loop's counters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reseg.config import Config, architecture_keys
from reseg.engine import distributed as dist_utils
from reseg.engine.budget import format_duration
from reseg.engine.checkpoint import load_checkpoint
from reseg.engine.parts import Optimisation, RunBudget, TrainData
from reseg.engine.reproducibility import get_rng_state, set_rng_state
from reseg.engine.samplers import EpochBatchSampler
from reseg.errors import ResegError
from reseg.runtime import launch_command, machine_description

LOG = logging.getLogger("reseg.train")

# Model-config keys that change the architecture: a checkpoint must agree on all of them to resume.
ARCH_KEYS = architecture_keys()


@dataclass
class LoopState:
    """Where the loop is; all of it but last_saved travels in the checkpoint."""

    iteration: int = 0
    best_metric: float | None = None
    best_iteration: int | None = None
    bad_evals: int = 0  # validations since the best one (train.early_stop_patience)
    last_val: dict[str, Any] | None = None
    last_saved: int | None = None  # the iteration last.pt holds, for the messages of a run that stops

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> LoopState:
        iteration = int(state["iteration"])
        return cls(
            iteration,
            state.get("best_metric"),
            state.get("best_iteration"),
            int(state.get("bad_evals", 0)),
            state.get("last_val"),
            last_saved=iteration,
        )


def checkpoint_state(
    cfg: Config, opt: Optimisation, data: TrainData, budget: RunBudget, loop: LoopState, run_device: Any = "cpu"
) -> dict[str, Any]:
    """Everything needed to continue exactly (see the checkpoint format in DESIGN.md); collective (RNG states
    are gathered from every rank)."""
    rng = dist_utils.all_gather_object(get_rng_state())
    epoch, start_batch = divmod(loop.iteration, budget.iters_per_epoch)
    return {
        "config": cfg.to_dict(),
        "model": opt.eval_model.state_dict(),
        **({"raw_model": opt.model_bare.state_dict(), "ema": opt.ema.state_dict()} if opt.ema is not None else {}),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        "rng": rng if len(rng) > 1 else rng[0],
        "sampler": {**data.sampler.state_dict(), "epoch": epoch, "start_batch": start_batch},
        "epoch": epoch,
        "iteration": loop.iteration,
        "total_iters": budget.total_iters,
        "run_length": budget.length.state_dict(),
        "budget": budget.time.state_dict() if budget.time is not None else None,
        "best_metric": loop.best_metric,
        "best_iteration": loop.best_iteration,
        "bad_evals": loop.bad_evals,
        "last_val": loop.last_val,
        "class_names": data.class_names,
        "palette": data.palette,
        "command": launch_command(),  # the model card's provenance: what trained it, and on what
        "machine": machine_description(run_device),
    }


def read_resume(path: Path) -> tuple[dict[str, Any], Path]:
    """The checkpoint `--resume` names (a run folder means its last.pt) and its path, read before anything
    is built or written."""
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise ResegError(
            f"nothing to resume: {path} not found (train without --resume first, or pass the "
            f"checkpoint path: --resume PATH)"
        )
    return load_checkpoint(path), path


def check_compatible(state: dict[str, Any], path: Path, model_cfg: Any, class_names: list[str]) -> None:
    """Refuse a checkpoint of another architecture or class set, saying exactly what differs."""
    old_model = (state.get("config") or {}).get("model", {})
    diffs = [
        f"model.{k}: checkpoint {old_model.get(k)!r}, config {getattr(model_cfg, k)!r}"
        for k in ARCH_KEYS
        if k in old_model and old_model.get(k) != getattr(model_cfg, k, None)
    ]
    old_names = list(state.get("class_names") or [])
    if old_names and old_names != class_names:
        diffs.append(
            f"classes: checkpoint {len(old_names)} ({', '.join(old_names[:4])}...), "
            f"dataset {len(class_names)} ({', '.join(class_names[:4])}...)"
        )
    if diffs:
        raise ResegError(
            f"cannot resume from {path}: it was trained with a different model or classes; " + "; ".join(diffs)
        )


def restore_weights(opt: Optimisation, state: dict[str, Any], path: Path) -> None:
    """The trained weights and the average; either side may have train.ema_decay off."""
    # with an average, "model" holds it and "raw_model" the trained weights the run continues from
    averaged = "raw_model" in state
    try:
        opt.model_bare.load_state_dict(state["raw_model"] if averaged else state["model"])
        if opt.ema is not None and averaged:
            opt.ema.load(state["model"], state.get("ema"))
    except RuntimeError as err:
        raise ResegError(f"checkpoint {path} does not fit this model: {str(err).splitlines()[0][:300]} ...") from None
    if opt.ema is not None and not averaged:
        opt.ema.restart_from(opt.model_bare)
        LOG.info(
            "train.ema_decay=%g: %s holds no weight average; the average starts from its weights", opt.ema.decay, path
        )
    elif averaged and opt.ema is None:
        LOG.info("train.ema_decay is 0: continuing from the trained weights in %s; its average is dropped", path)


def restore_optimisation(opt: Optimisation, state: dict[str, Any], path: Path) -> None:
    """The optimiser, the schedule and the grad scaler."""
    try:
        opt.optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as err:
        raise ResegError(
            f"optimizer state in {path} does not match this config's optimizer/parameter groups "
            f"({err}); were optim.name or model.freeze_encoder changed?"
        ) from None
    opt.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])


def restore_budget(budget: RunBudget, saved: dict[str, Any] | None, run_length: dict[str, Any] | None) -> None:
    """A budgeted run keeps the length it fixed (and its schedule's knots) and is charged what it already spent."""
    if budget.time is None or not saved:
        return
    budget.time.load_state_dict(saved)
    if budget.time.plan is not None:
        if run_length:
            budget.length.load_state_dict(run_length)
        else:  # a checkpoint from before the knots were saved
            budget.length.change(0, budget.time.plan.planned_iters)
        LOG.info(
            "time budget %s: %s already spent; the run keeps its length of %d iterations",
            format_duration(budget.time.seconds),
            format_duration(budget.time.spent_before),
            budget.total_iters,
        )


def restore_rng(rng: Any, dist: dist_utils.DistInfo) -> None:
    """This rank's RNG states (rank 0's when the number of processes changed)."""
    if isinstance(rng, list):
        set_rng_state(rng[dist.rank] if len(rng) == dist.world_size else rng[0])
    elif isinstance(rng, dict):
        set_rng_state(rng)


def warn_if_order_differs(saved: dict[str, Any], sampler: EpochBatchSampler) -> None:
    """A changed seed, set size, batch size, process count or sampling distribution changes the data order: say so."""
    now = sampler.state_dict()
    keys = ("seed", "length", "batch_size", "world_size", "weights")
    differs = [k for k in keys if k in saved and saved[k] != now[k]]
    if differs:
        LOG.warning(
            "data order differs from the checkpoint's (%s): the resumed run is not an exact continuation",
            ", ".join(f"{k} {saved[k]} -> {now[k]}" for k in differs),
        )
