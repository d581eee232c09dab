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


def make_segnet(root: Path, split: str = "train", names: tuple[str, ...] = ("0001TP_006690", "0001TP_006720"),
                listing: bool = True, label: np.ndarray | None = None) -> None:
    """The SegNet tutorial layout, with a listing that carries the tutorial machine's absolute prefix."""
    for k, name in enumerate(names):
        _img(root / split / f"{name}.png", k)
        lab = label if label is not None else (np.arange(H * W) % 12).astype(np.uint8).reshape(H, W)
        _lab(root / f"{split}annot" / f"{name}.png", lab)
    if listing:
        (root / f"{split}.txt").write_text("".join(
            f"/SegNet/CamVid/{split}/{n}.png /SegNet/CamVid/{split}annot/{n}.png\n" for n in names))


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
        "C:\\data\\CamVid\\train\\0001TP_006690.png C:\\data\\CamVid\\trainannot\\0001TP_006690.png\n")
    (tmp_path / "val.txt").write_text("val/0016E5_07959.png valannot/0016E5_07959.png\n")
    (tmp_path / "test.txt").write_text("/elsewhere/0016E5_07959.png\n")   # by file name only, label by stem
    ds = CamVidDataset(tmp_path, "train")
    # the listing's order is kept, and files resolve under the root whatever the prefix
    assert ds.files == [(str(tmp_path / "train" / "0001TP_006720.png"), str(tmp_path / "trainannot" / "0001TP_006720.png")),
                        (str(tmp_path / "train" / "0001TP_006690.png"), str(tmp_path / "trainannot" / "0001TP_006690.png"))]
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


def test_camvid32_merge(tmp_path: Path) -> None:
    names = sorted(CAMVID32_COLORS)
    assert len(names) == 32 and set(CAMVID32_TO_11) == set(names)
    rgb = np.zeros((4, 8, 3), np.uint8)
    for k, name in enumerate(names):
        rgb[k // 8, k % 8] = CAMVID32_COLORS[name]
    (tmp_path / "label_colors.txt").write_text("".join(
        f"{r} {g} {b}\t\t{n}\n" for n, (r, g, b) in CAMVID32_COLORS.items()))
    (tmp_path / "train").mkdir()
    img = np.zeros((4, 8, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "train" / "0001TP_006690.png"), img)
    _lab(tmp_path / "train_labels" / "0001TP_006690_L.png", rgb)
    ds = CamVidDataset(tmp_path, "train")
    assert ds.files[0][1].endswith("0001TP_006690_L.png")
    mask = ds.read_mask(0)
    got = {name: int(mask[k // 8, k % 8]) for k, name in enumerate(names)}
    idx = CAMVID.names.index
    expected_examples = {
        "Wall": idx("Building"), "Bridge": idx("Building"), "LaneMkgsDriv": idx("Road"),
        "LaneMkgsNonDriv": idx("Road"), "SUVPickupTruck": idx("Car"), "Truck_Bus": idx("Car"),
        "OtherMoving": idx("Car"), "Child": idx("Pedestrian"), "MotorcycleScooter": idx("Bicyclist"),
        "Sidewalk": idx("Pavement"), "Column_Pole": idx("Pole"), "Sky": idx("Sky"), "Void": 255,
    }
    for name, train_id in expected_examples.items():
        assert got[name] == train_id, name
    for name in names:
        target = CAMVID32_TO_11[name]
        assert got[name] == (255 if target is None else idx(target)), name
    for name in CAMVID.names:  # every 11-class name is reachable from its own 32-class colour
        if name not in ("Pavement", "Pole"):  # named Sidewalk and Column_Pole in the 32 classes
            assert got[name] == idx(name)
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
        "/SegNet/CamVid/train/0006R0_f02400.png /SegNet/CamVid/trainannot/0006R0_f02400.png\n")
    ds = CamVidDataset(tmp_path, "train")
    assert ds.files[0][1] == str(tmp_path / "LabeledApproved_full" / "0006R0_f02400_L.png")
    mask = ds.read_mask(0)
    assert (mask[0] == 255).all() and (mask[1:] == CAMVID.names.index("Road")).all()
