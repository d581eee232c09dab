"""Typed experiment config: YAML files with `_base_` inheritance, validated against dataclasses.

Errors name the key, the file it came from and the closest valid keys, because a typo in a
config should cost seconds, not a wasted training run.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from reseg.errors import ResegError


class ConfigError(ResegError):
    """A config key or value is wrong."""


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str = "datasets/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = 4
    val_batch_size: int = 1
    num_workers: int = 2
    crop_size: list[int] = field(default_factory=lambda: [360, 480])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: bool = True
    color_jitter: float = 0.2
    eval_size: Union[list[int], None] = None
    size_divisor: int = 32
    label_format: str = "auto"
    classes_file: Union[str, None] = None
    skip_bad_samples: bool = False
    class_weights: str = "none"
    synthetic_sizes: list[int] = field(default_factory=lambda: [300, 60, 60])
    synthetic_size: list[int] = field(default_factory=lambda: [360, 480])  # [H, W] of generated images
    synthetic_seed: int = 0
    synthetic_difficulty: str = "standard"  # or "easy": nearer, thicker small objects and a clean camera


@dataclass
class ModelConfig:
    name: str = "reseg"
    num_classes: Union[int, None] = None
    encoder: str = "vgg16"
    encoder_weights: Union[str, None] = None
    encoder_cut: str = "conv3_3"
    freeze_encoder: bool = False
    renet_layers: int = 2
    renet_hidden: Union[int, list[int]] = 100
    renet_patch: Union[int, list[int]] = 1
    cell: str = "gru"
    decoder_filters: list[int] = field(default_factory=lambda: [50, 50])
    decoder: str = "deconv"
    skip_layers: list[str] = field(default_factory=lambda: ["conv2_2", "conv1_2"])
    decoder_channels: list[int] = field(default_factory=lambda: [64, 32])
    sync_bn: bool = False


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    encoder_lr_mult: float = 1.0
    grad_clip: Union[float, None] = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    rho: float = 0.95


@dataclass
class SchedConfig:
    name: str = "poly"
    power: float = 0.9
    warmup_iters: int = 0
    warmup_ratio: float = 0.1
    step_size: int = 1000
    gamma: float = 0.1
    min_lr: float = 0.0
    by_epoch: bool = False


@dataclass
class LossConfig:
    dice_weight: float = 0.0
    lovasz_weight: float = 0.0
    ignore_index: int = 255


@dataclass
class TrainConfig:
    max_iters: Union[int, None] = 1000
    epochs: Union[int, None] = None
    val_interval: int = 200
    checkpoint_interval: int = 100
    log_interval: int = 10
    seed: int = 0
    deterministic: bool = False
    amp: bool = False
    channels_last: bool = False  # NHWC activations: faster convolutions under AMP (CPU bf16, GPU tensor cores)
    device: str = "auto"
    early_stop_patience: Union[int, None] = None
    by_epoch: bool = False  # val_interval and checkpoint_interval count epochs instead of iterations


@dataclass
class EvalConfig:
    mode: str = "whole"
    crop: Union[list[int], None] = None
    stride: Union[list[int], None] = None
    flip: bool = False
    scales: list[float] = field(default_factory=lambda: [1.0])


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], sources: dict[str, str] | None = None) -> "Config":
        return _build(cls, data, "", sources or {})


# ---------------------------------------------------------------- validation

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce: int -> float, tuple -> list) a YAML value against a type hint."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, coerced = _type_ok(value, arg)
            if ok:
                return True, coerced
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return False, value
        (item_tp,) = typing.get_args(tp)
        out = []
        for item in value:
            ok, coerced = _type_ok(item, item_tp)
            if not ok:
                return False, value
            out.append(coerced)
        return True, out
    if tp is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return True, float(_FLOAT_TEXT.fullmatch(value.strip()).group(0))  # type: ignore[union-attr]
            except AttributeError:
                return False, value
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _where(key: str, sources: dict[str, str]) -> str:
    src = sources.get(key)
    return f" (from {src})" if src else ""


def closest_keys(key: str, names: list[str], n: int = 3) -> list[str]:
    """Valid keys a typo most likely meant: spelling neighbours, then abbreviations (learning_rate -> lr)
    and keys sharing a word (iters -> max_iters)."""
    out = difflib.get_close_matches(key, names, n=n, cutoff=0.5)
    words = [w for w in key.lower().replace("-", "_").split("_") if w]
    initials = "".join(w[0] for w in words)
    for name in names:
        parts = name.split("_")
        if name in out:
            continue
        if name == initials or any(w in parts or (len(w) > 2 and w.rstrip("s") in parts) for w in words):
            out.append(name)
    return out[:n]


def _build(cls: type, data: Any, prefix: str, sources: dict[str, str]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}"
                          f"{_where(prefix.rstrip('.'), sources)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = closest_keys(str(key), names)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {full!r}{_where(full, sources)}{hint} "
                              f"(valid keys in {prefix.rstrip('.') or 'the root'}: {', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, full + ".", sources)
            continue
        ok, coerced = _type_ok(value, tp)
        if not ok:
            raise ConfigError(f"config key {full!r}{_where(full, sources)} must be {_type_name(tp)}, got {value!r}")
        kwargs[key] = coerced
    return cls(**kwargs)


# ---------------------------------------------------------------- loading

def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(dst: dict, src: dict, sources: dict[str, str], origin: str, prefix: str = "") -> None:
    for key, value in src.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, sources, origin, full + ".")
        else:
            dst[key] = value
            _record(sources, full, value, origin)


def _record(sources: dict[str, str], full: str, value: Any, origin: str) -> None:
    sources[full] = origin
    if isinstance(value, dict):
        for k, v in value.items():
            _record(sources, f"{full}.{k}", v, origin)


def load_yaml_tree(path: str | Path, sources: dict[str, str] | None = None, _seen: tuple = ()) -> dict[str, Any]:
    """Read a YAML file and the `_base_` files it names (paths relative to it), later files winning."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config {path} includes itself through _base_")
    sources = {} if sources is None else sources
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base)
        if not base_path.is_file():
            raise ConfigError(f"_base_ file {base!r} named in {path} not found (looked at {base_path.resolve()})")
        _merge(merged, load_yaml_tree(base_path, sources, _seen + (path,)), sources, str(base_path.resolve()))
    _merge(merged, data, sources, str(path))
    return merged


def apply_overrides(data: dict[str, Any], overrides: list[str], sources: dict[str, str]) -> None:
    """Apply `a.b=value` strings; values are parsed as YAML (so 0.01, true, [1, 2] work)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=0.01")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                sources.setdefault(".".join(parts[: i + 1]), "--set")
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
        sources[key] = "--set"


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load, merge, override and validate a config; `None` means all defaults."""
    sources: dict[str, str] = {}
    data = load_yaml_tree(path, sources) if path else {}
    apply_overrides(data, list(overrides or []), sources)
    cfg = Config.from_dict(data, sources)
    validate(cfg)
    return cfg


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"config key {key!r} is {value!r}; expected one of {', '.join(map(str, choices))}")


def validate(cfg: Config) -> None:
    """Check values whose type is right but whose meaning is not."""
    _choice("data.dataset", cfg.data.dataset, ("synthetic", "camvid", "cityscapes", "folder"))
    _choice("data.synthetic_difficulty", cfg.data.synthetic_difficulty, ("standard", "easy"))
    _choice("data.class_weights", cfg.data.class_weights, ("none", "median_frequency", "inverse_log"))
    _choice("optim.name", cfg.optim.name, ("sgd", "adam", "adamw", "adadelta"))
    _choice("sched.name", cfg.sched.name, ("poly", "cosine", "step", "constant"))
    _choice("eval.mode", cfg.eval.mode, ("whole", "slide"))
    _choice("model.cell", cfg.model.cell, ("gru", "lstm"))
    _choice("model.decoder", cfg.model.decoder, ("deconv", "skip"))
    if len(cfg.data.crop_size) != 2 or min(cfg.data.crop_size) <= 0:
        raise ConfigError(f"config key 'data.crop_size' must be [height, width] > 0, got {cfg.data.crop_size}")
    if cfg.train.max_iters is None and cfg.train.epochs is None:
        raise ConfigError("set one of train.max_iters or train.epochs")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"config key 'optim.lr' must be > 0, got {cfg.optim.lr}")
    if cfg.data.batch_size <= 0:
        raise ConfigError(f"config key 'data.batch_size' must be > 0, got {cfg.data.batch_size}")


def dump_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
