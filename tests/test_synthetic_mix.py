"""Joint training with the generated streets (data.synthetic_mix): scenes of a synthetic set join a CamVid
training split as a share of it, after the sequence-disjoint split is made, in what the trainer reads and
nowhere else (validation, int8 calibration and the dataset as build_dataset names it stay real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reseg.backends import Calibration
from reseg.config import ConfigError, load_config
from reseg.data import build_dataset, build_training_set
from reseg.data.base import DatasetError
from reseg.engine.distributed import DistInfo
from reseg.engine.parts import build_data, run_context
from tests.cityscapes_fixture import make_cityscapes_fixture
from tests.test_data_camvid import make_segnet

TRAIN = ("0001TP_006690", "0001TP_006720", "0006R0_f00930", "0006R0_f00960", "0016E5_00390", "0016E5_00420")
VAL = ("0016E5_07959", "0016E5_07961")
SCENES = tuple(f"synthetic_{i:05d}" for i in range(8))


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    camvid, scenes = tmp_path / "camvid", tmp_path / "scenes"
    make_segnet(camvid, "train", TRAIN)
    make_segnet(camvid, "val", VAL)
    make_segnet(scenes, "train", SCENES)
    return camvid, scenes


def _names(dataset) -> list[str]:
    return [Path(img).stem for img, _ in dataset.files]


def _cfg(camvid: Path, scenes: Path, *overrides: str):
    return load_config(
        None, ["data.dataset=camvid", f"data.root={camvid}", f"data.synthetic_mix_root={scenes}", *overrides]
    )


def test_scenes_join_the_training_split_as_the_share_asked(roots: tuple[Path, Path]) -> None:
    cfg = _cfg(*roots, "data.synthetic_mix=0.25")
    train = build_training_set(cfg, transform=None)
    # 6 frames are three quarters: 2 scenes, the first and the last of the 8 (spread over the set)
    assert _names(train) == [*TRAIN, "synthetic_00000", "synthetic_00007"]
    assert "2 generated scenes" in train.split
    sample = train[len(train) - 1]
    assert sample["mask"].shape == sample["image"].shape[:2] and int(sample["mask"].max()) <= 255
    assert _names(build_dataset(cfg, "val", transform=None)) == list(VAL)  # validation stays real


def test_the_share_counts_the_frames_left_after_the_sequence_split(roots: tuple[Path, Path]) -> None:
    cfg = _cfg(*roots, "data.val_sequences=[0006R0]", "data.synthetic_mix=0.5")
    train = build_training_set(cfg, transform=None)
    real = [n for n in _names(train) if not n.startswith("synthetic_")]
    scenes = [n for n in _names(train) if n.startswith("synthetic_")]
    assert sorted(real) == sorted(set(TRAIN + VAL) - {"0006R0_f00930", "0006R0_f00960"})
    assert len(scenes) == len(real) == 6 and len(set(scenes)) == 6  # half of the set, no scene twice
    assert all(not n.startswith("synthetic_") for n in _names(build_dataset(cfg, "val", transform=None)))


def test_off_by_default(roots: tuple[Path, Path]) -> None:
    cfg = _cfg(*roots)
    assert _names(build_training_set(cfg, transform=None)) == list(TRAIN)


def test_too_few_scenes_name_the_folder_and_the_count(roots: tuple[Path, Path]) -> None:
    cfg = _cfg(*roots, "data.synthetic_mix=0.75")  # 18 scenes wanted, 8 there
    with pytest.raises(DatasetError, match=r"needs 18 generated scenes .* holds 8.*data.synthetic_mix_root"):
        build_training_set(cfg, transform=None)


def test_a_missing_folder_is_generated_only_for_training(roots: tuple[Path, Path], tmp_path: Path) -> None:
    camvid, _ = roots
    fresh = tmp_path / "fresh"
    cfg = _cfg(camvid, fresh, "data.synthetic_mix=0.25", "data.synthetic_sizes=[3,0,0]", "data.synthetic_size=[48,64]")
    with pytest.raises(DatasetError, match="data.synthetic_mix_root"):
        build_training_set(cfg, transform=None)
    assert not fresh.exists()
    train = build_training_set(cfg, transform=None, generate=True)
    assert len(train) == len(TRAIN) + 2 and len(list((fresh / "train").glob("*.png"))) == 3
    mask = train[len(train) - 1]["mask"]
    assert mask.shape == (48, 64) and set(np.unique(mask.numpy())) <= set(range(11)) | {255}


def test_datasets_of_other_classes_refuse_it(roots: tuple[Path, Path], tmp_path: Path) -> None:
    camvid, scenes = roots
    with pytest.raises(DatasetError, match=r"data.synthetic_mix=0.25 .*'camvid32'"):
        build_training_set(_cfg(camvid, scenes, "data.synthetic_mix=0.25", "data.label_format=camvid32"), None)
    make_cityscapes_fixture(tmp_path / "cs", "train", n=2)
    cfg = load_config(
        None,
        ["data.dataset=cityscapes", f"data.root={tmp_path / 'cs'}", "data.synthetic_mix=0.25"]
        + [f"data.synthetic_mix_root={scenes}"],
    )
    with pytest.raises(DatasetError, match=r"data.synthetic_mix=0.25 .*'cityscapes'"):
        build_training_set(cfg, transform=None)


def test_only_the_trainer_reads_the_scenes(roots: tuple[Path, Path], tmp_path: Path) -> None:
    camvid, scenes = roots
    cfg = _cfg(camvid, scenes, "data.synthetic_mix=0.25")
    assert _names(build_dataset(cfg, "train", transform=None)) == list(TRAIN)  # the split as named: real frames
    assert len(Calibration.from_training_split(cfg, count=100).load()) == len(TRAIN)  # int8 calibrates on them
    # a checkpoint's config whose generated folder is gone still calibrates on the real frames
    gone = _cfg(camvid, tmp_path / "gone", "data.synthetic_mix=0.25")
    assert len(Calibration.from_training_split(gone, count=100).load()) == len(TRAIN)


def test_the_trainer_builds_the_joint_set(roots: tuple[Path, Path]) -> None:
    cfg = _cfg(*roots, "data.synthetic_mix=0.25", "data.num_workers=0", "data.batch_size=2")
    data = build_data(cfg, run_context(cfg, DistInfo(), torch.device("cpu")))
    assert len(data.train_set) == len(TRAIN) + 2 and "2 generated scenes" in data.train_set.split
    assert _names(data.val_set) == list(VAL)


@pytest.mark.parametrize("value", ["1", "-0.1", "yes"])
def test_the_share_is_a_fraction_below_one(value: str) -> None:
    with pytest.raises(ConfigError, match="data.synthetic_mix"):
        load_config(None, [f"data.synthetic_mix={value}"])
