"""The Python API: load a trained model and segment images; build, train, evaluate and package models.

Images are RGB numpy arrays, H x W x 3, dtype uint8 (what `np.asarray(PIL.Image.open(f).convert("RGB"))`
gives; OpenCV reads BGR: convert with `cv2.cvtColor(img, cv2.COLOR_BGR2RGB)`), or paths of image files.
Masks are H x W uint8 arrays of class ids 0..C-1, in the order of `model.class_names`.
The `reseg` commands call these same functions, so a script and the command line give the same results.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reseg.errors import ResegError

if TYPE_CHECKING:
    from torch import nn

    from reseg.config import Config
    from reseg.predictor import Predictor

Image = np.ndarray | str | Path
# Predictor arguments `reseg.load` passes on (the rest come from the model itself), plus where its dataset is now
_NOT_OPTIONS = {"self", "model", "device", "num_classes", "class_names", "palette", "config"}


class Segmenter:
    """A trained model ready to segment images (made by `reseg.load`).

    `segmenter(image)` -> mask; `segmenter.predict(images)` -> masks; `segmenter.overlay(image, mask)` -> RGB.
    `segmenter.predictor` is the engine underneath (batches of tensors, logits) for advanced use.
    """

    def __init__(self, predictor: Predictor, source: str | None = None) -> None:
        self.predictor = predictor
        self.source = source

    @property
    def class_names(self) -> list[str]:
        """Class names; mask value i is class_names[i]."""
        return list(self.predictor.class_names or [])

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """One RGB colour per class (what `overlay` draws)."""
        return list(self.predictor.palette or [])

    @property
    def config(self) -> Config:
        """The model's config (data, model and eval settings)."""
        return self.predictor.config

    @property
    def device(self) -> Any:
        return self.predictor.device

    def __call__(self, image: Image) -> np.ndarray:
        """One image -> its H x W uint8 mask of class ids."""
        return self.predict([image])[0]

    def predict(
        self, images: Sequence[Image], probabilities: bool = False, batch_size: int = 8
    ) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """Images (any sizes) -> a list of H x W uint8 masks; with `probabilities`, also a list of C x H x W
        float32 class probabilities. Images of one size run `batch_size` at a time."""
        if isinstance(images, (np.ndarray, str, Path)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = [images]
        arrays = [as_rgb(image) for image in images]
        return self.predictor.predict(arrays, return_probs=probabilities, batch_size=batch_size)

    def adapt(self, images: Sequence[Image], batch_size: int = 8, weight: float | None = None) -> int:
        """Re-estimate the batch-norm statistics on unlabeled images of the streets to segment (reseg.adaptation:
        a gain under light the training drives never showed); `weight`: the new statistics' share (default
        reseg.adaptation.DEFAULT_WEIGHT). Returns how many images went in; later predictions use them."""
        if isinstance(images, (np.ndarray, str, Path)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = [images]
        return self.predictor.adapt_batchnorm((as_rgb(image) for image in images), batch_size, weight=weight)

    def overlay(self, image: Image, mask: np.ndarray, opacity: float = 0.5) -> np.ndarray:
        """The class colours blended over the image (H x W x 3 uint8 RGB); ignored pixels (255) stay as they are."""
        from reseg.viz import overlay

        return overlay(as_rgb(image), mask, self.palette, opacity)

    def __repr__(self) -> str:
        return f"Segmenter({self.source or 'model'}: {len(self.class_names)} classes, {self.predictor.describe()})"


def as_rgb(image: Image) -> np.ndarray:
    """An RGB uint8 H x W x 3 array from an array (H x W grey and H x W x 4 are accepted) or an image file."""
    if isinstance(image, (str, Path)):
        from reseg.data.base import read_image

        return read_image(image)
    if not isinstance(image, np.ndarray):
        raise ResegError(
            f"an image must be a numpy array (H x W x 3, RGB, uint8) or a file path, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ResegError(
            f"an image array must be uint8 (0..255), got {image.dtype}; "
            f"for floats in 0..1 use (image * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ResegError(f"an image array must be H x W x 3 (RGB), got shape {image.shape}")
    return image[..., :3]


def predictor_option_names() -> list[str]:
    """What `reseg.load(..., **options)` accepts: the inference settings of reseg.predictor.Predictor."""
    from reseg.predictor import Predictor

    names = [n for n in inspect.signature(Predictor.__init__).parameters if n not in _NOT_OPTIONS]
    return names + ["data_root"]


def load(source: str | Path, device: str = "auto", **options: Any) -> Segmenter:
    """A model ready to segment images, from a training checkpoint (.pt), a model folder (`reseg package`)
    or a Hugging Face Hub model `hf://user/repo[@revision]` (needs `pip install 'reseg[hub]'`).

    `device`: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". `options` change how it infers
    (defaults: the model's eval settings), e.g. `flip=True`, `scales=[0.75, 1, 1.25]`, `mode="slide",
    crop=(512, 512)`, `infer_size=(360, 480)`, `amp=True`, `backend="onnxruntime"`; see
    `reseg.api.predictor_option_names()`.
    """
    from reseg.predictor import Predictor

    _check_names(options, predictor_option_names(), "reseg.load option")
    source = _source(source)
    return Segmenter(Predictor.from_checkpoint(source, device=device, **options), source=str(source))


def build_model(
    name_or_config: str | Path | Mapping[str, Any] | Config, num_classes: int | None = None, **model_options: Any
) -> nn.Module:
    """A freshly initialised model: from a model name ("reseg", "unet_vgg16", "fpn_vgg16",
    "deeplabv3plus_vgg16"), a config YAML path, a config dict (whole, or its `model` section) or a Config.

    `model_options` set `model.*` keys (e.g. `renet_hidden=64, decoder="skip"`); `num_classes` is required
    unless the config sets model.num_classes. Pretrained encoder weights download only when
    `encoder_weights="imagenet"` is asked for."""
    from reseg.config import Config, ModelConfig, load_config
    from reseg.models import MODELS
    from reseg.models import build_model as build

    if isinstance(name_or_config, Config):
        base = name_or_config.to_dict()
    elif isinstance(name_or_config, Mapping):
        base = copy.deepcopy(dict(name_or_config))
        base = base if "model" in base else {"model": base}
    elif isinstance(name_or_config, str) and name_or_config in MODELS:
        base = {"model": {"name": name_or_config}}
    elif Path(name_or_config).suffix in (".yaml", ".yml") or Path(name_or_config).is_file():
        base = load_config(name_or_config).to_dict()
    else:
        raise ResegError(
            f"unknown model {str(name_or_config)!r}; expected a model name ({', '.join(MODELS)}), "
            f"a config YAML file, a config dict or a Config"
        )
    _check_names(model_options, list(ModelConfig.__dataclass_fields__), "model option")
    base.setdefault("model", {}).update(model_options)
    if num_classes is not None:
        base["model"]["num_classes"] = num_classes
    return build(load_config(None, base=base))


def train(
    config: str | Path | Mapping[str, Any] | Config,
    work_dir: str | Path | None = None,
    *,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a model (what `reseg train` runs); checkpoints, logs and metrics go to `work_dir`
    (default for a config file: work_dirs/<its name>). Returns a summary (status, iteration, best_mIoU, ...).

    `config`: a YAML file, a config dict or a Config. `overrides` change config keys, by section
    (`train={"max_iters": 100}`) or dotted (`**{"optim.lr": 0.01}`). `resume=True` continues from
    <work_dir>/last.pt, a path from that checkpoint; `overwrite` starts again in a work dir that holds a run."""
    from reseg.engine.trainer import train as run_training

    cfg = _training_config(config, overrides)
    if work_dir is None:
        if not isinstance(config, (str, Path)):
            raise ResegError("train() needs a work_dir when the config is not a file")
        work_dir = Path("work_dirs") / Path(config).stem
    work_dir = Path(work_dir)
    if resume is not None and resume is not False and overwrite:
        raise ResegError("resume and overwrite contradict each other: continue the run, or start it again")
    checkpoint = work_dir / "last.pt" if resume is True else (Path(resume) if resume else None)
    return run_training(cfg, work_dir, resume=checkpoint, progress=progress, overwrite=overwrite)


def _training_config(config: str | Path | Mapping[str, Any] | Config, overrides: Mapping[str, Any]) -> Config:
    """The validated Config of `train`: the file, dict or Config with the keyword overrides applied."""
    from reseg.config import Config, load_config

    pairs = _dotted(overrides)
    if isinstance(config, Config):
        return load_config(None, pairs, base=config.to_dict()) if pairs else config
    if isinstance(config, (str, Path)):
        return load_config(config, pairs)
    if isinstance(config, Mapping):
        return load_config(None, pairs, base=dict(config))
    raise ResegError(f"config must be a YAML file, a dict or a Config, got {type(config).__name__}")


def _dotted(overrides: Mapping[str, Any]) -> list[str]:
    """{"train": {"max_iters": 5}, "optim.lr": 0.1} -> ["train.max_iters=5", "optim.lr=0.1"] (values as JSON,
    which the config's YAML parser reads back unchanged)."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, Mapping) and "." not in key:
            out += _dotted({f"{key}.{k}": v for k, v in value.items()})
        else:
            out.append(f"{key}={json.dumps(value)}")
    return out


def evaluate(
    model: str | Path,
    data_root: str | Path | None = None,
    split: str | None = None,
    out: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    device: str = "auto",
    save_preds: str | Path | None = None,
    save_format: str = "trainid",
    samples: int = 4,
    workers: int | None = None,
    batch_size: int = 1,
    adapt_bn: bool = False,
    adapt_weight: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score a model on a labelled split and write the report, as `reseg evaluate --checkpoint` does:
    metrics.json, per_class.csv, report.md and figures in `out` (default: eval_<split> beside the model).
    Returns the metrics record (mIoU, mAcc, aAcc, per_class, ...; fractions).

    `model`: a checkpoint, model folder or hf:// source, loaded with `device` and `options` as by `reseg.load`.
    The dataset is the model's (data.* of its config), at `data_root` when given; `overrides` are `--set`
    strings ("data.eval_size=[360,480]"). `save_preds` also writes each prediction as <stem>.png
    (`save_format` "trainid" or "cityscapes"). `adapt_bn` first re-estimates the batch-norm statistics on
    the split's images, labels unused (`reseg evaluate --adapt-bn`; `adapt_weight`: their share)."""
    from reseg.evaluation_runs import evaluate_checkpoint

    _check_names(options, predictor_option_names(), "reseg.evaluate option")
    return evaluate_checkpoint(
        _source(model),
        overrides=list(overrides),
        data_root=data_root,
        split=split,
        out=out,
        device=device,
        predictor_options={**options, "data_root": data_root},
        save_preds=save_preds,
        save_format=save_format,
        samples=samples,
        workers=workers,
        batch=batch_size,
        adapt_bn=adapt_bn,
        adapt_weight=adapt_weight,
    )


def _source(source: str | Path) -> str | Path:
    """Hub sources stay strings (a Path would fold their `//`)."""
    return source if isinstance(source, str) and source.startswith("hf://") else Path(source)


def _check_names(given: Mapping[str, Any], valid: Sequence[str], what: str) -> None:
    from reseg.config import closest_keys

    for name in given:
        if name not in valid:
            close = closest_keys(name, list(valid))
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(valid)}"
            raise ResegError(f"unknown {what} {name!r}{hint}")
