"""The pieces a training run is built from: one frozen dataclass per concern, each returned by its builder.

- `RunContext` (`start_process`, `run_context`): the process's place in the job, its device, AMP, memory format.
- `TrainData` (`build_data`): the training and validation sets, the sampler that fixes the data order, the
  loader, the class list.
- `RunBudget` (`plan_budget`, `time_budget`): how long the run is, in iterations and in seconds.
- `Optimisation` (`build_train_model`, `build_optimisation`): the model as trained, its optimiser, schedule,
  grad scaler, loss and weight average.

The Trainer holds one of each, and anything that needs two of them takes them as arguments, so what a
piece reads is in its signature. The dataclasses are frozen; the objects inside them (a RunLength a time
budget corrects, an optimiser that steps) are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reseg.config import Config
from reseg.data import build_loader
from reseg.engine import distributed as dist_utils
from reseg.engine.budget import TimeBudget, parse_duration
from reseg.engine.checkpoint import init_weights
from reseg.engine.ema import WeightEMA
from reseg.engine.loss import SegLoss
from reseg.engine.optim import RunLength, build_optimizer, build_scheduler
from reseg.engine.reproducibility import SeededView, configure_determinism, seed_everything
from reseg.engine.samplers import EpochBatchSampler, ShardSampler
from reseg.errors import ResegError
from reseg.runtime import amp_dtype, memory_format, place_model, resolve_device

LOG = logging.getLogger("reseg.train")

NO_LIMIT = 10**9  # the provisional length of a budgeted run with no max_iters/epochs, until calibrated


# ================================================================ the process
@dataclass(frozen=True)
class RunContext:
    """Where this process trains and how: its rank in the job, its device, AMP and memory format."""

    dist: dist_utils.DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32 (AMP off, or asked for on a CPU without native bf16)
    memory_format: torch.memory_format

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes anything."""
        return self.dist.is_main


def run_context(cfg: Config, dist: dist_utils.DistInfo, device: torch.device) -> RunContext:
    """The AMP type and memory format train.amp and train.channels_last ask for on `device`."""
    # None when AMP is off, or asked for on a CPU without native bf16 (amp_dtype warns then)
    return RunContext(
        dist, device, amp_dtype(bool(cfg.train.amp), device, training=True), memory_format(cfg.train.channels_last)
    )


def start_process(cfg: Config) -> RunContext:
    """Join the job (DDP under torchrun), pick the device, then fix determinism and this rank's seed."""
    want = (cfg.train.device or "auto").lower()
    device_type = resolve_device(want).type if not want.startswith("cuda") else "cuda"
    world = dist_utils.env_world()[1]
    dist = dist_utils.init_distributed(device_type) if world > 1 else dist_utils.DistInfo()
    device = resolve_device(want, dist.local_rank)
    configure_determinism(cfg.train.deterministic, device)
    seed_everything(cfg.train.seed + dist.rank)
    return run_context(cfg, dist, device)


# ================================================================ the data
@dataclass(frozen=True)
class TrainData:
    """The training and validation sets and what reads them."""

    train_set: Dataset
    val_set: Dataset
    class_names: list[str]
    palette: list[list[int]]
    sampler: EpochBatchSampler  # the data order: a pure function of (seed, epoch), resumable mid-epoch
    loader: DataLoader | None  # None once its workers are stopped
    val_indices: list[int]  # this rank's share of the validation set

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _settle_num_classes(cfg: Config, names: list[str]) -> None:
    """model.num_classes comes from the dataset when the config leaves it out, and must agree when set."""
    n = len(names)
    if cfg.model.num_classes is None:
        cfg.model.num_classes = n
    elif cfg.model.num_classes != n:
        raise ResegError(
            f"model.num_classes is {cfg.model.num_classes} but dataset {cfg.data.dataset!r} has "
            f"{n} classes ({', '.join(names[:5])}...); remove model.num_classes or make them agree"
        )


def _epoch_sampler(
    cfg: Config, length: int, dist: dist_utils.DistInfo, weights: list[float] | None = None
) -> EpochBatchSampler:
    sampler = EpochBatchSampler(
        length,
        cfg.data.batch_size,
        seed=cfg.train.seed,
        shuffle=True,
        rank=dist.rank,
        world_size=dist.world_size,
        weights=weights,
    )
    if sampler.batches_per_epoch() == 0:
        raise ResegError(
            f"the {cfg.data.train_split!r} split has {length} images, fewer than one global batch "
            f"of {sampler.global_batch()} (data.batch_size x processes)"
        )
    return sampler


def sampling_weights(cfg: Config, train_set: Dataset, cache_dir: Path | None, progress: bool) -> list[float] | None:
    """Each training image's chance of a draw under data.rare_class_temperature; None samples uniformly."""
    temperature = cfg.data.rare_class_temperature
    if not temperature:
        return None
    from reseg.data.rare_classes import rare_class_weights

    # rank 0 reads the masks and caches their counts; the others receive its weights (or its error, named)
    weights = dist_utils.run_on_main(
        lambda: rare_class_weights(train_set, temperature, cache_dir, progress), "rare-class sampling weights"
    )
    LOG.info(
        "rare-class sampling (temperature %g): the likeliest image %.1fx the uniform chance, %d never drawn",
        temperature,
        max(weights) * len(weights),
        sum(w == 0 for w in weights),
    )
    return weights


def build_data(cfg: Config, run: RunContext, cache_dir: Path | None = None, progress: bool = False) -> TrainData:
    """Both splits, the sampler and the loader; sets cfg.model.num_classes from the dataset when unset.

    `cache_dir` keeps the per-image class counts rare-class sampling reads (the run's work dir)."""
    # rank 0 first, and the only one that may generate the synthetic set (no other writer)
    from reseg.data import build_dataset, build_training_set

    # only training may generate data; the training set carries the scenes data.synthetic_mix asks for
    train_set = dist_utils.main_first(lambda: build_training_set(cfg, generate=run.main), "building the training set")
    # validation reads full-size images and labels, like `reseg evaluate`
    val_set = build_dataset(cfg, cfg.data.val_split, transform=None, generate=run.main)
    classes = train_set.classes
    names = list(classes.names)
    _settle_num_classes(cfg, names)
    sampler = _epoch_sampler(cfg, len(train_set), run.dist, sampling_weights(cfg, train_set, cache_dir, progress))
    loader = build_loader(
        SeededView(train_set),
        cfg,
        train=True,
        batch_sampler=sampler,
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    return TrainData(
        train_set,
        val_set,
        names,
        [list(map(int, c)) for c in classes.palette],
        sampler,
        loader,
        list(ShardSampler(len(val_set), run.dist.rank, run.dist.world_size)),
    )


def loss_class_weights(cfg: Config, train_set: Dataset, cache_dir: Path, progress: bool) -> torch.Tensor | None:
    """data.class_weights from the training set's statistics (cached in `cache_dir`); None for "none"."""
    method = cfg.data.class_weights
    if method == "none":
        return None
    from reseg.data.balance import class_weights

    # rank 0 computes and caches; the others receive its weights (or its error, named)
    weights = torch.tensor(
        dist_utils.run_on_main(
            lambda: class_weights(train_set, method, cache_dir, progress=progress).tolist(), "class statistics"
        )
    )
    LOG.info("class weights (%s): %s", method, ", ".join(f"{w:.3f}" for w in weights.tolist()))
    return weights.float()


# ================================================================ the run's length
@dataclass(frozen=True)
class RunBudget:
    """How long the run is: `length` is what the schedule reads, the config's length or, with a time budget,
    the one `time` fixes after calibrating and corrects once (RunLength keeps the schedule's knots)."""

    iters_per_epoch: int
    upper_bound: int | None  # train.epochs or train.max_iters in iterations; None: only the time budget ends it
    length: RunLength
    time: TimeBudget | None

    @property
    def total_iters(self) -> int:
        return self.length.total


def time_budget(cfg: Config, clock: Callable[[], float]) -> TimeBudget | None:
    """train.time_budget charged against `clock`; None when the run has none."""
    seconds = parse_duration(cfg.train.time_budget)
    return TimeBudget(seconds, clock=clock) if seconds is not None else None


def plan_budget(cfg: Config, iters_per_epoch: int, time: TimeBudget | None) -> RunBudget:
    """The config's length in iterations; a time budget with no such bound starts at NO_LIMIT."""
    t = cfg.train
    upper_bound = (
        t.epochs * iters_per_epoch if t.epochs is not None else int(t.max_iters) if t.max_iters is not None else None
    )
    length = RunLength(
        upper_bound if upper_bound is not None else NO_LIMIT, iters_per_epoch if cfg.sched.by_epoch else 1
    )
    return RunBudget(iters_per_epoch, upper_bound, length, time)


# ================================================================ the model and its optimisation
@dataclass(frozen=True)
class Optimisation:
    """The model as trained and everything a training step updates."""

    model: nn.Module  # what the step runs: DDP's wrapper under torchrun, else model_bare itself
    model_bare: nn.Module  # the trained weights (checkpoints, the optimiser, the average)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: SegLoss
    params: list[nn.Parameter]  # the optimiser's, for gradient clipping
    ema: WeightEMA | None  # train.ema_decay's weight average

    @property
    def eval_model(self) -> nn.Module:
        """What validation scores and checkpoints hold as "model": the weight average when train.ema_decay is
        on, else the trained weights themselves."""
        return self.ema.module if self.ema is not None else self.model_bare


def build_train_model(cfg: Config, run: RunContext, resuming: bool = False) -> nn.Module:
    """The config's model, initialised from train.init_from, on the device (SyncBatchNorm when asked)."""
    from reseg.models import build_model

    model = build_model(cfg)
    if cfg.train.init_from and not resuming:  # a resumed run's own weights replace these anyway
        init_weights(model, cfg.train.init_from)
    model = place_model(model, run.device, cfg.train.channels_last)
    return dist_utils.maybe_sync_bn(model, cfg.model.sync_bn)


def build_optimisation(
    cfg: Config, run: RunContext, model: nn.Module, budget: RunBudget, class_weights: torch.Tensor | None
) -> Optimisation:
    """DDP's wrapper, the weight average, optimiser, schedule (over budget.length), grad scaler and loss."""
    wrapped = dist_utils.wrap_ddp(model, run.device)
    # after DDP's wrap: every rank's average starts from the same (rank 0's) weights
    ema = WeightEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, budget.length, budget.iters_per_epoch)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp_dtype == torch.float16)
    criterion = SegLoss(
        cfg.model.num_classes,
        cfg.loss.ignore_index,
        class_weights,
        cfg.loss.dice_weight,
        cfg.loss.lovasz_weight,
        cfg.loss.label_smoothing,
    ).to(run.device)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return Optimisation(wrapped, model, optimizer, scheduler, scaler, criterion, params, ema)
