#!/usr/bin/env python3
"""Pack CamVid (SegNet layout) small enough to travel to a lent GPU machine: frames as JPEG, labels as they are.

    python tools/pack_camvid.py SRC OUT [--quality 90] [--splits train val]

OUT holds <split>/*.jpg and <split>annot/*.png, which `data.dataset: camvid` reads as it is (images and
labels pair by name). JPEG changes the frames slightly, so figures trained or scored on a packed copy say
so. The packed copy is derived from the data: keep it out of git (tools/gpu_check.sh expects it under
.camvid_pack/, which .gitignore lists) and never commit it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2


def pack(src: Path, out: Path, quality: int, splits: list[str]) -> int:
    """Write the packed copy; returns its size in bytes. Refuses to write into the source."""
    src, out = src.resolve(), out.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise SystemExit(f"error: --out {out} overlaps the source {src}; pick a folder outside it")
    total = 0
    for split in splits:
        images, labels = src / split, src / f"{split}annot"
        if not images.is_dir() or not labels.is_dir():
            raise SystemExit(f"error: {src} has no {split}/ and {split}annot/ folders (CamVid, SegNet layout)")
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for img in sorted(images.glob("*.png")):
            label = labels / img.name
            if not label.is_file():
                raise SystemExit(f"error: {img} has no label {label}")
            frame = cv2.imread(str(img), cv2.IMREAD_COLOR)
            if frame is None:
                raise SystemExit(f"error: cannot read {img}")
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise SystemExit(f"error: cannot encode {img} as JPEG")
            (out / split / f"{img.stem}.jpg").write_bytes(jpg.tobytes())
            shutil.copyfile(label, out / f"{split}annot" / label.name)
            total += len(jpg) + label.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="CamVid root (SegNet layout)")
    p.add_argument("out", type=Path, help="where the packed copy goes")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    args = p.parse_args(argv)
    size = pack(args.src, args.out, args.quality, args.splits)
    print(f"packed {', '.join(args.splits)} of {args.src} into {args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
