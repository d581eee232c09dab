"""`reseg predict --checkpoint CKPT INPUT... [--out DIR]`: masks, colour masks and overlays for images.

Per image <stem>.png holds train ids (what `reseg evaluate --preds` scores), <stem>_color.png the
class colours and <stem>_overlay.jpg (or .png) the colours over the image. Folders are searched
recursively and their sub-folders are kept in the output, so equal file names cannot collide.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from reseg.errors import ResegError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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


def collect_images(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image path, output path without suffix relative to --out) for every input, in the order given."""
    items: list[tuple[Path, Path]] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ResegError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under folder {spec}")
            items += [(f, f.relative_to(path).with_suffix("")) for f in files]
        elif path.is_file():
            items.append((path, Path(path.stem)))
        elif any(ch in spec for ch in "*?["):
            files = sorted(Path(f) for f in glob.glob(spec, recursive=True)
                           if os.path.isfile(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ResegError(f"the pattern {spec} matches no images")
            items += [(f, Path(f.stem)) for f in files]
        else:
            raise ResegError(f"input not found: {spec} (expected an image, a folder or a glob)")
    seen: dict[Path, int] = {}
    unique = []
    for image, rel in items:  # the same stem from two places: keep both, numbered
        count = seen.get(rel, 0)
        seen[rel] = count + 1
        unique.append((image, rel if count == 0 else rel.with_name(f"{rel.name}_{count + 1}")))
    return unique


def read_rgb(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_outputs(out_dir: Path, rel: Path, image: np.ndarray, mask: np.ndarray, palette, opacity: float,
                  overlay_ext: str) -> None:
    """<rel>.png (train ids), <rel>_color.png and <rel>_overlay.<ext> under out_dir."""
    from reseg.viz import colorize, overlay

    base = out_dir / rel
    base.parent.mkdir(parents=True, exist_ok=True)
    color = colorize(mask, palette)
    blended = overlay(image, mask, palette, opacity)
    for target, data in ((f"{base}.png", mask), (f"{base}_color.png", cv2.cvtColor(color, cv2.COLOR_RGB2BGR)),
                         (f"{base}_overlay.{overlay_ext}", cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))):
        if not cv2.imwrite(target, data):
            raise ResegError(f"could not write {target}")


def run(args: argparse.Namespace) -> int:
    items = collect_images(args.inputs)
    if not 0.0 <= args.opacity <= 1.0:
        raise ResegError(f"--opacity must be in [0, 1], got {args.opacity}")
    predictor = build_predictor(args)
    batch = args.batch or 1
    if batch < 1:
        raise ResegError(f"--batch must be >= 1, got {batch}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"predicting {len(items)} image(s) with {predictor.describe()}", file=sys.stderr)
    from tqdm import tqdm

    skipped: list[str] = []
    done = 0
    bar = tqdm(total=len(items), unit="img", desc="predict", dynamic_ncols=True, file=sys.stderr)
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        masks = predictor.predict([im for _, im in pending], batch_size=batch)
        for (rel, image), mask in zip(pending, masks):
            write_outputs(out_dir, rel, image, mask, predictor.palette, args.opacity, args.overlay_format)
        done += len(pending)
        bar.update(len(pending))
        pending.clear()

    try:
        for path, rel in items:
            image = read_rgb(path)
            if image is None:
                skipped.append(str(path))
                bar.write(f"warning: skipped {path}: not an image OpenCV can read, or damaged", file=sys.stderr)
                bar.update(1)
                continue
            if pending and (len(pending) >= batch or image.shape != pending[0][1].shape):
                flush()
            pending.append((rel, image))
        flush()
    finally:
        bar.close()
    print(f"wrote {done} mask(s) (<stem>.png train ids, <stem>_color.png, <stem>_overlay.{args.overlay_format}) "
          f"to {out_dir.resolve()}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:5])}"
              f"{' ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    if done == 0:
        raise ResegError("none of the inputs could be read as an image")
    return 0
