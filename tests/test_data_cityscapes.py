"""Cityscapes loader: official layout, the 34-id table against cityscapesscripts, test split rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reseg.config import Config
from reseg.data import build_dataset, collate
from reseg.data.base import DatasetLayoutError, LabelsUnavailableError, LabelValueError, MissingPairError
from reseg.data.cityscapes import CityscapesDataset
from reseg.data.classes import CITYSCAPES, CITYSCAPES_ID_TO_TRAIN_ID, CITYSCAPES_LABELS, CITYSCAPES_TRAIN_ID_TO_ID

H, W = 6, 8


def _write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _write_gray(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def make_cityscapes(
    root: Path,
    split: str = "train",
    cities: tuple[str, ...] = ("aachen", "bremen"),
    n: int = 2,
    fmt: str = "labelIds",
    label: np.ndarray | None = None,
    instances: bool = True,
) -> list[str]:
    """Write the official layout (plus the color/polygons files a real download has, which must be ignored)."""
    rng = np.random.default_rng(0)
    stems = []
    for city in cities:
        for k in range(n):
            stem = f"{city}_{k:06d}_000019"
            stems.append(stem)
            _write_rgb(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
            )
            gt = root / "gtFine" / split / city
            lab = label if label is not None else np.full((H, W), 7 if fmt == "labelIds" else 0, np.uint8)
            _write_gray(gt / f"{stem}_gtFine_{fmt}.png", lab)
            _write_rgb(gt / f"{stem}_gtFine_color.png", np.zeros((H, W, 3), np.uint8))
            (gt / f"{stem}_gtFine_polygons.json").write_text("{}")
            if instances:
                _write_gray(gt / f"{stem}_gtFine_instanceIds.png", np.full((H, W), 26000, np.uint16))
    return stems


@pytest.fixture()
def cs_labels(monkeypatch: pytest.MonkeyPatch):
    """cityscapesscripts' label table (numpy >= 2.4 dropped np.in1d, which parts of it still call)."""
    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    return labels


def test_table_matches_cityscapesscripts(cs_labels) -> None:
    ours = {lab.name: lab for lab in CITYSCAPES_LABELS}
    assert len(ours) == len(cs_labels.labels) == 35
    for ref in cs_labels.labels:
        mine = ours[ref.name]
        assert (
            mine.id,
            mine.train_id,
            mine.category,
            mine.category_id,
            mine.has_instances,
            mine.ignore_in_eval,
            mine.color,
        ) == (ref.id, ref.trainId, ref.category, ref.categoryId, ref.hasInstances, ref.ignoreInEval, tuple(ref.color))
    train = sorted((lab for lab in cs_labels.labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    assert CITYSCAPES.names == tuple(lab.name for lab in train)
    assert CITYSCAPES.palette == tuple(tuple(lab.color) for lab in train)
    assert CITYSCAPES.has_instances == tuple(lab.hasInstances for lab in train)
    assert [CITYSCAPES.category_names[c] for c in CITYSCAPES.categories] == [lab.category for lab in train]
    assert tuple(lab.id for lab in train) == CITYSCAPES_TRAIN_ID_TO_ID
    assert CITYSCAPES.names[6:8] == ("traffic light", "traffic sign") and CITYSCAPES.num_classes == 19


def test_every_label_id_maps_as_official(tmp_path: Path, cs_labels) -> None:
    ids = np.array(list(range(34)) + [255] + [7] * (H * W - 35), np.uint8).reshape(H, W)
    make_cityscapes(tmp_path, cities=("aachen",), n=1, label=ids)
    ds = CityscapesDataset(tmp_path, "train")
    mask = ds.read_mask(0)
    for i in range(34):
        ref = cs_labels.id2label[i].trainId
        expected = 255 if ref in (-1, 255) else ref
        assert set(mask[ids == i].tolist()) == {expected}, f"label id {i} ({cs_labels.id2label[i].name})"
    assert (mask[ids == 255] == 255).all()
    lic = cs_labels.name2label["license plate"]
    assert lic.trainId == -1 and CITYSCAPES_ID_TO_TRAIN_ID[255] == 255
    assert set(np.unique(mask).tolist()) == set(range(19)) | {255}


def test_layout_meta_and_tensors(tmp_path: Path) -> None:
    stems = make_cityscapes(tmp_path)
    make_cityscapes(tmp_path, split="val", cities=("frankfurt",), n=1, instances=False)
    ds = CityscapesDataset(tmp_path, "train")
    assert len(ds) == 4 and ds.classes is CITYSCAPES
    assert [Path(p).name for p, _ in ds.files] == [f"{s}_leftImg8bit.png" for s in sorted(stems)]
    assert all(m.endswith("_gtFine_labelIds.png") for _, m in ds.files)
    assert ds.meta[0]["city"] == "aachen" and ds.meta[0]["image_id"] == "aachen_000000_000019"
    assert ds.meta[0]["instance_path"].endswith("aachen_000000_000019_gtFine_instanceIds.png")
    assert Path(ds.meta[0]["instance_path"]).is_file()
    raw = ds[0]
    assert isinstance(raw["image"], np.ndarray) and raw["image"].shape == (H, W, 3)
    assert raw["mask"].dtype == torch.int64 and (raw["mask"] == 0).all()  # id 7 -> road (0)

    val = CityscapesDataset(tmp_path, "val")
    assert val.meta[0]["instance_path"] is None
    batch = collate([val[0], val[0]])
    assert batch["meta"][0]["instance_path"] is None and batch["mask"].shape == (2, H, W)


def test_label_train_ids_accepted(tmp_path: Path) -> None:
    lab = np.array([0, 5, 18, 255] * (H * W // 4), np.uint8).reshape(H, W)
    make_cityscapes(tmp_path, fmt="labelTrainIds", label=lab, cities=("ulm",), n=1)
    for fmt in ("auto", "labelTrainIds"):
        ds = CityscapesDataset(tmp_path, "train", label_format=fmt)
        assert ds.files[0][1].endswith("_gtFine_labelTrainIds.png")
        np.testing.assert_array_equal(ds.read_mask(0), lab)
    with pytest.raises(MissingPairError, match="labelIds"):
        CityscapesDataset(tmp_path, "train", label_format="labelIds")
    bad = lab.copy()
    bad[0, 0] = 19
    make_cityscapes(tmp_path, fmt="labelTrainIds", label=bad, cities=("ulm",), n=1)
    with pytest.raises(LabelValueError, match=r"labelTrainIds\.png.*19"):
        CityscapesDataset(tmp_path, "train").read_mask(0)


def test_unknown_label_id_is_an_error(tmp_path: Path) -> None:
    lab = np.full((H, W), 7, np.uint8)
    lab[1, 1], lab[2, 2] = 34, 200
    make_cityscapes(tmp_path, label=lab, cities=("ulm",), n=1)
    with pytest.raises(LabelValueError) as err:
        CityscapesDataset(tmp_path, "train")[0]
    assert "ulm_000000_000019_gtFine_labelIds.png" in str(err.value) and "34, 200" in str(err.value)


def test_test_split_needs_no_labels_for_prediction(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, split="test", cities=("berlin",), n=2)
    with pytest.raises(LabelsUnavailableError, match="no public labels"):
        CityscapesDataset(tmp_path, "test")
    cfg = Config()
    cfg.data.dataset, cfg.data.root = "cityscapes", str(tmp_path)
    with pytest.raises(LabelsUnavailableError):
        build_dataset(cfg, "test")
    ds = build_dataset(cfg, "test", require_labels=False)
    assert len(ds) == 2 and all(m is None for _, m in ds.files)
    sample = ds[1]
    assert "mask" not in sample and sample["image"].shape == (3, H, W) and sample["mask_path"] is None
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, H, W) and batch["mask_path"] == [None, None]


def test_missing_root_and_split_show_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        CityscapesDataset(tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere") in str(err.value) and "leftImg8bit/{train,val,test}" in str(err.value)
    make_cityscapes(tmp_path, cities=("ulm",), n=1)
    with pytest.raises(DatasetLayoutError) as err:
        CityscapesDataset(tmp_path, "val")
    assert str(tmp_path / "leftImg8bit" / "val") in str(err.value) and "holds: train" in str(err.value)


def test_missing_pairs_name_the_files(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities=("ulm",), n=2)
    gt = tmp_path / "gtFine" / "train" / "ulm"
    (gt / "ulm_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(MissingPairError) as err:
        CityscapesDataset(tmp_path, "train")
    assert "ulm_000001_000019_leftImg8bit.png" in str(err.value)
    ds = CityscapesDataset(tmp_path, "train", skip_bad_samples=True)
    assert len(ds) == 1
    _write_gray(gt / "ulm_000005_000019_gtFine_labelIds.png", np.zeros((H, W), np.uint8))
    with pytest.raises(MissingPairError) as err:
        CityscapesDataset(tmp_path, "train")
    assert "ulm_000005_000019_gtFine_labelIds.png" in str(err.value) and "without an image" in str(err.value)
