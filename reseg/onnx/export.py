"""A model as an ONNX file for any batch, height and width (or a fixed one), checked against PyTorch before
it is kept.

A difference above the tolerance fails the export and leaves no file at the output path (reseg.onnx.trace).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.io import atomic_path
from reseg.onnx.session import OnnxSession, SessionError, onnxruntime_module
from reseg.onnx.trace import (
    DEFAULT_TOLERANCE,
    ExportError,
    ExportWrapper,
    check_sizes,
    check_tolerance,
    compare,
    reference,
    rnn_path,
    trace_input,
    valid_tolerance,
)

INPUT_NAME, OUTPUT_NAME = "image", "logits"


def export_onnx(
    model: nn.Module,
    out: str | Path,
    size: tuple[int, int] = (64, 96),
    dynamic: bool = True,
    opset: int = 17,
    check_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    metadata: Mapping[str, str] | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Write an ONNX file (any batch, height and width unless `dynamic=False`), checked with onnxruntime;
    `metadata` goes into the file's metadata (a cache recognises its files by it).

    A dynamic file is checked at `size` and at a second size and batch. A static one (`dynamic=False`, traced
    at `batch` x `size`, e.g. inside reseg.models.renet.static_export()) accepts that shape only, so it is
    checked there alone, on another random input than the one it was traced with."""
    tolerance = valid_tolerance(tolerance)
    if int(batch) < 1:
        raise ExportError(f"the export batch must be >= 1, got {batch}")
    wrapper = ExportWrapper(model)
    x = trace_input(size, int(batch))
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    out = Path(out)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad(), rnn_path(model):
            warnings.simplefilter("ignore")
            # The TorchScript-based exporter needs no extra dependency and maps nn.GRU/LSTM to ONNX GRU/LSTM.
            torch.onnx.export(
                wrapper,
                (x,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes if dynamic else None,
                opset_version=opset,
                dynamo=False,
            )
        if metadata is not None:
            save_onnx(tmp, tmp, metadata)
        checks = [
            verify_onnx(tmp, model, s, b)
            for s, b in check_sizes(size, wrapper.multiple, dynamic, check_size, int(batch))
        ]
        summary = check_tolerance(checks, tolerance, "ONNX")
    return {
        "path": str(out),
        "format": "onnx",
        "trace_size": list(size),
        "trace_batch": int(batch),
        "dynamic": dynamic,
        "opset": opset,
        **summary,
    }


def verify_onnx(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """onnxruntime against PyTorch on a random input of `size`: max abs difference and the logit range."""
    onnxruntime_module("it checks the exported file")
    x, ref = reference(model, size, batch)
    try:
        got = OnnxSession(path).run(x.numpy())
    except SessionError as err:
        raise ExportError(f"the exported file does not run at {batch}x3x{size[0]}x{size[1]}: {err}") from None
    return compare(got, ref, size, "ONNX")


def save_onnx(src: str | Path, out: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Copy an ONNX file to `out` atomically (`out` may be `src`), its metadata replaced by `metadata`."""
    import onnx  # only with onnxruntime (an optional dependency); torch.onnx.export does not need it

    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    with atomic_path(Path(out)) as dst:
        onnx.save(proto, str(dst))
