"""The files predictions are written to: `reseg predict`'s masks and overlays, `reseg evaluate --save-preds`.

Per image, <name>.png holds train ids (what `reseg evaluate --preds` scores; `write_train_ids` is the one
writer of them), <name>_color.png the class colours and <name>_overlay.<ext> the colours over the image;
`--save-preds --format cityscapes` writes official Cityscapes label ids instead. Every file is written
atomically.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import ResegError

# --save-preds formats: train ids, or the official Cityscapes label ids its evaluation server expects
SAVE_FORMATS = ("trainid", "cityscapes")


def write_train_ids(path: str | Path, mask: np.ndarray) -> Path:
    """A prediction as a single-channel 8-bit PNG of its ids, atomically (values above 255 do not occur)."""
    from reseg.viz import write_image

    return write_image(path, np.asarray(mask, dtype=np.uint8))


class PredictionSaver:
    """Writes each prediction as <stem>.png: train ids, or official Cityscapes label ids."""

    def __init__(
        self, folder: str | Path, names: list[str], fmt: str = "trainid", cityscapes: bool = False, num_classes: int = 0
    ) -> None:
        self.folder = Path(folder)
        self.names = names
        self.lut: np.ndarray | None = None
        if fmt not in SAVE_FORMATS:
            raise ResegError(f"prediction format must be one of {', '.join(SAVE_FORMATS)}, got {fmt!r}")
        if fmt == "cityscapes":
            from reseg.data.classes import CITYSCAPES_TRAIN_ID_TO_ID

            if not cityscapes or num_classes != len(CITYSCAPES_TRAIN_ID_TO_ID):
                raise ResegError(
                    f"--format cityscapes needs the 19-class Cityscapes dataset, not this one "
                    f"with {num_classes} classes; use --format trainid"
                )
            self.lut = np.zeros(256, np.uint8)
            self.lut[: len(CITYSCAPES_TRAIN_ID_TO_ID)] = CITYSCAPES_TRAIN_ID_TO_ID
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, index: int, pred: np.ndarray) -> None:
        write_train_ids(self.folder / f"{self.names[index]}.png", self.lut[pred] if self.lut is not None else pred)
        self.count += 1


def write_outputs(
    out_dir: Path, name: Path, image: np.ndarray, mask: np.ndarray, palette: Any, opacity: float, overlay_ext: str
) -> None:
    """<name>.png (train ids), <name>_color.png and <name>_overlay.<ext> under out_dir, each atomically."""
    from reseg.viz import colorize, overlay, write_image

    ids, color, blend = output_files(out_dir, name, overlay_ext)
    write_train_ids(ids, mask)
    write_image(color, colorize(mask, palette))
    write_image(blend, overlay(image, mask, palette, opacity))


def output_files(out_dir: Path, name: Path, overlay_ext: str) -> list[Path]:
    base = out_dir / name
    return [Path(f"{base}.png"), Path(f"{base}_color.png"), Path(f"{base}_overlay.{overlay_ext}")]


def check_outputs(out_dir: Path, inputs: Sequence[str], items: Sequence[tuple[Path, Path]], overlay_ext: str) -> None:
    """Refuse, before anything is written, an --out inside an input folder or one whose files would replace an input."""
    from reseg.data.base import input_folders
    from reseg.io import check_output_dir, refuse_overlap

    check_output_dir(out_dir, "--out")
    refuse_overlap(out_dir, input_folders(inputs), "--out", "the input folder")
    sources = {path.resolve(): path for path, _ in items}
    for _, name in items:
        for target in output_files(out_dir, name, overlay_ext):
            if target.resolve() in sources:
                raise ResegError(
                    f"--out {out_dir} would overwrite the input image {sources[target.resolve()]} "
                    f"with {target}; choose an output folder outside the inputs"
                )


@dataclass
class PredictResult:
    written: int = 0
    skipped: list[str] = field(default_factory=list)
    resized: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # image size -> size run at


def predict_files(
    predictor: Any,
    items: Sequence[tuple[Path, Path]],
    out_dir: Path,
    batch: int = 1,
    opacity: float = 0.5,
    overlay_ext: str = "jpg",
    progress: bool = True,
) -> PredictResult:
    """Segment (image path, output name) pairs into out_dir; unreadable images are skipped with a warning."""
    from tqdm import tqdm

    from reseg.data.base import UnreadableImageError, read_image
    from reseg.preprocess import same_size_batches

    if not 0.0 <= opacity <= 1.0:
        raise ResegError(f"--opacity must be in [0, 1], got {opacity}")
    result = PredictResult()
    bar = tqdm(total=len(items), unit="img", desc="predict", dynamic_ncols=True, file=sys.stderr, disable=not progress)

    def readable() -> Iterator[tuple[Path, np.ndarray]]:
        for path, name in items:
            try:
                yield name, read_image(path)
            except UnreadableImageError as err:
                result.skipped.append(str(path))
                bar.write(f"warning: skipped {err}", file=sys.stderr)
                bar.update(1)

    try:
        for chunk in same_size_batches(readable(), batch, lambda item: item[1].shape):
            masks = predictor.predict([image for _, image in chunk], batch_size=batch)
            size = chunk[0][1].shape[:2]
            ran = predictor.run_size(*size)
            if ran != size:
                result.resized[size] = ran
            for (name, image), mask in zip(chunk, masks):
                write_outputs(out_dir, name, image, mask, predictor.palette, opacity, overlay_ext)
            result.written += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
    return result
