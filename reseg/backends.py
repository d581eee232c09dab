"""Inference backends: where the Predictor's padded batches run, (N, 3, H, W) float32 -> (N, C, H, W) logits.

`eager` is the PyTorch model itself. `onnxruntime` is the same model exported to ONNX (reseg.onnx)
and run by ONNX Runtime on the CPU: batch norm folded into the convolutions, ReLU fused, ReNet's GRUs as
ONNX GRU nodes. On CPUs without native bf16 that is the fast path (bf16 autocast does not help there).
`onnxruntime-int8` adds static int8 quantisation of every convolution but the classifier and of ReNet's
input projections (per-channel weights, activations calibrated on training images); the recurrences stay
fp32. `auto` (reseg.backend_choice) measures these once per model, input shape and machine.

A model with minGRU ReNet layers runs one fixed-size export per input shape (batch, height, width) it is
called with, made on the first call at that shape: inside reseg.models.renet.static_export() its sweeps
record a Loop-free unrolled scan, which ONNX Runtime runs far faster than the ONNX Loop a size-generic
export needs. Other models (GRU/LSTM ReNet: ONNX GRU nodes take any size), and shapes past the first few
of a backend (a folder of images of many sizes), run the one size-generic export.

Exported and quantised files are cached (cache_dir(): ~/.cache/reseg/onnx, or $RESEG_CACHE_DIR) under a
digest of the weights, the architecture, the backend settings, the fixed shape if any and the library
versions, so only the first run of a checkpoint (at a shape) pays for the export (seconds) and the
calibration (about a second per image). The Predictor keeps padding, sliding windows and flip/scale
averaging in PyTorch, so every backend supports all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg.backend_names import AUTO, BACKENDS, CHOICES
from reseg.data.base import collect_images, read_image
from reseg.errors import ResegError
from reseg.models.padding import pad_to_multiple
from reseg.models.renet import ReNet, static_export
from reseg.onnx.export import export_onnx
from reseg.onnx.quantize import quantize_int8
from reseg.onnx.session import OnnxSession, SessionError, onnxruntime_module
from reseg.preprocess import Normalizer, rgb_batch, run_size

log = logging.getLogger("reseg.backends")

__all__ = [
    "AUTO",
    "BACKENDS",
    "CHOICES",
    "BackendError",
    "Calibration",
    "ModelSource",
    "OnnxRuntimeBackend",
    "backend_name",
    "cache_dir",
    "calibration_batches",
    "calibration_inputs",
    "config_has_mingru",
    "has_mingru",
    "weights_digest",
    "writable_cache",
]

FORMAT_VERSION = "2"  # bump when the exported or quantised graphs change for the same weights
EXPORT_SIZE = (64, 96)  # trace size of the size-generic file: the graph takes any batch, height and width
CALIBRATION_IMAGES = 16
CACHE_KEEP = 32  # cached files kept (least recently used removed first); fixed-size files come per shape
STATIC_SHAPES = 4  # fixed-size exports one backend makes before new shapes go to the size-generic file
METADATA_KEY = "reseg_cache_key"

Shape = tuple[int, int, int]  # (batch, height, width) of a fixed-size export


class BackendError(ResegError):
    """A backend cannot be built or cannot do what was asked of it."""


# ---------------------------------------------------------------------------------------------- names


def backend_name(backend: str | None = None, int8: bool | None = None) -> str:
    """'eager', 'onnxruntime', 'onnxruntime-int8' or 'auto' from a backend name and an int8 flag (--backend,
    --int8)."""
    name = backend or ("onnxruntime" if int8 else "eager")
    if name not in CHOICES:
        raise BackendError(f"unknown inference backend {name!r}; valid choices: {', '.join(CHOICES)}")
    if int8 and name == "eager":
        raise BackendError(
            "int8 inference runs on ONNX Runtime: use --backend onnxruntime --int8 (or --int8 "
            "alone); the eager backend has no int8 path"
        )
    if int8 and name == AUTO:
        raise BackendError(
            "--backend auto chooses between eager, onnxruntime and onnxruntime-int8 itself: leave "
            "--int8 out (or use --backend onnxruntime --int8 to force int8)"
        )
    return "onnxruntime-int8" if int8 else name


def _onnxruntime() -> Any:
    return onnxruntime_module("the onnxruntime backend needs it (or use --backend eager)")


def check_settings(
    name: str, device: torch.device, amp_dtype: torch.dtype | None, channels_last: bool, compile: bool
) -> None:
    """ONNX Runtime runs fp32 or int8 on the CPU: eager-only options are errors, not silently ignored (with
    `auto` they apply to its eager candidate)."""
    if name in ("eager", AUTO):
        return
    if device.type != "cpu":
        raise BackendError(
            f"the {name} backend runs on the CPU, but device {device} was asked for; use "
            f"--device cpu, or --backend eager on {device.type}"
        )
    for flag, given in (("--amp", amp_dtype is not None), ("--channels-last", channels_last), ("--compile", compile)):
        if given:
            raise BackendError(
                f"{flag} applies to the eager backend; the {name} backend chooses its own "
                f"precision and layout (leave {flag} out)"
            )


def has_mingru(model: nn.Module) -> bool:
    """Whether the model has minGRU ReNet layers: those export Loop-free only at a fixed input size."""
    return any(isinstance(m, ReNet) and m.cell == "mingru" for m in model.modules())


def config_has_mingru(model_cfg: Any) -> bool:
    """has_mingru for the model a config's `model` section describes, without building it (ReSeg is the model
    with ReNet layers)."""
    return (
        getattr(model_cfg, "name", None) == "reseg"
        and getattr(model_cfg, "cell", None) == "mingru"
        and int(getattr(model_cfg, "renet_layers", 0) or 0) > 0
    )


@dataclass(frozen=True)
class ModelSource:
    """A model known by the digest of its weights and built only when needed (an ONNX Runtime backend with a
    cached file never builds the PyTorch model). `static`: ONNX Runtime runs it from fixed-size exports, one
    per input shape (has_mingru; from a checkpoint, its config says so without building the model)."""

    digest: str
    build: Callable[[], nn.Module]
    static: bool = False

    @classmethod
    def of(cls, model: nn.Module) -> ModelSource:
        arch = {"class": f"{type(model).__module__}.{type(model).__qualname__}", "modules": repr(model)}
        return cls(weights_digest(model.state_dict(), arch), lambda: model, has_mingru(model))


# ---------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Where exported/quantised models are kept: $RESEG_CACHE_DIR, else $XDG_CACHE_HOME/reseg/onnx."""
    if os.environ.get("RESEG_CACHE_DIR"):
        return Path(os.environ["RESEG_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "reseg" / "onnx"


def weights_digest(state: Mapping[str, torch.Tensor], architecture: Any) -> str:
    """A digest of every tensor (name, dtype, shape, bytes) and of a JSON-able architecture description."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(architecture, sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _versions() -> dict[str, str]:
    ort = _onnxruntime()
    return {"format": FORMAT_VERSION, "torch": torch.__version__, "onnxruntime": ort.__version__}


def cache_key(model_digest: str, name: str, calibration_key: str | None = None, shape: Shape | None = None) -> str:
    """The file name stem of a cached model: the weights' digest, the backend, its calibration, the versions
    and, for a fixed-size export, "static" and its batch, height and width."""
    h = hashlib.blake2b(digest_size=12)
    fields: list[Any] = [model_digest, name, calibration_key, _versions()]
    if shape is not None:
        fields += ["static", [int(v) for v in shape]]
    h.update(json.dumps(fields).encode())
    return f"{h.hexdigest()}-{name}" + (f"-static-{shape_text(shape)}" if shape is not None else "")


def shape_text(shape: Shape) -> str:
    """'1x360x480' for batch 1 at 360x480."""
    return "x".join(str(int(v)) for v in shape)


def _prune(folder: Path, keep: int = CACHE_KEEP) -> None:
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


def writable_cache(folder: Path | None) -> Path:
    """The cache folder (None: cache_dir()), created; an unwritable one falls back to a temporary folder (with
    a warning)."""
    folder = Path(folder) if folder is not None else cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"reseg-onnx-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    warnings.warn(f"cannot write the model cache {folder}; using {fallback} (set RESEG_CACHE_DIR)", stacklevel=3)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


# ---------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Images to calibrate int8 activations on, read only when a quantised model has to be made.

    `key` names the images (it is part of the cache key); `load()` returns RGB uint8 HxWx3 arrays.
    """

    key: str
    load: Callable[[], list[np.ndarray]]

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray]) -> Calibration:
        arrays = [np.asarray(im) for im in images]
        if not arrays:
            raise BackendError("int8 calibration got no images")
        h = hashlib.blake2b(digest_size=12)
        for a in arrays:
            h.update(f"{a.shape}|{a.dtype}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return cls(f"arrays:{h.hexdigest()}", lambda: arrays)

    @classmethod
    def from_paths(cls, inputs: Sequence[str], count: int = CALIBRATION_IMAGES) -> Calibration:
        """Up to `count` images, evenly spaced, from image files, folders or globs (checked now, read later)."""
        files = [str(p) for p, _ in collect_images(list(inputs))]
        files = _evenly(files, count)
        stamps = [f"{f}:{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}" for f in files]

        def load() -> list[np.ndarray]:
            return [read_image(f) for f in files]

        return cls("files:" + hashlib.blake2b("\n".join(stamps).encode(), digest_size=12).hexdigest(), load)

    @classmethod
    def from_training_split(
        cls, cfg: Any, count: int = CALIBRATION_IMAGES, where: str = "the checkpoint"
    ) -> Calibration:
        """Up to `count` images of the training split a config names (read lazily; missing data is an error
        only when a quantised model has to be made)."""
        data = cfg.data
        key = f"train:{data.dataset}:{Path(str(data.root)).resolve()}:{data.train_split}:{count}"

        def load() -> list[np.ndarray]:
            from reseg.data import build_dataset  # every dataset reader: loaded only when calibration needs it

            try:
                dataset = build_dataset(cfg, data.train_split, transform=None, require_labels=False)
            except ResegError as err:
                raise BackendError(
                    f"int8 calibration reads training images, and the training split of {where} "
                    f"({data.dataset} under {data.root}, split {data.train_split!r}) cannot be "
                    f"read: {err}. Pass --calibration IMAGES (a folder or glob of images like "
                    f"the training ones)"
                ) from None
            if len(dataset) == 0:
                raise BackendError(
                    f"int8 calibration: the training split {data.train_split!r} under {data.root} "
                    f"holds no images; pass --calibration IMAGES"
                )
            return [dataset.read_image(i) for i in _evenly(list(range(len(dataset))), count)]

        return cls(key, load)


def _evenly(items: list[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def as_calibration(value: Any) -> Calibration | None:
    """Calibration from what a caller passes: a Calibration, image arrays, or paths/globs."""
    if value is None or isinstance(value, Calibration):
        return value
    if isinstance(value, (str, Path)):
        return Calibration.from_paths([str(value)])
    items = list(value)
    if items and all(isinstance(v, (str, Path)) for v in items):
        return Calibration.from_paths([str(v) for v in items])
    return Calibration.from_images(items)


def calibration_inputs(
    images: Sequence[np.ndarray],
    size_divisor: int = 0,
    infer_size: tuple[int, int] | None = None,
    crop: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> list[np.ndarray]:
    """Normalised (1, 3, H, W) float32 arrays as the network sees them: resized as inference resizes them
    (`preprocess.run_size`: `infer_size`, or down to `max_pixels`), a centred `crop` window (sliding-window
    inference), padded to `size_divisor`."""
    normalize = Normalizer("cpu")
    out = []
    for i, im in enumerate(images):
        try:
            pixels = torch.from_numpy(rgb_batch([im]))
        except ResegError as err:
            raise BackendError(f"calibration image {i}: {err}") from None
        x = normalize.at_size(pixels, run_size(*pixels.shape[1:3], infer_size, max_pixels))
        if crop is not None:
            h, w = x.shape[-2:]
            ch, cw = min(crop[0], h), min(crop[1], w)
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            x = x[..., y0 : y0 + ch, x0 : x0 + cw]
        out.append(pad_to_multiple(x, size_divisor).numpy())
    return out


def calibration_batches(inputs: Sequence[np.ndarray], shape: Shape) -> list[np.ndarray]:
    """Network inputs (1, 3, h, w) as (batch, 3, height, width) arrays for a fixed-size file: each resized to
    its height and width, then stacked `batch` at a time (the last batch filled from the first inputs)."""
    n, h, w = (int(v) for v in shape)
    if not inputs:
        raise BackendError("int8 calibration got no images")
    resized = []
    for x in inputs:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if tuple(t.shape[-2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        resized.append(t)
    count = -(-len(resized) // n) * n
    ring = [resized[i % len(resized)] for i in range(count)]
    return [torch.cat(ring[i : i + n]).numpy() for i in range(0, count, n)]


# ---------------------------------------------------------------------------------------------- running


def export_fp32(model: nn.Module, out: Path, key: str, shape: Shape | None = None) -> Path:
    """The model as an fp32 ONNX file with its cache key in the file's metadata (a file copied or renamed by
    hand is then still recognised, and a stale one is not).

    Without `shape`: for any batch, height and width, checked against PyTorch at two sizes. With `shape`
    (batch, height, width): traced there inside static_export() (minGRU sweeps unrolled, no ONNX Loop) and
    valid at that shape only, so it is checked there alone, on a random input other than the traced one."""
    model = model.eval()
    if shape is None:
        export_onnx(model, out, size=EXPORT_SIZE, dynamic=True, metadata={METADATA_KEY: key})
        return out
    n, h, w = (int(v) for v in shape)
    with static_export():
        export_onnx(model, out, size=(h, w), dynamic=False, batch=n, metadata={METADATA_KEY: key})
    return out


def _cached(path: Path, key: str) -> OnnxSession | None:
    """The cached file's session when it exists, loads and carries its key; a damaged one is removed."""
    if not path.is_file():
        return None
    try:
        session = OnnxSession(path)
    except SessionError as err:
        log.warning("rebuilding the cached model %s: %s", path, err)
        path.unlink(missing_ok=True)
        return None
    if session.metadata(METADATA_KEY) != key:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # least recently used goes first when the cache is pruned
    return session


class OnnxRuntimeBackend:
    """The ONNX Runtime backend `name` for a model: (N, 3, H, W) float32 in, (N, C, H, W) logits out, from
    cached files, or files exported (and quantised) now on a cache miss.

    `calibration(shape)` gives normalised network inputs, for a fixed-size file (N, 3, H, W) arrays of its
    `shape`, for the size-generic file (shape None) inputs as the Predictor runs them; it is called only when
    an int8 file has to be made, and `source.build` only when an fp32 file has to be exported. A static
    source (minGRU) gets a fixed-size file per input shape, made on the first call at that shape (the shape
    is known then: padded frames and images, windows, scales); past STATIC_SHAPES distinct shapes, new ones
    run the size-generic file, as every shape of other models does (made now, so its errors come first).
    """

    def __init__(
        self,
        name: str,
        source: ModelSource,
        calibration: Callable[[Shape | None], list[np.ndarray]] | None = None,
        calibration_key: str | None = None,
        cache: str | Path | None = None,
        log_fn: Callable[[str], None] | None = None,
    ) -> None:
        _onnxruntime()
        if name not in ("onnxruntime", "onnxruntime-int8"):
            raise BackendError(f"{name!r} is not an ONNX Runtime backend")
        if name == "onnxruntime-int8" and calibration is None:
            raise BackendError("int8 quantisation needs calibration images (calibration=... / --calibration IMAGES)")
        self.name, self.source = name, source
        self.calibration, self.calibration_key = calibration, calibration_key
        self.folder = writable_cache(Path(cache) if cache is not None else None)
        self.say = log_fn or (lambda msg: log.info(msg))
        self.static = bool(source.static)
        self._sessions: dict[Shape | None, OnnxSession] = {}
        self._last: OnnxSession | None = None
        if not self.static:
            self._last = self.session(None)

    @property
    def path(self) -> Path:
        """The file of the latest call (before any call: the size-generic file, made for non-static models)."""
        if self._last is None:
            raise BackendError(
                "this ONNX Runtime backend has run no input yet: its fixed-size files are made "
                "per input shape on first use"
            )
        return self._last.path

    def shape_for(self, x: torch.Tensor) -> Shape | None:
        """The fixed shape whose file runs `x`, or None for the size-generic file."""
        if not self.static:
            return None
        shape = (int(x.shape[0]), int(x.shape[-2]), int(x.shape[-1]))
        made = sum(key is not None for key in self._sessions)
        return shape if shape in self._sessions or made < STATIC_SHAPES else None

    def session(self, shape: Shape | None) -> OnnxSession:
        """The session of the file for `shape` (None: size-generic), from the cache or made now."""
        if shape not in self._sessions:
            if shape is None and self.static and self._sessions:
                self.say(f"more than {STATIC_SHAPES} input shapes: the others run the size-generic ONNX file")
            self._sessions[shape] = self._make(shape)
        return self._sessions[shape]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._last = self.session(self.shape_for(x))
        return self._last(x)

    def _make(self, shape: Shape | None) -> OnnxSession:
        digest, name = self.source.digest, self.name
        fp32_key = cache_key(digest, "onnxruntime", shape=shape)
        fp32_path = self.folder / f"{fp32_key}.onnx"
        key = fp32_key if name == "onnxruntime" else cache_key(digest, name, self.calibration_key, shape)
        path = self.folder / f"{key}.onnx"
        hit = _cached(path, key)
        if hit is not None:
            return hit
        which = "once per checkpoint" if shape is None else f"once per checkpoint and input shape {shape_text(shape)}"
        if not (fp32_path.is_file() and _cached(fp32_path, fp32_key) is not None):
            self.say(f"exporting the model to ONNX ({which}) in {self.folder}")
            export_fp32(self.source.build(), fp32_path, fp32_key, shape)
        if name == "onnxruntime-int8":
            assert self.calibration is not None
            inputs = self.calibration(shape)
            self.say(f"quantising to int8, calibrating on {len(inputs)} batch(es) ({which}) in {self.folder}")
            quantize_int8(fp32_path, path, inputs, {METADATA_KEY: key})
        _prune(self.folder)
        return OnnxSession(path)
