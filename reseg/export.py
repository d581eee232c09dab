"""Export a checkpoint to ONNX (fp32 or int8) or TorchScript, for any input height and width, and check it.

The ONNX file, its check against PyTorch and int8 quantisation come from the ONNX core (reseg.onnx);
TorchScript is traced the same way (reseg.onnx.trace). Each export is compared with PyTorch at the trace
size and, unless the ONNX file is static, at a second size with another batch; a difference above the
tolerance fails the export and no file is left at the output path. The report says what the file expects
as input (the normalisation) and what it gives (logits, the class names).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.backends import Calibration, as_calibration, calibration_inputs
from reseg.config import Config, trained_max_pixels
from reseg.engine.checkpoint import read_checkpoint
from reseg.errors import ResegError
from reseg.io import atomic_path
from reseg.models.renet import static_export
from reseg.onnx.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from reseg.onnx.quantize import int8_agreement, quantize_int8
from reseg.onnx.trace import (
    DEFAULT_TOLERANCE,
    ExportWrapper,
    check_sizes,
    check_tolerance,
    compare,
    reference,
    rnn_path,
    valid_tolerance,
)
from reseg.preprocess import normalization_stats

FORMATS = ("onnx", "torchscript")


def input_spec(class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What a user of the exported file must feed it and what comes out (recorded in the export JSON)."""
    mean, std = normalization_stats()
    spec: dict[str, Any] = {
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "normalisation": "(pixel - mean) / std, pixel in 0..255",
            "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in std],
        },
        "output": {
            "name": OUTPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "meaning": "per-class logits at the input's height and width; argmax over C gives train ids",
        },
    }
    if class_names is not None:
        spec["class_names"] = [str(n) for n in class_names]
        spec["num_classes"] = len(spec["class_names"])
    return spec


def verify_torchscript(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """The saved TorchScript module against PyTorch on a random input of `size`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path))
    x, ref = reference(model, size, batch)
    with torch.no_grad():
        got = loaded(x).float().numpy()
    return compare(got, ref, size, "TorchScript")


def export_torchscript(
    model: nn.Module,
    out: str | Path,
    size: tuple[int, int] = (64, 96),
    check_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
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
        checks = [
            verify_torchscript(tmp, model, s, b) for s, b in check_sizes(size, wrapper.multiple, True, check_size)
        ]
        summary = check_tolerance(checks, tolerance, "TorchScript")
    return {"path": str(out), "format": "torchscript", "trace_size": list(size), "dynamic": True, **summary}


def export_onnx_int8(
    model: nn.Module,
    out: str | Path,
    calibration: Calibration,
    cfg: Config,
    size: tuple[int, int] = (64, 96),
    opset: int = 17,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """An int8 ONNX file (what `--int8` runs), made from the checked fp32 export and calibrated on
    `calibration` as the config's inference sees it; the report gives its agreement with fp32 on the
    calibration images: int8 is not held to the fp32 tolerance."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="reseg-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        res = export_onnx(model, fp32, size, True, opset, tolerance=tolerance)
        inputs = calibration_inputs(
            calibration.load(),
            int(cfg.data.size_divisor or 0),
            tuple(cfg.data.eval_size) if cfg.data.eval_size else None,
            max_pixels=trained_max_pixels(cfg),
        )
        quantize_int8(fp32, out, inputs)
        res["int8"] = {"calibration_images": len(inputs), **int8_agreement(fp32, out, inputs)}
    res["path"], res["quantization"] = (
        str(out),
        (
            "int8 QLinearConv and QGemm (convolutions but the classifier, "
            "ReNet projections; per-channel weights, uint8 activations)"
        ),
    )
    return res


def export(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    size: tuple[int, int] = (64, 96),
    dynamic: bool = True,
    opset: int = 17,
    tolerance: float = DEFAULT_TOLERANCE,
    int8: bool = False,
    calibration: Any = None,
) -> dict[str, Any]:
    """Export a checkpoint; the result says where, at which sizes, the differences and the input spec.

    int8 (ONNX only): quantise the convolutions and ReNet projections, calibrated on `calibration` (image paths/globs/folders;
    default: the checkpoint's training split)."""
    if fmt not in FORMATS:
        raise ResegError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    tolerance = valid_tolerance(tolerance)
    if int8 and (fmt != "onnx" or not dynamic):
        raise ResegError("--int8 writes an ONNX file for any size: use --format onnx without --static")
    ckpt = read_checkpoint(checkpoint)
    cal = None
    if int8:  # checked before the export's minutes: a missing calibration folder is an error now
        cal = as_calibration(calibration) or Calibration.from_training_split(
            ckpt.config, where=f"checkpoint {checkpoint}"
        )
    model = ckpt.build_model()
    if cal is not None:
        res = export_onnx_int8(model, out, cal, ckpt.config, size, opset, tolerance)
    elif fmt == "onnx":
        # a static file is valid at its one size: minGRU sweeps are recorded unrolled there, not as a Loop
        with static_export() if not dynamic else contextlib.nullcontext():
            res = export_onnx(model, out, size, dynamic, opset, tolerance=tolerance)
    else:
        res = export_torchscript(model, out, size, tolerance=tolerance)
    return {"checkpoint": str(checkpoint), **res, **input_spec(ckpt.class_names)}
