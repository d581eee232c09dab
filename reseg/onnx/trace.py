"""Tracing a model for any input size, and checking a traced file against PyTorch (ONNX and TorchScript).

The traced graph pads the input to the model's stride and crops the logits back with shape arithmetic
recorded in the graph (no Python branch baked in at the trace size), and ReNet runs its `nn.GRU`/`nn.LSTM`
path, which both formats know. Each export is compared with PyTorch at the trace size and, unless it is
static, at a second size with another batch; a difference above the tolerance is an ExportError. A static
file runs at its traced batch and size only, so a second size does not apply to it: it is checked there,
on a random input other than the one it was traced with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError
from reseg.models.base import SegmentationModel
from reseg.models.renet import ReNet

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


def check_sizes(
    size: tuple[int, int], multiple: int, dynamic: bool, check_size: tuple[int, int] | None, batch: int = 1
) -> list[tuple[tuple[int, int], int]]:
    """(size, batch) pairs to check: the trace size and batch, then (dynamic) another size at batch 2; a static
    file only at the size and batch it was traced at (it accepts no other)."""
    if not dynamic:
        return [(size, batch)]
    return [(size, batch), (tuple(check_size) if check_size else second_size(size, multiple), 2)]


def trace_input(size: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """The input a file is traced with: random, and not `reference`'s input (seed 0), so a static file's
    check at its own size still runs it on data it was not traced on."""
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))


def reference(model: nn.Module, size: tuple[int, int], batch: int) -> tuple[torch.Tensor, np.ndarray]:
    """A fixed random input and PyTorch's logits for it (default ReNet path: also checks fused vs nn.GRU)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *size, generator=gen)
    with torch.no_grad():
        ref = model.eval()(x).float().numpy()
    return x, ref


def compare(got: np.ndarray, ref: np.ndarray, size: tuple[int, int], what: str) -> dict[str, Any]:
    """The max abs difference of an exported file's logits from PyTorch's, and PyTorch's logit range."""
    if got.shape != ref.shape:
        raise ExportError(
            f"the {what} model gives shape {tuple(got.shape)} at {size[0]}x{size[1]}, PyTorch {tuple(ref.shape)}"
        )
    return {
        "size": list(size),
        "batch": int(ref.shape[0]),
        "max_abs_diff": float(np.abs(got - ref).max()),
        "logit_range": float(ref.max() - ref.min()),
    }


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
                f"Raise --tolerance to accept it"
            )
    worst = max(checks, key=lambda c: c["max_abs_diff"] / c["allowed_abs_diff"])
    return {
        "checks": checks,
        "tolerance": tolerance,
        "check_size": checks[-1]["size"],
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "allowed_abs_diff": worst["allowed_abs_diff"],
    }
