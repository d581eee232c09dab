"""Write a synthetic driving video: one street, the camera moving along it, other road users moving too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from reseg.data.synthetic.dataset import PNG
from reseg.data.synthetic.difficulty import get_difficulty
from reseg.data.synthetic.layout import make_street
from reseg.data.synthetic.render import render
from reseg.data.synthetic.scene import Street
from reseg.errors import ResegError


def make_synthetic_video(
    path: str | Path,
    frames: int = 90,
    size: tuple[int, int] = (360, 480),
    fps: float = 15.0,
    seed: int = 0,
    speed: float = 8.0,
    frames_dir: str | Path | None = None,
    labels_dir: str | Path | None = None,
    difficulty: str = "standard",
) -> Path:
    """Write a short street video: the camera drives forward at `speed` m/s, other cars move too.

    The codec follows the extension (reseg.video.writer: .avi -> MJPG, .mp4 -> mp4v, with its fallbacks) and
    the file appears whole or not at all. With `frames_dir` the frames are also saved as PNGs
    (frame_00000.png ...), with `labels_dir` their SegNet-id labels. Returns the path written.
    """
    from reseg.video.writer import write_video  # the video package's encoder: only when a video is written

    if frames < 1:
        raise ResegError(f"a video needs at least one frame, got frames={frames}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for d in (frames_dir, labels_dir):
        if d is not None:
            Path(d).mkdir(parents=True, exist_ok=True)

    def images() -> Iterator[np.ndarray]:
        for k, (img, lab) in enumerate(drive_frames(frames, size, fps, seed, speed, difficulty)):
            if frames_dir is not None:
                cv2.imwrite(str(Path(frames_dir) / f"frame_{k:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), PNG)
            if labels_dir is not None:
                cv2.imwrite(str(Path(labels_dir) / f"frame_{k:05d}.png"), lab, PNG)
            yield img

    return write_video(images(), path, fps)


def drive_frames(
    frames: int,
    size: tuple[int, int] = (360, 480),
    fps: float = 15.0,
    seed: int = 0,
    speed: float = 8.0,
    difficulty: str = "standard",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, SegNet-id label) of each frame of a drive, in memory: frame k is rendered at time k / fps,
    `speed * t` metres along one street, with its own noise (what make_synthetic_video writes, and the clip
    the video benchmark times)."""
    h, w = int(size[0]), int(size[1])
    st = _video_street(seed, (h, w), speed * (frames / float(fps)), difficulty)
    for k in range(frames):
        t = k / float(fps)
        frame_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99, k]))
        yield render(st, (h, w), frame_rng, cam_z=speed * t, t=t)


def _video_street(seed: int, size: tuple[int, int], drive: float, difficulty: str) -> Street:
    """A street `drive` metres longer than a still scene's, with a level camera, no bonnet and one texture."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99]))
    st = make_street(rng, size, length=drive + 20.0, difficulty=get_difficulty(difficulty))
    st.light.roll, st.light.hood = 0.0, 0.0
    st.light.texture_seed = int(rng.integers(2**31 - 1))
    return st
