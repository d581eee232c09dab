"""CamVid loader: SegNet layout, void -> 255, foreign listing prefixes, the 32-class merge."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from reseg.config import Config
from reseg.data import build_dataset
from reseg.data.base import DatasetError, DatasetLayoutError, LabelValueError, MissingPairError
from reseg.data.camvid import CamVidDataset
from reseg.data.classes import CAMVID, CAMVID32_COLORS, CAMVID32_TO_11

H, W = 8, 12


def _img(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _lab(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))


def make_segnet(
    root: Path,
    split: str = "train",
    names: tuple[str, ...] = ("0001TP_006690", "0001TP_006720"),
    listing: bool = True,
    label: np.ndarray | None = None,
) -> None:
    """The SegNet tutorial layout, with a listing that carries the tutorial machine's absolute prefix."""
    for k, name in enumerate(names):
        _img(root / split / f"{name}.png", k)
        lab = label if label is not None else (np.arange(H * W) % 12).astype(np.uint8).reshape(H, W)
        _lab(root / f"{split}annot" / f"{name}.png", lab)
    if listing:
        (root / f"{split}.txt").write_text(
            "".join(f"/SegNet/CamVid/{split}/{n}.png /SegNet/CamVid/{split}annot/{n}.png\n" for n in names)
        )


def test_segnet_void_becomes_ignore(tmp_path: Path) -> None:
    make_segnet(tmp_path)
    ds = CamVidDataset(tmp_path, "train")
    assert len(ds) == 2 and ds.classes is CAMVID and CAMVID.num_classes == 11
    raw = (np.arange(H * W) % 12).reshape(H, W)
    mask = ds.read_mask(0)
    np.testing.assert_array_equal(mask[raw < 11], raw[raw < 11])
    assert (mask[raw == 11] == 255).all()
    assert ds.meta[0] == {"name": "0001TP_006690", "sequence": "0001TP", "frame": "006690"}
    sample = ds[0]
    assert sample["mask"].max().item() == 255 and sample["path"].endswith("0001TP_006690.png")


def test_listing_prefixes_resolved(tmp_path: Path) -> None:
    make_segnet(tmp_path, listing=False)
    make_segnet(tmp_path, "val", names=("0016E5_07959",), listing=False)
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/0001TP_006720.png /SegNet/CamVid/trainannot/0001TP_006720.png\n"
        "\n"
        "C:\\data\\CamVid\\train\\0001TP_006690.png C:\\data\\CamVid\\trainannot\\0001TP_006690.png\n"
    )
    (tmp_path / "val.txt").write_text("val/0016E5_07959.png valannot/0016E5_07959.png\n")
    (tmp_path / "test.txt").write_text("/elsewhere/0016E5_07959.png\n")  # by file name only, label by stem
    ds = CamVidDataset(tmp_path, "train")
    # the listing's order is kept, and files resolve under the root whatever the prefix
    assert ds.files == [
        (str(tmp_path / "train" / "0001TP_006720.png"), str(tmp_path / "trainannot" / "0001TP_006720.png")),
        (str(tmp_path / "train" / "0001TP_006690.png"), str(tmp_path / "trainannot" / "0001TP_006690.png")),
    ]
    assert CamVidDataset(tmp_path, "val").files[0][1] == str(tmp_path / "valannot" / "0016E5_07959.png")
    (tmp_path / "test").mkdir()
    _img(tmp_path / "test" / "0016E5_07959.png")
    _lab(tmp_path / "testannot" / "0016E5_07959.png", np.zeros((H, W), np.uint8))
    assert CamVidDataset(tmp_path, "test").files[0][0] == str(tmp_path / "test" / "0016E5_07959.png")


def test_listing_entry_missing_names_line(tmp_path: Path) -> None:
    make_segnet(tmp_path)
    with open(tmp_path / "train.txt", "a") as fh:
        fh.write("/SegNet/CamVid/train/0001TP_999999.png /SegNet/CamVid/trainannot/0001TP_999999.png\n")
    with pytest.raises(MissingPairError) as err:
        CamVidDataset(tmp_path, "train")
    assert f"{tmp_path / 'train.txt'}:3" in str(err.value) and "0001TP_999999.png" in str(err.value)


def test_folders_without_listing(tmp_path: Path) -> None:
    make_segnet(tmp_path, listing=False)
    ds = CamVidDataset(tmp_path, "train")
    assert [Path(i).name for i, _ in ds.files] == ["0001TP_006690.png", "0001TP_006720.png"]


# CamVid's own label_colors.txt, as distributed with the 32-class dataset (R G B name).
LABEL_COLORS_TXT = """\
64 128 64\tAnimal
192 0 128\tArchway
0 128 192\tBicyclist
0 128 64\tBridge
128 0 0\tBuilding
64 0 128\tCar
64 0 192\tCartLuggagePram
192 128 64\tChild
192 192 128\tColumn_Pole
64 64 128\tFence
128 0 192\tLaneMkgsDriv
192 0 64\tLaneMkgsNonDriv
128 128 64\tMisc_Text
192 0 192\tMotorcycleScooter
128 64 64\tOtherMoving
64 192 128\tParkingBlock
64 64 0\tPedestrian
128 64 128\tRoad
128 128 192\tRoadShoulder
0 0 192\tSidewalk
192 128 128\tSignSymbol
128 128 128\tSky
64 128 192\tSUVPickupTruck
0 0 64\tTrafficCone
0 64 64\tTrafficLight
192 64 128\tTrain
128 128 0\tTree
192 128 192\tTruck_Bus
64 0 64\tTunnel
192 192 0\tVegetationMisc
0 0 0\tVoid
64 192 0\tWall
"""

# The SegNet 11-class grouping of the 32 classes (Void is ignored).
SEGNET_GROUPS = {
    "Sky": ["Sky"],
    "Building": ["Building", "Wall", "Bridge", "Tunnel", "Archway"],
    "Pole": ["Column_Pole", "TrafficCone"],
    "Road": ["Road", "LaneMkgsDriv", "LaneMkgsNonDriv"],
    "Pavement": ["Sidewalk", "ParkingBlock", "RoadShoulder"],
    "Tree": ["Tree", "VegetationMisc"],
    "SignSymbol": ["SignSymbol", "Misc_Text", "TrafficLight"],
    "Fence": ["Fence"],
    "Car": ["Car", "SUVPickupTruck", "Truck_Bus", "Train", "OtherMoving"],
    "Pedestrian": ["Pedestrian", "Child", "CartLuggagePram", "Animal"],
    "Bicyclist": ["Bicyclist", "MotorcycleScooter"],
}
SEGNET_ORDER = [
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
]


def _label_colors() -> dict[str, tuple[int, int, int]]:
    out = {}
    for line in LABEL_COLORS_TXT.splitlines():
        r, g, b, name = line.split()
        out[name] = (int(r), int(g), int(b))
    return out


def test_camvid_tables_match_the_published_ones() -> None:
    colors = _label_colors()
    assert len(colors) == 32 and dict(CAMVID32_COLORS) == colors
    grouping = {old: new for new, olds in SEGNET_GROUPS.items() for old in olds}
    assert len(grouping) == 31 and set(grouping) | {"Void"} == set(colors)
    assert {**grouping, "Void": None} == CAMVID32_TO_11
    assert list(CAMVID.names) == SEGNET_ORDER
    # each merged class wears the colour of the 32-class class it is named after
    namesake = {"Pole": "Column_Pole", "Pavement": "Sidewalk"}
    assert list(CAMVID.palette) == [colors[namesake.get(n, n)] for n in SEGNET_ORDER]


def test_camvid32_merge(tmp_path: Path) -> None:
    colors = _label_colors()
    names = sorted(colors)
    rgb = np.zeros((4, 8, 3), np.uint8)
    for k, name in enumerate(names):
        rgb[k // 8, k % 8] = colors[name]
    (tmp_path / "label_colors.txt").write_text(LABEL_COLORS_TXT.replace("\t", "\t\t"))
    (tmp_path / "train").mkdir()
    img = np.zeros((4, 8, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "train" / "0001TP_006690.png"), img)
    _lab(tmp_path / "train_labels" / "0001TP_006690_L.png", rgb)
    ds = CamVidDataset(tmp_path, "train")
    assert ds.files[0][1].endswith("0001TP_006690_L.png")
    mask = ds.read_mask(0)
    got = {name: int(mask[k // 8, k % 8]) for k, name in enumerate(names)}
    expected = {old: SEGNET_ORDER.index(new) for new, olds in SEGNET_GROUPS.items() for old in olds}
    assert got == {**expected, "Void": 255}
    # explicit formats are checked against the file
    with pytest.raises(LabelValueError, match="RGB colour image"):
        CamVidDataset(tmp_path, "train", label_format="segnet").read_mask(0)
    rgb[0, 0] = (1, 2, 3)
    _lab(tmp_path / "train_labels" / "0001TP_006690_L.png", rgb)
    with pytest.raises(LabelValueError) as err:
        ds.read_mask(0)
    assert "0001TP_006690_L.png" in str(err.value) and "(1, 2, 3)" in str(err.value)


def test_bad_label_colors_file(tmp_path: Path) -> None:
    make_segnet(tmp_path)
    (tmp_path / "label_colors.txt").write_text("64 128 64\tAnimal\n1 2 3\tSpaceship\n")
    with pytest.raises(DatasetError, match=r"label_colors.txt:2: class 'Spaceship'"):
        CamVidDataset(tmp_path, "train")


def test_test_split_without_labels(tmp_path: Path) -> None:
    make_segnet(tmp_path, "test", listing=False)
    import shutil

    shutil.rmtree(tmp_path / "testannot")
    with pytest.raises(MissingPairError, match="testannot"):
        CamVidDataset(tmp_path, "test")
    ds = CamVidDataset(tmp_path, "test", require_labels=False)
    assert len(ds) == 2 and "mask" not in ds[0]


def test_build_dataset_camvid_with_transforms(tmp_path: Path) -> None:
    make_segnet(tmp_path)
    make_segnet(tmp_path, "val", names=("0016E5_07959",))
    cfg = Config()
    cfg.data.dataset, cfg.data.root = "camvid", str(tmp_path)
    cfg.data.crop_size = [6, 10]
    train = build_dataset(cfg, "train")
    s = train[0]
    assert tuple(s["image"].shape) == (3, 6, 10) and tuple(s["mask"].shape) == (6, 10)
    val = build_dataset(cfg, "val")
    assert tuple(val[0]["image"].shape) == (3, H, W)
    cfg.data.label_format = "labelIds"
    with pytest.raises(DatasetError, match="label_format"):
        build_dataset(cfg, "train")
    with pytest.raises(DatasetLayoutError) as err:
        CamVidDataset(tmp_path, "trainval")
    assert str(tmp_path / "trainval") in str(err.value) and "trainannot" in str(err.value)


def test_original_flat_folders_with_segnet_listing(tmp_path: Path) -> None:
    """701_StillsRaw_full/ + LabeledApproved_full/ (x_L.png) split by a SegNet-style listing."""
    _img(tmp_path / "701_StillsRaw_full" / "0006R0_f02400.png")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = CAMVID32_COLORS["Road"]
    rgb[0] = CAMVID32_COLORS["Void"]
    _lab(tmp_path / "LabeledApproved_full" / "0006R0_f02400_L.png", rgb)
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/0006R0_f02400.png /SegNet/CamVid/trainannot/0006R0_f02400.png\n"
    )
    ds = CamVidDataset(tmp_path, "train")
    assert ds.files[0][1] == str(tmp_path / "LabeledApproved_full" / "0006R0_f02400_L.png")
    mask = ds.read_mask(0)
    assert (mask[0] == 255).all() and (mask[1:] == CAMVID.names.index("Road")).all()
