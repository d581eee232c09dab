"""Adapt a trained model to new streets without labels: re-estimate its batch-norm statistics on them.

A network trained on a few drives normalises every layer with the means and variances of those drives; at
dusk, or under another camera's colours, the activations drift away from them and the classifier sees
inputs it was never trained on. Replacing the running statistics with those of unlabeled images of the
target streets (AdaBN, Li et al. 2016) costs one forward pass per image and no training. On CamVid's
unseen drives it is the largest single gain measured for both ReSeg and U-Net (docs/results.md).

`reestimate_batchnorm` is the step itself; `adapt` (`reseg adapt`, `reseg.adapt`) writes an adapted copy of a
checkpoint from image files, folders or a video; `reseg evaluate --adapt-bn` adapts on the images of the
split it scores (their labels unused) before scoring them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reseg.errors import ResegError

DEFAULT_MAX_IMAGES = 500  # beyond a few hundred frames the statistics no longer move
DEFAULT_BATCH = 8  # images per pass; the batch norms normalise each pass with its own statistics


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms whose running statistics the model normalises with at inference."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


class _Moments:
    """Per-channel mean and variance of everything a batch norm sees, accumulated over batches in float64
    (Chan et al.'s pooled form), so the result is the images' own statistics whatever the batch size."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None  # sum of x
        self.squares: torch.Tensor | None = None  # sum of x^2

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach()
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        n = x.numel() // x.shape[1]
        total, squares = (mean.double() * n), (var.double() + mean.double() ** 2) * n
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += n

    def write_to(self, layer: nn.modules.batchnorm._BatchNorm) -> None:
        assert self.total is not None and self.squares is not None and self.count > 1
        mean = self.total / self.count
        var = (self.squares / self.count - mean**2).clamp_min(0) * (self.count / (self.count - 1))
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(var.to(layer.running_var.dtype))


def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every batch norm's running mean and variance by the mean and (unbiased) variance of its inputs
    over all of `batches` (the inputs the network sees); returns how many images went in.

    As in AdaBN and `torch.optim.swa_utils.update_bn`, the batch norms normalise each batch with its own
    statistics during the pass; unlike `update_bn`, the statistics are pooled over every pixel of every image
    (not an average of per-batch variances, which would miss how images differ from each other and depend on
    the batch size), the rest of the model stays in eval mode (dropout off), and the model's train/eval modes
    and momenta are restored. After an error the old statistics are put back.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ResegError(
            f"the model ({type(model).__name__}) has no batch-norm layers with running statistics, "
            "so there is nothing to adapt"
        )
    modes = [(m, m.training) for m in model.modules()]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    moments = [_Moments() for _ in layers]
    hooks = [m.register_forward_pre_hook(acc) for m, acc in zip(layers, moments, strict=True)]
    images = 0
    try:
        model.eval()
        for m in layers:
            m.train()
        with torch.no_grad():
            for x in batches:
                model(x)
                images += int(x.shape[0])
        if images == 0:
            raise ResegError("no images to adapt the batch-norm statistics on")
        for m, acc, (_, _, count) in zip(layers, moments, saved, strict=True):
            acc.write_to(m)
            m.num_batches_tracked.copy_(count)
    except BaseException:
        for m, (mean, var, count) in zip(layers, saved, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
        raise
    finally:
        for hook in hooks:
            hook.remove()
        for m, training in modes:
            m.training = training
    return images


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """`limit` indices spread over 0..count-1 (all of them when there are no more), so a long video is
    sampled from start to end rather than cut after its first frames."""
    if limit is None or count <= limit:
        return list(range(count))
    if limit < 1:
        raise ResegError(f"the number of images to adapt on must be >= 1, got {limit}")
    return sorted({round(i * (count - 1) / max(limit - 1, 1)) for i in range(limit)})


def read_frames(inputs: Sequence[str], limit: int | None = DEFAULT_MAX_IMAGES) -> Iterator[np.ndarray]:
    """RGB uint8 images from image files, folders, globs and video files (reseg.video's decoder), at most
    `limit` in all, spread evenly over every input's frames."""
    from reseg.video.sources import FrameSource

    if not inputs:
        raise ResegError("no inputs to adapt on: give image files, folders, globs or videos")
    counts = []
    for spec in inputs:
        source = FrameSource(spec)
        try:
            counts.append(_frame_count(source))
        finally:
            source.close()
    total = sum(counts)
    if total == 0:
        raise ResegError(f"no frames could be read from {', '.join(inputs)}")
    keep = set(evenly_spaced(total, limit))
    offsets = list(itertools.accumulate([0, *counts]))
    for spec, offset in zip(inputs, offsets, strict=False):
        source = FrameSource(spec)
        try:
            for position, frame in enumerate(source):
                if offset + position in keep:
                    yield np.asarray(frame.image)
        finally:
            source.close()


def _frame_count(source: Any) -> int:
    """Frames a source holds: its file list's or video header's count, else counted by decoding."""
    return int(source.total) if source.total else sum(1 for _ in source)


def adapt(
    checkpoint: str | Path,
    inputs: Sequence[str],
    out: str | Path,
    *,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    batch_size: int = DEFAULT_BATCH,
    overwrite: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Write `out`: the checkpoint's model with batch-norm statistics re-estimated on `inputs` (unlabeled
    image files, folders, globs or videos), ready for every `--checkpoint`. Returns what was recorded.

    The images run the way inference runs them (the checkpoint's eval size, normalisation and padding). The
    new file holds the weights, config and classes, not the training state (it is a model, not a run to
    resume); it is written atomically and never over the checkpoint or an existing file without `overwrite`.
    """
    from reseg.engine.checkpoint import read_checkpoint, save_checkpoint
    from reseg.io import check_output_file, refuse_overlap
    from reseg.predictor import Predictor
    from reseg.viz import resolve_palette

    out = check_output_file(out, "--out")
    refuse_overlap(out, [checkpoint], "--out", "the checkpoint")
    if out.exists() and not overwrite:
        raise ResegError(f"--out {out} exists; choose another name or pass --overwrite to replace it")
    ckpt = read_checkpoint(checkpoint)
    model = ckpt.build_model()
    palette = resolve_palette(ckpt.class_names, ckpt.state.get("palette"))
    predictor = Predictor.from_config(model, ckpt.config, ckpt.class_names, palette, device, backend="eager")
    images = predictor.adapt_batchnorm(read_frames(inputs, max_images), batch_size=batch_size)
    record = {"images": images, "inputs": [str(s) for s in inputs], "from": str(checkpoint)}
    keep = ("config", "class_names", "palette", "best_metric", "best_iteration", "iteration", "command", "machine")
    state = {key: ckpt.state[key] for key in keep if key in ckpt.state}
    state["model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state["adapted"] = record
    save_checkpoint(state, out)
    return record
