"""Every bad input the issue lists raises a ResegError that names the file(s) and what was expected."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from reseg.cli import main
from reseg.config import Config
from reseg.data import build_dataset
from reseg.data.base import (
    DatasetLayoutError,
    LabelValueError,
    MissingPairError,
    SizeMismatchError,
    UnreadableImageError,
)
from reseg.data.camvid import CamVidDataset
from reseg.data.folder import FolderDataset
from reseg.errors import ResegError

H, W = 8, 12


def _img(path: Path, h: int = H, w: int = W, ext: str = ".png") -> Path:
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def _lab(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def _camvid(root: Path, names: tuple[str, ...] = ("a", "b", "c")) -> None:
    for n in names:
        _img(root / "train" / n)
        _lab(root / "trainannot" / f"{n}.png", np.full((H, W), 3, np.uint8))


@pytest.mark.parametrize("dataset", ["camvid", "cityscapes", "folder"])
def test_missing_root_names_path_and_layout(tmp_path: Path, dataset: str) -> None:
    cfg = Config()
    cfg.data.dataset, cfg.data.root = dataset, str(tmp_path / "no_such_dir")
    with pytest.raises(DatasetLayoutError) as err:
        build_dataset(cfg, "train")
    msg = str(err.value)
    assert str(tmp_path / "no_such_dir") + " does not exist" in msg and "expected" in msg and "layout" in msg


@pytest.mark.parametrize("dataset", ["camvid", "cityscapes", "folder", "synthetic"])
def test_a_file_given_as_root_is_called_a_file(tmp_path: Path, dataset: str, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "camvid.zip"
    file.write_bytes(b"PK")
    cfg = Config()
    cfg.data.dataset, cfg.data.root = dataset, str(file)
    with pytest.raises(ResegError) as err:
        build_dataset(cfg, "train", generate=True) if dataset == "synthetic" else build_dataset(cfg, "train")
    msg = str(err.value)
    assert f"{file} is a file, not a folder" in msg and "does not exist" not in msg, msg
    assert file.read_bytes() == b"PK"  # the user's file is untouched
    assert main(["evaluate", "--preds", str(tmp_path), "--dataset", dataset, "--data-root", str(file)]) == 2
    assert f"{file} is a file, not a folder" in capsys.readouterr().err


def test_wrong_layout_names_path_and_layout(tmp_path: Path) -> None:
    _img(tmp_path / "pictures" / "x")  # a folder of images, nothing in the CamVid layout
    with pytest.raises(DatasetLayoutError) as err:
        CamVidDataset(tmp_path, "train")
    msg = str(err.value)
    assert str(tmp_path / "train") in msg and "trainannot" in msg and "train.txt" in msg


def test_cli_prints_error_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["data-stats", "--dataset", "camvid", "--data-root", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err and str(tmp_path / "missing") in err


def test_image_without_label_and_label_without_image(tmp_path: Path) -> None:
    _camvid(tmp_path)
    (tmp_path / "trainannot" / "b.png").unlink()
    with pytest.raises(MissingPairError) as err:
        CamVidDataset(tmp_path, "train")
    assert str(tmp_path / "train" / "b.png") in str(err.value)
    _img(tmp_path / "train" / "b")
    _lab(tmp_path / "trainannot" / "b.png", np.zeros((H, W), np.uint8))
    _lab(tmp_path / "trainannot" / "orphan.png", np.zeros((H, W), np.uint8))
    with pytest.raises(MissingPairError) as err:
        CamVidDataset(tmp_path, "train")
    assert str(tmp_path / "trainannot" / "orphan.png") in str(err.value) and "without an image" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated_png", "truncated_jpg", "garbage", "empty"])
def test_unreadable_image_names_file(tmp_path: Path, damage: str) -> None:
    for n in ("a", "b"):
        _lab(tmp_path / "masks" / f"{n}.png", np.zeros((H, W), np.uint8))
    _img(tmp_path / "images" / "a")
    ext = ".jpg" if damage == "truncated_jpg" else ".png"
    bad = _img(tmp_path / "images" / "b", h=64, w=64, ext=ext)
    data = bad.read_bytes()
    bad.write_bytes({"garbage": b"not an image at all", "empty": b""}.get(damage, data[: len(data) // 2]))
    (tmp_path / "classes.yaml").write_text("names: [bg, fg]\n")
    ds = FolderDataset(tmp_path, "train")
    with pytest.raises(UnreadableImageError) as err:
        ds[1]
    assert str(bad) in str(err.value)


def test_truncated_label_names_file(tmp_path: Path) -> None:
    _camvid(tmp_path, ("a",))
    lab = tmp_path / "trainannot" / "a.png"
    data = lab.read_bytes()
    lab.write_bytes(data[: len(data) - 20])
    with pytest.raises(UnreadableImageError, match="a.png"):
        CamVidDataset(tmp_path, "train")[0]


def test_skip_bad_samples_logs_and_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _camvid(tmp_path)
    bad = tmp_path / "train" / "b.png"
    bad.write_bytes(bad.read_bytes()[:40])
    strict = CamVidDataset(tmp_path, "train")
    with pytest.raises(UnreadableImageError):
        strict[1]
    ds = CamVidDataset(tmp_path, "train", skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="reseg.data"):
        sample = ds[1]
    assert sample["path"] == str(tmp_path / "train" / "c.png")
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    assert [ds[i]["path"] for i in range(3)] == [str(tmp_path / "train" / n) for n in ("a.png", "c.png", "c.png")]
    # a missing pair is skipped too when asked
    (tmp_path / "trainannot" / "a.png").unlink()
    assert len(CamVidDataset(tmp_path, "train", skip_bad_samples=True)) == 2


def test_label_values_out_of_range_name_file_and_values(tmp_path: Path) -> None:
    _camvid(tmp_path, ("a",))
    arr = np.full((H, W), 3, np.uint8)
    arr[0, :3] = [12, 40, 254]
    _lab(tmp_path / "trainannot" / "a.png", arr)
    with pytest.raises(LabelValueError) as err:
        CamVidDataset(tmp_path, "train")[0]
    msg = str(err.value)
    assert str(tmp_path / "trainannot" / "a.png") in msg and "12, 40, 254" in msg and "0..10" in msg


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    _camvid(tmp_path, ("a",))
    _lab(tmp_path / "trainannot" / "a.png", np.zeros((H + 2, W), np.uint8))
    with pytest.raises(SizeMismatchError) as err:
        CamVidDataset(tmp_path, "train")[0]
    msg = str(err.value)
    assert str(tmp_path / "train" / "a.png") in msg and str(tmp_path / "trainannot" / "a.png") in msg
    assert f"{W}x{H}" in msg and f"{W}x{H + 2}" in msg


def test_errors_are_reseg_errors() -> None:
    for cls in (DatasetLayoutError, MissingPairError, UnreadableImageError, LabelValueError, SizeMismatchError):
        assert issubclass(cls, ResegError)


# --------------------------------------------------------------------------- folder dataset


def test_folder_index_masks_with_ignore_value(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _img(tmp_path / "images" / split / "x1", ext=".jpg")
        arr = np.zeros((H, W), np.uint8)
        arr[0, 0], arr[0, 1], arr[0, 2] = 2, 9, 255
        _lab(tmp_path / "masks" / split / "x1.png", arr)
    (tmp_path / "classes.yaml").write_text(
        "names: [background, road, car]\ncolors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]\nignore_index: [9, 255]\n"
    )
    ds = FolderDataset(tmp_path, "val")
    assert ds.classes.names == ("background", "road", "car") and ds.classes.palette[2] == (0, 0, 142)
    mask = ds.read_mask(0)
    assert mask[0, :4].tolist() == [2, 255, 255, 0]
    cfg = Config()
    cfg.data.dataset, cfg.data.root = "folder", str(tmp_path)
    from reseg.data import dataset_classes

    assert dataset_classes(cfg).num_classes == 3 and len(build_dataset(cfg, "train")) == 1
    arr[1, 1] = 3
    _lab(tmp_path / "masks" / "val" / "x1.png", arr)
    with pytest.raises(LabelValueError, match=r"x1\.png.*: 3 .*0\.\.2"):
        ds.read_mask(0)


def test_folder_colour_and_palette_masks(tmp_path: Path) -> None:
    from PIL import Image

    _img(tmp_path / "images" / "a")
    _img(tmp_path / "images" / "b")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:8] = (255, 255, 255)  # the ignore colour
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb).save(tmp_path / "masks" / "a.png")
    pal = Image.fromarray(np.full((H, W), 1, np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "masks" / "b.png")
    (tmp_path / "val.txt").write_text("a\nb.jpg\n")
    (tmp_path / "mine.yml").write_text(
        "classes:\n  - {name: bg, color: [0, 0, 0]}\n  - {name: thing, color: [255, 0, 0]}\nignore_color: [255, 255, 255]\n"
    )
    ds = FolderDataset(tmp_path, "val", classes_file=tmp_path / "mine.yml")
    a = ds.read_mask(0)
    assert (a[:, :4] == 1).all() and (a[:, 4:8] == 255).all() and (a[:, 8:] == 0).all()
    assert (ds.read_mask(1) == 1).all()  # palette PNG: indices, not colours
    (tmp_path / "bad.yml").write_text("names: [a, b]\ncolours: [[1, 2, 3]]\n")
    with pytest.raises(ResegError, match="bad.yml.*unknown key.*colours"):
        FolderDataset(tmp_path, "val", classes_file=tmp_path / "bad.yml")
    with pytest.raises(DatasetLayoutError, match="classes.yaml"):
        FolderDataset(tmp_path, "val")


def test_folder_pairs_matched_by_stem(tmp_path: Path) -> None:
    (tmp_path / "classes.yaml").write_text("names: [a, b]\n")
    _img(tmp_path / "train" / "images" / "p", ext=".jpg")
    _img(tmp_path / "train" / "images" / "q")
    _lab(tmp_path / "train" / "masks" / "p.png", np.zeros((H, W), np.uint8))
    with pytest.raises(MissingPairError) as err:
        FolderDataset(tmp_path, "train")
    assert str(tmp_path / "train" / "images" / "q.png") in str(err.value)
    _lab(tmp_path / "train" / "masks" / "q.png", np.zeros((H, W), np.uint8))
    ds = FolderDataset(tmp_path, "train")
    assert [Path(i).name for i, _ in ds.files] == ["p.jpg", "q.png"]
    with pytest.raises(DatasetLayoutError, match="split 'val' not found"):
        FolderDataset(tmp_path, "val")


def test_classes_file_not_utf8_or_empty_is_a_config_error(tmp_path: Path) -> None:
    from reseg.config import ConfigError
    from reseg.data.folder import load_folder_classes

    latin = tmp_path / "classes.yaml"
    latin.write_bytes("names: [road, caf\xe9]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"classes file .*classes.yaml is not UTF-8"):
        load_folder_classes(latin)
    latin.write_text("")
    with pytest.raises(ConfigError, match=r"classes file .*classes.yaml is empty"):
        load_folder_classes(latin)
    latin.write_text("names: [road\n")
    with pytest.raises(ConfigError, match=r"classes file .*classes.yaml is not valid YAML"):
        load_folder_classes(latin)
    latin.write_text("names: [road, car]\n", encoding="utf-8")
    assert load_folder_classes(latin) is not None


def test_data_stats_set_keeps_every_override(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--set a=1 --set b=2` applies both (it used to keep only the last flag)."""
    rc = main(
        [
            "data-stats",
            "--dataset",
            "camvid",
            "--data-root",
            str(tmp_path / "missing"),
            "--set",
            "data.num_workers=-3",
            "--set",
            "data.skip_bad_samples=true",
        ]
    )
    assert rc == 2 and "data.num_workers" in capsys.readouterr().err
    rc = main(["data-stats", "--set", "data.num_workers=-3", "data.skip_bad_samples=true"])
    assert rc == 2 and "data.num_workers" in capsys.readouterr().err
