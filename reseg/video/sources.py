"""Where frames come from: video files (OpenCV or torchcodec), cameras, streams, image folders or globs,
and arrays in memory.

Every source yields `Frame`s in input order, all of the first frame's size, and counts the frames it
could not decode (with their index) instead of failing: a damaged frame costs one frame, not the run.
Opening reads the first frame, so an input that cannot be opened or holds no frames fails at once
with an error naming it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reseg.data.base import IMAGE_EXTENSIONS, UnreadableImageError, collect_images, read_image
from reseg.errors import ResegError

DEFAULT_FPS = 30.0
DECODERS = ("auto", "opencv", "torchcodec")
_MAX_WARNINGS = 10


@dataclass
class Frame:
    """One decoded frame on its way through the pipeline."""

    index: int  # position in the input: frame number, or place in the sorted file list
    name: str  # frame_000012 for videos; the path below the folder (no suffix) for image files
    image: Any  # RGB uint8 HxWx3: a numpy array, or a torch tensor (torchcodec, maybe on the GPU)
    captured: float  # time.perf_counter() when the frame became available (latency in --realtime)


def log(message: str) -> None:
    """A warning that does not break the progress bar."""
    try:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    except ImportError:
        print(message, file=sys.stderr)


def _natural_key(text: str) -> list:
    """'frame2' sorts before 'frame10', as people number frames."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _is_glob(spec: str) -> bool:
    return not Path(spec).exists() and any(ch in spec for ch in "*?[")


def input_kind(spec: str) -> str:
    """'frames' (image file, folder or glob), 'camera', 'stream', 'file' (a video) or 'missing'."""
    path = Path(spec)
    if path.is_dir() or _is_glob(spec) or (path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS):
        return "frames"
    if spec.isdigit() and not path.exists():
        return "camera"
    if "://" in spec:
        return "stream"
    return "file" if path.is_file() else "missing"


class Source:
    """What every frame source shares: counting, dropping, `max_frames`, one frame size."""

    decoder = "opencv"

    def __init__(self, spec: str, fps: float | None = None, max_frames: int | None = None) -> None:
        if fps is not None and fps <= 0:
            raise ResegError(f"--fps must be > 0, got {fps}")
        if max_frames is not None and max_frames < 1:
            raise ResegError(f"--max-frames must be >= 1, got {max_frames}")
        self.spec = str(spec)
        self.kind = input_kind(self.spec)
        self.requested_fps = fps
        self.max_frames = max_frames
        self.frames_in = 0
        self.dropped_frames: list[dict[str, Any]] = []
        self.note: str | None = None  # why this decoder was chosen, for the summary
        self.in_use = False  # True while a reader thread may still be inside the decoder
        self._warned_resize = False
        self.total: int | None = None
        self.input_fps: float | None = None
        self.fps = DEFAULT_FPS
        self.width = self.height = 0
        self._first: Frame | None = None

    @property
    def dropped(self) -> int:
        """Frames that could not be decoded."""
        return len(self.dropped_frames)

    def _finish_open(self, total: int | None, input_fps: float | None) -> None:
        """Set counts and rates, then read the first frame (an input without one is an error)."""
        self.total = total
        if self.max_frames is not None:
            self.total = self.max_frames if total is None else min(total, self.max_frames)
        self.input_fps = input_fps if input_fps and 0 < input_fps < 1000 else None
        self.fps = float(self.requested_fps or self.input_fps or DEFAULT_FPS)
        first = self._next_raw()
        if first is None:
            self.close()
            raise ResegError(f"no frames could be decoded from {self.spec} (empty, or every frame is damaged)")
        self._first = first
        self.height, self.width = first.image.shape[:2]

    def _next_raw(self) -> Frame | None:
        """The next decodable frame, or None at the end; frames that fail are recorded with `_drop`."""
        raise NotImplementedError

    def _drop(self, index: int, name: str, file: str | None = None) -> None:
        entry: dict[str, Any] = {"index": int(index), "name": name}
        if file is not None:
            entry["file"] = file
        self.dropped_frames.append(entry)
        if self.dropped <= _MAX_WARNINGS:
            log(f"warning: skipped a frame that could not be decoded: {file or name} (index {index})")
        elif self.dropped == _MAX_WARNINGS + 1:
            log("warning: more frames could not be decoded; the stats JSON lists them all")

    def _in_window(self, index: int) -> bool:
        return self.max_frames is None or index < self.max_frames

    def __iter__(self) -> Iterator[Frame]:
        """Every decodable frame (at most `max_frames`), resized to the first frame's size if needed."""
        frame = self._first
        self._first = None
        while frame is not None and (self.max_frames is None or self.frames_in < self.max_frames):
            if tuple(frame.image.shape[:2]) != (self.height, self.width):
                frame.image = self._resize(frame)
            self.frames_in += 1
            yield frame
            if self.max_frames is not None and self.frames_in >= self.max_frames:
                return
            frame = self._next_raw()

    def _resize(self, frame: Frame) -> Any:
        if not self._warned_resize:
            log(
                f"warning: frame {frame.name} is {frame.image.shape[1]}x{frame.image.shape[0]}, not "
                f"{self.width}x{self.height}; resizing frames to the first frame's size"
            )
            self._warned_resize = True
        image = frame.image
        if not isinstance(image, np.ndarray):
            image = image.cpu().numpy()
        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def close(self) -> None:
        """Release the decoder (idempotent)."""

    def describe(self) -> str:
        """One line: what the input is and which decoder reads it."""
        count = self.total if self.total is not None else "unknown number of"
        return f"{self.kind}, {self.width}x{self.height}, {count} frames, decoder {self.decoder}"


class FrameSource(Source):
    """Frames decoded by OpenCV: video files, camera indices, URLs, and image files, folders or globs."""

    def __init__(
        self, spec: str, fps: float | None = None, max_frames: int | None = None, max_failures: int = 8
    ) -> None:
        super().__init__(spec, fps, max_frames)
        self.max_failures = max_failures
        self.files: list[tuple[Path, str]] | None = None
        self.cap: Any = None
        self._pos = 0
        self._header_count = 0
        self._open()

    def _open(self) -> None:
        spec, kind = self.spec, self.kind
        if kind == "frames":
            self._open_files()
            self._finish_open(len(self.files or ()), None)
            return
        if kind == "missing":
            raise ResegError(
                f"input not found: {spec} (expected a video file, camera index, URL, frame folder or glob)"
            )
        self.cap = cv2.VideoCapture(int(spec) if kind == "camera" else spec)
        if not self.cap.isOpened():
            raise ResegError(
                {
                    "camera": f"cannot open camera {spec} (no such device, or it is in use)",
                    "stream": f"cannot open stream {spec} (unreachable, or a format OpenCV's FFmpeg cannot read)",
                }.get(kind, f"cannot open video {spec}: not a video OpenCV can decode, or damaged")
            )
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._header_count = count if count > 0 and kind == "file" else 0
        self._finish_open(self._header_count or None, float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0))

    def _open_files(self) -> None:
        """Image files in natural order; names keep the path below the folder, so equal stems stay apart."""
        items = collect_images([self.spec])
        items.sort(key=lambda item: _natural_key(item[1].as_posix()))
        self.files = [(path, rel.as_posix()) for path, rel in items]

    def _next_raw(self) -> Frame | None:
        return self._next_file() if self.files is not None else self._next_video()

    def _next_file(self) -> Frame | None:
        assert self.files is not None
        while self._pos < len(self.files):
            i = self._pos
            path, name = self.files[i]
            self._pos += 1
            try:
                img = read_image(path)  # refuses truncated files, which cv2.imread pads with grey
            except UnreadableImageError:
                self._drop(i, name, file=str(path))
                continue
            return Frame(i, name, img, time.perf_counter())
        return None

    def _next_video(self) -> Frame | None:
        """Failed reads followed by a good one were damaged frames; at the end of a file, the frames its
        header promises that never decoded (a truncated file) are dropped too."""
        first_fail: int | None = None
        while True:
            ok, img = self.cap.read()
            if ok and img is not None:
                if first_fail is not None:
                    self._drop_range(first_fail, self._pos)
                i = self._pos
                self._pos += 1
                if img.ndim == 2:
                    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
                return Frame(i, f"frame_{i:06d}", cv2.cvtColor(img, cv2.COLOR_BGR2RGB), time.perf_counter())
            if first_fail is None:
                first_fail = self._pos
            self._pos += 1
            if self._pos - first_fail > self.max_failures or 0 < self._header_count <= self._pos:
                break
        if self._header_count > first_fail:
            self._drop_range(first_fail, self._header_count)
        return None

    def _drop_range(self, start: int, stop: int) -> None:
        for i in range(start, stop):
            if self._in_window(i):
                self._drop(i, f"frame_{i:06d}")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class TorchCodecUnavailable(ResegError):
    """torchcodec is not installed, or cannot load FFmpeg's shared libraries."""


class TorchCodecSource(Source):
    """A video file (or URL) decoded by torchcodec: on the GPU (NVDEC) when asked and supported, else the CPU.

    Frames are torch tensors (HxWx3 uint8); CPU frames are handed on as numpy views of them.
    """

    def __init__(self, spec: str, fps: float | None = None, max_frames: int | None = None, device: str = "cpu") -> None:
        super().__init__(spec, fps, max_frames)
        if self.kind not in ("file", "stream"):
            raise ResegError(
                f"--decoder torchcodec reads video files and URLs, and {spec} is a "
                f"{'missing path' if self.kind == 'missing' else self.kind}; use --decoder opencv"
            )
        self.device = device
        self._dec = _torchcodec_decoder(self.spec, device)
        meta = self._dec.metadata
        self._count = int(meta.num_frames or 0) or len(self._dec)
        self._pos = 0
        self.decoder = f"torchcodec ({device})"
        self._finish_open(self._count, float(meta.average_fps or 0.0))

    def _next_raw(self) -> Frame | None:
        while self._pos < self._count and self._in_window(self._pos):
            i = self._pos
            self._pos += 1
            try:
                image = self._dec[i]
            except (RuntimeError, IndexError, ValueError):  # torchcodec names no narrower type for a bad frame
                self._drop(i, f"frame_{i:06d}")
                continue
            if image.device.type == "cpu":
                image = image.numpy()
            return Frame(i, f"frame_{i:06d}", image, time.perf_counter())
        return None

    def close(self) -> None:
        self._dec = None


def _torchcodec_decoder(spec: str, device: str) -> Any:
    """A torchcodec VideoDecoder (frames as HxWx3); 'approximate' seeking trusts the header's frame count,
    so frames a truncated file promises but cannot deliver fail one by one and are counted."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        raise TorchCodecUnavailable(
            f"torchcodec is not installed ({err}); `pip install 'reseg[video]'` "
            f"and FFmpeg's shared libraries (FFmpeg 4 or newer) add it"
        ) from None
    last: Exception | None = None
    for mode in ("approximate", "exact"):
        try:
            dec = VideoDecoder(spec, device=device, dimension_order="NHWC", seek_mode=mode)
        except Exception as err:  # torchcodec raises RuntimeError/ValueError with FFmpeg's words
            if "libtorchcodec" in str(err) or isinstance(err, (OSError, ImportError)):
                raise TorchCodecUnavailable(
                    f"torchcodec cannot load FFmpeg's shared libraries (install FFmpeg "
                    f"4 or newer with its libav* libraries): {str(err).splitlines()[0]}"
                ) from None
            last = err
            continue
        if mode == "exact" or dec.metadata.num_frames:
            return dec
    first = str(last).splitlines()[0] if last is not None and str(last) else type(last).__name__
    raise ResegError(f"cannot open video {spec} with torchcodec: {first}")


class ArraySource(Source):
    """Frames already in memory (the benchmark's model-only baseline, tests, and callers with their own decoder)."""

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        fps: float | None = None,
        max_frames: int | None = None,
        name: str = "<memory>",
    ) -> None:
        super().__init__(name, fps, max_frames)
        self.kind = "memory"
        self.decoder = "memory"
        self._frames = list(frames)
        self._pos = 0
        self._finish_open(len(self._frames), None)

    def _next_raw(self) -> Frame | None:
        if self._pos >= len(self._frames):
            return None
        i = self._pos
        self._pos += 1
        return Frame(i, f"frame_{i:06d}", np.asarray(self._frames[i]), time.perf_counter())


def open_source(
    spec: str, decoder: str = "auto", fps: float | None = None, max_frames: int | None = None, device: Any = "cpu"
) -> Source:
    """The source for `spec` read by `decoder`.

    'auto' takes torchcodec for video files when it works (decoding on the GPU when `device` is one and
    the build can) and OpenCV otherwise, with the reason in `source.note` for the summary; 'torchcodec'
    fails with the reason instead of falling back.
    """
    if decoder not in DECODERS:
        raise ResegError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "opencv" or (decoder == "auto" and input_kind(str(spec)) != "file"):
        return FrameSource(spec, fps=fps, max_frames=max_frames)
    gpu = str(getattr(device, "type", device)).startswith("cuda")
    try:
        source = _torchcodec_source(spec, fps, max_frames, gpu)
    except TorchCodecUnavailable as err:
        if decoder == "torchcodec":
            raise ResegError(f"--decoder torchcodec: {err}") from None
        source = FrameSource(spec, fps=fps, max_frames=max_frames)
        source.note = f"torchcodec not used: {err}"
    except ResegError as err:
        if decoder == "torchcodec":
            raise
        source = FrameSource(spec, fps=fps, max_frames=max_frames)
        source.note = f"torchcodec could not read it: {err}"
    return source


def _torchcodec_source(spec: str, fps: float | None, max_frames: int | None, gpu: bool) -> TorchCodecSource:
    """torchcodec on the GPU when asked and possible, else on the CPU (the note says why not the GPU)."""
    if gpu:
        try:
            return TorchCodecSource(spec, fps=fps, max_frames=max_frames, device="cuda")
        except TorchCodecUnavailable:
            raise
        except ResegError as err:
            source = TorchCodecSource(spec, fps=fps, max_frames=max_frames, device="cpu")
            source.note = f"decoding on the CPU: {err}"
            return source
    return TorchCodecSource(spec, fps=fps, max_frames=max_frames, device="cpu")


def frame_files_root(spec: str) -> list[Path]:
    """The paths a source reads, for the never-write-into-the-input guard."""
    from reseg.data.base import input_folders

    kind = input_kind(spec)
    if kind in ("file", "frames") and Path(spec).exists():
        return [Path(spec)]
    if kind == "frames":
        return input_folders([spec])
    return []


__all__ = [
    "ArraySource",
    "DECODERS",
    "DEFAULT_FPS",
    "Frame",
    "FrameSource",
    "Source",
    "TorchCodecSource",
    "TorchCodecUnavailable",
    "frame_files_root",
    "input_kind",
    "log",
    "open_source",
]
