"""Export a trained model to ONNX or TorchScript, for any input height and width, and check it.

The exported graph pads the input to the model's stride and crops the logits back with shape
arithmetic recorded in the graph (no Python branch baked in at the trace size), and ReNet runs
its `nn.GRU`/`nn.LSTM` path, which both formats know. Each export is compared with PyTorch at the
trace size and, unless the ONNX file is static, at a second size with another batch; a difference
above the tolerance fails the export and no file is left at the output path.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError
from reseg.io import atomic_path
from reseg.models.base import SegmentationModel
from reseg.models.renet import ReNet

FORMATS = ("onnx", "torchscript")
DEFAULT_TOLERANCE = 1e-4  # fp32: allowed max abs difference, as a fraction of the logit range


class ExportError(ResegError):
    """The exported file does not reproduce the PyTorch model."""


class ExportWrapper(nn.Module):
    """(N, 3, H, W) normalised images -> (N, C, H, W) logits for any H, W, in a trace-friendly form."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        contract = isinstance(model, SegmentationModel)  # any other module is traced as it is, unpadded
        self.multiple = int(model.stride) if contract else 1
        self.body = model.forward_padded if contract else model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        k = self.multiple
        x = F.pad(x, (0, (k - w % k) % k, 0, (k - h % k) % k))  # always pad (maybe by 0): no shape branch
        return self.body(x)[:, :, :h, :w]


@contextlib.contextmanager
def rnn_path(model: nn.Module) -> Iterator[None]:
    """ReNet layers on their nn.GRU/LSTM path (what tracers record) for the duration, then restored."""
    layers = [m for m in model.modules() if isinstance(m, ReNet)]
    saved = [m.impl for m in layers]
    for m in layers:
        m.impl = "rnn"
    try:
        yield
    finally:
        for m, impl in zip(layers, saved):
            m.impl = impl


def second_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """A size different from `size` in both H and W, and not a multiple of the stride."""
    h, w = size
    return h + multiple + 1, (w - multiple + 3 if w > multiple + 3 else w + 2 * multiple + 3)


def input_spec(class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What a user of the exported file must feed it and what comes out (recorded in the export JSON)."""
    from reseg.predictor import normalization_stats

    mean, std = normalization_stats()
    spec: dict[str, Any] = {
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                  "normalisation": "(pixel - mean) / std, pixel in 0..255",
                  "mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std]},
        "output": {"name": "logits", "layout": "NCHW", "dtype": "float32",
                   "meaning": "per-class logits at the input's height and width; argmax over C gives train ids"},
    }
    if class_names is not None:
        spec["class_names"] = [str(n) for n in class_names]
        spec["num_classes"] = len(spec["class_names"])
    return spec


def _compare(got: np.ndarray, ref: np.ndarray, size: tuple[int, int], what: str) -> dict[str, Any]:
    if got.shape != ref.shape:
        raise ExportError(f"the {what} model gives shape {tuple(got.shape)} at {size[0]}x{size[1]}, "
                          f"PyTorch {tuple(ref.shape)}")
    return {"size": list(size), "batch": int(ref.shape[0]), "max_abs_diff": float(np.abs(got - ref).max()),
            "logit_range": float(ref.max() - ref.min())}


def _reference(model: nn.Module, size: tuple[int, int], batch: int) -> tuple[torch.Tensor, np.ndarray]:
    """A fixed random input and PyTorch's logits for it (default ReNet path: also checks fused vs nn.GRU)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *size, generator=gen)
    with torch.no_grad():
        ref = model.eval()(x).float().numpy()
    return x, ref


def verify_onnx(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """onnxruntime against PyTorch on a random input of `size`: max abs difference and the logit range."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ResegError("onnxruntime is not installed (pip install onnxruntime); it checks the exported file") from err
    x, ref = _reference(model, size, batch)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    except Exception as err:  # onnxruntime raises its own types for shape mismatches
        raise ExportError(f"onnxruntime cannot run the exported file at {batch}x3x{size[0]}x{size[1]}: "
                          f"{' '.join(str(err).split())[:300]}") from None
    return _compare(got, ref, size, "ONNX")


def verify_torchscript(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """The saved TorchScript module against PyTorch on a random input of `size`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path))
    x, ref = _reference(model, size, batch)
    with torch.no_grad():
        got = loaded(x).float().numpy()
    return _compare(got, ref, size, "TorchScript")


def valid_tolerance(tolerance: float) -> float:
    if not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ResegError(f"--tolerance must be a number > 0 (a fraction of the logit range), got {tolerance!r}")
    return float(tolerance)


def check_tolerance(checks: list[dict[str, Any]], tolerance: float, what: str) -> dict[str, Any]:
    """Fail when a check's max abs diff exceeds `tolerance` x its logit range; else the summary fields."""
    for c in checks:
        c["allowed_abs_diff"] = tolerance * max(c["logit_range"], 1e-12)
        if c["max_abs_diff"] > c["allowed_abs_diff"]:
            raise ExportError(
                f"the {what} export differs from PyTorch by {c['max_abs_diff']:.3g} at {c['size'][0]}x{c['size'][1]}, "
                f"{c['max_abs_diff'] / c['allowed_abs_diff']:.1f}x the allowed {c['allowed_abs_diff']:.3g} "
                f"({tolerance:g} of the logit range {c['logit_range']:.3g}); nothing was written. "
                f"Raise --tolerance to accept it")
    worst = max(checks, key=lambda c: c["max_abs_diff"] / c["allowed_abs_diff"])
    return {"checks": checks, "tolerance": tolerance, "check_size": checks[-1]["size"],
            "max_abs_diff": max(c["max_abs_diff"] for c in checks), "allowed_abs_diff": worst["allowed_abs_diff"]}


def _check_sizes(size: tuple[int, int], multiple: int, dynamic: bool,
                 check_size: tuple[int, int] | None) -> list[tuple[tuple[int, int], int]]:
    """(size, batch) pairs to check: the trace size, then (dynamic) another size at batch 2."""
    if not dynamic:
        return [(size, 1)]
    return [(size, 1), (tuple(check_size) if check_size else second_size(size, multiple), 2)]


def export_onnx(model: nn.Module, out: str | Path, size: tuple[int, int] = (64, 96), dynamic: bool = True,
                opset: int = 17, check_size: tuple[int, int] | None = None,
                tolerance: float = DEFAULT_TOLERANCE, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write an ONNX file (any batch, height and width unless `dynamic=False`), checked with onnxruntime."""
    tolerance = valid_tolerance(tolerance)
    wrapper = ExportWrapper(model)
    x = torch.randn(1, 3, *size)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    out = Path(out)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad(), rnn_path(model):
            warnings.simplefilter("ignore")
            # The TorchScript-based exporter needs no extra dependency and maps nn.GRU/LSTM to ONNX GRU/LSTM.
            torch.onnx.export(wrapper, (x,), str(tmp), input_names=["image"], output_names=["logits"],
                              dynamic_axes=axes if dynamic else None, opset_version=opset, dynamo=False)
        checks = [verify_onnx(tmp, model, s, b) for s, b in _check_sizes(size, wrapper.multiple, dynamic, check_size)]
        summary = check_tolerance(checks, tolerance, "ONNX")
    return {"path": str(out), "format": "onnx", "trace_size": list(size), "dynamic": dynamic, "opset": opset,
            **summary, **input_spec(class_names)}


def export_torchscript(model: nn.Module, out: str | Path, size: tuple[int, int] = (64, 96),
                       check_size: tuple[int, int] | None = None, tolerance: float = DEFAULT_TOLERANCE,
                       class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write a traced TorchScript module (size-generic by construction), checked at two sizes."""
    tolerance = valid_tolerance(tolerance)
    wrapper = ExportWrapper(model)
    x = torch.randn(1, 3, *size)
    out = Path(out)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad(), rnn_path(model):
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, (x,), check_trace=False)
        traced.save(str(tmp))
        checks = [verify_torchscript(tmp, model, s, b)
                  for s, b in _check_sizes(size, wrapper.multiple, True, check_size)]
        summary = check_tolerance(checks, tolerance, "TorchScript")
    return {"path": str(out), "format": "torchscript", "trace_size": list(size), "dynamic": True,
            **summary, **input_spec(class_names)}


def export_onnx_int8(model: nn.Module, out: str | Path, calibration: Any, cfg: Any, size: tuple[int, int] = (64, 96),
                     opset: int = 17, tolerance: float = DEFAULT_TOLERANCE,
                     class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """An int8 ONNX file (reseg.backends.quantize_int8: what `--int8` runs), made from the checked fp32 export
    and calibrated on `calibration` (a reseg.backends.Calibration); the report gives its agreement with fp32
    on the calibration images: int8 is not held to the fp32 tolerance."""
    import tempfile

    from reseg import backends

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="reseg-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        res = export_onnx(model, fp32, size, True, opset, tolerance=tolerance, class_names=class_names)
        inputs = backends.calibration_inputs(calibration.load(), int(cfg.data.size_divisor or 0),
                                             tuple(cfg.data.eval_size) if cfg.data.eval_size else None)
        backends.quantize_int8(fp32, out, inputs)
        res["int8"] = {"calibration_images": len(inputs), **_int8_agreement(fp32, out, inputs)}
    res["path"], res["quantization"] = str(out), "int8 QLinearConv (per-channel weights, uint8 activations)"
    return res


def _int8_agreement(fp32: Path, int8: Path, inputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Share of pixels whose argmax class is the same in both files, and the largest logit difference."""
    from reseg.backends import OnnxRuntimeBackend

    a, b = OnnxRuntimeBackend(fp32), OnnxRuntimeBackend(int8, "onnxruntime-int8")
    same = total = 0
    worst = 0.0
    for x in inputs:
        ya, yb = a(torch.from_numpy(x)), b(torch.from_numpy(x))
        same += int((ya.argmax(1) == yb.argmax(1)).sum())
        total += ya.shape[0] * ya.shape[2] * ya.shape[3]
        worst = max(worst, float((ya - yb).abs().max()))
    return {"pixel_agreement": same / max(total, 1), "max_abs_diff": worst}


def export(checkpoint: str | Path, fmt: str, out: str | Path, size: tuple[int, int] = (64, 96),
           dynamic: bool = True, opset: int = 17, tolerance: float = DEFAULT_TOLERANCE, int8: bool = False,
           calibration: Any = None) -> dict[str, Any]:
    """Export a checkpoint; the result says where, at which sizes, the differences and the input spec.

    int8 (ONNX only): quantise the convolutions, calibrated on `calibration` (image paths/globs/folders;
    default: the checkpoint's training split)."""
    from reseg import backends
    from reseg.predictor import model_from_state, read_checkpoint

    if fmt not in FORMATS:
        raise ResegError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    tolerance = valid_tolerance(tolerance)
    if int8 and (fmt != "onnx" or not dynamic):
        raise ResegError("--int8 writes an ONNX file for any size: use --format onnx without --static")
    state, cfg, names = read_checkpoint(checkpoint)
    cal = None
    if int8:  # checked before the export's minutes: a missing calibration folder is an error now
        cal = backends.as_calibration(calibration) or backends.Calibration.from_training_split(
            cfg, where=f"checkpoint {checkpoint}")
    model = model_from_state(state, cfg, checkpoint)
    if int8:
        res = export_onnx_int8(model, out, cal, cfg, size, opset, tolerance, class_names=names)
    elif fmt == "onnx":
        res = export_onnx(model, out, size, dynamic, opset, tolerance=tolerance, class_names=names)
    else:
        res = export_torchscript(model, out, size, tolerance=tolerance, class_names=names)
    return {"checkpoint": str(checkpoint), **res}
