"""Segment a video, camera, stream or frame folder with decoding and encoding hidden behind inference.

sources.py   frames from OpenCV, torchcodec, image files or memory (`open_source`, `--decoder`)
options.py   `VideoOptions` and the checks of options and output paths before any work
pipeline.py  `run_video`: reader, inference and writer threads with bounded queues; `--realtime`
reader.py    the decoding thread and its bounded queue
segmenter.py one batch through the model (`launch` queues it, `collect` waits for it)
summary.py   the run's stats, the summary printed at the end, the stats JSON
overlay.py   the host overlay (`viz.overlay`) computed on device tensors
writer.py    atomic video files, mask PNGs, the drawing-and-encoding thread
timing.py    busy time per stage and thread, queue waits, the stage that bounds throughput

Measuring it (end-to-end against model-only FPS on a generated clip) is reseg.benchmark.video.
"""

from reseg.video.options import VideoOptions, check_outputs
from reseg.video.overlay import colorize_tensor, lut_tensor, overlay_tensor
from reseg.video.pipeline import run_video
from reseg.video.sources import (
    DECODERS,
    ArraySource,
    Frame,
    FrameSource,
    Source,
    TorchCodecSource,
    TorchCodecUnavailable,
    open_source,
)
from reseg.video.summary import format_summary, write_stats_json
from reseg.video.timing import STAGES, StageTimes
from reseg.video.writer import VideoFile, codec_candidates

__all__ = [
    "DECODERS",
    "STAGES",
    "ArraySource",
    "Frame",
    "FrameSource",
    "Source",
    "StageTimes",
    "TorchCodecSource",
    "TorchCodecUnavailable",
    "VideoFile",
    "VideoOptions",
    "check_outputs",
    "codec_candidates",
    "colorize_tensor",
    "format_summary",
    "lut_tensor",
    "open_source",
    "overlay_tensor",
    "run_video",
    "write_stats_json",
]
