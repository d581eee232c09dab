"""One batch of frames through the model: upload, normalise, forward, argmax/smoothing, device overlay, copy back.

`launch` queues a batch's work and `collect` waits for it, so that on a GPU the pipeline can keep one batch
in flight while the host prepares the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reseg.preprocess import Normalizer, class_ids
from reseg.video.overlay import lut_tensor, overlay_tensor
from reseg.video.sources import Frame
from reseg.video.timing import Clock, StageTimes
from reseg.video.writer import Segmented


def model_device(predictor: Any) -> torch.device:
    """Where the predictor runs its model (the CPU for predictors that do not say)."""
    return torch.device(getattr(predictor, "device", "cpu"))


@dataclass
class Launched:
    """A batch whose work is queued: its frames, stage clock and the host copies it will fill."""

    frames: list[Frame]
    clock: Clock
    masks: torch.Tensor
    overlay: torch.Tensor | None
    images: torch.Tensor | None


class BatchSegmenter:
    """One batch through upload, normalise, model, argmax/smoothing (and the device overlay), copy back."""

    def __init__(
        self,
        predictor: Any,
        smooth: float,
        times: StageTimes,
        lut: np.ndarray | None = None,
        opacity: float = 0.5,
        keep_frames: bool = True,
        overlap: bool = False,
    ) -> None:
        self.predictor = predictor
        self.device = model_device(predictor)
        self.normalize = Normalizer(self.device)
        self.alpha = float(smooth)
        self.times = times
        self.lut = lut_tensor(lut, self.device) if lut is not None else None
        self.opacity = opacity
        self.keep_frames = keep_frames
        self.overlap = overlap  # keep one batch in flight (see pipeline._infer)
        self.ema: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None
        self.flicker_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.flicker_n = 0
        self.forward_seconds: list[float] = []
        self.frames = 0

    def launch(self, frames: Sequence[Frame]) -> Launched:
        """Queue one batch's work; on a GPU this returns once the work is queued, not done."""
        clock = Clock(self.device)
        with torch.inference_mode():
            images = self._upload([f.image for f in frames])
            clock.mark("h2d")
            x = self.normalize(images)
            clock.mark("preprocess")
            if getattr(self.predictor, "backend_pending", False):
                self.predictor.prepare(x)  # --backend auto's one-off measurement: start-up, not model time
                clock.mark("startup")
            out = self.predictor.probs(x) if self.alpha > 0 else self.predictor.logits(x)
            clock.mark("model")
            masks = self._masks(out)
            over = overlay_tensor(images, masks, self.lut, self.opacity) if self.lut is not None else None
            clock.mark("postprocess")
            masks_h, over_h = _to_host(masks), _to_host(over)
            frames_h = _to_host(images) if self.keep_frames and not isinstance(frames[0].image, np.ndarray) else None
            clock.mark("d2h")
        return Launched(list(frames), clock, masks_h, over_h, frames_h)

    def collect(self, batch: Launched) -> list[Segmented]:
        """Wait for a launched batch, book its stage times, and pair each frame with its mask (and overlay)."""
        seconds = batch.clock.seconds()
        for stage, sec in seconds.items():
            self.times.add(stage, sec)
        self.forward_seconds.append(seconds.get("model", 0.0))
        self.frames += len(batch.frames)
        masks_np = batch.masks.numpy()
        over_np = batch.overlay.numpy() if batch.overlay is not None else None
        frames_np = batch.images.numpy() if batch.images is not None else None
        results = []
        for k, frame in enumerate(batch.frames):
            if frames_np is not None:
                frame.image = frames_np[k]
            results.append(Segmented(frame, masks_np[k], over_np[k] if over_np is not None else None))
        return results

    def _upload(self, images: list[Any]) -> torch.Tensor:
        """(N, H, W, 3) uint8 on the device: one stacked host buffer, pinned and copied without blocking."""
        if all(isinstance(im, torch.Tensor) for im in images):
            return torch.stack(images).to(self.device, non_blocking=True)
        host = torch.from_numpy(
            np.stack([im.cpu().numpy() if isinstance(im, torch.Tensor) else np.asarray(im) for im in images])
        )
        if self.device.type == "cuda":
            return host.pin_memory().to(self.device, non_blocking=True)
        return host.to(self.device)

    def _masks(self, out: torch.Tensor) -> torch.Tensor:
        if self.alpha > 0:
            smoothed = []
            for p in out:
                self.ema = p.clone() if self.ema is None else self.ema.mul_(self.alpha).add_(p, alpha=1 - self.alpha)
                smoothed.append(class_ids(self.ema, dim=0))
            masks = torch.stack(smoothed)
        else:
            masks = class_ids(out)
        for m in masks:
            if self.prev is not None:
                self.flicker_sum += (m != self.prev).double().mean()
                self.flicker_n += 1
            self.prev = m
        return masks

    @property
    def flicker(self) -> float | None:
        """Mean share of pixels whose label changes between consecutive frames (None with fewer than two)."""
        return float(self.flicker_sum) / self.flicker_n if self.flicker_n else None


def _to_host(t: torch.Tensor | None) -> torch.Tensor | None:
    """A CPU copy: into pinned memory without blocking on CUDA (ready once the batch's clock has synced)."""
    if t is None or t.device.type == "cpu":
        return t
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)
