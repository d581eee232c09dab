"""The training loop: one readable function-per-concern file, in the style of torchvision's references.

What it guarantees:
- the data order and every augmentation are pure functions of (seed, epoch, sample index),
  and the checkpoint carries every other piece of state (weights, optimizer, scheduler, grad
  scaler, RNGs, counters), so a run killed at any moment and resumed from `last.pt` ends with
  the same weights and metrics as one that never stopped (on CPU, deterministic mode);
- checkpoints are written atomically (reseg.engine.checkpoint), a non-finite loss stops the run
  before it can poison the weights, and only rank 0 of a torchrun job writes anything.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from reseg.config import Config, dump_config
from reseg.data import build_loader
from reseg.predictor import Predictor
from reseg.runtime import amp_dtype, autocast, memory_format, place_model, resolve_device
from reseg.engine import distributed as dist_utils
from reseg.engine.checkpoint import load_checkpoint, save_checkpoint
from reseg.engine.distributed import EpochBatchSampler, ShardSampler
from reseg.errors import ResegError

LOG = logging.getLogger("reseg.train")
ROOT_LOG = logging.getLogger("reseg")  # train.log also receives the data modules' warnings

# Model-config keys that change the architecture: a checkpoint must agree on all of them to resume.
ARCH_KEYS = ("name", "num_classes", "encoder", "encoder_cut", "renet_layers", "renet_hidden", "renet_patch",
             "cell", "decoder_filters")


class NonFiniteLossError(ResegError):
    """The loss became NaN or infinite; the message names the iteration and the checkpoint kept."""


# ---------------------------------------------------------------- device, seeds, determinism

def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels when asked (slower on CUDA); cuDNN autotuning otherwise.

    CPU kernels are already deterministic for a fixed thread count, so on CPU only the seeds and
    the data order matter; `torch.use_deterministic_algorithms` is set for CUDA only (it also
    costs seconds of imports).
    """
    if device.type == "cuda":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if deterministic or torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Global RNG states in types `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of get_rng_state (CUDA states only when the device count matches)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ---------------------------------------------------------------- optimizer, schedule, loss

def param_groups(model: nn.Module, lr: float, encoder_lr_mult: float) -> list[dict[str, Any]]:
    """The model's own groups (encoder at lr*mult, frozen parameters absent); all trainable params otherwise."""
    if hasattr(model, "param_groups"):
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


def lr_factor(cfg: Config, total_iters: int, iters_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate after `it` iterations.

    poly: (1 - t/T)^power, cosine: half a cosine, step: gamma^(t // step_size), constant: 1; poly and
    cosine decay towards sched.min_lr. With sched.by_epoch, t, T and step_size count epochs. A linear
    warm-up from warmup_ratio over warmup_iters iterations multiplies any of them.
    """
    s = cfg.sched
    floor = min(1.0, s.min_lr / cfg.optim.lr) if cfg.optim.lr > 0 else 0.0
    ipe = max(1, iters_per_epoch)
    total_epochs = max(1, math.ceil(total_iters / ipe))

    def factor(it: int) -> float:
        t, T = (it // ipe, total_epochs) if s.by_epoch else (it, max(1, total_iters))
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


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_iters: int,
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration (epoch-based schedules change value only at epoch ends)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_iters, iters_per_epoch))


class SegLoss(nn.Module):
    """Cross-entropy (ignore 255, optional class weights) + optional Dice and Lovasz terms from smp."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_weights: torch.Tensor | None = None,
                 dice_weight: float = 0.0, lovasz_weight: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", None if class_weights is None else class_weights.float())
        self.dice_weight, self.lovasz_weight = dice_weight, lovasz_weight
        self.dice = self.lovasz = None
        if dice_weight > 0 or lovasz_weight > 0:
            from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
            if dice_weight > 0:
                self.dice = DiceLoss(mode="multiclass", ignore_index=ignore_index)
            if lovasz_weight > 0:
                self.lovasz = LovaszLoss(mode="multiclass", ignore_index=ignore_index)

    def ce_denominator(self, target: torch.Tensor) -> torch.Tensor:
        """What mean cross-entropy divides by: the labelled pixels (their class weights, if any)."""
        valid = target != self.ignore_index
        if self.weight is None:
            return valid.sum().float()
        return self.weight[target[valid]].sum()

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                denominator: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch. `denominator` replaces this batch's own CE denominator: under DDP the trainer
        passes (global denominator / world size), so the averaged gradients equal one process's on the
        whole global batch even when ranks hold different numbers of labelled pixels."""
        logits = logits.float()
        if denominator is None:
            denominator = self.ce_denominator(target)
        ce_sum = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                 reduction="sum")
        loss = ce_sum / denominator.clamp_min(1e-6)  # a batch with no labelled pixel adds nothing
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.lovasz is not None:
            loss = loss + self.lovasz_weight * self.lovasz(logits, target)
        return loss


# ---------------------------------------------------------------- data plumbing

class SeededView(Dataset):
    """Wraps a dataset so item `(index, seed)` is loaded with its augmentation RNG seeded by `seed`.

    Albumentations 2.x Compose keeps its own RNGs (reseeded via `set_random_seed`); the global
    Python/numpy/torch RNGs are also seeded, inside a save/restore, for transforms that use them.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _build_dataset(cfg: Config, split: str) -> Dataset:
    from reseg.data import build_dataset
    return build_dataset(cfg, split, generate=True)  # training is the one user that may generate synthetic data


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def validate(model: nn.Module, loader: Iterable[dict[str, Any]], num_classes: int, device: torch.device,
             cfg: Config, amp: bool | torch.dtype | None = False, progress: bool = False) -> dict[str, Any]:
    """Confusion matrix over the loader (all-reduced across ranks) -> metrics from reseg.metrics."""
    from reseg.metrics import ConfusionMatrix

    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index=cfg.loss.ignore_index, device=device)
    predictor = Predictor(model, device, num_classes=num_classes, mode=cfg.eval.mode, crop=cfg.eval.crop,
                          stride=cfg.eval.stride, flip=cfg.eval.flip, scales=tuple(cfg.eval.scales), amp=amp,
                          size_divisor=cfg.data.size_divisor, channels_last=cfg.train.channels_last)
    try:
        from tqdm.auto import tqdm
        for batch in tqdm(loader, desc="val", leave=False, disable=not progress, dynamic_ncols=True):
            images, targets = batch["image"], batch["mask"]
            if isinstance(images, torch.Tensor):  # one stacked batch, or a list of differently sized images
                images, targets = [images], [targets]
            for image, target in zip(images, targets):
                image = image.to(device, non_blocking=True)
                target = target.to(device, non_blocking=True)
                if image.dim() == 3:
                    image, target = image[None], target[None]
                logits = predictor.predict_logits(image)
                cm.update(logits.argmax(1), target)
    finally:
        model.train(was_training)
    cm.all_reduce()
    return cm.compute()


def _jsonable(x: Any) -> Any:
    """Tensors -> numbers/lists, NaN -> None (JSON has no NaN)."""
    if isinstance(x, torch.Tensor):
        x = x.tolist() if x.dim() else x.item()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summarize_metrics(metrics: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """The JSON record of one validation: headline numbers plus per-class IoU/Acc by class name."""
    out: dict[str, Any] = {}
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU"):
        if key in metrics:
            out[key] = _jsonable(metrics[key])
    for key in ("IoU", "Acc"):
        if key in metrics:
            values = _jsonable(metrics[key])
            out[key] = dict(zip(class_names, values))
    return out


# ---------------------------------------------------------------- logging

class _TqdmHandler(logging.Handler):
    """Console lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never kill training
            self.handleError(record)


def _setup_logging(work_dir: Path | None) -> None:
    """Rank 0: console + work_dir/train.log. Other ranks: warnings only, to the console."""
    _close_logging()
    ROOT_LOG.propagate = False
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    ROOT_LOG.addHandler(console)
    if work_dir is None:
        ROOT_LOG.setLevel(logging.WARNING)
        return
    ROOT_LOG.setLevel(logging.INFO)
    fh = logging.FileHandler(work_dir / "train.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ROOT_LOG.addHandler(fh)


def _close_logging() -> None:
    """Detach the handlers _setup_logging added (tests and notebooks run several trainings per process)."""
    for h in list(ROOT_LOG.handlers):
        if isinstance(h, _TqdmHandler) or isinstance(h, logging.FileHandler):
            ROOT_LOG.removeHandler(h)
            h.close()
    ROOT_LOG.propagate = True
    ROOT_LOG.setLevel(logging.NOTSET)


# ---------------------------------------------------------------- the trainer

class Trainer:
    """Builds everything from a config, trains, validates, checkpoints; `fit()` runs it.

    Only rank 0 writes to `work_dir`: config.yaml, last.pt, best.pt, train.log, metrics.jsonl and
    TensorBoard events under tensorboard/.
    """

    def __init__(self, cfg: Config, work_dir: str | Path, resume: str | Path | None = None,
                 progress: bool | None = None) -> None:
        self.cfg = copy.deepcopy(cfg)
        self.work_dir = Path(work_dir)
        self.resume = resume
        self.progress = progress  # None: show the bar when stderr is a terminal
        self.writer: Any = None

    # -- setup -----------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        want = (cfg.train.device or "auto").lower()
        device_type = "cuda" if (want.startswith("cuda") or (want == "auto" and torch.cuda.is_available())) else "cpu"
        _, world_env, local_env = dist_utils.env_world()
        self.dist = dist_utils.init_distributed(device_type) if world_env > 1 else dist_utils.DistInfo()
        self.device = resolve_device(want or "auto", self.dist.local_rank)
        self.main = self.dist.is_main
        configure_determinism(cfg.train.deterministic, self.device)
        seed_everything(cfg.train.seed + self.dist.rank)

        fresh_over_old = False
        if self.main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.work_dir.glob(".*.pt.*.tmp"):  # left by a run killed while saving
                stale.unlink(missing_ok=True)
            fresh_over_old = not self.resume and (self.work_dir / "last.pt").exists()
        dist_utils.barrier()
        _setup_logging(self.work_dir if self.main else None)
        if self.main and fresh_over_old:
            LOG.warning("%s already holds last.pt from an earlier run: starting from scratch and overwriting it "
                        "(use --resume to continue that run instead)", self.work_dir)

        # data (rank 0 first: building the synthetic set generates it once)
        if self.main:
            self.train_set = _build_dataset(cfg, cfg.data.train_split)
        dist_utils.barrier()
        if not self.main:
            self.train_set = _build_dataset(cfg, cfg.data.train_split)
        self.val_set = _build_dataset(cfg, cfg.data.val_split)
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
        self.total_iters = (cfg.train.epochs * self.iters_per_epoch if cfg.train.epochs is not None
                            else int(cfg.train.max_iters or 0))
        self.train_loader = build_loader(SeededView(self.train_set), cfg, train=True, batch_sampler=self.sampler,
                                         generator=torch.Generator().manual_seed(cfg.train.seed))
        self.val_loader = build_loader(self.val_set, cfg, train=False,
                                       sampler=ShardSampler(len(self.val_set), self.dist.rank, self.dist.world_size))

        resume_state = self._read_resume(Path(self.resume)) if self.resume else None

        # model, optimizer, schedule, loss
        from reseg.models import build_model
        model = place_model(build_model(cfg), self.device, cfg.train.channels_last)
        model = dist_utils.maybe_sync_bn(model, cfg.model.sync_bn)
        self.model_bare = model
        self.model = dist_utils.wrap_ddp(model, self.device)
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_iters, self.iters_per_epoch)
        # None when AMP is off, or asked for on a CPU without native bf16 (amp_dtype warns then)
        self.amp_dtype = amp_dtype(bool(cfg.train.amp), self.device, training=True)
        self.amp = self.amp_dtype is not None
        self.autocast = lambda: autocast(self.device, self.amp_dtype)
        self.memory_format = memory_format(cfg.train.channels_last)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.criterion = SegLoss(n, cfg.loss.ignore_index, self._class_weights(), cfg.loss.dice_weight,
                                 cfg.loss.lovasz_weight).to(self.device)

        self.iteration = 0
        self.best_metric: float | None = None
        self.best_iteration: int | None = None
        self.bad_evals = 0
        self.last_saved: int | None = None
        self.last_val: dict[str, Any] | None = None
        if resume_state is not None:
            self._apply_resume(resume_state)
        if self.main:
            dump_config(cfg, self.work_dir / "config.yaml")
            self._open_outputs()

    def _class_weights(self) -> torch.Tensor | None:
        method = self.cfg.data.class_weights
        if method == "none":
            return None
        from reseg.data.balance import class_weights
        weights = None
        if self.main:  # rank 0 computes and caches; the others read the cache
            weights = class_weights(self.train_set, method, self.work_dir)
        dist_utils.barrier()
        if not self.main:
            weights = class_weights(self.train_set, method, self.work_dir)
        LOG.info("class weights (%s): %s", method, ", ".join(f"{w:.3f}" for w in weights.tolist()))
        return weights.float()

    def _open_outputs(self) -> None:
        from torch.utils.tensorboard import SummaryWriter
        metrics = self.work_dir / "metrics.jsonl"
        if self.iteration > 0 and metrics.exists():  # drop records past the checkpoint we resumed from
            kept = [line for line in metrics.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("iter", 0) <= self.iteration]
            metrics.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        elif self.iteration == 0 and metrics.exists():
            metrics.unlink()
        self.writer = SummaryWriter(str(self.work_dir / "tensorboard"), purge_step=self.iteration + 1)

    # -- checkpoints -------------------------------------------------------------------------
    def _read_resume(self, path: Path) -> dict[str, Any]:
        """Load and vet the checkpoint before anything expensive is built."""
        if path.is_dir():
            path = path / "last.pt"
        if not path.is_file():
            raise ResegError(f"nothing to resume: {path} not found (train without --resume first, or pass the "
                             f"checkpoint path: --resume PATH)")
        state = load_checkpoint(path)
        self._check_compatible(state, path)
        state["_path"] = path
        return state

    def _apply_resume(self, state: dict[str, Any]) -> None:
        path = state.pop("_path")
        try:
            self.model_bare.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ResegError(f"checkpoint {path} does not fit this model: {str(err).splitlines()[0][:300]} ...") \
                from None
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
        self.last_saved = self.iteration
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

    def _check_compatible(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another architecture or class set, saying exactly what differs."""
        old_model = (state.get("config") or {}).get("model", {})
        new_model = self.cfg.model
        diffs = [f"model.{k}: checkpoint {old_model.get(k)!r}, config {getattr(new_model, k)!r}"
                 for k in ARCH_KEYS if k in old_model and old_model.get(k) != getattr(new_model, k)]
        old_names = list(state.get("class_names") or [])
        if old_names and old_names != self.class_names:
            diffs.append(f"classes: checkpoint {len(old_names)} ({', '.join(old_names[:4])}...), "
                         f"dataset {len(self.class_names)} ({', '.join(self.class_names[:4])}...)")
        if diffs:
            raise ResegError(f"cannot resume from {path}: it was trained with a different model or classes; "
                             + "; ".join(diffs))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see SPEC: checkpoint format)."""
        rng = dist_utils.all_gather_object(get_rng_state())
        return {
            "config": self.cfg.to_dict(),
            "model": self.model_bare.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng if len(rng) > 1 else rng[0],
            "sampler": {**self.sampler.state_dict(), "epoch": self.iteration // self.iters_per_epoch,
                        "start_batch": self.iteration % self.iters_per_epoch},
            "epoch": self.iteration // self.iters_per_epoch,
            "iteration": self.iteration,
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

    # -- logging -------------------------------------------------------------------------------
    def _record(self, rec: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.work_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_jsonable(rec)) + "\n")

    def _scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    # -- the loop ------------------------------------------------------------------------------
    def run_validation(self) -> dict[str, Any]:
        metrics = validate(self.model_bare, self.val_loader, self.num_classes, self.device, self.cfg, amp=self.amp_dtype,
                           progress=bool(self._show_bar()))
        summary = summarize_metrics(metrics, self.class_names)
        self.last_val = summary
        rec = {"type": "val", "iter": self.iteration, "epoch": self.iteration // self.iters_per_epoch, **summary}
        self._record(rec)
        self._scalars("val", {k: summary.get(k) for k in ("mIoU", "mAcc", "aAcc", "fwIoU")}, self.iteration)
        self._scalars("val_IoU", summary.get("IoU", {}), self.iteration)
        LOG.info("val @ %d: mIoU %.4f  aAcc %.4f  mAcc %.4f", self.iteration, summary.get("mIoU") or 0.0,
                 summary.get("aAcc") or 0.0, summary.get("mAcc") or 0.0)
        if self.main:
            LOG.info("  per-class IoU: %s", "  ".join(f"{k} {v:.3f}" if v is not None else f"{k} -"
                                                     for k, v in summary.get("IoU", {}).items()))
        return summary

    def _show_bar(self) -> bool | None:
        if not self.main:
            return False
        return self.progress if self.progress is not None else sys.stderr.isatty()

    def _due(self, interval: int) -> bool:
        """True when an interval (iterations, or epochs with train.by_epoch) ends at this iteration."""
        if interval <= 0:
            return False
        if self.cfg.train.by_epoch:
            return self.iteration % self.iters_per_epoch == 0 and (self.iteration // self.iters_per_epoch) % interval == 0
        return self.iteration % interval == 0

    def fit(self) -> dict[str, Any]:
        """Train to train.max_iters (or train.epochs), validating and checkpointing on the way."""
        created_group = not dist_utils.is_dist()
        try:
            self._setup()
            return self._loop()
        finally:
            if self.writer is not None:
                self.writer.close()
            _close_logging()
            if created_group:
                dist_utils.cleanup()

    def _loop(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        if self.main:
            trainable = sum(p.numel() for p in self.model_bare.parameters() if p.requires_grad)
            total = sum(p.numel() for p in self.model_bare.parameters())
            LOG.info("work dir %s | device %s x%d | %s: %d train / %d val images, %d classes | model %s "
                     "(%.2fM params, %.2fM trainable) | %d iterations (%d per epoch), global batch %d%s",
                     self.work_dir, self.device, self.dist.world_size, cfg.data.dataset, len(self.train_set),
                     len(self.val_set), self.num_classes, cfg.model.name, total / 1e6, trainable / 1e6,
                     self.total_iters, self.iters_per_epoch, self.sampler.global_batch(),
                     f" | AMP {self.amp_dtype}" if self.amp else "")
        if self.iteration >= self.total_iters:
            LOG.info("nothing to do: the checkpoint is at iteration %d of %d", self.iteration, self.total_iters)
            return self._result("already finished")

        from tqdm.auto import tqdm
        bar = tqdm(total=self.total_iters, initial=self.iteration, desc="train", disable=not self._show_bar(),
                   dynamic_ncols=True, file=sys.stderr)
        model, criterion, optimizer, scaler = self.model, self.criterion, self.optimizer, self.scaler
        params = [p for g in optimizer.param_groups for p in g["params"]]
        model.train()
        status = "finished"
        win_loss, win_n, win_data, win_time, win_imgs = 0.0, 0, 0.0, 0.0, 0
        run_start, run_start_iter = time.perf_counter(), self.iteration
        try:
            while self.iteration < self.total_iters and status == "finished":
                epoch, skip = divmod(self.iteration, self.iters_per_epoch)
                self.sampler.set_epoch(epoch, skip)
                tic = time.perf_counter()
                for batch in self.train_loader:
                    data_time = time.perf_counter() - tic
                    images = batch["image"].to(self.device, non_blocking=True, memory_format=self.memory_format)
                    masks = batch["mask"].to(self.device, non_blocking=True).long()
                    with self.autocast():
                        logits = model(images)
                    denominator = None
                    if self.dist.enabled:
                        denominator = dist_utils.all_reduce_sum(criterion.ce_denominator(masks)) / self.dist.world_size
                    loss = criterion(logits, masks, denominator)
                    loss_avg = dist_utils.all_reduce_sum(loss.detach().clone()) / self.dist.world_size
                    loss_value = float(loss_avg)
                    if not math.isfinite(loss_value):
                        raise NonFiniteLossError(f"the loss became {loss_value} at iteration {self.iteration + 1} "
                                                 f"(epoch {epoch}); stopping before it reaches the weights. "
                                                 + self._kept_message())
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.optim.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    self.scheduler.step()
                    self.iteration += 1
                    step_time = time.perf_counter() - tic

                    win_loss += loss_value
                    win_n += 1
                    win_data += data_time
                    win_time += step_time
                    win_imgs += images.shape[0] * self.dist.world_size
                    lr = max(g["lr"] for g in optimizer.param_groups)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{win_imgs / max(win_time, 1e-9):.1f}",
                                    data=f"{100 * win_data / max(win_time, 1e-9):.0f}%", refresh=False)
                    if t.log_interval > 0 and self.iteration % t.log_interval == 0:
                        rec = {"type": "train", "iter": self.iteration, "epoch": epoch, "loss": win_loss / win_n,
                               "lr": lr, "img_per_s": win_imgs / max(win_time, 1e-9),
                               "data_wait": win_data / max(win_time, 1e-9), "time": time.time()}
                        self._record(rec)
                        self._scalars("train", {k: rec[k] for k in ("loss", "lr", "img_per_s", "data_wait")},
                                      self.iteration)
                        per_iter = (time.perf_counter() - run_start) / (self.iteration - run_start_iter)
                        eta = per_iter * (self.total_iters - self.iteration)
                        LOG.info("iter %d/%d  epoch %d  loss %.4f  lr %.3e  %.1f img/s  data %.0f%%  eta %s",
                                 self.iteration, self.total_iters, epoch, rec["loss"], lr, rec["img_per_s"],
                                 100 * rec["data_wait"], _hms(eta))
                        win_loss, win_n, win_data, win_time, win_imgs = 0.0, 0, 0.0, 0.0, 0

                    end = self.iteration >= self.total_iters
                    if self._due(t.val_interval) or end:
                        summary = self.run_validation()
                        miou = summary.get("mIoU")
                        if miou is not None and (self.best_metric is None or miou > self.best_metric):
                            self.best_metric, self.best_iteration, self.bad_evals = float(miou), self.iteration, 0
                            self.save("best.pt")
                            LOG.info("new best mIoU %.4f -> %s", miou, self.work_dir / "best.pt")
                        else:
                            self.bad_evals += 1
                            patience = t.early_stop_patience
                            if patience and self.bad_evals >= patience:
                                LOG.info("early stop: no mIoU gain in %d validations (best %.4f at iteration %s)",
                                         self.bad_evals, self.best_metric or 0.0, self.best_iteration)
                                status = "early stopped"
                        model.train()
                    if self._due(t.checkpoint_interval) or end or status != "finished":
                        self.save("last.pt")
                    if end or status != "finished":
                        break
                    tic = time.perf_counter()
        except KeyboardInterrupt:
            LOG.warning("interrupted at iteration %d; %s", self.iteration,
                        f"continue from {self.work_dir / 'last.pt'} (iteration {self.last_saved}) with --resume"
                        if self.last_saved is not None else "no checkpoint was written yet")
            raise
        finally:
            bar.close()
        return self._result(status)

    def _result(self, status: str) -> dict[str, Any]:
        result = {"status": status, "work_dir": str(self.work_dir), "iteration": self.iteration,
                  "best_mIoU": self.best_metric, "best_iteration": self.best_iteration, "last_val": self.last_val}
        LOG.info("%s at iteration %d; best val mIoU %s (iteration %s); outputs in %s", status, self.iteration,
                 f"{self.best_metric:.4f}" if self.best_metric is not None else "-", self.best_iteration,
                 self.work_dir)
        return result


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(cfg: Config, work_dir: str | Path, resume: str | Path | None = None,
          progress: bool | None = None) -> dict[str, Any]:
    """Train `cfg` into `work_dir` (resuming from a checkpoint when given); returns a summary dict."""
    return Trainer(cfg, work_dir, resume=resume, progress=progress).fit()
