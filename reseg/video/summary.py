"""The stats a `run_video` returns, the summary users read, and the stats JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reseg.io import write_json
from reseg.video.options import VideoOptions
from reseg.video.reader import Reader
from reseg.video.segmenter import BatchSegmenter
from reseg.video.sources import Source
from reseg.video.timing import StageTimes, format_stages
from reseg.video.writer import VideoFile, Writer


def run_stats(
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
