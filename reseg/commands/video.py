"""`reseg video INPUT --checkpoint CKPT --output OUT`: an overlay video (and masks) from a file, camera,
stream or frame folder, with a progress bar and an end summary of counts, speed and flicker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseg.commands.common import add_inference_arguments, build_predictor
from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", metavar="INPUT", help="video file, camera index (0), rtsp/http URL, or a folder or glob of frames"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint written by `reseg train`, a model folder (`reseg package`) or hf://user/repo",
    )
    parser.add_argument(
        "--output", required=True, help="overlay video (.mp4 with H.264/mp4v when available, else MJPG .avi)"
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="output frame rate (default: the input's; frame folders: 30)"
    )
    parser.add_argument("--opacity", type=float, default=0.5, help="opacity of the class colours (0..1)")
    parser.add_argument("--legend", action="store_true", help="draw the class legend on the overlay")
    parser.add_argument("--side-by-side", action="store_true", help="original | overlay (doubles the width)")
    parser.add_argument("--masks-dir", default=None, help="also write a train-id PNG per frame here")
    parser.add_argument("--mask-video", default=None, help="also write a video of the colour masks")
    parser.add_argument(
        "--output-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="height and width of each output panel (default: the input's frame size)",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="temporal smoothing: weight of the past in an exponential moving average of class "
        "probabilities, in [0, 1); 0 = off",
    )
    parser.add_argument("--show", action="store_true", help="show the overlay in a window (needs a display)")
    parser.add_argument("--stats-json", default=None, help="write the run's stats (counts, FPS, flicker) here")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument(
        "--adapt",
        type=int,
        default=None,
        metavar="N",
        help="first adapt the model to this video's streets: batch-norm statistics from N of its frames, "
        "spread over it (video files and frame folders; `reseg adapt` keeps the result)",
    )
    parser.add_argument(
        "--adapt-weight",
        type=float,
        default=None,
        metavar="W",
        help="with --adapt: the new statistics' share in (0, 1] (default: 0.5)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--decoder",
        choices=("auto", "opencv", "torchcodec"),
        default="auto",
        help="video decoder: torchcodec (on the GPU when the model is there and the build can; "
        "needs `pip install 'reseg[video]'` and FFmpeg's shared libraries) or OpenCV; auto "
        "takes torchcodec for video files when it works (default: %(default)s)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="live mode for cameras and streams: batch 1, at most one frame queued, stale frames "
        "dropped and counted, capture-to-output latency reported instead of throughput",
    )
    add_inference_arguments(parser)


def adapted_predictor(args: argparse.Namespace, kind: str):  # -> Predictor
    """The predictor of `--checkpoint` with batch-norm statistics from `--adapt` frames spread over the input
    (read once on their own before the video runs), through an adapted copy in a temporary folder, so every
    backend runs it."""
    import tempfile

    from reseg.adaptation import DEFAULT_WEIGHT, adaptation_note
    from reseg.adaptation_runs import adapt

    if kind not in ("file", "frames"):
        raise ResegError(
            f"--adapt reads the input twice, which a {kind} cannot do; record some of it and adapt on the "
            "recording with `reseg adapt --checkpoint CKPT RECORDING --out ADAPTED.pt`"
        )
    if args.adapt < 1:
        raise ResegError(f"--adapt must be >= 1 frames, got {args.adapt}")
    with tempfile.TemporaryDirectory(prefix="reseg-adapt-") as folder:
        adapted = argparse.Namespace(**vars(args))
        adapted.checkpoint = str(Path(folder) / "adapted.pt")
        weight = DEFAULT_WEIGHT if args.adapt_weight is None else args.adapt_weight
        record = adapt(
            args.checkpoint, [args.input], adapted.checkpoint, max_images=args.adapt, weight=weight, device=args.device
        )
        predictor = build_predictor(adapted)
    predictor.adapted = adaptation_note(record["images"], weight, "frames of the input")
    return predictor


def run(args: argparse.Namespace) -> int:
    from reseg.runtime import resolve_device
    from reseg.video import VideoOptions, check_outputs, format_summary, open_source, run_video, write_stats_json
    from reseg.video.options import validate_options

    opts = VideoOptions(
        fps=args.fps,
        opacity=args.opacity,
        legend=args.legend,
        side_by_side=args.side_by_side,
        masks_dir=args.masks_dir,
        mask_video=args.mask_video,
        output_size=tuple(args.output_size) if args.output_size else None,
        batch=args.batch or 1,
        smooth=args.smooth,
        show=args.show,
        max_frames=args.max_frames,
        progress=not args.no_progress,
        decoder=args.decoder,
        realtime=args.realtime,
    )
    # every refusal before the model loads: bad values, outputs onto the input, an unreadable input
    validate_options(opts)
    check_outputs(args.input, args.output, opts, args.stats_json)
    device = resolve_device(getattr(args, "device", "auto"))
    source = open_source(args.input, args.decoder, fps=args.fps, max_frames=args.max_frames, device=device)
    try:
        if args.adapt_weight is not None and args.adapt is None:
            raise ResegError("--adapt-weight goes with --adapt N (it sets how much the adaptation changes)")
        predictor = build_predictor(args) if args.adapt is None else adapted_predictor(args, source.kind)
    except BaseException:
        source.close()
        raise
    print(f"segmenting {args.input} ({source.describe()}) with {predictor.describe()}", file=sys.stderr)
    stats = run_video(source, predictor, args.output, opts, stats_json=args.stats_json)
    stats["backend"], stats["backend_choice"] = predictor.backend, predictor.backend_choice
    print(format_summary(stats))
    if predictor.backend_choice:
        print(predictor.backend_choice)
    if args.stats_json:
        write_stats_json(stats, args.stats_json)
        print(f"stats: {args.stats_json}")
    return 130 if stats["interrupted"] else 0
