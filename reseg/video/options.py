"""What `reseg video` reads, draws and writes, and the checks that run before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseg.errors import ResegError
from reseg.io import check_output_dir, check_output_file, refuse_overlap
from reseg.video.sources import frame_files_root
from reseg.video.writer import codec_candidates


@dataclass
class VideoOptions:
    """What `reseg video` reads, draws and writes; sizes are (width, height) as on the command line."""

    fps: float | None = None
    opacity: float = 0.5
    legend: bool = False
    side_by_side: bool = False
    masks_dir: str | None = None
    mask_video: str | None = None
    output_size: tuple[int, int] | None = None  # (H, W) of each output panel
    batch: int = 1
    smooth: float = 0.0
    show: bool = False
    max_frames: int | None = None
    queue_size: int = 8
    progress: bool = True
    overlay: bool = True  # False: encode nothing but what --masks-dir/--mask-video ask for
    decoder: str = "auto"  # auto | opencv | torchcodec
    realtime: bool = False
    device_overlay: bool | None = None  # None: on the device when the model runs on a GPU
    extra: dict[str, Any] = field(default_factory=dict)


def validate_options(opts: VideoOptions) -> None:
    """Every numeric option in range, named as on the command line."""
    if opts.batch < 1:
        raise ResegError(f"--batch must be >= 1, got {opts.batch}")
    if not 0.0 <= opts.smooth < 1.0:
        raise ResegError(f"--smooth must be in [0, 1) (weight of the past frames; 0 = off), got {opts.smooth}")
    if not 0.0 <= opts.opacity <= 1.0:
        raise ResegError(f"--opacity must be in [0, 1], got {opts.opacity}")
    if opts.output_size is not None and (len(opts.output_size) != 2 or min(opts.output_size) <= 0):
        raise ResegError(f"--output-size must be two positive numbers H W, got {opts.output_size}")
    if opts.max_frames is not None and opts.max_frames < 1:
        raise ResegError(f"--max-frames must be >= 1, got {opts.max_frames}")
    if opts.queue_size < 1:
        raise ResegError(f"queue_size must be >= 1, got {opts.queue_size}")


def check_outputs(spec: str, output: str | None, opts: VideoOptions, stats_json: str | None = None) -> None:
    """Refuse outputs that would overwrite the input or each other, or cannot be written, before any work."""
    inputs = frame_files_root(str(spec))
    files = [("--output", output), ("--mask-video", opts.mask_video), ("--stats-json", stats_json)]
    taken: dict[Path, str] = {}
    for flag, path in files:
        if path is None:
            continue
        check_output_file(path, flag)
        targets = [Path(path)] if flag == "--stats-json" else [t for _, t in codec_candidates(path)]
        for target in dict.fromkeys(targets):
            try:
                refuse_overlap(target, inputs, flag, "the input")
            except ResegError:
                if target == Path(path):
                    raise
                raise ResegError(
                    f"{flag} {path} would be written as {target} (the fallback when no MP4 encoder "
                    f"opens), which would write into the input; choose another name"
                ) from None
            key = target.resolve()
            if key in taken:
                raise ResegError(
                    f"{flag} {path} and {taken[key]} name the same file {target}; give each output its own name"
                )
            taken[key] = f"{flag} {path}"
    if opts.masks_dir:
        check_output_dir(opts.masks_dir, "--masks-dir")
        refuse_overlap(opts.masks_dir, inputs, "--masks-dir", "the input")
