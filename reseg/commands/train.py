"""`reseg train CONFIG`: train from a YAML config; torchrun-ready (`torchrun --nproc_per_node=N -m reseg train ...`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseg.config import add_set_argument, load_config
from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, e.g. configs/reseg_synthetic.yaml")
    parser.add_argument(
        "--work-dir", default=None, help="where checkpoints, logs and metrics go (default: work_dirs/<config name>)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="continue from a checkpoint; without a path: <work-dir>/last.pt",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a work dir that already holds one (its checkpoints and metrics.jsonl are replaced)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="overrides train.device (auto: CUDA when available)",
    )
    parser.add_argument(
        "--amp", action="store_true", help="mixed precision: bf16 autocast on CPU; bf16 or fp16 (+ grad scaler) on CUDA"
    )
    add_set_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    from reseg.api import train
    from reseg.engine import distributed as dist_utils

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.amp:
        overrides.append("train.amp=true")
    cfg = load_config(args.config, overrides)
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / Path(args.config).stem
    if args.resume is not None and args.overwrite:
        raise ResegError("--resume and --overwrite contradict each other: continue the run, or start it again")
    resume = True if args.resume == "auto" else args.resume
    result = train(
        cfg, work_dir, resume=resume, progress=None if not args.no_progress else False, overwrite=args.overwrite
    )
    if dist_utils.env_world()[0] == 0:
        best = result.get("best_mIoU")
        print(
            f"training {result['status']} at iteration {result['iteration']}; "
            f"best val mIoU {best:.4f} (iteration {result['best_iteration']})"
            if best is not None
            else f"training {result['status']} at iteration {result['iteration']}"
        )
        print(f"outputs in {work_dir}/: last.pt, best.pt, config.yaml, train.log, metrics.jsonl, tensorboard/")
        if (work_dir / "best.pt").exists():
            print(f"evaluate with: reseg evaluate --checkpoint {work_dir / 'best.pt'}")
    return 0
