"""Write a synthetic driving video: one street, the camera moving along it, other road users moving too."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from reseg.data.synthetic.dataset import PNG
from reseg.data.synthetic.difficulty import get_difficulty
from reseg.data.synthetic.layout import make_street
from reseg.data.synthetic.render import render
from reseg.data.synthetic.scene import Street
from reseg.errors import ResegError


def make_synthetic_video(path: str | Path, frames: int = 90, size: tuple[int, int] = (360, 480), fps: float = 15.0,
                         seed: int = 0, speed: float = 8.0, frames_dir: str | Path | None = None,
                         labels_dir: str | Path | None = None, difficulty: str = "standard") -> Path:
    """Write a short street video: the camera drives forward at `speed` m/s, other cars move too.

    The codec follows the extension: .avi -> MJPG, anything else (.mp4) -> mp4v. With `frames_dir`
    the frames are also saved as PNGs (frame_00000.png ...), with `labels_dir` their SegNet-id labels.
    """
    path = Path(path)
    h, w = int(size[0]), int(size[1])
    if frames < 1:
        raise ResegError(f"a video needs at least one frame, got frames={frames}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _open_writer(path, fps, w, h)
    for d in (frames_dir, labels_dir):
        if d is not None:
            Path(d).mkdir(parents=True, exist_ok=True)
    st = _video_street(seed, (h, w), speed * (frames / float(fps)), difficulty)
    try:
        _write_frames(writer, st, frames, (h, w), fps, seed, speed, frames_dir, labels_dir)
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise ResegError(f"the video writer produced no file at {path}")
    return path


def _write_frames(writer: cv2.VideoWriter, st: Street, frames: int, size: tuple[int, int], fps: float, seed: int,
                  speed: float, frames_dir: str | Path | None, labels_dir: str | Path | None) -> None:
    """Render frame k at time k / fps from `speed * t` metres along the street; each frame has its own noise."""
    for k in range(frames):
        t = k / float(fps)
        frame_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99, k]))
        img, lab = render(st, size, frame_rng, cam_z=speed * t, t=t)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        writer.write(bgr)
        if frames_dir is not None:
            cv2.imwrite(str(Path(frames_dir) / f"frame_{k:05d}.png"), bgr, PNG)
        if labels_dir is not None:
            cv2.imwrite(str(Path(labels_dir) / f"frame_{k:05d}.png"), lab, PNG)


def _open_writer(path: Path, fps: float, w: int, h: int) -> cv2.VideoWriter:
    codec = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
    if not writer.isOpened():
        raise ResegError(f"cannot open a video writer for {path} (codec {codec}); try a .avi or .mp4 file name")
    return writer


def _video_street(seed: int, size: tuple[int, int], drive: float, difficulty: str) -> Street:
    """A street `drive` metres longer than a still scene's, with a level camera, no bonnet and one texture."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99]))
    st = make_street(rng, size, length=drive + 20.0, difficulty=get_difficulty(difficulty))
    st.light.roll, st.light.hood = 0.0, 0.0
    st.light.texture_seed = int(rng.integers(2**31 - 1))
    return st
