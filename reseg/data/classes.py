"""The one table of class names, colours and label-id translations.

Everything that needs a class name, a palette colour or a raw-label -> train-id mapping
(loaders, metrics, reports, overlays) reads it from here, so a dataset's classes are defined once.
Train ids are 0..C-1; 255 means "ignore" everywhere inside the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255

Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassInfo:
    """Names and colours of a dataset's train ids.

    `categories`/`category_names` group classes (Cityscapes' category IoU); `has_instances`
    marks classes scored by instance-weighted IoU (iIoU). Both are None where a dataset has none.
    """

    names: tuple[str, ...]
    palette: tuple[Color, ...]
    ignore_index: int = IGNORE_INDEX
    categories: tuple[int, ...] | None = None
    category_names: tuple[str, ...] | None = None
    has_instances: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.names) != len(self.palette):
            raise ValueError(f"{len(self.names)} class names but {len(self.palette)} palette colours")
        if self.categories is not None and len(self.categories) != len(self.names):
            raise ValueError("categories must give one category index per class")

    @property
    def num_classes(self) -> int:
        return len(self.names)


# --------------------------------------------------------------------------- CamVid (11 classes)

# SegNet order; label 11 in the files is void and becomes 255. Colours are those of the original
# 32-class CamVid label_colors.txt for the class each merged class is named after.
CAMVID_VOID_LABEL = 11
CAMVID = ClassInfo(
    names=(
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    ),
    palette=(
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (0, 0, 192),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ),
)

# Original 32-class CamVid (Brostow et al.): name -> RGB as in its label_colors.txt.
CAMVID32_COLORS: dict[str, Color] = {
    "Animal": (64, 128, 64),
    "Archway": (192, 0, 128),
    "Bicyclist": (0, 128, 192),
    "Bridge": (0, 128, 64),
    "Building": (128, 0, 0),
    "Car": (64, 0, 128),
    "CartLuggagePram": (64, 0, 192),
    "Child": (192, 128, 64),
    "Column_Pole": (192, 192, 128),
    "Fence": (64, 64, 128),
    "LaneMkgsDriv": (128, 0, 192),
    "LaneMkgsNonDriv": (192, 0, 64),
    "Misc_Text": (128, 128, 64),
    "MotorcycleScooter": (192, 0, 192),
    "OtherMoving": (128, 64, 64),
    "ParkingBlock": (64, 192, 128),
    "Pedestrian": (64, 64, 0),
    "Road": (128, 64, 128),
    "RoadShoulder": (128, 128, 192),
    "Sidewalk": (0, 0, 192),
    "SignSymbol": (192, 128, 128),
    "Sky": (128, 128, 128),
    "SUVPickupTruck": (64, 128, 192),
    "TrafficCone": (0, 0, 64),
    "TrafficLight": (0, 64, 64),
    "Train": (192, 64, 128),
    "Tree": (128, 128, 0),
    "Truck_Bus": (192, 128, 192),
    "Tunnel": (64, 0, 64),
    "VegetationMisc": (192, 192, 0),
    "Void": (0, 0, 0),
    "Wall": (64, 192, 0),
}

# The usual 32 -> 11 grouping (SegNet / Sturgess et al.): 32-class name -> 11-class name, None = void.
CAMVID32_TO_11: dict[str, str | None] = {
    "Sky": "Sky",
    "Building": "Building",
    "Wall": "Building",
    "Bridge": "Building",
    "Tunnel": "Building",
    "Archway": "Building",
    "Column_Pole": "Pole",
    "TrafficCone": "Pole",
    "Road": "Road",
    "LaneMkgsDriv": "Road",
    "LaneMkgsNonDriv": "Road",
    "Sidewalk": "Pavement",
    "ParkingBlock": "Pavement",
    "RoadShoulder": "Pavement",
    "Tree": "Tree",
    "VegetationMisc": "Tree",
    "SignSymbol": "SignSymbol",
    "Misc_Text": "SignSymbol",
    "TrafficLight": "SignSymbol",
    "Fence": "Fence",
    "Car": "Car",
    "SUVPickupTruck": "Car",
    "Truck_Bus": "Car",
    "Train": "Car",
    "OtherMoving": "Car",
    "Pedestrian": "Pedestrian",
    "Child": "Pedestrian",
    "CartLuggagePram": "Pedestrian",
    "Animal": "Pedestrian",
    "Bicyclist": "Bicyclist",
    "MotorcycleScooter": "Bicyclist",
    "Void": None,
}


def camvid32_train_id(name: str) -> int:
    """Train id (0..10, or 255 for void) of a 32-class CamVid name; KeyError for unknown names."""
    target = CAMVID32_TO_11[name]
    return IGNORE_INDEX if target is None else CAMVID.names.index(target)


# --------------------------------------------------------------------------- Cityscapes


class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table (cityscapesscripts.helpers.labels)."""

    name: str
    id: int
    train_id: int  # 255 (or -1 for license plate) = not evaluated
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: Color


CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, "vehicle", 7, False, True, (0, 0, 142)),
)

# Evaluated categories in category-id order (void, id 0, is not evaluated).
CITYSCAPES_CATEGORY_NAMES: tuple[str, ...] = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")


def _cityscapes_train_labels() -> list[CityscapesLabel]:
    rows = [lab for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < IGNORE_INDEX]
    return sorted(rows, key=lambda lab: lab.train_id)


def _cityscapes_id_to_train_id() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for lab in CITYSCAPES_LABELS:
        if lab.id >= 0 and 0 <= lab.train_id < IGNORE_INDEX:
            lut[lab.id] = lab.train_id
    return lut


# uint8[256]: label id -> train id (255 for every id that is not evaluated).
CITYSCAPES_ID_TO_TRAIN_ID: np.ndarray = _cityscapes_id_to_train_id()
CITYSCAPES_ID_TO_TRAIN_ID.setflags(write=False)
# Label ids that may legitimately appear in *_gtFine_labelIds.png (0..33); 255 is accepted as "ignore" too.
CITYSCAPES_VALID_IDS: frozenset[int] = frozenset(lab.id for lab in CITYSCAPES_LABELS if lab.id >= 0)
# train id -> label id, for writing predictions in the official submission format.
CITYSCAPES_TRAIN_ID_TO_ID: tuple[int, ...] = tuple(lab.id for lab in _cityscapes_train_labels())

CITYSCAPES = ClassInfo(
    names=tuple(lab.name for lab in _cityscapes_train_labels()),
    palette=tuple(lab.color for lab in _cityscapes_train_labels()),
    categories=tuple(lab.category_id - 1 for lab in _cityscapes_train_labels()),
    category_names=CITYSCAPES_CATEGORY_NAMES,
    has_instances=tuple(lab.has_instances for lab in _cityscapes_train_labels()),
)


def default_palette(n: int) -> tuple[Color, ...]:
    """Distinct, deterministic colours for datasets that name no colours (the PASCAL VOC bit scheme)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


CLASS_TABLES: dict[str, ClassInfo] = {"camvid": CAMVID, "synthetic": CAMVID, "cityscapes": CITYSCAPES}
