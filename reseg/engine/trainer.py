"""The training loop, in the style of torchvision's references: small named pieces whose inputs are explicit.

- reseg.engine.parts builds a run's pieces, one frozen dataclass per concern: RunContext (process, device,
  AMP), TrainData, RunBudget (the run's length and time budget) and Optimisation (model, optimiser,
  schedule, grad scaler, loss, weight average). A Trainer holds one of each and its LoopState.
- reseg.engine.step: the training step's two halves; `Trainer.train_one_step` puts the NaN guard between them.
- reseg.engine.resume: what a checkpoint holds and how a resumed run gets every piece back.
- reseg.engine.work_dir: a fresh run refuses a work dir that holds one unless --resume or --overwrite.
- `Trainer._end_of_iteration`: calibration and the one re-plan of a time budget, validation
  (reseg.evaluation, the same path as `reseg evaluate`), best checkpoint, early stop, time budget and the
  checkpoint policy.
- `Trainer.for_steps`: a trainer for `train_one_step` alone, the step the benchmarks time.

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
import dataclasses
import gc
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.config import Config, dump_config
from reseg.data.mixing import class_mix
from reseg.engine import distributed as dist_utils
from reseg.engine.budget import BudgetPlan, TimeBudget, format_duration
from reseg.engine.checkpoint import save_checkpoint
from reseg.engine.logger import MetricLogger, RunRecords, close_logging, hms, jsonable
from reseg.engine.parts import (
    NO_LIMIT,
    Optimisation,
    RunBudget,
    RunContext,
    TrainData,
    build_data,
    build_optimisation,
    build_train_model,
    loss_class_weights,
    plan_budget,
    run_context,
    start_process,
    time_budget,
)
from reseg.engine.resume import (
    LoopState,
    check_compatible,
    checkpoint_state,
    read_resume,
    restore_budget,
    restore_optimisation,
    restore_rng,
    restore_weights,
    warn_if_order_differs,
)
from reseg.engine.step import backward_and_step, forward_loss
from reseg.engine.work_dir import kept_message, prepare_work_dir
from reseg.errors import ResegError
from reseg.evaluation import evaluate_split

LOG = logging.getLogger("reseg.train")


class NonFiniteLossError(ResegError):
    """The loss became NaN or infinite; the message names the iteration and the checkpoint kept."""


# ================================================================ small pieces of the loop
def weights_finite(model: nn.Module, device: torch.device) -> bool:
    """True when every rank's weights are finite."""
    ok = torch.tensor(
        all(bool(torch.isfinite(p).all()) for p in model.parameters()), dtype=torch.float32, device=device
    )
    return bool(dist_utils.all_reduce_sum(1 - ok).item() == 0)


def out_of_time(budget: TimeBudget | None) -> bool:
    """True when what is left of the budget covers only the final validation and save (the same on all ranks)."""
    if budget is None:
        return False
    # room for one more step at the pace of the last one, then the final validation
    reserve = budget.plan.val_s + max(budget.plan.iter_s, budget.last_step_s) if budget.plan is not None else 0.0
    stop = budget.must_stop(reserve)
    return bool(dist_utils.broadcast_object(stop))  # all ranks stop at the same iteration


def interval_ends(iteration: int, interval: int, epoch_iters: int | None) -> bool:
    """True when an interval ends at `iteration`: in iterations, or in epochs of `epoch_iters` when given
    (train.by_epoch). An interval of 0 never ends."""
    if interval <= 0:
        return False
    if epoch_iters is not None:
        return iteration % epoch_iters == 0 and (iteration // epoch_iters) % interval == 0
    return iteration % interval == 0


class Trainer:
    """Builds everything from a config, trains, validates, checkpoints; `fit()` runs it.

    Only rank 0 writes to `work_dir`: config.yaml, last.pt, best.pt, train.log, metrics.jsonl and
    TensorBoard events under tensorboard/. `clock` (seconds, monotonic) drives the time budget.
    """

    # built by fit(); for_steps builds these three alone
    run: RunContext
    budget: RunBudget
    opt: Optimisation

    def __init__(
        self,
        cfg: Config,
        work_dir: str | Path,
        resume: str | Path | None = None,
        progress: bool | None = None,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = copy.deepcopy(cfg)
        self.work_dir = Path(work_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.progress = progress  # None: show the bar when stderr is a terminal
        self.clock = clock
        self.data: TrainData | None = None
        self.state = LoopState()
        self.records: RunRecords | None = None  # rank 0's metrics.jsonl and TensorBoard, once open

    @classmethod
    def for_steps(cls, cfg: Config, device: str | torch.device = "cpu") -> Trainer:
        """A trainer ready for `train_one_step` alone, the step a training run takes (placement, AMP, memory
        format, optimiser, schedule, loss, clipping, weight average): no data, no process group, no seeding,
        nothing written. cfg.model.num_classes must be set (a run takes it from its dataset); the loss is
        unweighted, as class weights are dataset statistics (a weighted loss costs the same)."""
        if cfg.model.num_classes is None:
            raise ResegError("Trainer.for_steps needs model.num_classes (a training run takes it from its dataset)")
        trainer = cls(cfg, work_dir=os.devnull)  # a copy of cfg; only fit() creates or writes anything there
        trainer.run = run_context(trainer.cfg, dist_utils.DistInfo(), torch.device(device))
        trainer.budget = plan_budget(trainer.cfg, iters_per_epoch=1, time=None)
        model = build_train_model(trainer.cfg, trainer.run)
        trainer.opt = build_optimisation(trainer.cfg, trainer.run, model, trainer.budget, class_weights=None)
        return trainer

    @property
    def total_iters(self) -> int:
        """The run's length: the config's, or what the time budget fixed."""
        return self.budget.total_iters

    # ================================================================ setup
    def fit(self) -> dict[str, Any]:
        """Train to the end of the schedule (or the time budget), validating and checkpointing on the way."""
        created_group, finished = not dist_utils.is_dist(), False
        try:
            self.run = start_process(self.cfg)
            with dist_utils.failures_end_the_job():  # a failing rank is named on every rank, no hang
                self._setup()
                result = self._loop()
            finished = True
            return result
        finally:
            self._stop_workers()
            if self.records is not None:
                self.records.close()
            close_logging()
            if created_group:
                self._leave_group(finished)

    def _leave_group(self, finished: bool) -> None:
        """Drop DDP's wrapper, then leave the process group this run joined; after a run that ended well,
        every rank first waits for the others.

        DDP's reducer keeps the gloo group alive past destroy_process_group; freed at interpreter exit,
        its threads could abort a rank that had trained to the end (SIGABRT, "terminate called without an
        active exception"), and the whole torchrun job then failed."""
        if getattr(self, "opt", None) is not None and self.opt.model is not self.opt.model_bare:
            self.opt = dataclasses.replace(self.opt, model=self.opt.model_bare)
            gc.collect()
        dist_utils.cleanup(synchronise=finished)

    def _setup(self) -> None:
        """The work dir, then the data, the run's length, the model and its optimisation; a resumed run's state."""
        cfg, run = self.cfg, self.run
        resumed = read_resume(Path(self.resume)) if self.resume else None  # before any file is made
        prepare_work_dir(self.work_dir, run.main, resume=bool(self.resume), overwrite=self.overwrite)
        self.data = build_data(cfg, run, self.work_dir, self._show_bar())
        self.budget = plan_budget(cfg, self.data.sampler.batches_per_epoch(), time_budget(cfg, self.clock))
        model = build_train_model(cfg, run, resuming=resumed is not None)
        weights = loss_class_weights(cfg, self.data.train_set, self.work_dir, self._show_bar())
        self.opt = build_optimisation(cfg, run, model, self.budget, weights)
        if resumed is not None:
            self._resume_from(*resumed)
        if run.main:
            dump_config(cfg, self.work_dir / "config.yaml")
            self.records = RunRecords.open(self.work_dir, self.state.iteration)

    def _resume_from(self, state: dict[str, Any], path: Path) -> None:
        check_compatible(state, path, self.cfg.model, self.data.class_names)
        restore_weights(self.opt, state, path)
        restore_optimisation(self.opt, state, path)
        self.state = LoopState.from_checkpoint(state)
        restore_budget(self.budget, state.get("budget"), state.get("run_length"))
        restore_rng(state.get("rng"), self.run.dist)
        warn_if_order_differs(state.get("sampler") or {}, self.data.sampler)
        LOG.info(
            "resumed from %s at iteration %d (epoch %d)",
            path,
            self.state.iteration,
            self.state.iteration // self.budget.iters_per_epoch,
        )

    def _stop_workers(self) -> None:
        """Stop the persistent data-loader workers now, while the interpreter is whole.

        Left to interpreter exit, every worker's join ran into its 5-second timeout (with CUDA's pin-memory
        thread): a GPU run with 12 workers sat a minute between its last line and its exit."""
        if self.data is not None:
            self.data = dataclasses.replace(self.data, loader=None)
        gc.collect()

    # ================================================================ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (reseg.engine.resume); collective."""
        return checkpoint_state(self.cfg, self.opt, self.data, self.budget, self.state, self.run.device)

    def save(self, name: str = "last.pt") -> None:
        """Collective (RNG states are gathered); rank 0 writes atomically."""
        if not weights_finite(self.opt.model_bare, self.run.device):
            raise NonFiniteLossError(
                f"the weights became non-finite by iteration {self.state.iteration}; not "
                f"saving. {kept_message(self.work_dir, self.state.last_saved)}"
            )
        state = self.state_dict()
        if self.run.main:
            save_checkpoint(state, self.work_dir / name)
        if name == "last.pt":
            self.state.last_saved = self.state.iteration

    # ================================================================ one step
    def train_one_step(self, batch: dict[str, Any]) -> float:
        """Forward, loss (mean over every labelled pixel of the global batch), NaN guard, backward, step."""
        if self.cfg.data.class_mix:
            images, masks = class_mix(batch["image"], batch["mask"], self.cfg.data.class_mix)
            batch = {**batch, "image": images, "mask": masks}
        loss, value = forward_loss(self.opt.model, self.opt.criterion, batch, self.run)
        if not math.isfinite(value):
            it = self.state.iteration
            raise NonFiniteLossError(
                f"the loss became {value} at iteration {it + 1} (epoch "
                f"{it // self.budget.iters_per_epoch}); stopping before it reaches the "
                f"weights. " + kept_message(self.work_dir, self.state.last_saved)
            )
        backward_and_step(self.opt, loss, self.cfg.optim.grad_clip)
        return value

    # ================================================================ validation
    def _predictor(self) -> Any:
        from reseg.predictor import Predictor

        return Predictor.from_config(
            self.opt.eval_model,
            self.cfg,
            self.data.class_names,
            self.data.palette,
            self.run.device,
            amp=self.run.amp_dtype or False,
            channels_last=self.cfg.train.channels_last,
        )

    def validate(self, indices: list[int] | None = None, workers: int | None = None) -> dict[str, Any]:
        """Scores of this split through reseg.evaluation, the path `reseg evaluate` takes (all ranks summed)."""
        data, model = self.data, self.opt.model_bare
        was_training = model.training
        try:
            result = evaluate_split(
                self._predictor(),
                data.val_set,
                indices=data.val_indices if indices is None else indices,
                workers=self.cfg.data.num_workers if workers is None else workers,
                batch_size=self.cfg.data.val_batch_size,
                progress=self._show_bar(),
                dataset_name=self.cfg.data.dataset,
                class_names=data.class_names,
                quiet=True,
            )
        finally:
            model.train(was_training)
        return result.metrics

    def run_validation(self) -> dict[str, Any]:
        """Validate, then log the record to metrics.jsonl, TensorBoard and the console."""
        from reseg.report import scalars, summary_line

        metrics = self.validate()
        it = self.state.iteration
        self.state.last_val = jsonable(metrics)
        self._record(
            {"type": "val", "iter": it, "epoch": it // self.budget.iters_per_epoch, **self.state.last_val},
            scalars(metrics),
        )
        LOG.info("val @ %d: %s", it, summary_line(metrics))
        if self.run.main:
            LOG.info(
                "  per-class IoU: %s",
                "  ".join(
                    f"{k} {v['IoU']:.3f}" if v.get("IoU") is not None else f"{k} -"
                    for k, v in (metrics.get("per_class") or {}).items()
                ),
            )
        return metrics

    def _track_best(self, miou: float | None) -> bool:
        """Save best.pt on a new best mIoU; True when early stopping asks the run to end."""
        s = self.state
        if miou is not None and (s.best_metric is None or miou > s.best_metric):
            s.best_metric, s.best_iteration, s.bad_evals = float(miou), s.iteration, 0
            self.save("best.pt")
            LOG.info("new best mIoU %.4f -> %s", miou, self.work_dir / "best.pt")
            return False
        s.bad_evals += 1
        patience = self.cfg.train.early_stop_patience
        if patience and s.bad_evals >= patience:
            LOG.info(
                "early stop: no mIoU gain in %d validations (best %.4f at iteration %s)",
                s.bad_evals,
                s.best_metric or 0.0,
                s.best_iteration,
            )
            return True
        return False

    def _validate_and_track(self) -> bool:
        """Validate, keep best.pt and charge the validation to the budget; True when early stopping ends the run."""
        started = self.clock()
        stop_early = self._track_best(self.run_validation().get("mIoU"))
        if self.budget.time is not None:
            self.budget.time.note_validation(self.clock() - started)
        return stop_early

    # ================================================================ the time budget
    def _calibrate(self) -> None:
        """Fix a budgeted run's length from the measured step time and the cost of a validation."""
        indices = self.data.val_indices
        sample = indices[: max(1, min(4, len(indices)))]
        # one image first, untimed: the first validation pays one-off costs (CUDA kernel compiles, cuDNN's
        # algorithm search) that would otherwise be scaled up with the sample (7x the real cost on one GPU)
        self.validate(sample[:1], workers=0)
        t0 = self.clock()
        self.validate(sample, workers=0)  # no worker start-up in the sample: it would be scaled up
        val_s = (self.clock() - t0) * len(indices) / max(1, len(sample))
        budget = self.budget.time
        plan = self._adopt(
            budget.fix_length(
                self.state.iteration,
                val_s,
                self._val_every(),
                self.budget.upper_bound,
                self.data.sampler.global_batch(),
            )
        )
        LOG.info(
            "time budget %s: %d iterations at %.1f img/s (%.2f s each; one validation %.1f s, every %d); "
            "%s spent calibrating%s",
            format_duration(budget.seconds),
            plan.planned_iters,
            plan.img_s,
            plan.iter_s,
            plan.val_s,
            self.cfg.train.val_interval,
            format_duration(budget.spent()),
            f"; it re-plans at iteration {plan.replan_at}" if plan.replan_at is not None else "",
        )

    def _replan(self) -> None:
        """Fix a budgeted run's length again from its steady pace (see reseg.engine.budget)."""
        budget, before, it = self.budget.time, self.total_iters, self.state.iteration
        plan = self._adopt(
            budget.replan(it, self._val_every(), self.budget.upper_bound, self.data.sampler.global_batch())
        )
        LOG.info(
            "time budget %s re-planned at iteration %d: %d iterations instead of %d (steady pace %.1f img/s, "
            "%.2f s each; one validation %.1f s); %s spent",
            format_duration(budget.seconds),
            it,
            plan.planned_iters,
            before,
            plan.img_s,
            plan.iter_s,
            plan.val_s,
            format_duration(budget.spent()),
        )

    def _adopt(self, plan: BudgetPlan) -> BudgetPlan:
        """Rank 0's plan on every rank (all run the same number of iterations), and the schedule follows it."""
        plan = dist_utils.broadcast_object(plan)
        self.budget.time.plan = plan
        self.budget.length.change(self.state.iteration, plan.planned_iters)
        return plan

    def _val_every(self) -> int:
        """train.val_interval in iterations (it counts epochs with train.by_epoch)."""
        t = self.cfg.train
        return t.val_interval * self.budget.iters_per_epoch if t.by_epoch else t.val_interval

    def _follow_budget(self, session_iters: int) -> None:
        """Calibrate once the pace is measured, then re-plan once when the budget says so."""
        budget = self.budget.time
        if budget is not None and budget.observe(session_iters, self.state.iteration):
            self._calibrate()
        elif budget is not None and budget.replan_due(self.state.iteration):
            self._replan()

    # ================================================================ the loop
    def _length_text(self) -> str:
        budget = self.budget
        if budget.time is not None and budget.time.plan is None:
            return (
                f"time budget {format_duration(budget.time.seconds)} (length fixed after calibrating"
                + (f", at most {budget.upper_bound}" if budget.upper_bound else "")
                + ")"
            )
        return f"{self.total_iters} iterations"

    def _log_start(self) -> None:
        if not self.run.main:
            return
        cfg, data, model = self.cfg, self.data, self.opt.model_bare
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        LOG.info(
            "work dir %s | device %s x%d | %s: %d train / %d val images, %d classes | model %s "
            "(%.2fM params, %.2fM trainable) | %s (%d per epoch), global batch %d%s",
            self.work_dir,
            self.run.device,
            self.run.dist.world_size,
            cfg.data.dataset,
            len(data.train_set),
            len(data.val_set),
            data.num_classes,
            cfg.model.name,
            total / 1e6,
            trainable / 1e6,
            self._length_text(),
            self.budget.iters_per_epoch,
            data.sampler.global_batch(),
            f" | AMP {self.run.amp_dtype}" if self.run.amp_dtype is not None else "",
        )

    def _record(self, rec: dict[str, Any], scalars: dict[str, Any]) -> None:
        if self.records is not None:
            self.records.write(rec, scalars)

    def _show_bar(self) -> bool:
        if not self.run.main:
            return False
        return self.progress if self.progress is not None else sys.stderr.isatty()

    def _eta(self, started: tuple[float, int]) -> float:
        """Seconds left at the pace since `started` (clock, iteration), validations included; at most the budget's."""
        per_iter = (self.clock() - started[0]) / max(1, self.state.iteration - started[1])
        eta = per_iter * (self.total_iters - self.state.iteration)
        return min(eta, max(0.0, self.budget.time.left())) if self.budget.time is not None else eta

    def _log_train(self, meters: MetricLogger, started: tuple[float, int]) -> None:
        """Every train.log_interval iterations: a metrics.jsonl record, TensorBoard scalars, a log line."""
        it, total = self.state.iteration, self.total_iters
        lr = max(g["lr"] for g in self.opt.optimizer.param_groups)
        rec = {
            "type": "train",
            "iter": it,
            "epoch": it // self.budget.iters_per_epoch,
            "loss": meters.avg("loss"),
            "lr": lr,
            "img_per_s": meters.img_per_s(),
            "data_wait": meters.data_wait(),
            "time": time.time(),
        }
        self._record(rec, {k: rec[k] for k in ("loss", "lr", "img_per_s", "data_wait")})
        LOG.info(
            "iter %d/%s  epoch %d  loss %.4f  lr %.3e  %.1f img/s  data %.0f%%  eta %s",
            it,
            total if total != NO_LIMIT else "?",
            rec["epoch"],
            rec["loss"],
            lr,
            rec["img_per_s"],
            100 * rec["data_wait"],
            hms(self._eta(started)),
        )

    def _status(self) -> str:
        """ "finished", "time budget reached" or "running"."""
        if self.state.iteration >= self.total_iters:
            return "finished"
        if out_of_time(self.budget.time):
            LOG.warning(
                "time budget %s reached at iteration %d of %d: the schedule was cut short (the machine "
                "ran slower than planned)",
                format_duration(self.budget.time.seconds),
                self.state.iteration,
                self.total_iters,
            )
            return "time budget reached"
        return "running"

    def _end_of_iteration(self, session_iters: int) -> str:
        """Calibration, validation, best checkpoint, early stop, the budget and last.pt, in that order.
        Returns "running", "finished", "early stopped" or "time budget reached"."""
        t, it = self.cfg.train, self.state.iteration
        self._follow_budget(session_iters)
        status = self._status()
        epoch_iters = self.budget.iters_per_epoch if t.by_epoch else None
        if status != "running" or interval_ends(it, t.val_interval, epoch_iters):
            stop_early = self._validate_and_track()
            if stop_early and status == "running":
                status = "early stopped"
        if status != "running" or interval_ends(it, t.checkpoint_interval, epoch_iters):
            self.save("last.pt")
        return status

    def _loop(self) -> dict[str, Any]:
        self._log_start()
        if self.state.iteration >= self.total_iters:
            LOG.info("nothing to do: the checkpoint is at iteration %d of %d", self.state.iteration, self.total_iters)
            return self._result("already finished")
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_iters if self.total_iters != NO_LIMIT else None,
            initial=self.state.iteration,
            desc="train",
            disable=not self._show_bar(),
            dynamic_ncols=True,
            file=sys.stderr,
        )
        try:
            status = self._train(bar)
        except KeyboardInterrupt:
            LOG.warning(
                "interrupted at iteration %d; %s",
                self.state.iteration,
                f"--resume continues from {self.work_dir / 'last.pt'} (iteration {self.state.last_saved})"
                if self.state.last_saved is not None
                else "no checkpoint was written yet",
            )
            raise
        finally:
            bar.close()
        return self._result(status)

    def _train(self, bar: Any) -> str:
        """Step through the epochs until the run ends; returns how it ended (see _end_of_iteration)."""
        meters = MetricLogger(window=max(1, self.cfg.train.log_interval))
        self.opt.model.train()
        if self.budget.time is not None:
            self.budget.time.start()
        started, session_iters = (self.clock(), self.state.iteration), 0
        while True:
            self.data.sampler.set_epoch(*divmod(self.state.iteration, self.budget.iters_per_epoch))
            tic = time.perf_counter()
            for batch in self.data.loader:
                data_time = time.perf_counter() - tic
                loss = self.train_one_step(batch)
                self.state.iteration += 1
                session_iters += 1
                meters.update(
                    batch["image"].shape[0] * self.run.dist.world_size,
                    loss=loss,
                    data_time=data_time,
                    step_time=time.perf_counter() - tic,
                )
                self._show_step(bar, meters, loss, started)
                status = self._end_of_iteration(session_iters)
                if bar.total != self.total_iters and self.total_iters != NO_LIMIT:
                    bar.total = self.total_iters
                if status != "running":
                    return status
                tic = time.perf_counter()

    def _show_step(self, bar: Any, meters: MetricLogger, loss: float, started: tuple[float, int]) -> None:
        """The bar's count and figures; every train.log_interval iterations, the logged record."""
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss:.4f}",
            img_s=f"{meters.img_per_s():.1f}",
            data=f"{100 * meters.data_wait():.0f}%",
            refresh=False,
        )
        interval = self.cfg.train.log_interval
        if interval > 0 and self.state.iteration % interval == 0:
            self._log_train(meters, started)

    def _result(self, status: str) -> dict[str, Any]:
        s = self.state
        result = {
            "status": status,
            "work_dir": str(self.work_dir),
            "iteration": s.iteration,
            "total_iters": self.total_iters,
            "best_mIoU": s.best_metric,
            "best_iteration": s.best_iteration,
            "last_val": s.last_val,
        }
        if self.budget.time is not None:
            result["time_spent_s"] = self.budget.time.spent()
        LOG.info(
            "%s at iteration %d; best val mIoU %s (iteration %s); outputs in %s",
            status,
            s.iteration,
            f"{s.best_metric:.4f}" if s.best_metric is not None else "-",
            s.best_iteration,
            self.work_dir,
        )
        return result


def train(
    cfg: Config,
    work_dir: str | Path,
    resume: str | Path | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `cfg` into `work_dir` (resuming from a checkpoint when given); returns a summary dict."""
    return Trainer(cfg, work_dir, resume=resume, progress=progress, overwrite=overwrite).fit()
