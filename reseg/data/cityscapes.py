"""Cityscapes in its official layout; label ids are mapped to the 19 train ids at load time.

Ready-made *_gtFine_labelTrainIds.png files (from cityscapesscripts' createTrainIdLabelImgs) are
read as they are. The instance-id file of each sample is kept in its meta for iIoU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from reseg.data.base import (
    DatasetError,
    DatasetLayoutError,
    LabelsUnavailableError,
    LabelValueError,
    SegmentationDataset,
    Transform,
    map_values,
)
from reseg.data.classes import CITYSCAPES, CITYSCAPES_ID_TO_TRAIN_ID, CITYSCAPES_VALID_IDS, IGNORE_INDEX
from reseg.io import folder_problem

log = logging.getLogger("reseg.data")

CITYSCAPES_LAYOUT = """expected Cityscapes layout (as downloaded: leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip):
  <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
                                        (or ..._gtFine_labelTrainIds.png; ..._gtFine_instanceIds.png optional)"""

LABEL_FORMATS = ("auto", "labelIds", "labelTrainIds")
IMAGE_SUFFIX = "_leftImg8bit.png"

_ID_VALID = np.zeros(256, bool)
_ID_VALID[sorted(CITYSCAPES_VALID_IDS)] = True
_ID_VALID[IGNORE_INDEX] = True  # the license-plate id (-1) written as uint8

_TRAIN_LUT = np.full(256, IGNORE_INDEX, np.uint8)
_TRAIN_LUT[: CITYSCAPES.num_classes] = np.arange(CITYSCAPES.num_classes)
_TRAIN_VALID = np.zeros(256, bool)
_TRAIN_VALID[: CITYSCAPES.num_classes] = True
_TRAIN_VALID[IGNORE_INDEX] = True


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations, 19 train ids; meta holds city, image id and instance_path."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        label_format: str = "auto",
        transform: Transform | None = None,
        skip_bad_samples: bool = False,
        require_labels: bool = True,
    ) -> None:
        super().__init__(root, split, CITYSCAPES, transform, skip_bad_samples, require_labels)
        if label_format not in LABEL_FORMATS:
            raise DatasetError(
                f"Cityscapes label_format must be one of {', '.join(LABEL_FORMATS)}, got {label_format!r}"
            )
        self.label_format = label_format
        image_dir = self._image_dir()
        if split == "test" and require_labels:
            raise LabelsUnavailableError(
                "the Cityscapes test split has no public labels (gtFine/test holds placeholders), so it cannot be "
                "used for training or evaluation; evaluate on 'val', or load 'test' for prediction only "
                "(build_dataset(cfg, 'test', require_labels=False), e.g. `reseg predict`)"
            )
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise DatasetLayoutError(
                f"no *{IMAGE_SUFFIX} files in the city folders of {image_dir}\n{CITYSCAPES_LAYOUT}"
            )
        gt_dir = self.root / "gtFine" / split
        if require_labels and not gt_dir.is_dir():
            raise DatasetLayoutError(
                f"Cityscapes labels for split {split!r} not found: {gt_dir} does not exist\n{CITYSCAPES_LAYOUT}"
            )
        files, meta, missing = self._pair_labels(images, gt_dir)
        orphans = _orphan_labels(images, image_dir, gt_dir) if require_labels and gt_dir.is_dir() else []
        self.report_unpaired(
            f"Cityscapes split {split!r} under {self.root}",
            {"image(s) without a label": missing, "label file(s) without an image": orphans},
            CITYSCAPES_LAYOUT,
        )
        if not files:
            raise DatasetLayoutError(
                f"Cityscapes split {split!r} under {self.root} has no usable samples\n{CITYSCAPES_LAYOUT}"
            )
        self.files, self.meta = files, meta

    def _image_dir(self) -> Path:
        """leftImg8bit/<split>, or an error naming the splits that are there."""
        root, split = self.root, self.split
        if problem := folder_problem(root):
            raise DatasetLayoutError(f"Cityscapes root {root} {problem}\n{CITYSCAPES_LAYOUT}")
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            found = (
                sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())
                if (root / "leftImg8bit").is_dir()
                else []
            )
            have = f" (leftImg8bit/ holds: {', '.join(found)})" if found else ""
            raise DatasetLayoutError(
                f"Cityscapes split {split!r} not found: {image_dir} does not exist{have}\n{CITYSCAPES_LAYOUT}"
            )
        return image_dir

    def _pair_labels(
        self, images: list[Path], gt_dir: Path
    ) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]], list[str]]:
        """Files and meta of every image with its label (when labels are required), and the images without one."""
        files, meta, missing = [], [], []
        for img in images:
            city = img.parent.name
            image_id = img.name[: -len(IMAGE_SUFFIX)]
            base = gt_dir / city / image_id
            mask = self._find_label(base) if self.require_labels else None
            if self.require_labels and mask is None:
                missing.append(
                    f"{img} (no {base}_gtFine_labelIds.png"
                    + ("" if self.label_format == "labelIds" else f" or {base.name}_gtFine_labelTrainIds.png")
                    + ")"
                )
                continue
            inst = Path(f"{base}_gtFine_instanceIds.png")
            files.append((str(img), None if mask is None else str(mask)))
            meta.append({"city": city, "image_id": image_id, "instance_path": str(inst) if inst.is_file() else None})
        return files, meta, missing

    def _find_label(self, base: Path) -> Path | None:
        ids, train_ids = Path(f"{base}_gtFine_labelIds.png"), Path(f"{base}_gtFine_labelTrainIds.png")
        order = {"auto": (ids, train_ids), "labelIds": (ids,), "labelTrainIds": (train_ids,)}[self.label_format]
        return next((p for p in order if p.is_file()), None)

    def decode_mask(self, raw: np.ndarray, path: str) -> np.ndarray:
        if raw.ndim != 2:
            raise LabelValueError(
                f"label file {path} has {raw.shape[2]} channels; Cityscapes label files have one "
                f"(use *_gtFine_labelIds.png, not *_gtFine_color.png)"
            )
        if path.endswith("_labelTrainIds.png"):
            return map_values(raw, _TRAIN_LUT, _TRAIN_VALID, path, "train ids 0..18 or 255")
        return map_values(raw, CITYSCAPES_ID_TO_TRAIN_ID, _ID_VALID, path, "Cityscapes label ids 0..33 (or 255)")


def _orphan_labels(images: list[Path], image_dir: Path, gt_dir: Path) -> list[str]:
    """Label files under gt_dir whose image is not among `images`, each with the image it expected."""
    ids = {f"{img.parent.name}/{img.name[: -len(IMAGE_SUFFIX)]}" for img in images}
    orphans = []
    for lab in sorted(gt_dir.glob("*/*_gtFine_labelIds.png")) + sorted(gt_dir.glob("*/*_gtFine_labelTrainIds.png")):
        image_id = lab.name.split("_gtFine_")[0]
        if f"{lab.parent.name}/{image_id}" not in ids:
            orphans.append(f"{lab} (no {image_dir / lab.parent.name / (image_id + IMAGE_SUFFIX)})")
    return orphans
