"""The one inference path, shared by evaluation, `reseg predict`, `reseg video` and the benchmark.

Everything that changes a prediction (padding, sliding windows, flip/scale averaging, autocast; the
normalisation comes from reseg.preprocess) lives here, so a mask from `predict` equals the mask `evaluate`
scored and the mask `video` wrote for the same image and settings. Where a padded batch runs is the
backend's business (reseg.backends); the checkpoint is read by reseg.engine.checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg import backends
from reseg.backend_names import EAGER_BF16
from reseg.backends import AUTO, ModelSource
from reseg.banded import resize_rows, row_bands
from reseg.config import Config, inference_settings
from reseg.engine.checkpoint import read_checkpoint
from reseg.errors import ResegError
from reseg.models.padding import pad_bottom_right, pad_to_multiple
from reseg.preprocess import Normalizer, class_ids, rgb_batch, run_size, same_size_batches
from reseg.runtime import amp_dtype, autocast, cpu_has_native_bf16, folded_copy, place_model, resolve_device
from reseg.viz import resolve_palette


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ResegError(f"{name} must be [height, width], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ResegError(f"{name} must be positive, got {value!r}")
    return h, w


class Predictor:
    """Runs a segmentation model on normalised batches or RGB uint8 images; see module doc for why one path.

    mode="whole" runs each image at once; mode="slide" runs crop-sized windows every `stride` pixels and
    averages the logits where they overlap. `flip` and `scales` average softmax probabilities over
    horizontal flips and resized copies. `infer_size` (H, W) runs the model at that size and resizes the
    result back. Inputs are padded to a multiple of `size_divisor` and the output is cropped back.
    `backend` ("eager", "onnxruntime"; `int8=True` for "onnxruntime-int8") says where each padded batch runs
    (reseg.backends); padding, windows and TTA stay here, so every backend supports them. "auto" picks one of
    them at the first batch (reseg.backend_choice: measured once per model, shape and machine; eager-only
    options apply to its eager candidate); `backend_choice` then says which and why.
    """

    def __init__(
        self,
        model: nn.Module | ModelSource,
        device: str | torch.device = "cpu",
        num_classes: int | None = None,
        mode: str = "whole",
        crop: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        amp: bool | str = False,
        channels_last: bool = False,
        size_divisor: int = 32,
        pad_mode: str = "constant",
        infer_size: Sequence[int] | None = None,
        max_pixels: int | None = None,
        compile: bool = False,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        config: Any = None,
        backend: str | None = None,
        int8: bool | None = None,
        calibration: Any = None,
        backend_cache: str | Path | None = None,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ResegError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        if pad_mode not in ("constant", "reflect", "replicate"):
            raise ResegError(f"pad_mode must be constant, reflect or replicate, got {pad_mode!r}")
        self.backend = backends.backend_name(backend, int8)
        if self.backend not in ("eager", AUTO) and device in (None, "auto"):
            device = "cpu"  # ONNX Runtime runs on the CPU here
        self.device = resolve_device(device)
        self.backend_choice: str | None = None
        if self.backend == AUTO and self.device.type != "cpu":  # ONNX Runtime runs on the CPU here
            self.backend = "eager"
            self.backend_choice = f"backend auto -> eager (the model runs on {self.device}; ONNX Runtime on the CPU)"
        self.mode = mode
        self.crop = _pair(crop, "crop")
        self.stride = _pair(stride, "stride")
        if mode == "slide":
            if self.crop is None:
                raise ResegError("slide inference needs a crop size (eval.crop or --crop H W)")
            if self.stride is None:  # a third of overlap: every pixel away from the border is seen twice
                self.stride = (max(1, math.ceil(self.crop[0] * 2 / 3)), max(1, math.ceil(self.crop[1] * 2 / 3)))
        self.flip = bool(flip)
        self.scales = tuple(float(s) for s in (scales or (1.0,)))
        if any(s <= 0 for s in self.scales):
            raise ResegError(f"scales must be positive, got {list(self.scales)}")
        self.amp = amp
        self.amp_dtype = amp_dtype(amp, self.device)
        self.channels_last = bool(channels_last)
        self.size_divisor = int(size_divisor or 0)
        self.pad_mode = pad_mode
        self.infer_size = _pair(infer_size, "infer_size")
        self.max_pixels = int(max_pixels) if max_pixels else None
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        self.palette = [tuple(int(c) for c in rgb) for rgb in palette] if palette is not None else None
        self.config = config
        self.adapted: str | None = None  # set by adapt_batchnorm

        self._source = model if isinstance(model, ModelSource) else None
        self._model = None if isinstance(model, ModelSource) else model
        self._normalize = Normalizer(self.device)
        backends.check_settings(self.backend, self.device, self.amp_dtype, self.channels_last, bool(compile))
        self._auto = (calibration, backend_cache, bool(compile))
        self._net: Any = None  # with "auto": chosen at the first batch, whose shape the choice is keyed by
        if self.backend == "eager":
            self._net = self._eager_net(bool(compile))
        elif self.backend != AUTO:
            self._net = self._onnxruntime_backend(self.backend, calibration, backend_cache)

    @property
    def model(self) -> nn.Module:
        """The PyTorch model (built on first access where an ONNX Runtime backend did not need it)."""
        if self._model is None:
            assert self._source is not None
            self._model = self._source.build().eval()
        return self._model

    def _eager_net(self, compile: bool) -> Any:
        """The PyTorch model on the device (channels-last when asked), run as a copy with its batch norms folded
        into the convolutions (`model` stays as given), compiled when asked."""
        self._model = place_model(self.model, self.device, self.channels_last).eval()
        net = folded_copy(self._model)
        return torch.compile(net, dynamic=True) if compile else net

    def _calibration_inputs(
        self, cal: backends.Calibration, shape: backends.Shape | None, count: int | None = None
    ) -> list[np.ndarray]:
        """Calibration images as this predictor feeds the network (resized to run_size, windows, padding);
        for a fixed shape (batch, height, width), resized to it and stacked in batches."""
        images = cal.load()[:count]
        crop = self.crop if self.mode == "slide" else None
        inputs = backends.calibration_inputs(images, self.size_divisor, self.infer_size, crop, self.max_pixels)
        return inputs if shape is None else backends.calibration_batches(inputs, shape)

    def _onnxruntime_backend(self, name: str, calibration: Any, cache: str | Path | None) -> Any:
        """The ONNX Runtime backend `name` for this model (reseg.backends: cached files, exported/quantised on a
        cache miss, per input shape for minGRU models)."""
        source = self._source or ModelSource.of(self.model)
        cal = backends.as_calibration(calibration) if name == "onnxruntime-int8" else None
        if name == "onnxruntime-int8" and cal is None:
            raise backends.BackendError(
                "int8 inference needs calibration images: pass calibration=[RGB images] "
                "or --calibration IMAGES (from a checkpoint, its training split is used)"
            )
        crop = self.crop if self.mode == "slide" else None

        def inputs(shape: backends.Shape | None) -> list[np.ndarray]:
            assert cal is not None
            return self._calibration_inputs(cal, shape)

        cal_key = (
            None if cal is None else json.dumps([cal.key, self.size_divisor, self.infer_size, crop, self.max_pixels])
        )
        return backends.OnnxRuntimeBackend(
            name,
            source,
            calibration=inputs if cal is not None else None,
            calibration_key=cal_key,
            cache=cache,
            log_fn=_say,
        )

    def _choose_backend(self, x: torch.Tensor) -> None:
        """`auto`: measure (or recall) the candidates on this padded batch's shape, then run the chosen one."""
        from reseg import backend_choice

        calibration, cache, compile = self._auto
        source = self._source or ModelSource.of(self.model)
        shape = (int(x.shape[0]), int(x.shape[-2]), int(x.shape[-1]))
        cal = backends.as_calibration(calibration)
        built: dict[str, Any] = {}

        def eager() -> backend_choice.Net:
            built["eager"] = self._eager_net(compile)
            return lambda t: self._call(built["eager"], t)

        def onnxruntime(name: str) -> Callable[[], backend_choice.Net]:
            def build() -> backend_choice.Net:
                net = self._onnxruntime_backend(name, cal, cache)
                net.session(net.shape_for(x))  # files made now: a failure rules the candidate out
                built[name] = net
                return net

            return build

        def agreement_inputs() -> list[torch.Tensor]:
            if cal is None:
                return [x]
            try:
                arrays = self._calibration_inputs(cal, shape, backend_choice.AGREEMENT_IMAGES)
            except ResegError as err:  # int8 is out then too (its build reads the same images)
                _say(f"backend auto compares masks on the first batch only: {err}")
                return [x]
            return [torch.from_numpy(a) for a in arrays]

        def eager_bf16() -> backend_choice.Net:  # its own copy: channels-last weights would change eager's timing
            model = place_model(folded_copy(self.model), self.device, channels_last=True)
            built[EAGER_BF16] = model

            def run(t: torch.Tensor) -> torch.Tensor:
                with autocast(self.device, torch.bfloat16):
                    return model(t.contiguous(memory_format=torch.channels_last))

            return run

        candidates = {"eager": eager, "onnxruntime": onnxruntime("onnxruntime")}
        if cal is not None:
            candidates["onnxruntime-int8"] = onnxruntime("onnxruntime-int8")
        if self.amp_dtype is None and not compile and cpu_has_native_bf16():
            candidates[EAGER_BF16] = eager_bf16
        folder = backends.writable_cache(Path(cache) if cache is not None else None)
        choice, _ = backend_choice.choose(source.digest, shape, candidates, x, agreement_inputs, folder)
        self.backend = choice.backend
        self._net = built.get(choice.backend)
        if self._net is None:  # a stored choice: only the chosen backend is built
            candidates[choice.backend]()
            self._net = built[choice.backend]
        if self.backend == EAGER_BF16:  # eager with the options that make it so
            self.backend = "eager"
            self.channels_last, self.amp_dtype = True, torch.bfloat16
        elif self.backend != "eager":
            self.channels_last, self.amp_dtype = False, None  # eager-only options (check_settings)
        self.backend_choice = choice.summary()
        _say(self.backend_choice)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **overrides: Any) -> Predictor:
        """Rebuild model, classes and eval settings from a checkpoint alone; None-valued overrides are ignored.

        `data_root` says where the checkpoint's dataset is now (int8 calibration reads its training split)."""
        data_root = overrides.pop("data_root", None)
        ckpt = read_checkpoint(path)
        cfg, names = ckpt.config, ckpt.class_names
        palette = resolve_palette(names, ckpt.state.get("palette"))
        name = backends.backend_name(overrides.get("backend"), overrides.get("int8"))
        if name == "eager":
            model: nn.Module | ModelSource = ckpt.build_model()
        else:  # the weights' digest finds a cached export; the model is built only to export it
            model = ModelSource(
                backends.weights_digest(ckpt.weights, dataclasses.asdict(cfg.model)),
                ckpt.build_model,
                backends.config_has_mingru(cfg.model),
            )
            if name in ("onnxruntime-int8", AUTO) and overrides.get("calibration") is None:
                data_cfg = copy.deepcopy(cfg)
                if data_root:
                    data_cfg.data.root = str(data_root)
                overrides["calibration"] = backends.Calibration.from_training_split(
                    data_cfg, where=f"checkpoint {path}"
                )
        return cls.from_config(model, cfg, names, palette, device, **overrides)

    @classmethod
    def from_config(
        cls,
        model: nn.Module | ModelSource,
        cfg: Config,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]] | None = None,
        device: str | torch.device = "auto",
        **overrides: Any,
    ) -> Predictor:
        """The inference settings a config asks for (eval.*, data.size_divisor, data.eval_size as the model's
        input size); None-valued overrides are ignored. The trainer's validation and `reseg evaluate` both
        build their predictor here, so they score a checkpoint the same way."""
        settings = inference_settings(cfg)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            model,
            device=device,
            num_classes=len(class_names),
            class_names=list(class_names),
            palette=palette,
            config=cfg,
            **settings,
        )

    # ------------------------------------------------------------------ tensors in, tensors out

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 HxWx3 arrays of one size -> normalised float batch (N, 3, H, W) on the device."""
        x = torch.from_numpy(rgb_batch(images))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return self._normalize(x.to(self.device))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 logits at the batch's size; with TTA, the log of the averaged probabilities."""
        return self._infer(batch, want="logits")

    def probs(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) softmax probabilities averaged over the flips, scales and windows asked for."""
        return self._infer(batch, want="probs")

    @property
    def backend_pending(self) -> bool:
        """`auto` before its first batch: which backend runs is not chosen yet."""
        return self._net is None

    def prepare(self, batch: torch.Tensor) -> None:
        """Make `auto`'s one-off choice (exports, calibration, timing the candidates) on this batch now, as
        logits() would on its first call, so that a caller timing its batches keeps that start-up apart from
        the model's time; a no-op once a backend runs."""
        if self._net is None:
            self.logits(batch)

    def masks(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, H, W) uint8 train ids on the device; the scores at the batch's size exist a band at a time."""
        with torch.inference_mode():
            outputs, (h, w) = self._batch_outputs(batch)
            return self._banded(outputs, h, w, keep_probs=False)[0]

    def predict(
        self, images: Sequence[np.ndarray], return_probs: bool = False, batch_size: int = 8
    ) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """RGB uint8 images (any sizes) -> HxW uint8 train-id masks (and CxHxW float32 probabilities).

        An image that runs smaller than it is (`run_size`) is shrunk from its uint8 pixels and its scores
        grown back a band of rows at a time, so a large photo's working memory stays that of the size it
        runs at; only the probabilities, when asked for, are whole float arrays at the image's size."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        masks: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        for chunk in same_size_batches(images, max(1, int(batch_size)), lambda im: np.shape(im)[:2]):
            m, p = self._predict_batch(chunk, keep_probs=return_probs)
            masks.extend(m.cpu().numpy())
            if p is not None:
                probs.extend(p.cpu().numpy())
        return (masks, probs) if return_probs else masks

    __call__ = predict

    def network_inputs(self, images: Iterable[np.ndarray], batch_size: int = 8) -> Iterator[torch.Tensor]:
        """The normalised batches the network runs on for RGB uint8 images (at run size, padded; one pass, no
        flip or scale copies): what statistics of the inputs, such as batch-norm adaptation, must see."""
        for x, _ in self.sized_network_inputs(images, batch_size):
            yield x

    def sized_network_inputs(
        self, images: Iterable[np.ndarray], batch_size: int = 8
    ) -> Iterator[tuple[torch.Tensor, tuple[int, int]]]:
        """network_inputs with the run size of each batch's images: the rest of each tensor is padding, which
        training on the model's own predictions (reseg.self_training) must leave unlabelled."""
        for chunk in same_size_batches(images, max(1, int(batch_size)), lambda im: np.shape(im)[:2]):
            pixels = torch.from_numpy(rgb_batch(chunk)).to(self.device)
            size = self.run_size(*pixels.shape[1:3])
            yield pad_to_multiple(self._normalize.at_size(pixels, size), self.size_divisor, self.pad_mode), size

    def adapt_batchnorm(
        self, images: Iterable[np.ndarray], batch_size: int = 8, where: str = "", weight: float | None = None
    ) -> int:
        """Re-estimate the model's batch-norm statistics on unlabeled images of the streets it will see
        (reseg.adaptation; `weight`: their statistics' share, default adaptation.DEFAULT_WEIGHT); returns how
        many images went in, and `describe` names them (`where`). Needs the PyTorch model (backend eager)."""
        from reseg.adaptation import DEFAULT_WEIGHT, adaptation_note, reestimate_batchnorm

        if self.backend != "eager":
            raise ResegError(
                f"batch-norm adaptation runs on the PyTorch model, not backend {self.backend!r}; adapt the "
                "checkpoint first (`reseg adapt`) and run the adapted checkpoint on that backend"
            )
        weight = DEFAULT_WEIGHT if weight is None else weight
        count = reestimate_batchnorm(self.model, self.network_inputs(images, batch_size), weight)
        self._net = self._eager_net(self._auto[2])  # the folded copy carries the new statistics
        self.adapted = adaptation_note(count, weight, f"images of the {where}" if where else "images")
        return count

    def run_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an HxW image runs at (preprocess.run_size); outputs are resized back to HxW."""
        return run_size(h, w, self.infer_size, self.max_pixels)

    def describe(self) -> str:
        """One line for logs: where and how inference runs."""
        chosen = self.backend_choice is not None and self.backend != AUTO
        parts = [
            f"device={self.device}",
            f"backend={self.backend}" + (" (auto)" if chosen else ""),
            f"mode={self.mode}",
        ]
        if self.mode == "slide":
            parts.append(f"crop={list(self.crop)} stride={list(self.stride)}")
        if self.flip:
            parts.append("flip")
        if self.scales != (1.0,):
            parts.append(f"scales={list(self.scales)}")
        if self.infer_size:
            parts.append(f"infer_size={list(self.infer_size)}")
        elif self.max_pixels:
            parts.append(f"max_pixels={self.max_pixels}")
        if self.amp_dtype is not None:
            parts.append(f"amp={str(self.amp_dtype).replace('torch.', '')}")
        if self.channels_last:
            parts.append("channels_last")
        if self.adapted:
            parts.append(f"({self.adapted})")
        return " ".join(parts)

    # ------------------------------------------------------------------ internals

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def _call(self, net: Any, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            return net(x)

    def _run_model(self, x: torch.Tensor) -> torch.Tensor:
        if self._net is None:
            self._choose_backend(x)
        y = self._call(self._net, x)
        if isinstance(y, dict):  # torchvision-style models
            y = y["out"]
        y = y.float()
        if self.num_classes is not None and y.shape[1] != self.num_classes:
            raise ResegError(f"the model gives {y.shape[1]} channels but {self.num_classes} classes were expected")
        return y

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.size_divisor, self.pad_mode)
        y = self._run_model(xp)
        if y.shape[-2:] != xp.shape[-2:]:
            y = F.interpolate(y, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]

    def _forward_slide(self, x: torch.Tensor) -> torch.Tensor:
        (ch, cw), (sh, sw) = self.crop, self.stride
        h, w = x.shape[-2:]
        x = pad_bottom_right(x, max(ch - h, 0), max(cw - w, 0), self.pad_mode)
        hp, wp = x.shape[-2:]
        rows = max(hp - ch + sh - 1, 0) // sh + 1
        cols = max(wp - cw + sw - 1, 0) // sw + 1
        total: torch.Tensor | None = None
        count = torch.zeros((1, 1, hp, wp), device=x.device)
        for r in range(rows):
            for c in range(cols):
                y0, x0 = min(r * sh, hp - ch), min(c * sw, wp - cw)
                out = self._forward_padded(x[..., y0 : y0 + ch, x0 : x0 + cw])
                if total is None:
                    total = torch.zeros((x.shape[0], out.shape[1], hp, wp), device=x.device)
                total[..., y0 : y0 + ch, x0 : x0 + cw] += out
                count[..., y0 : y0 + ch, x0 : x0 + cw] += 1
        assert total is not None
        return (total / count)[..., :h, :w]

    def _single(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_slide(x) if self.mode == "slide" else self._forward_padded(x)

    def _predict_batch(
        self, images: Sequence[np.ndarray], keep_probs: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same-size uint8 images -> class ids (and probabilities), the network input resized from the uint8
        pixels and the scores grown back in bands."""
        with torch.inference_mode():
            pixels = torch.from_numpy(rgb_batch(images)).to(self.device)
            h, w = pixels.shape[1:3]
            outputs = self._pass_outputs(lambda size: self._normalize.at_size(pixels, size), h, w)
            return self._banded(outputs, h, w, keep_probs)

    def _batch_outputs(self, batch: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Each pass's output for a normalised batch (or one image), and the batch's size."""
        x = batch if batch.dim() == 4 else batch.unsqueeze(0)
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        h, w = x.shape[-2:]
        return self._pass_outputs(lambda size: resize_rows(x, size), h, w), (h, w)

    def _pass_outputs(
        self, network_input: Callable[[tuple[int, int]], torch.Tensor], h: int, w: int
    ) -> list[torch.Tensor]:
        """The model's output for each flip and scale of an HxW batch, at the size that pass ran at (flip
        undone); `network_input(size)` gives the normalised batch at a size."""
        base_h, base_w = self.run_size(h, w)
        outputs = []
        for scale in self.scales:
            x = network_input((max(1, round(base_h * scale)), max(1, round(base_w * scale))))
            for flip in (False, True) if self.flip else (False,):
                y = self._single(x.flip(-1) if flip else x)
                outputs.append(y.flip(-1) if flip else y)
        return outputs

    @staticmethod
    def _combine(
        outputs: list[torch.Tensor], h: int, w: int, want: str, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Rows start..stop-1 of the passes' outputs at HxW: logits of one pass, or averaged probabilities."""
        ys = [resize_rows(y, (h, w), start, stop) for y in outputs]
        if len(ys) == 1:
            return ys[0] if want == "logits" else ys[0].softmax(1)
        total = ys[0].softmax(1)
        for y in ys[1:]:
            total.add_(y.softmax(1))
        total /= len(ys)
        return total if want == "probs" else total.clamp_min_(1e-12).log_()

    def _banded(
        self, outputs: list[torch.Tensor], h: int, w: int, keep_probs: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, H, W) class ids (and, with keep_probs, the probabilities) made a band of rows at a time."""
        n, c = outputs[0].shape[:2]
        masks = torch.empty((n, h, w), dtype=torch.uint8, device=outputs[0].device)
        probs = torch.empty((n, c, h, w), device=outputs[0].device) if keep_probs else None
        want = "probs" if keep_probs or len(outputs) > 1 else "logits"
        for start, stop in row_bands(h, n * c * w * 4 * (len(outputs) + 2)):
            band = self._combine(outputs, h, w, want, start, stop)
            masks[:, start:stop] = class_ids(band)
            if probs is not None:
                probs[:, :, start:stop] = band
        return masks, probs

    def _infer(self, batch: torch.Tensor, want: str) -> torch.Tensor:
        with torch.inference_mode():
            outputs, (h, w) = self._batch_outputs(batch)
            return self._combine(outputs, h, w, want)


def _say(message: str) -> None:
    """Progress of a backend being made or chosen, on stderr (the commands' stdout stays their result)."""
    print(f"reseg: {message}", file=sys.stderr, flush=True)
