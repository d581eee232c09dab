"""Export a trained model to ONNX or TorchScript, for any input height and width, and check it.

The exported graph pads the input to the model's stride and crops the logits back with shape
arithmetic recorded in the graph (no Python branch baked in at the trace size), and ReNet runs
its `nn.GRU`/`nn.LSTM` path, which both formats know. Each export is verified against PyTorch at a
size different from the one it was traced at, and the max abs difference is reported.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError
from reseg.models.renet import ReNet
from reseg.predictor import load_model

FORMATS = ("onnx", "torchscript")


class ExportWrapper(nn.Module):
    """(N, 3, H, W) normalised images -> (N, C, H, W) logits for any H, W, in a trace-friendly form."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from reseg.models import ReSeg

        self.model = model.eval()
        if isinstance(model, ReSeg):
            self.multiple = int(model.stride)
            up = 2 ** sum(isinstance(m, nn.ConvTranspose2d) for m in model.decoder)
            self.resize = up != model.stride  # decoder upsampling does not cover the stride
        else:
            self.multiple = int(getattr(model, "multiple", 1))
            self.resize = False

    def body(self, x: torch.Tensor) -> torch.Tensor:
        from reseg.models import ReSeg

        m = self.model
        if isinstance(m, ReSeg):
            y = m.classifier(m.decoder(m.renet(m.encoder(x))))
            if self.resize:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return y
        return m.net(x) if hasattr(m, "net") else m(x)

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


def _check_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """A size different from `size` (and not a multiple of the stride), to check the dynamic shapes."""
    h, w = size
    return h + multiple + 1, w - multiple + 3 if w > multiple + 3 else w + 2 * multiple + 3


def export_onnx(model: nn.Module, out: str | Path, size: tuple[int, int] = (64, 96), dynamic: bool = True,
                opset: int = 17, check_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Write an ONNX file (dynamic batch, height, width with `dynamic`); returns the onnxruntime check."""
    wrapper = ExportWrapper(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, *size)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings(), torch.no_grad(), rnn_path(model):
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter needs no extra dependency and maps nn.GRU/LSTM to ONNX GRU/LSTM.
        torch.onnx.export(wrapper, (x,), str(out), input_names=["image"], output_names=["logits"],
                          dynamic_axes=axes if dynamic else None, opset_version=opset, dynamo=False)
    check = check_size or (_check_size(size, wrapper.multiple) if dynamic else size)
    return {"path": str(out), "format": "onnx", "trace_size": list(size), "opset": opset,
            **verify_onnx(out, model, check)}


def verify_onnx(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """Max abs difference between onnxruntime and PyTorch logits on a random input of `size`.

    PyTorch runs its default ReNet path, so the check also covers fused vs nn.GRU/LSTM agreement."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ResegError("onnxruntime is not installed (pip install onnxruntime); it checks the exported file") from err
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise ResegError(f"the ONNX model gives shape {got.shape} at {size}, PyTorch {ref.shape}")
    return {"check_size": list(size), "max_abs_diff": float(np.abs(got - ref).max())}


def export_torchscript(model: nn.Module, out: str | Path, size: tuple[int, int] = (64, 96),
                       check_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Write a traced TorchScript module; returns the check against PyTorch at another size."""
    wrapper = ExportWrapper(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, *size)
    with warnings.catch_warnings(), torch.no_grad(), rnn_path(model):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (x,), check_trace=False)
    traced.save(str(out))
    check = check_size or _check_size(size, wrapper.multiple)
    return {"path": str(out), "format": "torchscript", "trace_size": list(size),
            **verify_torchscript(out, model, check)}


def verify_torchscript(path: str | Path, model: nn.Module, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """Max abs difference between the saved TorchScript module and PyTorch on a random input of `size`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path))
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        ref = model.eval()(x)
        got = loaded(x)
    if got.shape != ref.shape:
        raise ResegError(f"the TorchScript model gives shape {tuple(got.shape)} at {size}, PyTorch {tuple(ref.shape)}")
    return {"check_size": list(size), "max_abs_diff": float((got - ref).abs().max())}


def export(checkpoint: str | Path, fmt: str, out: str | Path, size: tuple[int, int] = (64, 96),
           dynamic: bool = True, opset: int = 17) -> dict[str, Any]:
    """Export a checkpoint; the result dict says where, at which sizes, and the max abs difference."""
    if fmt not in FORMATS:
        raise ResegError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    model, _, _ = load_model(checkpoint)
    if fmt == "onnx":
        return export_onnx(model, out, size, dynamic, opset)
    return export_torchscript(model, out, size)
