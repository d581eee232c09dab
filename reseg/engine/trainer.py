"""The training loop, in the style of torchvision's references: small named pieces, read one at a time.

- `Trainer._setup_*`: process (DDP, device, seeds), work dir, data, model, optimisation, time budget.
- `Trainer.train_one_step`: forward under autocast, the DDP-exact loss, the NaN guard, backward, step.
- `Trainer._end_of_iteration`: calibration and the one re-plan of a time budget, validation
  (reseg.evaluation, the same path as `reseg evaluate`), best checkpoint, early stop, time budget and the
  checkpoint policy.

With train.ema_decay, validation scores a moving average of the weights (reseg.engine.ema), and
checkpoints hold it as "model" (what evaluate, predict, export and init_from read) and the trained
weights as "raw_model" (what a resumed run continues from).

What it guarantees: the data order and every augmentation are pure functions of (seed, epoch, sample
index) and the checkpoint carries every other piece of state, so a run killed at any moment and
resumed from `last.pt` continues exactly; checkpoints are written atomically; a non-finite loss stops
the run before it reaches the weights; only rank 0 writes anything.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from reseg.config import Config, architecture_keys, dump_config
from reseg.data import build_loader
from reseg.engine import distributed as dist_utils
from reseg.engine.budget import TimeBudget, format_duration, parse_duration
from reseg.engine.checkpoint import init_weights, load_checkpoint, save_checkpoint
from reseg.engine.ema import WeightEMA
from reseg.engine.samplers import EpochBatchSampler, ShardSampler
from reseg.engine.logger import (MetricLogger, MetricsLog, TensorBoardSink, close_logging, hms, jsonable,
                                 setup_logging)
from reseg.engine.loss import SegLoss
from reseg.engine.optim import RunLength, build_optimizer, build_scheduler
from reseg.engine.reproducibility import (SeededView, configure_determinism, get_rng_state, seed_everything,
                                          set_rng_state)
from reseg.errors import ResegError
from reseg.evaluation import evaluate_split
from reseg.io import check_output_dir
from reseg.runtime import amp_dtype, autocast, memory_format, place_model, resolve_device

LOG = logging.getLogger("reseg.train")

# Model-config keys that change the architecture: a checkpoint must agree on all of them to resume.
ARCH_KEYS = architecture_keys()
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")  # a work dir holding one of these holds a run
NO_LIMIT = 10**9  # the provisional length of a budgeted run with no max_iters/epochs, until calibrated


class NonFiniteLossError(ResegError):
    """The loss became NaN or infinite; the message names the iteration and the checkpoint kept."""


def _build_dataset(cfg: Config, split: str, generate: bool, transform: Any = "auto") -> Dataset:
    from reseg.data import build_dataset

    return build_dataset(cfg, split, transform=transform, generate=generate)  # only training may generate data


def check_work_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run never silently replaces an earlier one: refuse unless --resume or --overwrite."""
    check_output_dir(work_dir, "--work-dir")
    held = [name for name in RUN_FILES if (work_dir / name).exists()]
    if held and not resume and not overwrite:
        raise ResegError(f"{work_dir} already holds a run ({', '.join(held)}); continue it with --resume, "
                         f"start again there with --overwrite, or pick another --work-dir")


class Trainer:
    """Builds everything from a config, trains, validates, checkpoints; `fit()` runs it.

    Only rank 0 writes to `work_dir`: config.yaml, last.pt, best.pt, train.log, metrics.jsonl and
    TensorBoard events under tensorboard/. `clock` (seconds, monotonic) drives the time budget.
    """

    def __init__(self, cfg: Config, work_dir: str | Path, resume: str | Path | None = None,
                 progress: bool | None = None, overwrite: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = copy.deepcopy(cfg)
        self.work_dir = Path(work_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.progress = progress  # None: show the bar when stderr is a terminal
        self.clock = clock
        self.tensorboard: TensorBoardSink | None = None

    # ================================================================ setup
    def _setup(self) -> None:
        resume_state = self._read_resume(Path(self.resume)) if self.resume else None  # before any file is made
        self._setup_work_dir()
        self._setup_data()
        self._setup_model(resuming=resume_state is not None)
        self._setup_optimization()
        self._setup_budget()
        self.iteration = 0
        self.best_metric: float | None = None
        self.best_iteration: int | None = None
        self.bad_evals = 0
        self.last_saved: int | None = None
        self.last_val: dict[str, Any] | None = None
        if resume_state is not None:
            self._check_compatible(resume_state, resume_state["_path"])
            self._apply_resume(resume_state)
        if self.main:
            dump_config(self.cfg, self.work_dir / "config.yaml")
            self._open_outputs()

    def _setup_process(self) -> None:
        """DDP (under torchrun), the device, determinism and seeds."""
        cfg = self.cfg
        want = (cfg.train.device or "auto").lower()
        device_type = resolve_device(want).type if not want.startswith("cuda") else "cuda"
        world = dist_utils.env_world()[1]
        self.dist = dist_utils.init_distributed(device_type) if world > 1 else dist_utils.DistInfo()
        self.device = resolve_device(want, self.dist.local_rank)
        self.main = self.dist.is_main
        configure_determinism(cfg.train.deterministic, self.device)
        seed_everything(cfg.train.seed + self.dist.rank)

    def _setup_work_dir(self) -> None:
        problem = None
        if self.main:
            try:
                check_work_dir(self.work_dir, resume=bool(self.resume), overwrite=self.overwrite)
            except ResegError as err:
                problem = str(err)
        problem = dist_utils.broadcast_object(problem)  # every rank stops, not only rank 0
        if problem:
            raise ResegError(problem)
        if self.main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            for stale in [*self.work_dir.glob(".*.partial.pt"), *self.work_dir.glob(".*.pt.*.tmp")]:
                stale.unlink(missing_ok=True)  # left by a run killed while saving
            if self.overwrite and not self.resume:
                for name in RUN_FILES:
                    (self.work_dir / name).unlink(missing_ok=True)
        dist_utils.barrier()
        setup_logging(self.work_dir if self.main else None)
        if self.main and self.overwrite and not self.resume:
            LOG.info("--overwrite: starting a new run in %s", self.work_dir)

    def _setup_data(self) -> None:
        cfg = self.cfg
        # rank 0 first, and the only one that may generate the synthetic set (no other writer)
        self.train_set = dist_utils.main_first(lambda: _build_dataset(cfg, cfg.data.train_split, self.main),
                                               "building the training set")
        # validation reads full-size images and labels, like `reseg evaluate`
        self.val_set = _build_dataset(cfg, cfg.data.val_split, self.main, transform=None)
        classes = self.train_set.classes
        self.class_names = list(classes.names)
        self.palette = [list(map(int, c)) for c in classes.palette]
        n = len(self.class_names)
        if cfg.model.num_classes is None:
            cfg.model.num_classes = n
        elif cfg.model.num_classes != n:
            raise ResegError(f"model.num_classes is {cfg.model.num_classes} but dataset {cfg.data.dataset!r} has "
                             f"{n} classes ({', '.join(self.class_names[:5])}...); remove model.num_classes "
                             f"or make them agree")
        self.num_classes = n
        self.sampler = EpochBatchSampler(len(self.train_set), cfg.data.batch_size, seed=cfg.train.seed,
                                         shuffle=True, rank=self.dist.rank, world_size=self.dist.world_size)
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        if self.iters_per_epoch == 0:
            raise ResegError(f"the {cfg.data.train_split!r} split has {len(self.train_set)} images, fewer than one "
                             f"global batch of {self.sampler.global_batch()} (data.batch_size x processes)")
        self.train_loader = build_loader(SeededView(self.train_set), cfg, train=True, batch_sampler=self.sampler,
                                         generator=torch.Generator().manual_seed(cfg.train.seed))
        self.val_indices = list(ShardSampler(len(self.val_set), self.dist.rank, self.dist.world_size))

    def _setup_model(self, resuming: bool = False) -> None:
        from reseg.models import build_model

        cfg = self.cfg
        model = build_model(cfg)
        if cfg.train.init_from and not resuming:  # a resumed run's own weights replace these anyway
            init_weights(model, cfg.train.init_from)
        model = place_model(model, self.device, cfg.train.channels_last)
        self.model_bare = dist_utils.maybe_sync_bn(model, cfg.model.sync_bn)
        self.model = dist_utils.wrap_ddp(self.model_bare, self.device)
        # after DDP's wrap: every rank's average starts from the same (rank 0's) weights
        self.ema = WeightEMA(self.model_bare, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        # None when AMP is off, or asked for on a CPU without native bf16 (amp_dtype warns then)
        self.amp_dtype = amp_dtype(bool(cfg.train.amp), self.device, training=True)
        self.memory_format = memory_format(cfg.train.channels_last)

    def _setup_optimization(self) -> None:
        cfg = self.cfg
        t = cfg.train
        self.upper_bound = (t.epochs * self.iters_per_epoch if t.epochs is not None
                            else int(t.max_iters) if t.max_iters is not None else None)
        # the schedule reads the run length when it is used: a time budget fixes it after calibrating
        self.run_length = RunLength(self.upper_bound if self.upper_bound is not None else NO_LIMIT,
                                    self.iters_per_epoch if cfg.sched.by_epoch else 1)
        self.optimizer = build_optimizer(cfg, self.model_bare)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.run_length, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.criterion = SegLoss(self.num_classes, cfg.loss.ignore_index, self._class_weights(),
                                 cfg.loss.dice_weight, cfg.loss.lovasz_weight,
                                 cfg.loss.label_smoothing).to(self.device)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    @property
    def total_iters(self) -> int:
        """The run's length: the config's, or what the time budget fixed (self.run_length)."""
        return self.run_length.total

    def _setup_budget(self) -> None:
        seconds = parse_duration(self.cfg.train.time_budget)
        self.budget = TimeBudget(seconds, clock=self.clock) if seconds is not None else None

    def _class_weights(self) -> torch.Tensor | None:
        method = self.cfg.data.class_weights
        if method == "none":
            return None
        from reseg.data.balance import class_weights

        # rank 0 computes and caches; the others receive its weights (or its error, named)
        weights = torch.tensor(dist_utils.run_on_main(
            lambda: class_weights(self.train_set, method, self.work_dir, progress=self._show_bar()).tolist(),
            "class statistics"))
        LOG.info("class weights (%s): %s", method, ", ".join(f"{w:.3f}" for w in weights.tolist()))
        return weights.float()

    def _open_outputs(self) -> None:
        self.metrics_log = MetricsLog(self.work_dir / "metrics.jsonl")
        if self.iteration > 0:
            self.metrics_log.keep_until(self.iteration)  # drop records past the checkpoint resumed from
        else:
            self.metrics_log.clear()
        self.tensorboard = TensorBoardSink(self.work_dir / "tensorboard", purge_step=self.iteration + 1)

    # ================================================================ checkpoints
    def _read_resume(self, path: Path) -> dict[str, Any]:
        """Load the checkpoint before anything is built or written."""
        if path.is_dir():
            path = path / "last.pt"
        if not path.is_file():
            raise ResegError(f"nothing to resume: {path} not found (train without --resume first, or pass the "
                             f"checkpoint path: --resume PATH)")
        state = load_checkpoint(path)
        state["_path"] = path
        return state

    def _check_compatible(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another architecture or class set, saying exactly what differs."""
        old_model = (state.get("config") or {}).get("model", {})
        new_model = self.cfg.model
        diffs = [f"model.{k}: checkpoint {old_model.get(k)!r}, config {getattr(new_model, k)!r}"
                 for k in ARCH_KEYS if k in old_model and old_model.get(k) != getattr(new_model, k, None)]
        old_names = list(state.get("class_names") or [])
        if old_names and old_names != self.class_names:
            diffs.append(f"classes: checkpoint {len(old_names)} ({', '.join(old_names[:4])}...), "
                         f"dataset {len(self.class_names)} ({', '.join(self.class_names[:4])}...)")
        if diffs:
            raise ResegError(f"cannot resume from {path}: it was trained with a different model or classes; "
                             + "; ".join(diffs))

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model validation scores and checkpoints hold as "model": the weight average when
        train.ema_decay is on, else the trained weights themselves."""
        return self.ema.module if self.ema is not None else self.model_bare

    def _apply_resume(self, state: dict[str, Any]) -> None:
        path = state.pop("_path")
        # with an average, "model" holds it and "raw_model" the trained weights the run continues from
        averaged = "raw_model" in state
        try:
            self.model_bare.load_state_dict(state["raw_model"] if averaged else state["model"])
            if self.ema is not None and averaged:
                self.ema.load(state["model"], state.get("ema"))
        except RuntimeError as err:
            raise ResegError(f"checkpoint {path} does not fit this model: {str(err).splitlines()[0][:300]} ...") \
                from None
        if self.ema is not None and not averaged:
            self.ema.restart_from(self.model_bare)
            LOG.info("train.ema_decay=%g: %s holds no weight average; the average starts from its weights",
                     self.ema.decay, path)
        elif averaged and self.ema is None:
            LOG.info("train.ema_decay is 0: continuing from the trained weights in %s; its average is dropped", path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            raise ResegError(f"optimizer state in {path} does not match this config's optimizer/parameter groups "
                             f"({err}); were optim.name or model.freeze_encoder changed?") from None
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.best_metric = state.get("best_metric")
        self.best_iteration = state.get("best_iteration")
        self.bad_evals = int(state.get("bad_evals", 0))
        self.last_val = state.get("last_val")
        self.last_saved = self.iteration
        self._resume_budget(state.get("budget"), state.get("run_length"))
        rng = state.get("rng")
        if isinstance(rng, list):
            set_rng_state(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
        elif isinstance(rng, dict):
            set_rng_state(rng)
        old = state.get("sampler") or {}
        now = self.sampler.state_dict()
        differs = [k for k in ("seed", "length", "batch_size", "world_size") if k in old and old[k] != now[k]]
        if differs:
            LOG.warning("data order differs from the checkpoint's (%s): the resumed run is not an exact "
                        "continuation", ", ".join(f"{k} {old[k]} -> {now[k]}" for k in differs))
        LOG.info("resumed from %s at iteration %d (epoch %d)", path, self.iteration,
                 self.iteration // self.iters_per_epoch)

    def _resume_budget(self, saved: dict[str, Any] | None, run_length: dict[str, Any] | None) -> None:
        """A budgeted run keeps the length it fixed (and its schedule's knots) and is charged what it
        already spent."""
        if self.budget is None or not saved:
            return
        self.budget.load_state_dict(saved)
        if self.budget.plan is not None:
            if run_length:
                self.run_length.load_state_dict(run_length)
            else:  # a checkpoint from before the knots were saved
                self.run_length.change(0, self.budget.plan.planned_iters)
            LOG.info("time budget %s: %s already spent; the run keeps its length of %d iterations",
                     format_duration(self.budget.seconds), format_duration(self.budget.spent_before),
                     self.total_iters)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see the checkpoint format in DESIGN.md)."""
        rng = dist_utils.all_gather_object(get_rng_state())
        return {
            "config": self.cfg.to_dict(),
            "model": self.eval_model.state_dict(),
            **({"raw_model": self.model_bare.state_dict(), "ema": self.ema.state_dict()} if self.ema is not None
               else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng if len(rng) > 1 else rng[0],
            "sampler": {**self.sampler.state_dict(), "epoch": self.iteration // self.iters_per_epoch,
                        "start_batch": self.iteration % self.iters_per_epoch},
            "epoch": self.iteration // self.iters_per_epoch,
            "iteration": self.iteration,
            "total_iters": self.total_iters,
            "run_length": self.run_length.state_dict(),
            "budget": self.budget.state_dict() if self.budget is not None else None,
            "best_metric": self.best_metric,
            "best_iteration": self.best_iteration,
            "bad_evals": self.bad_evals,
            "last_val": self.last_val,
            "class_names": self.class_names,
            "palette": self.palette,
        }

    def _weights_finite(self) -> bool:
        ok = torch.tensor(all(bool(torch.isfinite(p).all()) for p in self.model_bare.parameters()),
                          dtype=torch.float32, device=self.device)
        return bool(dist_utils.all_reduce_sum(1 - ok).item() == 0)

    def save(self, name: str = "last.pt") -> None:
        """Collective (RNG states are gathered); rank 0 writes atomically."""
        if not self._weights_finite():
            raise NonFiniteLossError(f"the weights became non-finite by iteration {self.iteration}; not saving. "
                                     f"{self._kept_message()}")
        state = self.state_dict()
        if self.main:
            save_checkpoint(state, self.work_dir / name)
        if name == "last.pt":
            self.last_saved = self.iteration

    def _kept_message(self) -> str:
        last = self.work_dir / "last.pt"
        if self.last_saved is not None and last.exists():
            return (f"The last good checkpoint is {last} (iteration {self.last_saved}); lower optim.lr, set "
                    f"optim.grad_clip or check the data, then resume with --resume.")
        return "No checkpoint was written yet; lower optim.lr, set optim.grad_clip or check the data."

    # ================================================================ one step
    def train_one_step(self, batch: dict[str, Any]) -> float:
        """Forward, loss (mean over every labelled pixel of the global batch), NaN guard, backward, step."""
        images = batch["image"].to(self.device, non_blocking=True, memory_format=self.memory_format)
        masks = batch["mask"].to(self.device, non_blocking=True).long()
        with autocast(self.device, self.amp_dtype):
            logits = self.model(images)
        denominator = None
        if self.dist.enabled:  # every rank divides by the global count, so DDP's mean is the global mean
            denominator = dist_utils.all_reduce_sum(self.criterion.ce_denominator(masks)) / self.dist.world_size
        loss = self.criterion(logits, masks, denominator)
        loss_value = float(dist_utils.all_reduce_sum(loss.detach().clone()) / self.dist.world_size)
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(f"the loss became {loss_value} at iteration {self.iteration + 1} "
                                     f"(epoch {self.iteration // self.iters_per_epoch}); stopping before it "
                                     f"reaches the weights. " + self._kept_message())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model_bare)
        return loss_value

    # ================================================================ validation
    def _predictor(self) -> Any:
        from reseg.predictor import Predictor

        return Predictor.from_config(self.eval_model, self.cfg, self.class_names, self.palette, self.device,
                                     amp=self.amp_dtype or False, channels_last=self.cfg.train.channels_last)

    def validate(self, indices: list[int] | None = None, workers: int | None = None) -> dict[str, Any]:
        """Scores of this split through reseg.evaluation, the path `reseg evaluate` takes (all ranks summed)."""
        was_training = self.model_bare.training
        try:
            result = evaluate_split(self._predictor(), self.val_set,
                                    indices=self.val_indices if indices is None else indices,
                                    workers=self.cfg.data.num_workers if workers is None else workers,
                                    batch_size=self.cfg.data.val_batch_size,
                                    progress=self._show_bar(), dataset_name=self.cfg.data.dataset,
                                    class_names=self.class_names, quiet=True)
        finally:
            self.model_bare.train(was_training)
        return result.metrics

    def run_validation(self) -> dict[str, Any]:
        """Validate, then log the record to metrics.jsonl, TensorBoard and the console."""
        from reseg.report import scalars, summary_line

        metrics = self.validate()
        self.last_val = jsonable(metrics)
        self._record({"type": "val", "iter": self.iteration, "epoch": self.iteration // self.iters_per_epoch,
                      **self.last_val})
        if self.tensorboard is not None:
            self.tensorboard.scalars("val", scalars(metrics), self.iteration)
        LOG.info("val @ %d: %s", self.iteration, summary_line(metrics))
        if self.main:
            LOG.info("  per-class IoU: %s", "  ".join(
                f"{k} {v['IoU']:.3f}" if v.get("IoU") is not None else f"{k} -"
                for k, v in (metrics.get("per_class") or {}).items()))
        return metrics

    def _track_best(self, miou: float | None) -> bool:
        """Save best.pt on a new best mIoU; True when early stopping asks the run to end."""
        if miou is not None and (self.best_metric is None or miou > self.best_metric):
            self.best_metric, self.best_iteration, self.bad_evals = float(miou), self.iteration, 0
            self.save("best.pt")
            LOG.info("new best mIoU %.4f -> %s", miou, self.work_dir / "best.pt")
            return False
        self.bad_evals += 1
        patience = self.cfg.train.early_stop_patience
        if patience and self.bad_evals >= patience:
            LOG.info("early stop: no mIoU gain in %d validations (best %.4f at iteration %s)",
                     self.bad_evals, self.best_metric or 0.0, self.best_iteration)
            return True
        return False

    # ================================================================ the time budget
    def _calibrate(self) -> None:
        """Fix a budgeted run's length from the measured step time and the cost of a validation."""
        budget = self.budget
        sample = self.val_indices[: max(1, min(4, len(self.val_indices)))]
        # one image first, untimed: the first validation pays one-off costs (CUDA kernel compiles, cuDNN's
        # algorithm search) that would otherwise be scaled up with the sample (7x the real cost on one GPU)
        self.validate(sample[:1], workers=0)
        t0 = self.clock()
        self.validate(sample, workers=0)  # no worker start-up in the sample: it would be scaled up
        val_s = (self.clock() - t0) * len(self.val_indices) / max(1, len(sample))
        plan = budget.fix_length(self.iteration, val_s, self._val_every(), self.upper_bound,
                                 self.sampler.global_batch())
        plan = dist_utils.broadcast_object(plan)  # every rank runs the same number of iterations
        budget.plan = plan
        self.run_length.change(self.iteration, plan.planned_iters)
        LOG.info("time budget %s: %d iterations at %.1f img/s (%.2f s each; one validation %.1f s, every %d); "
                 "%s spent calibrating%s", format_duration(budget.seconds), plan.planned_iters, plan.img_s,
                 plan.iter_s, plan.val_s, self.cfg.train.val_interval, format_duration(budget.spent()),
                 f"; it re-plans at iteration {plan.replan_at}" if plan.replan_at is not None else "")

    def _replan(self) -> None:
        """Fix a budgeted run's length again from its steady pace (see reseg.engine.budget)."""
        budget, before = self.budget, self.total_iters
        plan = budget.replan(self.iteration, self._val_every(), self.upper_bound, self.sampler.global_batch())
        plan = dist_utils.broadcast_object(plan)  # every rank keeps running the same number of iterations
        budget.plan = plan
        self.run_length.change(self.iteration, plan.planned_iters)
        LOG.info("time budget %s re-planned at iteration %d: %d iterations instead of %d (steady pace %.1f img/s, "
                 "%.2f s each; one validation %.1f s); %s spent", format_duration(budget.seconds), self.iteration,
                 plan.planned_iters, before, plan.img_s, plan.iter_s, plan.val_s, format_duration(budget.spent()))

    def _val_every(self) -> int:
        """train.val_interval in iterations (it counts epochs with train.by_epoch)."""
        t = self.cfg.train
        return t.val_interval * self.iters_per_epoch if t.by_epoch else t.val_interval

    def _out_of_time(self) -> bool:
        """True when what is left of the budget covers only the final validation and save."""
        budget = self.budget
        if budget is None:
            return False
        # room for one more step at the pace of the last one, then the final validation
        reserve = budget.plan.val_s + max(budget.plan.iter_s, budget.last_step_s) if budget.plan is not None else 0.0
        stop = budget.must_stop(reserve)
        return bool(dist_utils.broadcast_object(stop))  # all ranks stop at the same iteration

    # ================================================================ the loop
    def _log_start(self) -> None:
        if not self.main:
            return
        cfg = self.cfg
        trainable = sum(p.numel() for p in self.model_bare.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model_bare.parameters())
        length = (f"time budget {format_duration(self.budget.seconds)} (length fixed after calibrating"
                  + (f", at most {self.upper_bound}" if self.upper_bound else "") + ")"
                  if self.budget is not None and self.budget.plan is None else f"{self.total_iters} iterations")
        LOG.info("work dir %s | device %s x%d | %s: %d train / %d val images, %d classes | model %s "
                 "(%.2fM params, %.2fM trainable) | %s (%d per epoch), global batch %d%s",
                 self.work_dir, self.device, self.dist.world_size, cfg.data.dataset, len(self.train_set),
                 len(self.val_set), self.num_classes, cfg.model.name, total / 1e6, trainable / 1e6, length,
                 self.iters_per_epoch, self.sampler.global_batch(),
                 f" | AMP {self.amp_dtype}" if self.amp_dtype is not None else "")

    def _record(self, rec: dict[str, Any]) -> None:
        if self.main:
            self.metrics_log.append(rec)

    def _show_bar(self) -> bool:
        if not self.main:
            return False
        return self.progress if self.progress is not None else sys.stderr.isatty()

    def _due(self, interval: int) -> bool:
        """True when an interval (iterations, or epochs with train.by_epoch) ends at this iteration."""
        if interval <= 0:
            return False
        if self.cfg.train.by_epoch:
            return (self.iteration % self.iters_per_epoch == 0
                    and (self.iteration // self.iters_per_epoch) % interval == 0)
        return self.iteration % interval == 0

    def _log_train(self, meters: MetricLogger, started: float, started_iter: int) -> None:
        """Every train.log_interval iterations: a metrics.jsonl record, TensorBoard scalars, a log line."""
        lr = max(g["lr"] for g in self.optimizer.param_groups)
        rec = {"type": "train", "iter": self.iteration, "epoch": self.iteration // self.iters_per_epoch,
               "loss": meters.avg("loss"), "lr": lr, "img_per_s": meters.img_per_s(),
               "data_wait": meters.data_wait(), "time": time.time()}
        self._record(rec)
        if self.tensorboard is not None:
            self.tensorboard.scalars("train", {k: rec[k] for k in ("loss", "lr", "img_per_s", "data_wait")},
                                     self.iteration)
        per_iter = (self.clock() - started) / max(1, self.iteration - started_iter)  # validations included
        eta = per_iter * (self.total_iters - self.iteration)
        if self.budget is not None:
            eta = min(eta, max(0.0, self.budget.left()))
        LOG.info("iter %d/%s  epoch %d  loss %.4f  lr %.3e  %.1f img/s  data %.0f%%  eta %s", self.iteration,
                 self.total_iters if self.total_iters != NO_LIMIT else "?", rec["epoch"], rec["loss"], lr,
                 rec["img_per_s"], 100 * rec["data_wait"], hms(eta))

    def _end_of_iteration(self, session_iters: int) -> str:
        """Calibration, validation, best checkpoint, early stop, the budget and last.pt, in that order.
        Returns "running", "finished", "early stopped" or "time budget reached"."""
        t = self.cfg.train
        if self.budget is not None and self.budget.observe(session_iters, self.iteration):
            self._calibrate()
        elif self.budget is not None and self.budget.replan_due(self.iteration):
            self._replan()
        status = "running"
        if self.iteration >= self.total_iters:
            status = "finished"
        elif self._out_of_time():
            status = "time budget reached"
            LOG.warning("time budget %s reached at iteration %d of %d: the schedule was cut short (the machine "
                        "ran slower than planned)", format_duration(self.budget.seconds),
                        self.iteration, self.total_iters)
        if status != "running" or self._due(t.val_interval):
            started = self.clock()
            stop_early = self._track_best(self.run_validation().get("mIoU"))
            if self.budget is not None:
                self.budget.note_validation(self.clock() - started)
            if stop_early and status == "running":
                status = "early stopped"
        if status != "running" or self._due(t.checkpoint_interval):
            self.save("last.pt")
        return status

    def fit(self) -> dict[str, Any]:
        """Train to the end of the schedule (or the time budget), validating and checkpointing on the way."""
        created_group = not dist_utils.is_dist()
        try:
            self._setup_process()
            with dist_utils.failures_end_the_job():  # a failing rank is named on every rank, no hang
                self._setup()
                return self._loop()
        finally:
            self._stop_workers()
            if self.tensorboard is not None:
                self.tensorboard.close()
            close_logging()
            if created_group:
                dist_utils.cleanup()

    def _stop_workers(self) -> None:
        """Stop the persistent data-loader workers now, while the interpreter is whole.

        Left to interpreter exit, every worker's join ran into its 5-second timeout (with CUDA's pin-memory
        thread): a GPU run with 12 workers sat a minute between its last line and its exit."""
        self.train_loader = None
        gc.collect()

    def _loop(self) -> dict[str, Any]:
        self._log_start()
        if self.iteration >= self.total_iters:
            LOG.info("nothing to do: the checkpoint is at iteration %d of %d", self.iteration, self.total_iters)
            return self._result("already finished")
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_iters if self.total_iters != NO_LIMIT else None, initial=self.iteration,
                   desc="train", disable=not self._show_bar(), dynamic_ncols=True, file=sys.stderr)
        meters = MetricLogger(window=max(1, self.cfg.train.log_interval))
        status, session_iters = "running", 0
        self.model.train()
        if self.budget is not None:
            self.budget.start()
        started, started_iter = self.clock(), self.iteration
        try:
            while status == "running":
                epoch, skip = divmod(self.iteration, self.iters_per_epoch)
                self.sampler.set_epoch(epoch, skip)
                tic = time.perf_counter()
                for batch in self.train_loader:
                    data_time = time.perf_counter() - tic
                    loss = self.train_one_step(batch)
                    self.iteration += 1
                    session_iters += 1
                    meters.update(batch["image"].shape[0] * self.dist.world_size, loss=loss, data_time=data_time,
                                  step_time=time.perf_counter() - tic)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{meters.img_per_s():.1f}",
                                    data=f"{100 * meters.data_wait():.0f}%", refresh=False)
                    if self.cfg.train.log_interval > 0 and self.iteration % self.cfg.train.log_interval == 0:
                        self._log_train(meters, started, started_iter)
                    status = self._end_of_iteration(session_iters)
                    if bar.total != self.total_iters and self.total_iters != NO_LIMIT:
                        bar.total = self.total_iters
                    if status != "running":
                        break
                    tic = time.perf_counter()
        except KeyboardInterrupt:
            LOG.warning("interrupted at iteration %d; %s", self.iteration,
                        f"--resume continues from {self.work_dir / 'last.pt'} (iteration {self.last_saved})"
                        if self.last_saved is not None else "no checkpoint was written yet")
            raise
        finally:
            bar.close()
        return self._result(status)

    def _result(self, status: str) -> dict[str, Any]:
        result = {"status": status, "work_dir": str(self.work_dir), "iteration": self.iteration,
                  "total_iters": self.total_iters, "best_mIoU": self.best_metric,
                  "best_iteration": self.best_iteration, "last_val": self.last_val}
        if self.budget is not None:
            result["time_spent_s"] = self.budget.spent()
        LOG.info("%s at iteration %d; best val mIoU %s (iteration %s); outputs in %s", status, self.iteration,
                 f"{self.best_metric:.4f}" if self.best_metric is not None else "-", self.best_iteration,
                 self.work_dir)
        return result


def train(cfg: Config, work_dir: str | Path, resume: str | Path | None = None, progress: bool | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Train `cfg` into `work_dir` (resuming from a checkpoint when given); returns a summary dict."""
    return Trainer(cfg, work_dir, resume=resume, progress=progress, overwrite=overwrite).fit()
