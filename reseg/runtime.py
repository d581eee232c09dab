"""Where and how a model runs: the device rule, the AMP dtype rule, autocast and channels-last.

One set of rules for the trainer, the predictor, export and the benchmark, so "--amp" or
"--device auto" mean the same thing in every tool.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reseg.errors import ResegError


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """'auto' (or None) picks CUDA when available; asking for CUDA without it is a user error, not a crash.

    With `local_rank` (torchrun), a bare 'cuda' means this rank's GPU.
    """
    if device is None or device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ResegError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ResegError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", local_rank)
    return dev


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: Any) -> str:
    """One line naming what a run ran on (the model card's "trained on"): the CPU, or the GPU, and torch."""
    device = torch.device(device)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        kind = "AVX-512 with native bf16" if cpu_has_native_bf16() else "no native bf16"
        where = f"{cpu_name()} ({os.cpu_count()} logical CPUs, {kind})"
    return f"{where}, torch {torch.__version__}"


def launch_command(argv: list[str] | None = None) -> str:
    """The command line that started this process, as a user would type it again: `reseg ...` for the CLI
    (also `python -m reseg`), `python ...` for a script."""
    import shlex

    argv = list(sys.argv if argv is None else argv)
    name = Path(argv[0]).name if argv else ""
    if name == "reseg" or (name == "__main__.py" and Path(argv[0]).parent.name == "reseg"):
        return shlex.join(["reseg", *argv[1:]])
    return shlex.join(["python", *argv])


def cpu_has_native_bf16() -> bool:
    """True on CPUs with BF16 units (AVX512-BF16 / AMX), where bf16 autocast is faster than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # old builds without the probe
        return False


def amp_dtype(amp: bool | str | torch.dtype | None, device: torch.device, training: bool = False) -> torch.dtype | None:
    """The autocast type for `amp` on `device`, or None for float32; training and inference share this rule.

    True picks what the device runs natively: bf16 on CPUs with BF16 units (float32 with a warning
    elsewhere: emulated bf16 is slower), fp16 on CUDA for inference, bf16 on CUDA for training where
    supported (no grad scaler needed).
    """
    if isinstance(amp, torch.dtype):
        return None if amp == torch.float32 else amp
    if amp in (None, False, "none", "off", "fp32", "float32"):
        return None
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        return torch.float16
    if amp not in (True, "auto", "on"):
        raise ResegError(f"amp must be true/false, 'bf16' or 'fp16', got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if training and torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return torch.bfloat16
        warnings.warn("amp: this CPU has no native bf16 support; running in float32", stacklevel=3)
        return None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for `dtype` on `device` (a no-op context when AMP is off)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC when asked: faster convolutions under AMP (CPU bf16, GPU tensor cores)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def place_model(model: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    """Move a model to its device (and to NHWC weights when asked)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold each inference-mode batch norm into the Conv2d just before it in an nn.Sequential, in place.

    At inference a batch norm is a fixed per-channel affine map, so it can live in the convolution's weights
    and bias: one pass over the feature map fewer per conv, same outputs up to rounding. Only plain
    BatchNorm2d and SyncBatchNorm layers with running statistics after a plain Conv2d are folded (not IBN-a's
    half-instance norm, whose output depends on the image), and only inside an nn.Sequential, where the conv's
    output feeds the norm alone; the norm's slot becomes an nn.Identity so layer indices stay put. For a model
    in eval mode that will not train again.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if any(m.training for m in model.modules()):
        raise ResegError("fold_batch_norms needs a model in eval mode (call model.eval() first)")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (
                type(conv) is nn.Conv2d
                and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)
                and bn.running_mean is not None
                and bn.running_var is not None
            ):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return model


def folded_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with its batch norms folded (fold_batch_norms): what the Predictor's eager
    backends run, so the model a caller passed in never changes."""
    import copy

    with torch.inference_mode(False), torch.no_grad():
        return fold_batch_norms(copy.deepcopy(model).eval())
