"""CamVid as users download it: the SegNet layout (11 classes) or the original RGB-coded 32 classes.

No conversion step: SegNet ids are read as they are (void 11 -> 255) and 32-class colour labels
are merged to the same 11 classes on the fly with the table in reseg.data.classes.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from reseg.data.base import (
    DatasetError,
    DatasetLayoutError,
    LabelValueError,
    MissingPairError,
    SegmentationDataset,
    Transform,
    list_images,
    map_colors,
    map_values,
)
from reseg.data.classes import (
    CAMVID,
    CAMVID32_COLORS,
    CAMVID32_TO_11,
    CAMVID_VOID_LABEL,
    IGNORE_INDEX,
    camvid32_train_id,
)
from reseg.io import folder_problem

CAMVID_LAYOUT = """expected CamVid layout (SegNet tutorial):
  <root>/train/*.png        <root>/trainannot/*.png   (one uint8 channel: 0..10 classes, 11 void)
  <root>/val/*.png          <root>/valannot/*.png
  <root>/test/*.png         <root>/testannot/*.png
  <root>/train.txt ...      optional listings, "image_path label_path" per line
                            (foreign prefixes such as /SegNet/CamVid/train/x.png are fine)
or the original 32-class CamVid: RGB label files (<split>annot/ or <split>_labels/, names x.png or x_L.png)
with <root>/label_colors.txt ("R G B Name" per line)"""

LABEL_FORMATS = ("auto", "segnet", "camvid32")
RAW_IMAGE_DIR = "701_StillsRaw_full"  # the original distribution's flat folders
RAW_LABEL_DIR = "LabeledApproved_full"

_SEGNET_LUT = np.full(256, IGNORE_INDEX, np.uint8)
_SEGNET_LUT[: CAMVID.num_classes] = np.arange(CAMVID.num_classes)
_SEGNET_VALID = np.zeros(256, bool)
_SEGNET_VALID[: CAMVID.num_classes] = True
_SEGNET_VALID[[CAMVID_VOID_LABEL, IGNORE_INDEX]] = True


def read_label_colors(path: str | Path) -> list[tuple[tuple[int, int, int], str]]:
    """Parse CamVid's label_colors.txt ("R G B Name" per line) into [(rgb, name)]."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        try:
            rgb = tuple(int(v) for v in parts[:3])
            name = parts[3]
        except (ValueError, IndexError):
            raise DatasetError(f"{path}:{lineno}: expected 'R G B Name', got {line.strip()!r}") from None
        if name not in CAMVID32_TO_11:
            raise DatasetError(
                f"{path}:{lineno}: class {name!r} is not one of the 32 CamVid classes "
                f"({', '.join(sorted(CAMVID32_TO_11))})"
            )
        rows.append((rgb, name))
    if not rows:
        raise DatasetError(f"{path} lists no classes; expected lines like '128 64 128 Road'")
    return rows


class CamVidDataset(SegmentationDataset):
    """CamVid, 11 classes in SegNet order; void (11) and 32-class void become 255."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        label_format: str = "auto",
        transform: Transform | None = None,
        skip_bad_samples: bool = False,
        require_labels: bool = True,
    ) -> None:
        super().__init__(root, split, CAMVID, transform, skip_bad_samples, require_labels)
        if label_format not in LABEL_FORMATS:
            raise DatasetError(f"CamVid label_format must be one of {', '.join(LABEL_FORMATS)}, got {label_format!r}")
        self.label_format = label_format
        root = self.root
        if problem := folder_problem(root):
            raise DatasetLayoutError(f"CamVid root {root} {problem}\n{CAMVID_LAYOUT}")
        colors_file = root / "label_colors.txt"
        table = (
            read_label_colors(colors_file)
            if colors_file.is_file()
            else [(rgb, name) for name, rgb in CAMVID32_COLORS.items()]
        )
        self._colors = [rgb for rgb, _ in table]
        self._color_ids = [camvid32_train_id(name) for _, name in table]
        self._colors_source = str(colors_file) if colors_file.is_file() else "the built-in 32-class table"

        self.image_dirs = [root / split, root / RAW_IMAGE_DIR]
        self.label_dirs = [
            root / f"{split}annot",
            root / f"{split}_labels",
            root / f"{split}_annot",
            root / RAW_LABEL_DIR,
        ]
        listing = root / f"{split}.txt"
        if listing.is_file():
            pairs = self._from_listing(listing)
        elif (root / split).is_dir():
            pairs = self._from_folders(root / split)
        else:
            raise DatasetLayoutError(
                f"CamVid split {split!r} not found under {root}: neither {root / split}/ nor {listing} exists\n"
                f"{CAMVID_LAYOUT}"
            )
        if not pairs:
            raise DatasetLayoutError(f"CamVid split {split!r} under {root} holds no images\n{CAMVID_LAYOUT}")
        self.files = [(str(i), None if m is None else str(m)) for i, m in pairs]
        self.meta = [_frame_meta(Path(i)) for i, _ in pairs]

    # -- discovery ------------------------------------------------------------------------------
    def _label_candidates(self, stem: str) -> list[Path]:
        return [d / f"{stem}{suffix}" for d in self.label_dirs for suffix in (".png", "_L.png")]

    def _from_folders(self, image_dir: Path) -> list[tuple[Path, Path | None]]:
        images = list_images(image_dir)
        label_dir = next((d for d in self.label_dirs[:-1] if d.is_dir()), None)
        if label_dir is None:
            if self.require_labels:
                raise MissingPairError(
                    f"CamVid split {self.split!r} has images in {image_dir} but no label folder "
                    f"(looked for {', '.join(str(d) for d in self.label_dirs[:-1])})\n{CAMVID_LAYOUT}"
                )
            return [(p, None) for p in images]
        pairs: list[tuple[Path, Path | None]] = []
        missing = []
        for img in images:
            mask = next(
                (c for c in (label_dir / f"{img.stem}.png", label_dir / f"{img.stem}_L.png") if c.is_file()), None
            )
            if mask is None and self.require_labels:
                missing.append(f"{img} (no {label_dir / (img.stem + '.png')})")
                continue
            pairs.append((img, mask))
        stems = {img.stem for img in images}
        orphans = [
            str(p) for p in list_images(label_dir) if p.stem not in stems and re.sub(r"_L$", "", p.stem) not in stems
        ]
        self._report_missing(missing, orphans, image_dir, label_dir)
        return pairs

    def _resolve(self, token: str, folders: list[Path], names: list[str]) -> Path | None:
        """A listed path: as given relative to the root, by ever shorter suffixes, then by file name."""
        p = PurePosixPath(token.replace("\\", "/"))
        parts = [q for q in p.parts if q not in ("/", "")]
        candidates = [self.root.joinpath(*parts[k:]) for k in range(len(parts))]
        candidates += [d / n for d in folders for n in names]
        return next((c for c in candidates if c.is_file()), None)

    def _from_listing(self, listing: Path) -> list[tuple[Path, Path | None]]:
        pairs: list[tuple[Path, Path | None]] = []
        missing, seen = [], set()
        for lineno, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            name = PurePosixPath(tokens[0].replace("\\", "/")).name
            stem = PurePosixPath(name).stem
            img = self._resolve(tokens[0], self.image_dirs, [name])
            if img is None:
                missing.append(
                    f"{listing}:{lineno}: image {tokens[0]} (not under {self.root} by its path "
                    f"or by name in {self.image_dirs[0]})"
                )
                continue
            mask = None
            if len(tokens) > 1:
                lname = PurePosixPath(tokens[1].replace("\\", "/")).name
                mask = self._resolve(tokens[1], self.label_dirs, [lname, f"{stem}.png", f"{stem}_L.png"])
            else:
                mask = next((c for c in self._label_candidates(stem) if c.is_file()), None)
            if mask is None and self.require_labels:
                wanted = tokens[1] if len(tokens) > 1 else f"{stem}.png"
                missing.append(
                    f"{listing}:{lineno}: label {wanted} of image {img} not found "
                    f"(looked under {self.root} and in {self.label_dirs[0]})"
                )
                continue
            if img not in seen:
                seen.add(img)
                pairs.append((img, mask))
        self._report_missing(missing, [], listing, None)
        return pairs

    def _report_missing(self, missing: list[str], orphans: list[str], where: Path, label_dir: Path | None) -> None:
        self.report_unpaired(
            f"CamVid split {self.split!r} under {self.root}",
            {"image(s) without a label": missing, f"label file(s) in {label_dir} without an image in {where}": orphans},
            CAMVID_LAYOUT,
        )

    # -- decoding -------------------------------------------------------------------------------
    def decode_mask(self, raw: np.ndarray, path: str) -> np.ndarray:
        if raw.ndim == 3:
            if (
                raw.shape[2] >= 3
                and np.array_equal(raw[..., 0], raw[..., 1])
                and np.array_equal(raw[..., 0], raw[..., 2])
                and self.label_format != "camvid32"
            ):
                raw = raw[..., 0]  # a grey id image saved as RGB
            elif self.label_format == "segnet":
                raise LabelValueError(
                    f"label file {path} is an RGB colour image, but data.label_format is 'segnet' "
                    f"(one channel of ids 0..11); use label_format 'camvid32' (or 'auto') for colour labels"
                )
            else:
                return map_colors(
                    raw[..., :3], self._colors, self._color_ids, path, f"the 32 CamVid colours of {self._colors_source}"
                )
        if self.label_format == "camvid32":
            raise LabelValueError(
                f"label file {path} has one channel, but data.label_format is 'camvid32' "
                f"(RGB colours); use 'segnet' (or 'auto') for id labels"
            )
        return map_values(raw, _SEGNET_LUT, _SEGNET_VALID, path, "0..10 (the 11 SegNet classes), 11 (void) or 255")


def _frame_meta(path: Path) -> dict[str, str]:
    """Sequence and frame from CamVid names such as 0016E5_07959 (used to replay a sequence as video)."""
    stem = re.sub(r"_L$", "", path.stem)
    seq, _, frame = stem.rpartition("_")
    return {"name": stem, "sequence": seq or stem, "frame": frame if seq else ""}
