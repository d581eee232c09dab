"""A user's own data: an images folder, a masks folder matched by file stem, and a classes YAML.

Masks may hold class indices (one channel or a palette PNG) or colours (RGB, mapped with the
YAML's colours); the YAML's ignore value(s) become 255.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.config import ConfigError, read_yaml_file
from reseg.data.base import (
    DatasetError,
    DatasetLayoutError,
    LabelValueError,
    MissingPairError,
    SegmentationDataset,
    Transform,
    ignore_value_lut,
    list_images,
    map_colors,
    map_values,
)
from reseg.data.classes import IGNORE_INDEX, ClassInfo, default_palette
from reseg.io import folder_problem

log = logging.getLogger("reseg.data")

FOLDER_LAYOUT = """expected folder layout (any one of):
  <root>/images/<split>/*.jpg|png   <root>/masks/<split>/*.png
  <root>/<split>/images/...         <root>/<split>/masks/...
  <root>/images/...                 <root>/masks/...        (+ optional <root>/<split>.txt listing file stems)
masks are matched to images by file stem (a.jpg <-> a.png) and hold class indices (one channel or palette PNG)
or class colours (RGB); classes come from <root>/classes.yaml or data.classes_file:
  names: [background, road, car]
  colors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional for index masks, needed for colour masks
  ignore_index: 255                                  # mask value(s) to ignore (int or list), default 255
  ignore_color: [255, 255, 255]                      # optional, colour masks only"""


@dataclass(frozen=True)
class FolderClasses:
    """Classes of a folder dataset and how its mask files spell "ignore"."""

    info: ClassInfo
    ignore_values: tuple[int, ...]
    ignore_colors: tuple[tuple[int, int, int], ...]
    colors_given: bool
    source: str


def _color(value: Any, where: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)
    ):
        raise DatasetError(f"{where}: a colour must be [r, g, b] with integers 0..255, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


_CLASSES_KEYS = {"names", "colors", "palette", "classes", "ignore_index", "ignore_color", "ignore_colors"}


def load_folder_classes(path: str | Path) -> FolderClasses:
    """Read and check a classes YAML (names, optional colours, ignore value(s))."""
    path = Path(path)
    data = _read_classes_yaml(path)
    names, colors = _names_and_colors(data, path)
    unknown = set(data) - _CLASSES_KEYS
    if unknown:
        raise DatasetError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected names, colors, ignore_index, ignore_color"
        )
    if len(names) > 255:
        raise DatasetError(f"{path}: at most 255 classes are supported (255 is the ignore label), got {len(names)}")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: class names must be unique, got {names}")
    ignore_values = _ignore_values(data, path, names)
    raw_ic = data.get("ignore_colors", data.get("ignore_color", []))
    if raw_ic and not isinstance(raw_ic[0], list):
        raw_ic = [raw_ic]
    ignore_colors = tuple(_color(c, f"{path}: ignore_color") for c in raw_ic)
    info = ClassInfo(names=tuple(names), palette=tuple(colors) if colors else default_palette(len(names)))
    return FolderClasses(info, ignore_values, ignore_colors, colors is not None, str(path))


def _read_classes_yaml(path: Path) -> dict[str, Any]:
    """The classes file as a mapping; a bare list is read as the `classes:` form."""
    if not path.is_file():
        raise DatasetLayoutError(f"classes file {path} not found\n{FOLDER_LAYOUT}")
    data = read_yaml_file(path, "classes file")
    if data is None:
        raise ConfigError(f"classes file {path} is empty; expected `names: [...]` (and optionally `colors`)")
    if isinstance(data, list):
        data = {"classes": data}
    if not isinstance(data, dict):
        raise DatasetError(
            f"classes file {path} must be a mapping with 'names' (and 'colors'), got {type(data).__name__}"
        )
    return data


def _names_and_colors(data: dict[str, Any], path: Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Class names and their colours (None when the file gives none), from either spelling of the file."""
    colors: list[tuple[int, int, int]] | None = None
    if "classes" in data:  # [{name: road, color: [..]}, ...]
        items = data["classes"]
        if not isinstance(items, list) or not all(isinstance(i, dict) and "name" in i for i in items):
            raise DatasetError(f"{path}: 'classes' must be a list of {{name: ..., color: [r, g, b]}}")
        names = [str(i["name"]) for i in items]
        if any("color" in i for i in items):
            colors = [_color(i.get("color"), f"{path}: class {i['name']!r}") for i in items]
        return names, colors
    if "names" not in data:
        raise DatasetError(f"classes file {path} has no 'names' list\n{FOLDER_LAYOUT}")
    if not isinstance(data["names"], list) or not data["names"]:
        raise DatasetError(f"{path}: 'names' must be a non-empty list of class names")
    names = [str(n) for n in data["names"]]
    raw_colors = data.get("colors", data.get("palette"))
    if raw_colors is not None:
        if not isinstance(raw_colors, list) or len(raw_colors) != len(names):
            raise DatasetError(
                f"{path}: 'colors' must list one [r, g, b] per class ({len(names)} names, got {raw_colors!r:.80})"
            )
        colors = [_color(c, f"{path}: colour of class {n!r}") for c, n in zip(raw_colors, names)]
    return names, colors


def _ignore_values(data: dict[str, Any], path: Path, names: list[str]) -> tuple[int, ...]:
    """The mask value(s) that mean "ignore"; one that is also a class index is allowed, with a warning."""
    ignore = data.get("ignore_index", IGNORE_INDEX)
    ignore_values = tuple(ignore if isinstance(ignore, list) else [ignore])
    if not all(isinstance(v, int) and 0 <= v <= 255 for v in ignore_values):
        raise DatasetError(f"{path}: 'ignore_index' must be an integer 0..255 or a list of them, got {ignore!r}")
    clash = [v for v in ignore_values if v < len(names)]
    if clash:
        log.warning(
            "%s: ignore_index %s is also a class index (%s); those pixels will be ignored",
            path,
            clash,
            ", ".join(names[v] for v in clash),
        )
    return ignore_values


def _listed_images(image_dir: Path, stems: list[str] | None, listing: Path) -> list[Path]:
    """The split's images: those `listing` names, in its order, or every image in image_dir without one."""
    images = list_images(image_dir)
    if stems is not None:
        by_stem = {p.stem: p for p in images}
        lost = [s for s in stems if s not in by_stem]
        if lost:
            raise MissingPairError(
                f"{listing} lists file(s) not in {image_dir}: "
                f"{', '.join(lost[:10])}" + (" ..." if len(lost) > 10 else "")
            )
        images = [by_stem[s] for s in stems]
    if not images:
        raise DatasetLayoutError(f"no images in {image_dir}\n{FOLDER_LAYOUT}")
    return images


class FolderDataset(SegmentationDataset):
    """Images and masks matched by stem, with classes from a YAML file."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        classes_file: str | Path | None = None,
        transform: Transform | None = None,
        skip_bad_samples: bool = False,
        require_labels: bool = True,
    ) -> None:
        root = Path(root)
        if problem := folder_problem(root):
            raise DatasetLayoutError(f"dataset root {root} {problem}\n{FOLDER_LAYOUT}")
        if classes_file is None:
            classes_file = next(
                (root / n for n in ("classes.yaml", "classes.yml") if (root / n).is_file()), root / "classes.yaml"
            )
        self.class_spec = load_folder_classes(classes_file)
        super().__init__(root, split, self.class_spec.info, transform, skip_bad_samples, require_labels)
        self._lut, self._valid = ignore_value_lut(self.num_classes, self.class_spec.ignore_values)
        image_dir, mask_dir, stems = self._locate(root, split)
        images = _listed_images(image_dir, stems, root / f"{split}.txt")
        masks = {p.stem: p for p in list_images(mask_dir)} if mask_dir.is_dir() else {}
        if not masks and require_labels:
            raise DatasetLayoutError(
                f"no mask files for split {split!r}: {mask_dir} is missing or empty\n{FOLDER_LAYOUT}"
            )
        pairs, missing = [], []
        for img in images:
            mask = masks.get(img.stem)
            if mask is None and require_labels:
                missing.append(f"{img} (no {mask_dir / img.stem}.png)")
                continue
            pairs.append((str(img), None if mask is None else str(mask)))
        stems_set = {p.stem for p in images}
        orphans = (
            []
            if stems is not None
            else [f"{m} (no image {image_dir / m.stem}.*)" for s, m in sorted(masks.items()) if s not in stems_set]
        )
        self.report_unpaired(
            f"folder dataset {root}, split {split!r}",
            {"image(s) without a mask": missing, "mask(s) without an image": orphans},
        )
        if not pairs:
            raise DatasetLayoutError(f"folder dataset {root}, split {split!r}: no usable image/mask pairs")
        self.files = pairs
        self.meta = [{"name": Path(i).stem} for i, _ in pairs]

    @staticmethod
    def _locate(root: Path, split: str) -> tuple[Path, Path, list[str] | None]:
        for image_dir, mask_dirs in (
            (root / "images" / split, [root / "masks" / split, root / "labels" / split, root / "annotations" / split]),
            (root / split / "images", [root / split / "masks", root / split / "labels", root / split / "annotations"]),
        ):
            if image_dir.is_dir():
                return image_dir, next((d for d in mask_dirs if d.is_dir()), mask_dirs[0]), None
        image_dir = root / "images"
        if image_dir.is_dir():
            mask_dir = next(
                (d for d in (root / "masks", root / "labels", root / "annotations") if d.is_dir()), root / "masks"
            )
            listing = root / f"{split}.txt"
            if listing.is_file():
                stems = [
                    Path(line.split()[0]).stem
                    for line in listing.read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.startswith("#")
                ]
                return image_dir, mask_dir, stems
            if any(p.is_dir() for p in image_dir.iterdir()):
                subdirs = ", ".join(sorted(p.name for p in image_dir.iterdir() if p.is_dir()))
                raise DatasetLayoutError(
                    f"split {split!r} not found: {image_dir / split} does not exist "
                    f"({image_dir} has: {subdirs})\n{FOLDER_LAYOUT}"
                )
            log.info(
                "folder dataset %s has no split folders or %s.txt; split %r uses every image in %s",
                root,
                split,
                split,
                image_dir,
            )
            return image_dir, mask_dir, None
        raise DatasetLayoutError(
            f"split {split!r} not found under {root}: tried {root / 'images' / split}, "
            f"{root / split / 'images'} and {root / 'images'}\n{FOLDER_LAYOUT}"
        )

    def decode_mask(self, raw: np.ndarray, path: str) -> np.ndarray:
        spec = self.class_spec
        if raw.ndim == 3:
            rgb = raw[..., :3]
            if (
                np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 0], rgb[..., 2])
                and not spec.colors_given
            ):
                raw = rgb[..., 0]
            else:
                if not spec.colors_given:
                    raise LabelValueError(
                        f"mask {path} is an RGB colour image but {spec.source} gives no 'colors' "
                        f"to map colours to classes; add colors or save masks as class indices"
                    )
                colors = list(self.classes.palette) + list(spec.ignore_colors)
                ids = list(range(self.num_classes)) + [IGNORE_INDEX] * len(spec.ignore_colors)
                return map_colors(rgb, colors, ids, path, f"the class colours of {spec.source}")
        ign = ", ".join(str(v) for v in spec.ignore_values)
        return map_values(
            raw,
            self._lut,
            self._valid,
            path,
            f"class indices 0..{self.num_classes - 1} ({spec.source}) or ignore {ign}",
        )
