"""`reseg make-synthetic`: write the procedural street-scene dataset in the CamVid layout."""

from __future__ import annotations

import argparse
import time

from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="datasets/synthetic", help="output folder (default: datasets/synthetic)")
    parser.add_argument("--train", type=int, default=300, help="training images (default 300)")
    parser.add_argument("--val", type=int, default=60, help="validation images (default 60)")
    parser.add_argument("--test", type=int, default=60, help="test images (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same dataset")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[360, 480],
        metavar=("H", "W"),
        help="image height and width (default 360 480, as CamVid)",
    )
    parser.add_argument(
        "--difficulty",
        default="standard",
        help="standard, or easy: the small classes nearer and thicker, a clean camera (the CPU demo's)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    parser.add_argument(
        "--video",
        metavar="FILE",
        help="also write a synthetic driving video (.mp4 or .avi); with --train 0 --val 0 --test 0, only the video",
    )
    parser.add_argument("--video-frames", type=int, default=90, help="frames of the video (default 90)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the video (default 15)")


def run(args: argparse.Namespace) -> int:
    from reseg.data.synthetic import get_difficulty, make_synthetic_video

    get_difficulty(args.difficulty)  # a wrong name fails before anything is written
    n = args.train + args.val + args.test
    if n == 0 and not args.video:
        raise ResegError("nothing to write: --train, --val and --test are all 0 and no --video is given")
    if n:
        _write_dataset(args, n)
    if args.video:
        start = time.perf_counter()
        path = make_synthetic_video(
            args.video,
            frames=args.video_frames,
            size=tuple(args.size),
            fps=args.fps,
            seed=args.seed,
            difficulty=args.difficulty,
        )
        print(f"wrote a {args.video_frames}-frame synthetic video to {path} in {time.perf_counter() - start:.1f} s")
    return 0


def _write_dataset(args: argparse.Namespace, n: int) -> None:
    from reseg.data.synthetic import make_synthetic

    start = time.perf_counter()
    out = make_synthetic(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        seed=args.seed,
        size=tuple(args.size),
        workers=args.workers,
        difficulty=args.difficulty,
    )
    print(
        f"wrote {n} synthetic images ({args.size[0]}x{args.size[1]}) to {out} "
        f"in {time.perf_counter() - start:.1f} s (CamVid layout: train/ trainannot/ val/ valannot/ test/ testannot/)"
    )
