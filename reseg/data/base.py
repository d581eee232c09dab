"""The dataset base class: reads image/label pairs and fails with messages a user can act on.

Loaders only discover files and say how to decode a label file into train ids; reading, checking
(truncation, size mismatch, stray label values), optional skipping of bad samples and the sample
dict format live here once.
"""

from __future__ import annotations

import glob
import io
import itertools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from reseg.data.classes import IGNORE_INDEX, ClassInfo
from reseg.errors import ResegError

log = logging.getLogger("reseg.data")

# The image file types every tool accepts (datasets, predict, video frame folders).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DatasetError(ResegError):
    """A dataset cannot be used as given."""


class DatasetLayoutError(DatasetError):
    """The root is missing or its folders are not in the expected layout."""


class MissingPairError(DatasetError):
    """An image has no label file, or a label file has no image."""


class BadSampleError(DatasetError):
    """One sample cannot be used; `skip_bad_samples` may skip these."""


class UnreadableImageError(BadSampleError):
    """An image or label file is unreadable, truncated or not an image."""


class LabelValueError(BadSampleError):
    """A label file holds values that are not classes of the dataset."""


class SizeMismatchError(BadSampleError):
    """An image and its label have different sizes."""


class LabelsUnavailableError(DatasetError):
    """Labels were needed for a split that has none (e.g. the Cityscapes test split)."""


# --------------------------------------------------------------------------- low-level reading


def read_image(path: str | Path) -> np.ndarray:
    """Read any image as RGB uint8 HxWx3; unreadable or truncated files raise UnreadableImageError."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UnreadableImageError(f"cannot read image file {path}: {err.strerror or err}") from None
    if data.size == 0:
        raise UnreadableImageError(f"image file {path} is empty (0 bytes)")
    # imdecode (unlike imread) refuses truncated PNG and JPEG streams instead of padding them with grey.
    img = None if _png_cut(data) else cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise UnreadableImageError(
            f"image file {path} is truncated, damaged or not an image ({data.size} bytes could not be decoded)"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place: a large photo is held once


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_cut(data: np.ndarray | bytes) -> bool:
    """A PNG whose IEND chunk is missing was cut short, even if a decoder accepts what is left."""
    head = bytes(data[:8])
    return head == _PNG_SIGNATURE and b"IEND" not in bytes(data[-64:])


_COLOUR_MODES = ("RGB", "RGBA", "CMYK", "YCbCr", "HSV", "LAB")  # RGB first: the one that needs no conversion


def read_label_file(path: str | Path, what: str = "label file", colour: bool = True) -> np.ndarray:
    """Read a label-like PNG (labels, saved predictions, instance ids) without any colour conversion.

    Returns HxW for single-channel and palette files (palette indices, not colours; 16-bit stays 16-bit)
    and HxWx3 for RGB files. With colour=False a colour file is an error and grey+alpha reads as grey:
    predictions and instance ids are ids, never colours. PIL is used because it keeps palette indices
    and refuses truncated files. `what` names the file in errors.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if _png_cut(raw):
            raise OSError("the PNG stream ends before its IEND chunk")
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            if im.mode in _COLOUR_MODES and not colour:
                raise UnreadableImageError(
                    f"{what} {path} is a colour ({im.mode}) image; expected a single-channel PNG of ids"
                )
            if im.mode in _COLOUR_MODES[1:] or (im.mode == "LA" and colour):
                im = im.convert("RGB")
            elif im.mode in ("1", "LA"):
                im = im.convert("L")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise UnreadableImageError(f"{what} {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UnreadableImageError(f"{what} {path} is truncated, damaged or not an image: {err}") from None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return arr


def rgb_codes(rgb: np.ndarray) -> np.ndarray:
    """Pack an HxWx3 uint8 array into one int32 per pixel (r << 16 | g << 8 | b)."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def map_values(raw: np.ndarray, lut: np.ndarray, valid: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Translate a uint8 label array through `lut`; values with `valid[v] == False` raise LabelValueError.

    `what` describes the valid values for the message (e.g. "0..11 (SegNet CamVid)").
    """
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise LabelValueError(
                f"label file {path} holds values outside 0..255 (min {raw.min()}, max {raw.max()}); expected {what}"
            )
        raw = raw.astype(np.uint8)
    counts = np.bincount(raw.ravel(), minlength=256)
    bad = np.flatnonzero((counts > 0) & ~valid)
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
        raise LabelValueError(
            f"label file {path} holds values that are not classes of this dataset: {shown} "
            f"({int(counts[bad].sum())} pixels); expected {what}"
        )
    return lut[raw]


def map_colors(
    rgb: np.ndarray, colors: Sequence[tuple[int, int, int]], ids: Sequence[int], path: str | Path, what: str
) -> np.ndarray:
    """Translate an RGB-coded label to train ids; colours not in `colors` raise LabelValueError."""
    codes = rgb_codes(rgb)
    uniq, inverse = np.unique(codes, return_inverse=True)
    table = {(r << 16) | (g << 8) | b: i for (r, g, b), i in zip(colors, ids)}
    mapped = np.empty(len(uniq), np.uint8)
    unknown = []
    for k, code in enumerate(uniq.tolist()):
        if code in table:
            mapped[k] = table[code]
        else:
            unknown.append(code)
    if unknown:
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:10])
        more = " ..." if len(unknown) > 10 else ""
        raise LabelValueError(
            f"label file {path} holds colours that are not classes of this dataset: {shown}{more}; expected {what}"
        )
    return mapped[inverse.reshape(codes.shape)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading components without wildcards."""
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda p: not any(ch in p for ch in "*?["), parts))
    return Path(*fixed) if fixed else Path(".")


def collect_images(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """(image path, output name without suffix) for every image file, folder (recursive) or glob, in order.

    Output names keep the path below the folder or the glob's fixed part, so `a/x.png` and `b/x.png`
    stay apart; names that still collide (a.png and a.jpg, or the same file named twice) are numbered.
    """
    items: list[tuple[Path, Path]] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if is_image_file(p))
            if not files:
                raise ResegError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under folder {spec}")
            items += [(f, f.relative_to(path).with_suffix("")) for f in files]
        elif path.is_file():
            items.append((path, Path(path.stem)))
        elif any(ch in spec for ch in "*?["):
            root = _glob_root(spec)
            files = sorted(Path(f) for f in glob.glob(spec, recursive=True) if is_image_file(Path(f)))
            if not files:
                raise ResegError(f"the pattern {spec} matches no images")
            items += [(f, _relative(f, root)) for f in files]
        else:
            raise ResegError(f"input not found: {spec} (expected an image, a folder or a glob)")
    seen: set[Path] = set()
    unique = []
    for image, rel in items:
        name, n = rel, 1
        while name in seen:
            n += 1
            name = rel.with_name(f"{rel.name}_{n}")
        seen.add(name)
        unique.append((image, name))
    return unique


def input_folders(inputs: Sequence[str]) -> list[Path]:
    """The folders `collect_images` searches: folder inputs and the fixed part of each glob."""
    return [
        Path(spec) if Path(spec).is_dir() else _glob_root(spec)
        for spec in inputs
        if Path(spec).is_dir() or (not Path(spec).exists() and any(ch in spec for ch in "*?["))
    ]


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root).with_suffix("")
    except ValueError:
        return Path(path.stem)


def format_missing(kind: str, items: Sequence[str], hint: str = "") -> str:
    shown = "\n  ".join(items[:10]) + (f"\n  ... and {len(items) - 10} more" if len(items) > 10 else "")
    return f"{len(items)} {kind}:\n  {shown}" + (f"\n{hint}" if hint else "")


# --------------------------------------------------------------------------- dataset base

Transform = Callable[..., dict[str, Any]]


class SegmentationDataset(Dataset):
    """Pairs of (image, label) files plus how to decode the labels into train ids.

    Subclasses fill `files` (list of (image_path, mask_path or None)) and `meta` (one dict per
    sample) and implement `decode_mask(raw, path)`. `__getitem__` returns
    {"image", "mask", "path", "mask_path", "meta"}; without labels there is no "mask" key.
    """

    classes: ClassInfo

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: ClassInfo,
        transform: Transform | None = None,
        skip_bad_samples: bool = False,
        require_labels: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = classes
        self.transform = transform
        self.skip_bad_samples = skip_bad_samples
        self.require_labels = require_labels
        self.files: list[tuple[str, str | None]] = []
        self.meta: list[dict[str, Any]] = []
        self._bad: set[int] = set()

    # -- to implement -------------------------------------------------------------------------
    def decode_mask(self, raw: np.ndarray, path: str) -> np.ndarray:
        """Raw label array (as read by read_label_file) -> uint8 train ids with 255 = ignore."""
        raise NotImplementedError

    def report_unpaired(self, where: str, unpaired: dict[str, list[str]], layout: str = "") -> None:
        """Stop with every unpaired file named, or with skip_bad_samples log them and go on without them.

        `unpaired` maps what is wrong ("image(s) without a label") to the files; empty lists are left out.
        """
        parts = [format_missing(kind, items) for kind, items in unpaired.items() if items]
        if not parts:
            return
        msg = f"{where}: " + "\n".join(parts)
        if not self.skip_bad_samples:
            raise MissingPairError(f"{msg}\n{layout}" if layout else msg)
        log.warning("%s\n(skipped: data.skip_bad_samples=true)", msg)

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def read_image(self, index: int) -> np.ndarray:
        """RGB uint8 HxWx3 of sample `index`."""
        return read_image(self.files[index][0])

    def read_mask(self, index: int) -> np.ndarray:
        """uint8 HxW train ids (255 = ignore) of sample `index`, checked against the classes."""
        mask_path = self.files[index][1]
        if mask_path is None:
            raise LabelsUnavailableError(f"sample {self.files[index][0]} of split {self.split!r} has no label file")
        mask = self.decode_mask(read_label_file(mask_path), mask_path)
        if mask.ndim != 2:
            raise LabelValueError(f"label file {mask_path} decoded to shape {mask.shape}; expected H x W")
        return mask

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Image and mask (None without labels), checked to have the same size."""
        image = self.read_image(index)
        if self.files[index][1] is None or not self.require_labels:
            return image, None
        mask = self.read_mask(index)
        if mask.shape[:2] != image.shape[:2]:
            img_path, mask_path = self.files[index]
            raise SizeMismatchError(
                f"image and label have different sizes: {img_path} is {image.shape[1]}x{image.shape[0]} "
                f"(WxH) but {mask_path} is {mask.shape[1]}x{mask.shape[0]}"
            )
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.skip_bad_samples:
            return self._sample(index)
        n = len(self.files)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                return self._sample(i)
            except BadSampleError as err:
                self._bad.add(i)
                log.warning("skipping bad sample (data.skip_bad_samples=true): %s", err)
        raise DatasetError(f"every sample of split {self.split!r} under {self.root} is unreadable or invalid")

    def _sample(self, index: int) -> dict[str, Any]:
        image, mask = self.load_pair(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask) if mask is not None else self.transform(image=image)
            image = out["image"]
            mask = out.get("mask") if mask is not None else None
        img_path, mask_path = self.files[index]
        sample: dict[str, Any] = {
            "image": image,
            "path": img_path,
            "mask_path": mask_path,
            "meta": {"index": index, **self.meta[index]},
        }
        if mask is not None:
            sample["mask"] = (
                mask.long()
                if isinstance(mask, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
            )
        return sample

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, classes={self.num_classes})"
        )


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images/masks when they share a shape (lists otherwise); keep paths and meta as lists.

    The default collate fails on None (no label path, no instance file) and on images of
    different sizes, both of which are normal in evaluation.
    """
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if key in ("image", "mask") and all(isinstance(v, torch.Tensor) for v in values):
            same = all(v.shape == values[0].shape for v in values)
            out[key] = torch.stack(values) if same else values
        else:
            out[key] = values
    return out


def ignore_value_lut(num_classes: int, extra_ignore: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """LUT and validity table for index labels: 0..C-1 keep their value, `extra_ignore` and 255 -> 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    valid = np.zeros(256, bool)
    valid[:num_classes] = True
    valid[IGNORE_INDEX] = True
    for v in extra_ignore:
        if 0 <= v <= 255:
            valid[v] = True
            lut[v] = IGNORE_INDEX
    return lut, valid
