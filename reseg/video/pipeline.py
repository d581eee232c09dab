"""`run_video`: decode, segment, draw and encode at once, and say where the time went.

Three threads share the work: a reader decodes frames into a bounded queue, the calling thread batches
them through the model (upload, normalise, forward, argmax/smoothing, and on a GPU the overlay, then
the copy back of uint8 frames), and a writer draws and encodes. Bounded queues keep memory flat and
frames in order; when the model is the slowest stage, end-to-end throughput approaches the model's
own. On a GPU the loop keeps one batch in flight, queueing the next before it waits for the last, so
the host's share of each batch overlaps the device's. `--realtime` is the live variant: batch 1, one
frame queued, stale frames dropped and counted, latency from capture to output reported instead of throughput.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError
from reseg.io import check_output_dir, check_output_file, refuse_overlap, write_json
from reseg.preprocess import Normalizer, class_ids
from reseg.video.overlay import lut_tensor, overlay_tensor
from reseg.video.sources import Frame, Source, frame_files_root, log, open_source
from reseg.video.timing import Clock, StageTimes, format_stages
from reseg.video.writer import DrawOptions, Segmented, VideoFile, Writer, codec_candidates
from reseg.viz import palette_lut, resolve_palette

_END = object()


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


# ---------------------------------------------------------------------- checks before any work


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


# ---------------------------------------------------------------------- reader


class Reader(threading.Thread):
    """Decodes ahead of inference into a bounded queue; with `realtime`, the newest frame replaces a stale one.

    A live source (camera, stream) delivers at its own rate; files, folders and arrays are paced at the
    source's frame rate in realtime mode, as if a camera produced them.
    """

    def __init__(self, source: Source, size: int, times: StageTimes, realtime: bool = False) -> None:
        super().__init__(name="reseg-video-reader", daemon=True)
        self.source = source
        self.times = times
        self.realtime = realtime
        self.pace = realtime and source.kind not in ("camera", "stream")
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.stale: list[int] = []

    def run(self) -> None:
        try:
            frames = iter(self.source)
            start, k = time.perf_counter(), 0
            while not self.stop_event.is_set():
                if self.pace:
                    delay = start + k / self.source.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    k += 1
                t0 = time.perf_counter()
                frame = next(frames, None)
                dt = time.perf_counter() - t0
                self.times.add("decode", dt)
                self.times.busy("reader", dt)
                if frame is None or not self._put(frame):
                    break
        except BaseException as err:
            self.error = err
        finally:
            self._put(_END, newest_wins=False)

    def _put(self, item: Any, newest_wins: bool | None = None) -> bool:
        if self.realtime if newest_wins is None else newest_wins:
            while True:
                try:
                    self.queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        stale = self.queue.get_nowait()
                    except queue.Empty:
                        continue
                    if isinstance(stale, Frame):
                        self.stale.append(stale.index)
        t0 = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            self.times.waited("reader_blocked", time.perf_counter() - t0)

    def frames(self) -> Iterator[Frame]:
        """Decoded frames in order; the time spent waiting for them is the inference thread's starvation."""
        while True:
            t0 = time.perf_counter()
            item = self.queue.get()
            self.times.waited("inference_starved", time.perf_counter() - t0)
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# ---------------------------------------------------------------------- inference


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
        self.overlap = overlap  # keep one batch in flight (see _infer)
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


# ---------------------------------------------------------------------- the run


def run_video(
    source: str | Source,
    predictor: Any,
    output: str | None,
    options: VideoOptions | None = None,
    stats_json: str | None = None,
) -> dict[str, Any]:
    """Segment every frame of `source`, write the overlay video (and masks), return the run's stats.

    Stats keys: frames_in (decoded), frames_out (in the output), dropped (failed to decode; each named with
    its index in dropped_frames), stale_dropped (--realtime), fps_end_to_end, fps_model (frames per second
    of the inference thread's own time), startup_seconds (--backend auto's choice on the first batch, left
    out of both rates as the exports made before the run are), flicker, timing (per-stage busy time, queue
    waits, the bound), latency_ms (--realtime), paths, codec and settings. Ctrl-C stops reading, writes what was already
    segmented, keeps it under the final names and sets "interrupted".
    """
    opts = options or VideoOptions()
    validate_options(opts)
    spec = source.spec if isinstance(source, Source) else str(source)
    check_outputs(spec, output if opts.overlay else None, opts, stats_json)
    batch = 1 if opts.realtime else opts.batch
    if opts.realtime and opts.batch > 1:
        log(f"note: --realtime runs batch 1 (not {opts.batch}) so that no frame waits for others")
    src = (
        source
        if isinstance(source, Source)
        else open_source(
            spec, opts.decoder, fps=opts.fps, max_frames=opts.max_frames, device=getattr(predictor, "device", "cpu")
        )
    )
    try:
        return _run(src, predictor, output, opts, batch)
    finally:
        if not src.in_use:  # a reader stuck in a network read keeps its capture (a daemon thread)
            src.close()


def _run(src: Source, predictor: Any, output: str | None, opts: VideoOptions, batch: int) -> dict[str, Any]:
    names = list(predictor.class_names or [str(i) for i in range(predictor.num_classes or 0)])
    palette = predictor.palette or resolve_palette(names or [str(i) for i in range(255)])
    lut = palette_lut(palette)
    panel = (opts.output_size[1], opts.output_size[0]) if opts.output_size else (src.width, src.height)  # (W, H)
    times = StageTimes()
    t_start = time.perf_counter()
    files = _open_outputs(output if opts.overlay else None, opts, src.fps, panel)
    queue_size = 1 if opts.realtime else max(2 * batch, opts.queue_size)
    draw = DrawOptions(
        opacity=opts.opacity, legend=opts.legend, side_by_side=opts.side_by_side, panel_size=panel, show=opts.show
    )
    writer = Writer(files[0], files[1], opts.masks_dir, draw, lut, names, palette, times, queue_size)
    on_device = _overlay_on_device(predictor, opts, writer, panel == (src.width, src.height))
    segment = BatchSegmenter(
        predictor,
        opts.smooth,
        times,
        lut if on_device else None,
        opts.opacity,
        keep_frames=not on_device or opts.side_by_side,
        overlap=overlap_batches(predictor, opts),
    )
    reader = Reader(src, queue_size, times, realtime=opts.realtime)
    _announce(files[0], output, src)
    bar = _progress(src, opts.progress)
    try:
        t_pipe, interrupted = _run_threads(src, reader, writer, segment, times, batch, bar)
    except BaseException as err:
        _discard(files, err)
        raise
    frames_out = _commit(files, writer.frames_out, interrupted)
    wall = time.perf_counter() - t_start
    return _stats(
        src, opts, batch, (wall, t_pipe), times, writer, segment, reader, frames_out, files, interrupted, on_device
    )


def model_device(predictor: Any) -> torch.device:
    """Where the predictor runs its model (the CPU for predictors that do not say)."""
    return torch.device(getattr(predictor, "device", "cpu"))


def overlap_batches(predictor: Any, opts: VideoOptions) -> bool:
    """Keep one batch in flight where the device runs apart from the host (CUDA), except under --realtime,
    where a frame must not wait for the next one to arrive."""
    return model_device(predictor).type == "cuda" and not opts.realtime


def _overlay_on_device(predictor: Any, opts: VideoOptions, writer: Writer, native_size: bool) -> bool:
    """Draw the overlay where the model runs (by default on a GPU) when it is drawn at the frame's own size."""
    on_device = opts.device_overlay if opts.device_overlay is not None else model_device(predictor).type == "cuda"
    return bool(on_device and writer.needs_overlay and native_size)


def _run_threads(
    src: Source, reader: Reader, writer: Writer, segment: BatchSegmenter, times: StageTimes, batch: int, bar: Any
) -> tuple[float, bool]:
    """Reader and writer threads around the inference loop until the source ends or Ctrl-C.

    Returns the threads' seconds and whether the run was interrupted; a writer's error is raised here."""
    interrupted = False
    t_pipe = time.perf_counter()
    writer.start()
    reader.start()
    try:
        _infer(reader, writer, segment, times, batch, bar)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was already segmented")
    finally:
        reader.stop_event.set()
        try:
            writer.finish()
            t_pipe = time.perf_counter() - t_pipe
        finally:
            reader.stop()
            src.in_use = reader.is_alive()
            if bar is not None:
                bar.close()
    if writer.error is not None:
        raise writer.error
    return t_pipe, interrupted


def _discard(files: Sequence[VideoFile | None], err: BaseException) -> None:
    """Remove the temporary files of unfinished outputs."""
    for f in files:
        if f is not None:
            f.discard(err)


def _open_outputs(
    output: str | None, opts: VideoOptions, fps: float, panel: tuple[int, int]
) -> tuple[VideoFile | None, VideoFile | None]:
    video = mask_video = None
    try:
        if output is not None:
            video = VideoFile(output, fps, (panel[0] * (2 if opts.side_by_side else 1), panel[1]))
        if opts.mask_video:
            mask_video = VideoFile(opts.mask_video, fps, panel)
        if opts.masks_dir:
            Path(opts.masks_dir).mkdir(parents=True, exist_ok=True)
    except BaseException as err:
        if video is not None:
            video.discard(err)
        raise
    return video, mask_video


def _announce(video: VideoFile | None, output: str | None, src: Source) -> None:
    if video is None:
        return
    log(f"writing {video.path} with fourcc {video.fourcc} at {src.fps:g} fps (under a temporary name until the end)")
    if video.fourcc == "MJPG" and Path(str(output)).suffix.lower() != ".avi":
        log(f"note: no MP4 encoder (avc1, mp4v) could be opened; writing MJPG in {video.path} instead of {output}")


def _infer(reader: Reader, writer: Writer, segment: BatchSegmenter, times: StageTimes, batch: int, bar: Any) -> None:
    """The inference thread's loop: gather a batch, segment it, hand the frames to the writer in order.

    With `overlap` (on a GPU, not --realtime) one batch stays in flight: batch i+1 is uploaded and queued
    on the device before the loop waits for batch i, so the host's work per batch hides behind the device's
    instead of leaving it idle between batches."""
    pending: list[Frame] = []
    in_flight: list[Launched] = []
    keep = 1 if segment.overlap else 0

    def hand_over(done: Launched) -> None:
        t0 = time.perf_counter()
        results = segment.collect(done)
        times.busy("inference", time.perf_counter() - t0)
        for item in results:
            writer.put(item)
        if bar is not None:
            bar.update(len(done.frames))

    def flush() -> None:
        t0 = time.perf_counter()
        in_flight.append(segment.launch(pending))
        times.busy("inference", time.perf_counter() - t0)
        pending.clear()
        while len(in_flight) > keep:
            hand_over(in_flight.pop(0))

    def drain() -> None:
        while in_flight:
            hand_over(in_flight.pop(0))

    try:
        for frame in reader.frames():
            pending.append(frame)
            if len(pending) == batch:
                flush()
            if writer.stop_requested:
                break
        if pending:
            flush()
    except KeyboardInterrupt:
        drain()  # the batch already on the device is segmented: keep it too
        raise
    drain()


def _commit(files: tuple[VideoFile | None, VideoFile | None], encoded: int, interrupted: bool) -> int:
    """Rename the videos into place; frames_out is what the main file really holds."""
    frames_out = encoded
    for k, f in enumerate(files):
        if f is None:
            continue
        try:
            held = f.commit()
        except BaseException as err:  # e.g. the disk filled up: leave no temporary file behind
            _discard(files[k + 1 :], err)
            raise
        if held < f.written:
            log(
                f"warning: {f.path} holds {held} frames but {f.written} were encoded (disk full, or an encoder "
                f"failure); counting {held} as written"
            )
        if k == 0 or files[0] is None:
            frames_out = min(encoded, held)
        if interrupted:
            log(f"interrupted: kept the {held} frames written so far in {f.path}")
    return frames_out


def _stats(
    src: Source,
    opts: VideoOptions,
    batch: int,
    walls: tuple[float, float],
    times: StageTimes,
    writer: Writer,
    segment: BatchSegmenter,
    reader: Reader,
    frames_out: int,
    files: tuple[VideoFile | None, VideoFile | None],
    interrupted: bool,
    on_device: bool,
) -> dict[str, Any]:
    """The run's stats, in the order `run_video` documents and the stats JSON keeps."""
    stats: dict[str, Any] = {"input": src.spec, "kind": src.kind, "decoder": src.decoder, "decoder_note": src.note}
    stats.update(_frame_counts(src, reader, files, frames_out))
    stats.update(_speeds(src, walls, times, writer, segment, frames_out))
    stats.update(
        {
            "overlay_on": "device" if on_device else "host",
            "realtime": opts.realtime,
            "input_fps": src.input_fps,
            "output_fps": src.fps,
            "frame_size": [src.width, src.height],
            "output_size": list(writer.draw.panel_size[::-1]),  # H, W
            "batch": batch,
            "smooth": float(opts.smooth),
        }
    )
    stats.update(_output_paths(files, opts))
    stats["interrupted"] = interrupted
    if opts.realtime:
        stats.update(_latencies(writer, segment))
    return stats


def _frame_counts(
    src: Source, reader: Reader, files: tuple[VideoFile | None, VideoFile | None], frames_out: int
) -> dict[str, Any]:
    """Frames read, written and lost on the way, each loss named by frame index."""
    return {
        "frames_in": src.frames_in,
        "frames_out": frames_out,
        "dropped": src.dropped,
        "dropped_frames": list(src.dropped_frames),
        "stale_dropped": len(reader.stale),
        "stale_frames": list(reader.stale),
        "write_failed": sum(f.failed for f in files if f is not None),
    }


def _speeds(
    src: Source, walls: tuple[float, float], times: StageTimes, writer: Writer, segment: BatchSegmenter, frames_out: int
) -> dict[str, Any]:
    """End-to-end and model-only frames per second, flicker, and where the threads' time went.

    `wall` is the whole run (opening and closing the files too); `pipeline` the threads' time, against
    which each thread's busy share is measured."""
    wall, pipeline = walls
    timing = times.report(
        pipeline, {"reader": src.frames_in + src.dropped, "inference": segment.frames, "writer": writer.frames_out}
    )
    timing["wall_seconds"] = pipeline
    inference = sum(times.stage.get(s, 0.0) for s in ("h2d", "preprocess", "model", "postprocess", "d2h"))
    startup = times.stage.get("startup", 0.0)  # left out of both rates, as an export before the run is
    return {
        "fps_end_to_end": frames_out / (wall - startup) if wall > startup else 0.0,
        "fps_model": segment.frames / inference if inference > 0 else 0.0,
        "startup_seconds": startup,
        "flicker": segment.flicker,
        "seconds": wall,
        "timing": timing,
    }


def _output_paths(files: tuple[VideoFile | None, VideoFile | None], opts: VideoOptions) -> dict[str, Any]:
    """Where the outputs went, and the codec and container the overlay video really got."""
    video, mask_video = files
    return {
        "output": str(video.path) if video else None,
        "fourcc": video.fourcc if video else None,
        "container": video.path.suffix[1:] if video else None,
        "mask_video": str(mask_video.path) if mask_video else None,
        "masks_dir": opts.masks_dir,
    }


def _latencies(writer: Writer, segment: BatchSegmenter) -> dict[str, Any]:
    """--realtime: capture-to-output latency and the model's own forward time, in milliseconds."""
    lat = np.asarray(writer.latencies) * 1000.0
    fwd = np.asarray(segment.forward_seconds) * 1000.0
    return {
        "latency_ms": (
            {
                "median": float(np.median(lat)),
                "p90": float(np.percentile(lat, 90)),
                "max": float(lat.max()),
                "frames": int(lat.size),
            }
            if lat.size
            else None
        ),
        "model_ms_median": float(np.median(fwd)) if fwd.size else None,
    }


def _progress(src: Source, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=src.total, unit="frame", desc="video", dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------------------- reporting


def format_summary(stats: dict[str, Any]) -> str:
    """The end-of-run summary users read (and docs/video.md quotes)."""
    flicker = "n/a" if stats.get("flicker") is None else f"{100 * stats['flicker']:.2f}% of pixels per frame"
    counts = f"frames read {stats['frames_in']}, written {stats['frames_out']}, dropped {stats['dropped']}"
    if stats.get("stale_dropped"):
        counts += f", stale {stats['stale_dropped']} (dropped to keep up)"
    lines = [counts + (" (interrupted)" if stats.get("interrupted") else "")]
    if stats.get("realtime"):
        lat = stats.get("latency_ms")
        model = stats.get("model_ms_median")
        lines.append(
            "realtime: capture-to-output latency "
            + (f"median {lat['median']:.1f} ms, p90 {lat['p90']:.1f} ms, max {lat['max']:.1f} ms" if lat else "n/a")
            + (f"; model forward median {model:.1f} ms" if model is not None else "")
        )
    else:
        lines.append(
            f"end-to-end {stats['fps_end_to_end']:.2f} FPS, model-only {stats['fps_model']:.2f} FPS "
            f"(batch {stats['batch']})"
            + (
                f"; start-up {stats['startup_seconds']:.1f} s on the first batch (the backend choice), not counted"
                if stats.get("startup_seconds", 0.0) >= 0.05
                else ""
            )
        )
    lines.append(
        f"decoder {stats['decoder']}"
        + (f" ({stats['decoder_note']})" if stats.get("decoder_note") else "")
        + f"; overlay drawn on the {stats.get('overlay_on', 'host')}"
    )
    lines += format_stages(stats["timing"], stats["timing"].get("wall_seconds", stats["seconds"]))
    lines.append(f"flicker {flicker}" + (f" with smoothing {stats['smooth']:g}" if stats.get("smooth") else ""))
    if stats.get("output"):
        lines.append(
            f"overlay video: {stats['output']} ({stats['fourcc']} in .{stats['container']}, "
            f"{stats['output_fps']:g} fps)"
        )
    if stats.get("mask_video"):
        lines.append(f"mask video: {stats['mask_video']}")
    if stats.get("masks_dir"):
        lines.append(f"masks: {stats['masks_dir']}")
    return "\n".join(lines)


def write_stats_json(stats: dict[str, Any], path: str | Path) -> Path:
    """The run's stats as JSON, written atomically."""
    return write_json(path, stats)
