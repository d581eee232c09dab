"""Segment a video, camera, stream or frame folder with decoding and encoding hidden behind inference.

sources.py   frames from OpenCV, torchcodec, image files or memory (`open_source`, `--decoder`)
pipeline.py  `run_video`: reader, inference and writer threads with bounded queues; `--realtime`
overlay.py   the host overlay (`viz.overlay`) computed on device tensors
writer.py    atomic video files, mask PNGs, the drawing-and-encoding thread
timing.py    busy time per stage and thread, queue waits, the stage that bounds throughput
bench.py     generated clips and `benchmark_video` (end-to-end vs model-only FPS)
"""

from reseg.video.bench import benchmark_video, model_only_fps, synthetic_frames, write_frames_video
from reseg.video.overlay import colorize_tensor, lut_tensor, overlay_tensor
from reseg.video.pipeline import VideoOptions, check_outputs, format_summary, run_video, write_stats_json
from reseg.video.sources import (DECODERS, ArraySource, Frame, FrameSource, Source, TorchCodecSource,
                                 TorchCodecUnavailable, open_source)
from reseg.video.timing import STAGES, StageTimes
from reseg.video.writer import VideoFile, codec_candidates

__all__ = [
    "DECODERS", "STAGES", "ArraySource", "Frame", "FrameSource", "Source", "StageTimes", "TorchCodecSource",
    "TorchCodecUnavailable", "VideoFile", "VideoOptions", "benchmark_video", "check_outputs", "codec_candidates",
    "colorize_tensor", "format_summary", "lut_tensor", "model_only_fps", "open_source", "overlay_tensor",
    "run_video", "synthetic_frames", "write_frames_video", "write_stats_json",
]
