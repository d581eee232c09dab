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

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reseg.video.options import VideoOptions, check_outputs, validate_options
from reseg.video.reader import Reader
from reseg.video.segmenter import BatchSegmenter, Launched, model_device
from reseg.video.sources import Frame, Source, log, open_source
from reseg.video.summary import run_stats
from reseg.video.timing import StageTimes
from reseg.video.writer import DrawOptions, VideoFile, Writer
from reseg.viz import palette_lut, resolve_palette


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
        else open_source(spec, opts.decoder, fps=opts.fps, max_frames=opts.max_frames, device=model_device(predictor))
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
    return run_stats(
        src, opts, batch, (wall, t_pipe), times, writer, segment, reader, frames_out, files, interrupted, on_device
    )


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


def _progress(src: Source, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=src.total, unit="frame", desc="video", dynamic_ncols=True, file=sys.stderr)
