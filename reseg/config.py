"""Typed experiment config: YAML files with `_base_` inheritance, validated against dataclasses.

Errors name the key, the file it came from and the closest valid keys, because a typo in a
config should cost seconds, not a wasted training run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterator
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
    # "strong" adds what changes between drives and cameras (reseg.data.transforms): exposure, white balance,
    # blur, sensor noise, JPEG, a wider scale range, small rotations and perspective; "photometric" is "strong"
    # without the geometry
    augment: str = "standard"
    # ClassMix (reseg.data.mixing): the probability that a training image gets half the classes of another
    # image of its batch pasted over it
    class_mix: float = 0.0
    # Rare-class sampling (reseg.data.rare_classes): images drawn by the rarity of the classes they hold,
    # softmax((1 - class share) / temperature); 0 draws each image once an epoch, as without it
    rare_class_temperature: float = 0.0
    eval_size: list[int] | None = None
    size_divisor: int = 32
    label_format: str = "auto"
    classes_file: str | None = None
    skip_bad_samples: bool = False
    class_weights: str = "none"
    # Sequence-disjoint validation: frames whose file names start with one of val_sequences (from the train and
    # val splits together) validate, the rest of the two splits trains (or only train_sequences' frames).
    train_sequences: list[str] | None = None
    val_sequences: list[str] | None = None
    # Joint training (reseg.data.factory.mix_in_synthetic): generated scenes from synthetic_mix_root (made there
    # with the synthetic_* keys below when missing) join a CamVid training split as this share of it; 0 = off
    synthetic_mix: float = 0.0
    synthetic_mix_root: str = "datasets/synthetic_standard_360x480"
    synthetic_sizes: list[int] = field(default_factory=lambda: [300, 60, 60])
    synthetic_size: list[int] = field(default_factory=lambda: [360, 480])  # [H, W] of generated images
    synthetic_seed: int = 0
    synthetic_difficulty: str = "standard"  # or "easy": nearer, thicker small objects and a clean camera


@dataclass
class ModelConfig:
    name: str = "reseg"
    num_classes: int | None = None
    encoder: str = "vgg16"
    encoder_weights: str | None = None
    encoder_cut: str = "conv3_3"
    encoder_width: float = 1.0  # scales every VGG conv's channels (ReSeg from scratch only)
    freeze_encoder: bool = False
    renet_layers: int = 2
    renet_hidden: int | list[int] = 100
    renet_patch: int | list[int] = 1
    cell: str = "gru"
    decoder_filters: list[int] = field(default_factory=lambda: [50, 50])
    decoder: str = "deconv"
    skip_layers: list[str] = field(default_factory=lambda: ["conv2_2", "conv1_2"])
    decoder_channels: list[int] = field(default_factory=lambda: [64, 32])
    decoder_dropout: float = 0.0  # Dropout2d on the decoder's features, before the classifier (every model)
    ibn_blocks: int = 0  # VGG blocks (from the first) whose batch norms are half instance norm, IBN-a (every model)
    sync_bn: bool = False


# ModelConfig keys that change how a model starts or trains, not its architecture: a resume may change them.
TRAINING_ONLY_MODEL_KEYS = ("encoder_weights", "freeze_encoder", "sync_bn", "decoder_dropout")


def architecture_keys() -> tuple[str, ...]:
    """The ModelConfig keys a checkpoint's weights depend on (resume refuses a change to any of them)."""
    return tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in TRAINING_ONLY_MODEL_KEYS)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    encoder_lr_mult: float = 1.0
    grad_clip: float | None = None
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
    label_smoothing: float = 0.0  # cross-entropy's: the target keeps 1 - eps, eps is spread over all classes
    ignore_index: int = 255


@dataclass
class TrainConfig:
    max_iters: int | None = 1000
    epochs: int | None = None
    time_budget: str | float | None = None  # "10m", "90s", "1h30m" or seconds: the run fits in it
    val_interval: int = 200
    checkpoint_interval: int = 100
    log_interval: int = 10
    seed: int = 0
    deterministic: bool = False
    amp: bool = False
    channels_last: bool = False  # NHWC activations: faster convolutions under AMP (CPU bf16, GPU tensor cores)
    device: str = "auto"
    early_stop_patience: int | None = None
    init_from: str | None = None  # start from this checkpoint's weights (a fine-tune; --resume continues a run)
    ema_decay: float = 0.0  # > 0: validate and save an exponential moving average of the weights (0.99 .. 0.9999)
    by_epoch: bool = False  # val_interval and checkpoint_interval count epochs instead of iterations


EVAL_MODES = ("whole", "slide")  # eval.mode and --mode: the whole image at once, or sliding windows


@dataclass
class EvalConfig:
    mode: str = "whole"
    crop: list[int] | None = None
    stride: list[int] | None = None
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
    def from_dict(cls, data: dict[str, Any], sources: dict[str, str] | None = None) -> Config:
        return _build(cls, data, "", sources or {})

    def was_given(self, key: str) -> bool:
        """True when a config file, a base dict (a checkpoint's config) or --set gave `key` ("data.root");
        True for every key of a config not read by load_config (Config.from_dict), whose origin is unknown."""
        given = self.__dict__.get("_given")
        return given is None or key in given


# The config keys that change inference, and the Predictor argument each one sets: the one map from a config
# to a Predictor (Predictor.from_config) and from `reseg evaluate --set` to the inference flags.
INFERENCE_KEYS: dict[str, str] = {
    "eval.mode": "mode",
    "eval.crop": "crop",
    "eval.stride": "stride",
    "eval.flip": "flip",
    "eval.scales": "scales",
    "data.size_divisor": "size_divisor",
    "data.eval_size": "infer_size",
}


# An image may hold this many times the pixels of the frame area one training crop covers before it
# runs downscaled: Cityscapes' full 1024x2048 frames (4x a 512x1024 crop at scale 1) still run as they are.
TRAINED_AREA_MARGIN = 4


def trained_max_pixels(cfg: Config) -> int | None:
    """Most pixels an image runs at when data.eval_size is unset: TRAINED_AREA_MARGIN x the original-frame
    area one training crop covers (crop area / the geometric mean of data.scale_range, squared)."""
    if cfg.data.eval_size or not cfg.data.crop_size:
        return None
    low, high = cfg.data.scale_range or (1.0, 1.0)
    crop_h, crop_w = cfg.data.crop_size
    return round(TRAINED_AREA_MARGIN * crop_h * crop_w / (low * high))


def inference_settings(cfg: Config) -> dict[str, Any]:
    """The Predictor arguments a config's INFERENCE_KEYS give (Predictor argument name -> value), and
    the image size above which inference runs at the trained scale (`trained_max_pixels`)."""
    settings = {}
    for key, argument in INFERENCE_KEYS.items():
        section, name = key.split(".")
        settings[argument] = getattr(getattr(cfg, section), name)
    settings["max_pixels"] = trained_max_pixels(cfg)
    return settings


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
        return _float_ok(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def _float_ok(value: Any) -> tuple[bool, Any]:
    """A float, or an int or number text coerced to one; a bool is not a number here."""
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
        raise ConfigError(
            f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}"
            f"{_where(prefix.rstrip('.'), sources)}"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = closest_keys(str(key), names)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown config key {full!r}{_where(full, sources)}{hint} "
                f"(valid keys in {prefix.rstrip('.') or 'the root'}: {', '.join(names)})"
            )
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
    data = read_yaml_file(path, "config file")
    if data is None:
        raise ConfigError(f"config file {path} is empty; expected a mapping such as `train: {{max_iters: 100}}`")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def read_yaml_file(path: str | Path, what: str) -> Any:
    """`yaml.safe_load` of a UTF-8 file; unreadable, non-UTF-8 or invalid YAML files raise ConfigError naming it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None


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
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"_base_ in {path} must be a file name or a list of file names, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"_base_ file {base!r} named in {path} not found (looked at {base_path.resolve()})")
        _merge(merged, load_yaml_tree(base_path, sources, _seen + (path,)), sources, str(base_path.resolve()))
    _merge(merged, data, sources, str(path))
    return merged


def add_set_argument(parser: argparse.ArgumentParser, example: str = "optim.lr=0.01 data.batch_size=8") -> None:
    """The one `--set KEY=VALUE ...` option: several pairs after one flag, and the flag repeatable."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=f"config overrides (YAML values; several per flag, flag repeatable), e.g. --set {example}",
    )


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=value` strings -> (key, value) pairs; values are parsed as YAML (so 0.01, true, [1, 2] work)."""
    pairs = []
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=0.01")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        pairs.append((key, value))
    return pairs


def apply_overrides(data: dict[str, Any], overrides: list[str], sources: dict[str, str]) -> None:
    """Apply `a.b=value` strings to a config dict (see parse_overrides), recording "--set" as their source."""
    for key, value in parse_overrides(overrides):
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                sources.setdefault(".".join(parts[: i + 1]), "--set")
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}={value!r}: {part!r} is not a section")
        node[parts[-1]] = value
        sources[key] = "--set"


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> Config:
    """Load, merge, override and validate a config; `None` means all defaults.

    `base`, a config dict (a checkpoint's), stands in for the file: the overrides apply to it and the
    result is checked the same way. Its keys count as given (`Config.was_given`), as a file's do.
    """
    sources: dict[str, str] = {}
    if base is not None:
        data = copy.deepcopy(base)
        _record_given(sources, data)
    else:
        data = load_yaml_tree(path, sources) if path else {}
    apply_overrides(data, list(overrides or []), sources)
    cfg = Config.from_dict(data, sources)
    validate(cfg, sources)
    cfg._given = frozenset(sources)  # see Config.was_given: defaults are not what the user asked for
    return cfg


def _record_given(given: dict[str, str], data: dict[str, Any], prefix: str = "") -> None:
    """Every key of `data` as given, with no origin to name in errors (the caller knows where it came from)."""
    for key, value in data.items():
        given[f"{prefix}{key}"] = ""
        if isinstance(value, dict):
            _record_given(given, value, f"{prefix}{key}.")


Check = typing.Callable[[Any], bool]


def _int_at_least(low: int) -> tuple[Check, str]:
    return (lambda v: isinstance(v, int) and v >= low), f"an integer >= {low}"


def _int_range(low: int, high: int) -> tuple[Check, str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
    ), f"an integer from {low} to {high}"


def _number(
    low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = False
) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        return (
            isinstance(v, (int, float))
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )

    if high == float("inf"):
        return ok, f"a number {'>' if low_open else '>='} {low:g}"
    return ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _optional(rule: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def _list_of(rule: tuple[Check, str], length: int | None = None, name: str = "") -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, list) and (len(v) == length if length else len(v) > 0) and all(rule[0](x) for x in v)

    count = f"{length} values" if length else "a non-empty list"
    return ok, f"{name or count}, each {rule[1]}"


def _one_or_list(rule: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: rule[0](v) or _list_of(rule)[0](v)), f"{rule[1]} or a non-empty list of them"


def _choices(*options: Any) -> tuple[Check, str]:
    return (lambda v: v in options), f"one of {', '.join(map(str, options))}"


_TEXT = ((lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string")
_ANY_BOOL = ((lambda v: isinstance(v, bool)), "true or false")
_SIZE = _list_of(_int_at_least(1), 2, "[height, width]")
_POS = _number(0, low_open=True)
_NONNEG = _number(0)
_FRACTION = _number(0, 1)
_DEVICE = (
    (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None),
    "auto, cpu, mps, cuda or cuda:N",
)


def _is_duration(value: Any) -> bool:
    from reseg.engine.budget import parse_duration

    try:
        parse_duration(value)
    except ResegError:
        return False
    return True


# Every config key -> (check, what is allowed). Keys missing here are only type-checked.
RULES: dict[str, tuple[Check, str]] = {
    "data.dataset": _choices("synthetic", "camvid", "cityscapes", "folder"),
    "data.root": _TEXT,
    "data.train_split": _TEXT,
    "data.val_split": _TEXT,
    "data.batch_size": _int_at_least(1),
    "data.val_batch_size": _int_at_least(1),
    "data.num_workers": _int_at_least(0),
    "data.crop_size": _SIZE,
    "data.scale_range": _list_of(_POS, 2, "[min, max] with min <= max"),
    "data.hflip": _ANY_BOOL,
    "data.color_jitter": _FRACTION,
    "data.augment": _choices("standard", "photometric", "strong"),
    "data.class_mix": _FRACTION,
    "data.rare_class_temperature": _NONNEG,
    "data.eval_size": _optional(_SIZE),
    "data.size_divisor": _int_at_least(1),
    "data.label_format": _choices("auto", "segnet", "camvid32", "labelIds", "labelTrainIds"),
    "data.classes_file": _optional(_TEXT),
    "data.skip_bad_samples": _ANY_BOOL,
    "data.class_weights": _choices("none", "median_frequency", "inverse_log"),
    "data.train_sequences": _optional(_list_of(_TEXT, name="a non-empty list of file-name prefixes")),
    "data.val_sequences": _optional(_list_of(_TEXT, name="a non-empty list of file-name prefixes")),
    "data.synthetic_mix": _number(0, 1, high_open=True),
    "data.synthetic_mix_root": _TEXT,
    "data.synthetic_sizes": _list_of(_int_at_least(0), 3, "[train, val, test] image counts"),
    "data.synthetic_size": _SIZE,
    "data.synthetic_seed": _int_at_least(0),
    "data.synthetic_difficulty": _choices("standard", "easy"),
    "model.name": _TEXT,
    "model.num_classes": _optional(_int_at_least(1)),
    "model.encoder": _TEXT,
    "model.encoder_weights": _optional(_TEXT),
    "model.encoder_cut": _TEXT,
    "model.encoder_width": _number(0.125, 1.0),
    "model.freeze_encoder": _ANY_BOOL,
    "model.renet_layers": _int_at_least(0),
    "model.renet_hidden": _one_or_list(_int_at_least(1)),
    "model.renet_patch": _one_or_list(_int_at_least(1)),
    "model.cell": _choices("gru", "lstm", "mingru"),
    "model.decoder_filters": _list_of(_int_at_least(1)),
    "model.decoder": _choices("deconv", "skip"),
    "model.skip_layers": ((lambda v: isinstance(v, list) and all(_TEXT[0](x) for x in v)), "a list of layer names"),
    "model.decoder_channels": _list_of(_int_at_least(1)),
    "model.decoder_dropout": _number(0, 1, high_open=True),
    "model.ibn_blocks": _int_range(0, 5),
    "model.sync_bn": _ANY_BOOL,
    "optim.name": _choices("sgd", "adam", "adamw", "adadelta"),
    "optim.lr": _POS,
    "optim.momentum": _number(0, 1, high_open=True),
    "optim.nesterov": _ANY_BOOL,
    "optim.weight_decay": _NONNEG,
    "optim.encoder_lr_mult": _NONNEG,
    "optim.grad_clip": _optional(_POS),
    "optim.betas": _list_of(_number(0, 1, high_open=True), 2, "[beta1, beta2]"),
    "optim.eps": _POS,
    "optim.rho": _FRACTION,
    "sched.name": _choices("poly", "cosine", "step", "constant"),
    "sched.power": _NONNEG,
    "sched.warmup_iters": _int_at_least(0),
    "sched.warmup_ratio": _FRACTION,
    "sched.step_size": _int_at_least(1),
    "sched.gamma": _POS,
    "sched.min_lr": _NONNEG,
    "sched.by_epoch": _ANY_BOOL,
    "loss.dice_weight": _NONNEG,
    "loss.lovasz_weight": _NONNEG,
    "loss.label_smoothing": _number(0, 1, high_open=True),
    "loss.ignore_index": _choices(255),
    "train.max_iters": _optional(_int_at_least(1)),
    "train.epochs": _optional(_int_at_least(1)),
    "train.time_budget": (_is_duration, "null, a number of seconds > 0, or a duration such as 90s, 10m, 1h30m"),
    "train.val_interval": _int_at_least(0),
    "train.checkpoint_interval": _int_at_least(0),
    "train.log_interval": _int_at_least(0),
    "train.seed": _int_at_least(0),
    "train.deterministic": _ANY_BOOL,
    "train.amp": _ANY_BOOL,
    "train.channels_last": _ANY_BOOL,
    "train.device": _DEVICE,
    "train.early_stop_patience": _optional(_int_at_least(1)),
    "train.init_from": _optional(_TEXT),
    "train.ema_decay": _number(0, 1, high_open=True),
    "train.by_epoch": _ANY_BOOL,
    "eval.mode": _choices(*EVAL_MODES),
    "eval.crop": _optional(_SIZE),
    "eval.stride": _optional(_SIZE),
    "eval.flip": _ANY_BOOL,
    "eval.scales": _list_of(_POS, name="a non-empty list of scales"),
}


def _flat_items(cfg: Config) -> Iterator[tuple[str, Any]]:
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            yield f"{section.name}.{f.name}", getattr(getattr(cfg, section.name), f.name)


def validate(cfg: Config, sources: dict[str, str] | None = None) -> None:
    """Check every key's range and the relations between keys; errors name the key, the value and what is allowed."""
    sources = sources or {}
    for key, value in _flat_items(cfg):
        rule = RULES.get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"config key {key!r}{_where(key, sources)} is {value!r}; expected {rule[1]}")
    lo, hi = cfg.data.scale_range
    if lo > hi:
        raise ConfigError(
            f"config key 'data.scale_range'{_where('data.scale_range', sources)} is "
            f"{cfg.data.scale_range!r}; expected [min, max] with min <= max"
        )
    shared = set(cfg.data.train_sequences or ()) & set(cfg.data.val_sequences or ())
    if shared:
        raise ConfigError(
            f"config keys 'data.train_sequences' and 'data.val_sequences' both list {sorted(shared)}; "
            "a sequence that trains cannot also validate"
        )
    if cfg.train.max_iters is None and cfg.train.epochs is None and cfg.train.time_budget is None:
        raise ConfigError("set one of train.max_iters, train.epochs or train.time_budget")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (a crash leaves the old file or the new one)."""
    from reseg.io import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
