"""Sequence-disjoint validation (data.val_sequences / data.train_sequences): frames chosen by file-name prefix
from the train and val splits together, as CamVid's unseen-drive protocol needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reseg.config import ConfigError, load_config
from reseg.data import build_dataset
from reseg.data.base import DatasetError
from tests.test_data_camvid import make_segnet

TRAIN = ("0001TP_006690", "0001TP_006720", "0006R0_f00930", "0006R0_f00960", "0016E5_00390", "0016E5_00420")
VAL = ("0016E5_07959", "0016E5_07961")
TEST = ("Seq05VD_f00000",)


@pytest.fixture()
def camvid(tmp_path: Path) -> Path:
    make_segnet(tmp_path, "train", TRAIN)
    make_segnet(tmp_path, "val", VAL)
    make_segnet(tmp_path, "test", TEST)
    return tmp_path


def _names(dataset) -> list[str]:
    return sorted(Path(img).stem for img, _ in dataset.files)


def _cfg(root: Path, *overrides: str):
    return load_config(None, ["data.dataset=camvid", f"data.root={root}", *overrides])


def test_an_unseen_drive_validates_and_everything_else_trains(camvid: Path) -> None:
    cfg = _cfg(camvid, "data.val_sequences=[0006R0]")
    train, val = build_dataset(cfg, "train", transform=None), build_dataset(cfg, "val", transform=None)
    assert _names(val) == ["0006R0_f00930", "0006R0_f00960"]
    assert _names(train) == sorted(set(TRAIN + VAL) - set(_names(val)))  # val's 0016E5 frames train too
    assert _names(build_dataset(cfg, "test", transform=None)) == list(TEST)  # other splits are left alone
    assert train[0]["mask"] is not None and "train+val" in val.split


def test_train_sequences_choose_what_trains(camvid: Path) -> None:
    cfg = _cfg(camvid, "data.val_sequences=[0006R0]", "data.train_sequences=[0001TP]")
    assert _names(build_dataset(cfg, "train", transform=None)) == ["0001TP_006690", "0001TP_006720"]
    cfg = _cfg(camvid, "data.train_sequences=[0016E5]")  # alone: a subset of the train split, val as it is
    assert _names(build_dataset(cfg, "train", transform=None)) == ["0016E5_00390", "0016E5_00420"]
    assert _names(build_dataset(cfg, "val", transform=None)) == list(VAL)


def test_a_prefix_matching_no_frame_names_the_key_and_the_sequences(camvid: Path) -> None:
    cfg = _cfg(camvid, "data.val_sequences=[0007XX]")
    with pytest.raises(DatasetError, match=r"data.val_sequences: .*'0007XX'.*0001TP, 0006R0, 0016E5"):
        build_dataset(cfg, "val", transform=None)


def test_a_sequence_cannot_both_train_and_validate(camvid: Path) -> None:
    with pytest.raises(ConfigError, match="both list \\['0006R0'\\]"):
        _cfg(camvid, "data.val_sequences=[0006R0]", "data.train_sequences=[0006R0, 0001TP]")
    with pytest.raises(ConfigError, match="data.val_sequences"):
        _cfg(camvid, "data.val_sequences=0006R0")
