"""`reseg adapt` as a library call: a checkpoint and unlabeled images or videos of new streets -> an adapted
checkpoint (reseg.adaptation re-estimates the batch-norm statistics)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reseg.adaptation import DEFAULT_BATCH, DEFAULT_WEIGHT, check_weight
from reseg.errors import ResegError
from reseg.self_training import DEFAULT_KEEP, DEFAULT_LR, check_self_training

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MAX_IMAGES = 500  # beyond a few hundred frames the statistics no longer move


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
    import numpy as np

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
    weight: float = DEFAULT_WEIGHT,
    self_train: int = 0,
    keep: float = DEFAULT_KEEP,
    lr: float = DEFAULT_LR,
    overwrite: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Write `out`: the checkpoint's model with batch-norm statistics re-estimated on `inputs` (unlabeled
    image files, folders, globs or videos; `weight`: their share, see reestimate_batchnorm), ready for every
    `--checkpoint`. With `self_train` iterations, the adapted model then trains on its own class-balanced
    predictions on the same images (reseg.self_training: `keep`, `lr`). Returns what was recorded.

    The images run the way inference runs them (the checkpoint's eval size, normalisation and padding). The
    new file holds the weights, config and classes, not the training state (it is a model, not a run to
    resume); it is written atomically and never over the checkpoint or an existing file without `overwrite`.
    """
    from reseg.engine.checkpoint import read_checkpoint, save_checkpoint
    from reseg.io import check_output_file, refuse_overlap
    from reseg.predictor import Predictor

    check_weight(weight)
    if self_train:
        check_self_training(self_train, keep, lr)
    out = check_output_file(out, "--out")
    refuse_overlap(out, [checkpoint], "--out", "the checkpoint")
    if out.exists() and not overwrite:
        raise ResegError(f"--out {out} exists; choose another name or pass --overwrite to replace it")
    ckpt = read_checkpoint(checkpoint)
    model = ckpt.build_model()
    predictor = Predictor.from_config(model, ckpt.config, ckpt.class_names, device=device, backend="eager")
    frames = list(read_frames(inputs, max_images)) if self_train else read_frames(inputs, max_images)
    images = predictor.adapt_batchnorm(frames, batch_size=batch_size, weight=weight)
    record: dict[str, Any] = {"images": images, "weight": weight, "inputs": [str(s) for s in inputs]}
    record["from"] = str(checkpoint)
    if self_train:
        record["self_training"] = _self_train(predictor, frames, self_train, keep, lr, batch_size, ckpt.config)
    carried = ("config", "class_names", "palette", "best_metric", "best_iteration", "iteration", "command", "machine")
    state = {key: ckpt.state[key] for key in carried if key in ckpt.state}
    state["model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state["adapted"] = record
    save_checkpoint(state, out)
    return record


def _self_train(
    predictor: Any, frames: list[np.ndarray], iterations: int, keep: float, lr: float, batch_size: int, config: Any
) -> dict[str, Any]:
    """Self-train the predictor's model on `frames` (reseg.self_training), inputs prepared as inference
    prepares them and the training's autocast rule (the checkpoint's train.amp); progress to stderr."""
    import sys

    from reseg import self_training
    from reseg.runtime import amp_dtype, autocast

    train_dtype = amp_dtype(bool(config.train.amp), predictor.device, training=True)
    return self_training.self_train(
        predictor.model,
        list(predictor.sized_network_inputs(frames, batch_size)),
        iterations=iterations,
        keep=keep,
        lr=lr,
        batch_size=batch_size,
        teacher_autocast=lambda: autocast(predictor.device, predictor.amp_dtype),
        train_autocast=lambda: autocast(predictor.device, train_dtype),
        seed=int(config.train.seed or 0),
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
