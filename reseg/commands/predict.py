"""`reseg predict --checkpoint CKPT INPUT... [--out DIR]`: masks, colour masks and overlays for images.

Per image <name>.png holds train ids (what `reseg evaluate --preds` scores), <name>_color.png the
class colours and <name>_overlay.jpg (or .png) the colours over the image. Output names keep the path
below each input folder (or the fixed part of a glob), so equal file names in two folders cannot collide.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseg.commands.common import add_inference_arguments, build_predictor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint written by `reseg train`, a model folder (`reseg package`) or hf://user/repo",
    )
    parser.add_argument("--out", default="work_dirs/predict", help="output folder (default: %(default)s)")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity of the class colours")
    parser.add_argument("--overlay-format", choices=("jpg", "png"), default="jpg", help="overlay file type")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from reseg.data.base import collect_images
    from reseg.errors import ResegError
    from reseg.mask_files import check_outputs, predict_files

    items = collect_images(args.inputs)
    if not 0.0 <= args.opacity <= 1.0:
        raise ResegError(f"--opacity must be in [0, 1], got {args.opacity}")
    batch = args.batch or 1
    if batch < 1:
        raise ResegError(f"--batch must be >= 1, got {batch}")
    out_dir = Path(args.out)
    check_outputs(out_dir, args.inputs, items, args.overlay_format)
    predictor = build_predictor(args)
    print(f"predicting {len(items)} image(s) with {predictor.describe()}", file=sys.stderr)
    result = predict_files(
        predictor, items, out_dir, batch=batch, opacity=args.opacity, overlay_ext=args.overlay_format
    )
    print(
        f"wrote {result.written} mask(s) (<name>.png train ids, <name>_color.png, "
        f"<name>_overlay.{args.overlay_format}) to {out_dir.resolve()}"
    )
    for (h, w), (run_h, run_w) in result.resized.items():
        print(
            f"images of {h}x{w} ran at {run_h}x{run_w} (the model's trained scale; --infer-size H W to choose), masks at {h}x{w}"
        )
    if predictor.backend_choice:
        print(predictor.backend_choice)
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        print(f"skipped {len(result.skipped)} unreadable image(s): {shown}", file=sys.stderr)
    if result.written == 0:
        raise ResegError("none of the inputs could be read as an image")
    return 0
