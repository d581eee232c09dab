"""Where segmented frames go: overlay videos and mask videos written atomically, mask PNGs, a window.

A video is encoded under a temporary name beside its final one (`reseg.io.atomic_path`) and renamed
into place when the run ends, so an earlier file of that name survives a crash; after Ctrl-C what was
written is kept under the final name. The writer thread draws (on the host, unless the overlay was
made on the device) and encodes, fed by a bounded queue: frames stay in order and a slow encoder
holds back inference instead of filling memory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reseg.errors import ResegError
from reseg.io import atomic_path
from reseg.video.sources import Frame, log
from reseg.video.timing import StageTimes
from reseg.viz import colorize, draw_legend, overlay, side_by_side, write_image

_END = object()
_CODEC_CACHE: dict[tuple[str, str], bool] = {}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (FFmpeg prints encoder probing failures straight to fd 2)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    level = None
    with contextlib.suppress(Exception):
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if level is not None:
            with contextlib.suppress(Exception):
                cv2.utils.logging.setLogLevel(level)


def codec_candidates(path: str | Path) -> list[tuple[str, Path]]:
    """(fourcc, file) to try for `path`: H.264 or mp4v in .mp4, else MJPG in .avi; .avi asks for MJPG/XVID."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".avi":
        return [("MJPG", path), ("XVID", path)]
    mp4 = path if suffix in (".mp4", ".m4v", ".mov", ".mkv") else path.with_suffix(".mp4")
    return [("avc1", mp4), ("mp4v", mp4), ("MJPG", path.with_suffix(".avi"))]


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """RGB frames (any iterable: a generator renders as it writes) -> a video file, written atomically by
    VideoFile (its codec fallbacks included); returns the path written."""
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise ResegError(f"no frames to write to {path}")
    video = VideoFile(path, fps, (first.shape[1], first.shape[0]))
    try:
        for frame in itertools.chain([first], stream):
            video.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    except BaseException as err:
        video.discard(err)
        raise
    video.commit()
    return video.path


class VideoFile:
    """An encoder writing to a temporary name; `commit` renames the file into place, `discard` removes it.

    `path` is the file that will exist (its suffix changes when only the .avi fallback could be opened),
    `fourcc` the codec, `written` the frames the encoder accepted.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.asked = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.written = 0
        self.failed = 0
        self.writer: Any = None
        candidates = codec_candidates(path)
        for fourcc, target in candidates:
            if _CODEC_CACHE.get((fourcc, target.suffix.lower())) is False:
                continue
            guard = atomic_path(target)
            tmp = guard.__enter__()
            with _quiet_stderr():
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
            _CODEC_CACHE[(fourcc, target.suffix.lower())] = writer.isOpened()
            if writer.isOpened():
                self.writer, self.path, self.fourcc, self._guard, self.tmp = writer, target, fourcc, guard, tmp
                return
            writer.release()
            _close_guard(guard, ResegError(f"no {fourcc} encoder"))
        raise ResegError(
            f"could not open a video writer for {path} (tried "
            f"{', '.join(f'{c} in {t.suffix}' for c, t in candidates)}); check the folder is writable"
        )

    def write(self, bgr: np.ndarray) -> bool:
        """Encode one BGR frame; False (and counted in `failed`) when the encoder refused it."""
        ok = self.writer.write(bgr)
        ok = True if ok is None else bool(ok)  # older OpenCV returns nothing
        if ok:
            self.written += 1
        else:
            self.failed += 1
        return ok

    def commit(self) -> int:
        """Finish the file, rename it into place; returns the frames the file really holds."""
        self._release()
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.__exit__(None, None, None)
        return self._frames_in_file()

    def discard(self, err: BaseException | None = None) -> None:
        """Remove the temporary file; a file already at `path` stays as it was."""
        self._release()
        guard, self._guard = self._guard, None
        if guard is not None:
            _close_guard(guard, err or ResegError("discarded"))

    def _release(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.release()
            self.writer = None

    def _frames_in_file(self) -> int:
        """The container's frame count (what a player will show), or `written` if it gives none."""
        cap = cv2.VideoCapture(str(self.path))
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
        finally:
            cap.release()
        if self.written and count <= 0:
            return self.written
        return min(count, self.written) if count > 0 else 0


def _close_guard(guard: Any, err: BaseException) -> None:
    """Leave an atomic_path context as if `err` was raised inside it (it removes the temporary file)."""
    with contextlib.suppress(BaseException):
        guard.__exit__(type(err), err, None)


@dataclass
class Segmented:
    """A frame with its mask (and the overlay, when drawn on the device), on the host."""

    frame: Frame
    mask: np.ndarray
    overlay: np.ndarray | None = None


@dataclass
class DrawOptions:
    """What the writer draws; sizes are (width, height) as on the command line."""

    opacity: float = 0.5
    legend: bool = False
    side_by_side: bool = False
    panel_size: tuple[int, int] = (0, 0)
    show: bool = False


class Writer(threading.Thread):
    """Draws and encodes segmented frames in order, off the inference thread; errors are handed back to it."""

    def __init__(
        self,
        video: VideoFile | None,
        mask_video: VideoFile | None,
        masks_dir: str | None,
        draw: DrawOptions,
        lut: np.ndarray,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        times: StageTimes,
        queue_size: int,
    ) -> None:
        super().__init__(name="reseg-video-writer", daemon=True)
        self.video, self.mask_video, self.masks_dir = video, mask_video, masks_dir
        self.draw = draw
        self.lut = lut
        self.class_names = list(class_names)
        self.palette = [tuple(int(c) for c in p) for p in palette]
        self.times = times
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.frames_out = 0
        self.written_order: list[int] = []
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self.stop_requested = False
        self._show = draw.show
        if (
            self._show
            and sys.platform.startswith("linux")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        ):
            log("warning: --show ignored: no display found (DISPLAY is not set)")
            self._show = False

    @property
    def needs_overlay(self) -> bool:
        """Whether anything shown or encoded uses the overlay (a mask video alone does not)."""
        return self.video is not None or self._show

    def put(self, item: Segmented) -> None:
        """Queue a frame; blocks while the queue is full (timed as the inference thread's wait)."""
        t0 = time.perf_counter()
        try:
            while True:
                if self.error is not None:
                    raise self.error
                try:
                    self.queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    if not self.is_alive():
                        raise ResegError("the video writer thread stopped unexpectedly") from None
        finally:
            self.times.waited("inference_blocked", time.perf_counter() - t0)

    def run(self) -> None:
        try:
            while True:
                t0 = time.perf_counter()
                item = self.queue.get()
                self.times.waited("writer_starved", time.perf_counter() - t0)
                if item is _END:
                    break
                self._write(item)
        except BaseException as err:  # handed to the inference thread, which raises it
            self.error = err
            with contextlib.suppress(queue.Empty):  # unblock a producer waiting on a full queue
                while True:
                    self.queue.get_nowait()
        finally:
            if self._show:
                with contextlib.suppress(Exception):
                    cv2.destroyAllWindows()

    def _write(self, item: Segmented) -> None:
        t0 = time.perf_counter()
        with self.times.measure("overlay"):
            over, color, mask = self.compose(item)
        with self.times.measure("encode"):
            ok = self._encode(item.frame, over, color, mask)
        self.times.busy("writer", time.perf_counter() - t0)
        if ok:
            self.frames_out += 1
            self.written_order.append(item.frame.index)
            self.latencies.append(time.perf_counter() - item.frame.captured)

    def compose(self, item: Segmented) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """(overlay for the video or window, colour mask for the mask video, mask at the panel size)."""
        frame, mask, over = _host_image(item.frame.image), item.mask, item.overlay
        w, h = self.draw.panel_size
        if (frame.shape[1], frame.shape[0]) != (w, h):
            shrink = w * h < frame.shape[0] * frame.shape[1]
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            over = None  # drawn at the input size: draw again at the panel size
        color = colorize(mask, self.lut) if self.mask_video is not None else None
        if self.needs_overlay:
            if over is None:
                over = overlay(frame, mask, self.lut, self.draw.opacity)
            if self.draw.legend:
                over = draw_legend(over, self.class_names, self.palette)
            if self.draw.side_by_side:
                over = side_by_side(frame, over)
        return over, color, item.mask

    def _encode(self, frame: Frame, over: np.ndarray | None, color: np.ndarray | None, mask: np.ndarray) -> bool:
        """Write every output of one frame; True when the main output (the first video asked for) took it."""
        ok = True
        if self.masks_dir:
            write_image(Path(self.masks_dir) / f"{frame.name}.png", mask)
        if over is not None:
            bgr = cv2.cvtColor(over, cv2.COLOR_RGB2BGR)
            if self.video is not None:
                ok = self.video.write(bgr)
                if not ok and self.video.failed == 1:
                    log(
                        f"warning: the encoder refused frame {frame.name} of {self.video.path}; refused frames "
                        f"are not counted as written"
                    )
            if self._show:
                self._display(bgr)
        if self.mask_video is not None and color is not None:
            took = self.mask_video.write(cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            ok = ok if self.video is not None else took
        return ok

    def _display(self, bgr: np.ndarray) -> None:
        try:
            cv2.imshow("reseg video (q to stop)", bgr)
            if cv2.waitKey(1) & 0xFF == ord("q"):
                self.stop_requested = True
        except cv2.error:
            log("warning: --show ignored: this OpenCV build has no GUI support (opencv-python-headless)")
            self._show = False

    def finish(self) -> None:
        """Write what is queued, then stop the thread (the files are committed by the caller)."""
        if self.is_alive():
            while self.is_alive():
                try:
                    self.queue.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self.join()


def _host_image(image: Any) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else image.cpu().numpy()
