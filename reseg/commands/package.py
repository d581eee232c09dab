"""`reseg package --checkpoint CKPT --out DIR`: a shareable model folder (Hugging Face Hub layout) from a checkpoint.

DIR gets model.safetensors (weights only), config.yaml (what rebuilds the model and preprocesses), classes.json
(names, palette, ignore index) and README.md (the model card, with the `reseg evaluate` scores when --metrics
gives them). `reseg.load(DIR)` and every `--checkpoint` take the folder.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `reseg train` (e.g. best.pt)")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="a metrics.json written by `reseg evaluate` for this checkpoint: its scores and "
        "per-class table go into the model card",
    )
    parser.add_argument(
        "--push",
        default=None,
        metavar="USER/REPO",
        help="also upload the folder to this Hugging Face Hub model repo (created if needed; "
        "needs `pip install 'reseg[hub]'` and a write token: `hf auth login` or HF_TOKEN)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists and is not empty")


def run(args: argparse.Namespace) -> int:
    from reseg.packaging import package

    out = package(args.checkpoint, args.out, metrics=args.metrics, push=args.push, overwrite=args.overwrite)
    print(f"wrote the model folder {out} (model.safetensors, config.yaml, classes.json, README.md)")
    if args.push:
        print(f"pushed to https://huggingface.co/{args.push}; load it with reseg.load('hf://{args.push}')")
    return 0
