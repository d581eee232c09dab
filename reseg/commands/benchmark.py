"""`reseg benchmark`: speed and memory of ReNet, the models, the data pipeline, the evaluator and inference paths.

Prints a markdown table (with the machine, torch version and threads) and optionally writes JSON.
Ratios are measured side by side in one run, so they hold on a busy machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure (default cpu)")
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=None,
        help="image size for the models (default 360 480, the CamVid resolution)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="batch size for the models (default 4; the predictor section: 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per figure; the median is kept (default 3)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice; 1 with --quick)"
    )
    parser.add_argument(
        "--renet-batch",
        type=int,
        default=1,
        help="images in the ReNet comparison (a 256-channel map at 1/4 of --size; default 1)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="SECTION",
        help="run only these sections: renet models head_to_head bn_fold data evaluator predictor video",
    )
    parser.add_argument(
        "--skip-sequence-loop", action="store_true", help="leave out the per-sequence ReNet loop (minutes at full size)"
    )
    parser.add_argument("--compile", action="store_true", help="also use torch.compile in the fast inference path")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="CKPT",
        help="predictor section: measure this checkpoint's inference paths, each built as `reseg "
        "predict` builds it (default: an untrained demo model saved as a checkpoint)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        metavar="H W",
        help="predictor section: input sizes (height width pairs) besides the checkpoint's own "
        "inference size, e.g. --sizes 240 320 360 480; the batch is --batch (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test (about a minute)")


def run(args: argparse.Namespace) -> int:
    import torch

    from reseg.benchmark import SECTIONS, BenchOptions, format_table, run_benchmark
    from reseg.io import check_output_file, write_json

    unknown = [s for s in args.only or [] if s not in SECTIONS]
    if unknown:
        raise ResegError(f"unknown benchmark section(s) {', '.join(unknown)}; valid choices: {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ResegError("--device cuda asked for, but torch sees no CUDA device")
    if args.json:
        check_output_file(args.json, "--json")
    sizes = _pairs(args.sizes, "--sizes")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ResegError(f"--checkpoint {args.checkpoint}: no such file (a checkpoint written by `reseg train`)")
    quick = args.quick
    if args.threads or quick:  # quick: tiny ops, where a second thread only adds synchronisation stalls
        torch.set_num_threads(args.threads or 1)
    opts = BenchOptions(
        device=args.device,
        size=tuple(args.size) if args.size else ((32, 48) if quick else (360, 480)),
        batch=args.batch or (1 if quick else 4),
        repeats=args.repeats or (1 if quick else 3),
        quick=quick,
        renet_batch=args.renet_batch,
        skip_sequence_loop=args.skip_sequence_loop,
        compile=args.compile,
        checkpoint=args.checkpoint,
        sizes=sizes,
        predictor_batch=args.batch or 1,
    )
    res = run_benchmark(opts, args.only, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(res))
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def _pairs(values: list[int] | None, flag: str) -> tuple[tuple[int, int], ...]:
    """[H, W, H, W, ...] -> ((H, W), ...); an odd count or a size below 1 is an error naming the flag."""
    if not values:
        return ()
    if len(values) % 2 or min(values) < 1:
        raise ResegError(
            f"{flag} takes height width pairs of positive sizes, e.g. {flag} 240 320 360 480; "
            f"got {' '.join(map(str, values))}"
        )
    return tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
