"""Segment every image in a folder with a trained model; write each mask and its overlay.

    python examples/predict_folder.py MODEL IMAGES OUT [--device cpu] [--opacity 0.5]

MODEL is a checkpoint (best.pt), a model folder (`reseg package`) or hf://user/repo.
OUT gets <name>_mask.png (class ids 0..C-1) and <name>_overlay.png (class colours over the image).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import reseg

IMAGE_TYPES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint, model folder or hf://user/repo")
    parser.add_argument("images", type=Path, help="folder of images")
    parser.add_argument("out", type=Path, help="folder for the masks and overlays")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--opacity", type=float, default=0.5, help="opacity of the class colours")
    args = parser.parse_args()

    model = reseg.load(args.model, device=args.device)
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_TYPES)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))  # RGB uint8, H x W x 3
        mask = model(image)  # H x W uint8 class ids
        Image.fromarray(mask).save(args.out / f"{path.stem}_mask.png")
        Image.fromarray(model.overlay(image, mask, opacity=args.opacity)).save(args.out / f"{path.stem}_overlay.png")
        shares = np.bincount(mask.ravel(), minlength=len(model.class_names)) / mask.size
        top = ", ".join(f"{model.class_names[i]} {100 * shares[i]:.0f}%" for i in np.argsort(shares)[::-1][:3])
        print(f"{path.name}: {top}")
    print(f"wrote {len(files)} mask(s) and overlay(s) to {args.out}")


if __name__ == "__main__":
    main()
