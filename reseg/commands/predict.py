"""`reseg predict --checkpoint CKPT INPUT... [--out DIR]`: masks, colour masks and overlays for images.

Per image <name>.png holds train ids (what `reseg evaluate --preds` scores), <name>_color.png the
class colours and <name>_overlay.jpg (or .png) the colours over the image. Output names keep the path
below each input folder (or the fixed part of a glob), so equal file names in two folders cannot collide.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """The Predictor options shared by `predict` and `video` (defaults come from the checkpoint's eval config)."""
    g = parser.add_argument_group("inference (defaults: the checkpoint's eval settings)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--mode", choices=("whole", "slide"), default=None, help="whole image or sliding window")
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None, help="sliding-window size")
    g.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), default=None, help="sliding-window step")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the horizontally flipped image")
    g.add_argument("--scales", type=float, nargs="+", default=None, metavar="S",
                   help="average over these scales, e.g. 0.75 1.0 1.25")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision: bf16 on CPUs with native bf16 support, fp16 on CUDA")
    g.add_argument("--amp-dtype", choices=("bf16", "fp16"), default=None, help="force this autocast type")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory layout")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (slow start)")
    g.add_argument("--infer-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="run the model at this size and upsample the result to the input's size")
    g.add_argument("--batch", type=int, default=None, help="images per forward pass")


def build_predictor(args: argparse.Namespace):  # -> Predictor (import kept lazy for `--help` speed)
    """Predictor from a checkpoint plus the command line's overrides."""
    from reseg.predictor import Predictor

    infer = getattr(args, "infer_size", None)
    amp, amp_dtype = getattr(args, "amp", None), getattr(args, "amp_dtype", None)
    amp = amp_dtype if amp_dtype and amp is not False else amp
    return Predictor.from_checkpoint(
        args.checkpoint, device=getattr(args, "device", "auto"), mode=getattr(args, "mode", None),
        crop=getattr(args, "crop", None), stride=getattr(args, "stride", None), flip=getattr(args, "flip", None),
        scales=getattr(args, "scales", None), amp=amp, channels_last=getattr(args, "channels_last", None),
        compile=getattr(args, "compile", None),
        infer_size=(infer[1], infer[0]) if infer else None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively) or globs")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `reseg train`")
    parser.add_argument("--out", default="work_dirs/predict", help="output folder (default: %(default)s)")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity of the class colours")
    parser.add_argument("--overlay-format", choices=("jpg", "png"), default="jpg", help="overlay file type")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from reseg.data.base import collect_images
    from reseg.errors import ResegError
    from reseg.prediction import check_outputs, predict_files

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
    result = predict_files(predictor, items, out_dir, batch=batch, opacity=args.opacity,
                           overlay_ext=args.overlay_format)
    print(f"wrote {result.written} mask(s) (<name>.png train ids, <name>_color.png, "
          f"<name>_overlay.{args.overlay_format}) to {out_dir.resolve()}")
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        print(f"skipped {len(result.skipped)} unreadable image(s): {shown}", file=sys.stderr)
    if result.written == 0:
        raise ResegError("none of the inputs could be read as an image")
    return 0
