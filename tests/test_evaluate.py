"""`reseg evaluate` end to end: official Cityscapes numbers, checkpoint runs, and every bad-input error."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapes_fixture import (
    make_cityscapes_fixture,
    noisy_predictions,
    official_labels,
    run_official,
    write_predictions,
)
from PIL import Image

from reseg.cli import main

REPORT_FILES = (
    "metrics.json",
    "per_class.csv",
    "report.md",
    "confusion_matrix.png",
    "per_class_iou.png",
    "samples.png",
)


def _evaluate(*argv: str) -> int:
    return main(["evaluate", *argv, "--workers", "0"])


def _same(a, b) -> bool:
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6


def _assert_matches_official(m: dict, official: dict) -> None:
    by_train = {lab.trainId: lab.name for lab in official_labels() if 0 <= lab.trainId < 255}
    assert list(m["per_class"]) == [by_train[i] for i in range(19)]
    for name, s in m["per_class"].items():
        assert _same(s["IoU"], official["classScores"][name]), name
    assert _same(m["mIoU"], official["averageScoreClasses"])
    assert set(m["category_IoU"]) == set(official["categoryScores"]) - {"void"}
    for cat, v in m["category_IoU"].items():
        assert _same(v, official["categoryScores"][cat]), cat
    assert _same(m["mean_category_IoU"], official["averageScoreCategories"])
    assert set(m["per_class_iIoU"]) == {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
    for name, v in m["per_class_iIoU"].items():
        assert _same(v, official["classInstScores"][name]), name
    assert _same(m["iIoU"], official["averageScoreInstClasses"])
    for cat, v in m["category_iIoU"].items():
        assert _same(v, official["categoryInstScores"][cat]), cat
    assert _same(m["mean_category_iIoU"], official["averageScoreInstCategories"])


@pytest.fixture()
def cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    samples = make_cityscapes_fixture(root, n=3, size=(64, 128))
    return root, samples


def test_preds_on_cityscapes_match_official_evaluator(cityscapes, tmp_path, monkeypatch, capsys):
    root, samples = cityscapes
    preds = noisy_predictions(samples)
    write_predictions(preds, samples, tmp_path / "preds" / "nested" / "deeper", label_ids=False)
    official_paths = write_predictions(preds, samples, tmp_path / "official", label_ids=True)
    official = run_official(official_paths, [s["gt"] for s in samples], monkeypatch, tmp_path)

    out = tmp_path / "report"
    assert (
        _evaluate(
            "--preds",
            str(tmp_path / "preds"),
            "--dataset",
            "cityscapes",
            "--data-root",
            str(root),
            "--split",
            "val",
            "--out",
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "mIoU" in printed
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    _assert_matches_official(m, official)
    assert m["num_images"] == 3 and m["split"] == "val"
    assert m["per_class"]["train"] == {"IoU": None, "Acc": None}  # absent from truth and prediction


def _write_train_ids(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def test_preds_errors_name_the_files(cityscapes, tmp_path, capsys):
    root, samples = cityscapes
    preds = noisy_predictions(samples)
    folder = tmp_path / "preds"
    paths = write_predictions(preds, samples, folder, label_ids=False)
    args = [
        "--preds",
        str(folder),
        "--dataset",
        "cityscapes",
        "--data-root",
        str(root),
        "--split",
        "val",
        "--out",
        str(tmp_path / "out"),
    ]

    # missing files: listed by name, with the count
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in paths[:2]:
        shutil.move(p, moved)
    assert _evaluate(*args) == 2
    err = capsys.readouterr().err
    assert "2 of 3 prediction(s) missing" in err
    assert f"{samples[0]['stem']}.png" in err and f"{samples[1]['stem']}.png" in err
    for p in paths[:2]:
        shutil.move(moved / Path(p).name, p)

    # wrong size
    _write_train_ids(Path(paths[1]), preds[1][:, :-8])
    assert _evaluate(*args) == 2
    err = capsys.readouterr().err
    assert Path(paths[1]).name in err and "120x64" in err and "128x64" in err

    # values out of range
    bad = preds[1].copy()
    bad[0, 0] = 19
    bad[5, 5] = 200
    _write_train_ids(Path(paths[1]), bad)
    assert _evaluate(*args) == 2
    err = capsys.readouterr().err
    assert Path(paths[1]).name in err and "19, 200" in err and "0..18" in err

    # a colour image instead of train ids
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(paths[1])
    assert _evaluate(*args) == 2
    assert "colour" in capsys.readouterr().err

    # the predictions folder itself missing
    assert _evaluate("--preds", str(tmp_path / "nope"), "--dataset", "cityscapes", "--data-root", str(root)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_split_without_labels_is_an_error(cityscapes, tmp_path, capsys):
    root, _ = cityscapes
    test_dir = root / "leftImg8bit" / "test" / "berlin"
    test_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(test_dir / "berlin_000000_000019_leftImg8bit.png")
    (tmp_path / "preds").mkdir()
    assert (
        _evaluate(
            "--preds", str(tmp_path / "preds"), "--dataset", "cityscapes", "--data-root", str(root), "--split", "test"
        )
        == 2
    )
    assert "no public labels" in capsys.readouterr().err


def test_all_ignore_image_changes_nothing(cityscapes, tmp_path):
    root, samples = cityscapes
    preds = noisy_predictions(samples)
    write_predictions(preds, samples, tmp_path / "preds", label_ids=False)
    common = ["--preds", str(tmp_path / "preds"), "--dataset", "cityscapes", "--data-root", str(root), "--split", "val"]
    assert _evaluate(*common, "--out", str(tmp_path / "a")) == 0
    # add a fourth image whose label is all "unlabeled" (id 0 -> ignore) with an instance-free map
    gt = root / "gtFine" / "val" / "testcity"
    stem = "testcity_000099_000019"
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(
        root / "leftImg8bit" / "val" / "testcity" / f"{stem}_leftImg8bit.png"
    )
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(gt / f"{stem}_gtFine_labelIds.png")
    Image.fromarray(np.zeros((64, 128), np.uint16)).save(gt / f"{stem}_gtFine_instanceIds.png")
    Image.fromarray(np.full((64, 128), 7, np.uint8)).save(tmp_path / "preds" / f"{stem}_leftImg8bit.png")
    assert _evaluate(*common, "--out", str(tmp_path / "b")) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["num_images"] == 4
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU", "per_class", "category_IoU", "iIoU", "confusion_matrix"):
        assert a[key] == b[key], key


# ------------------------------------------------------------------ with a model


def _tiny_checkpoint(path: Path, data: dict, class_names: list[str], seed: int = 0) -> Path:
    from reseg.config import Config
    from reseg.engine.checkpoint import save_checkpoint
    from reseg.models import build_model

    cfg = Config.from_dict(
        {
            "data": {"num_workers": 0, "size_divisor": 16, "synthetic_sizes": [2, 2, 0], **data},
            "model": {
                "name": "reseg",
                "encoder_weights": None,
                "renet_layers": 1,
                "renet_hidden": 4,
                "decoder_filters": [4, 4],
                "num_classes": len(class_names),
            },
        }
    )
    torch.manual_seed(seed)
    model = build_model(cfg)
    save_checkpoint(
        {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": class_names, "epoch": 0, "iteration": 0},
        path,
    )
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from reseg.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, train=2, val=2, test=0, size=(48, 64))
    return root


@pytest.fixture(scope="module")
def synthetic_ckpt(tmp_path_factory):
    """A tiny ReSeg for the synthetic (CamVid-class) data, whose config points at a root that does not exist."""
    from reseg.data.classes import CAMVID

    run = tmp_path_factory.mktemp("run")
    return _tiny_checkpoint(
        run / "best.pt", {"dataset": "synthetic", "root": str(run / "elsewhere")}, list(CAMVID.names)
    )


def test_checkpoint_end_to_end_and_saved_preds_score_the_same(synthetic, synthetic_ckpt, tmp_path, capsys):
    from reseg.data.classes import CAMVID

    ckpt = synthetic_ckpt
    saved = tmp_path / "saved"
    assert (
        _evaluate(
            "--checkpoint", str(ckpt), "--data-root", str(synthetic), "--device", "cpu", "--save-preds", str(saved)
        )
        == 0
    )
    out = ckpt.parent / "eval_val"  # default: beside the checkpoint
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["per_class"]) == list(CAMVID.names)
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU"):
        assert m[key] is None or 0.0 <= m[key] <= 1.0
    assert m["num_images"] == 2 and m["checkpoint"] == str(ckpt)
    assert len(list(saved.glob("*.png"))) == 2

    # the saved predictions, scored without the model, give the same numbers
    assert (
        _evaluate(
            "--preds",
            str(saved),
            "--dataset",
            "synthetic",
            "--data-root",
            str(synthetic),
            "--split",
            "val",
            "--out",
            str(tmp_path / "again"),
        )
        == 0
    )
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["confusion_matrix"] == m["confusion_matrix"] and again["mIoU"] == m["mIoU"]

    # TTA / slide options and --set reach the predictor
    assert (
        _evaluate(
            "--checkpoint",
            str(ckpt),
            "--data-root",
            str(synthetic),
            "--device",
            "cpu",
            "--flip",
            "--mode",
            "slide",
            "--crop",
            "48",
            "64",
            "--stride",
            "24",
            "32",
            "--set",
            "eval.scales=[1.0]",
            "--set",
            "data.size_divisor=8",
            "--samples",
            "0",
            "--out",
            str(tmp_path / "tta"),
        )
        == 0
    )
    tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert "flip" in tta["inference"] and "crop=[48, 64] stride=[24, 32]" in tta["inference"]
    assert not (tmp_path / "tta" / "samples.png").exists()


def test_checkpoint_class_count_differs_from_dataset(synthetic, tmp_path, capsys):
    ckpt = _tiny_checkpoint(
        tmp_path / "five.pt", {"dataset": "synthetic", "root": str(synthetic)}, ["a", "b", "c", "d", "e"]
    )
    assert _evaluate("--checkpoint", str(ckpt), "--device", "cpu", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "predicts 5 classes" in err and "has 11" in err


def test_checkpoint_on_cityscapes_saves_official_format(cityscapes, tmp_path, monkeypatch):
    from reseg.data.classes import CITYSCAPES

    root, samples = cityscapes
    ckpt = _tiny_checkpoint(tmp_path / "cs.pt", {"dataset": "cityscapes", "root": str(root)}, list(CITYSCAPES.names))
    saved = tmp_path / "server"
    out = tmp_path / "out"
    assert (
        _evaluate(
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
            "--save-preds",
            str(saved),
            "--format",
            "cityscapes",
            "--out",
            str(out),
        )
        == 0
    )
    pred_paths = [str(saved / f"{s['stem']}.png") for s in samples]
    ids = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in pred_paths]))
    assert set(ids.tolist()) <= {lab.id for lab in official_labels() if 0 <= lab.trainId < 255}
    official = run_official(pred_paths, [s["gt"] for s in samples], monkeypatch, tmp_path)
    _assert_matches_official(json.loads((out / "metrics.json").read_text()), official)


def test_format_cityscapes_needs_cityscapes(synthetic, synthetic_ckpt, tmp_path, capsys):
    assert (
        _evaluate(
            "--checkpoint",
            str(synthetic_ckpt),
            "--data-root",
            str(synthetic),
            "--device",
            "cpu",
            "--save-preds",
            str(tmp_path / "s"),
            "--format",
            "cityscapes",
            "--out",
            str(tmp_path / "o"),
        )
        == 2
    )
    assert "--format cityscapes needs" in capsys.readouterr().err


def test_preds_needs_dataset_and_root(tmp_path, capsys):
    assert _evaluate("--preds", str(tmp_path)) == 2
    assert "--dataset" in capsys.readouterr().err


def test_preds_on_folder_dataset_with_classes_file(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    (root / "images" / "val").mkdir(parents=True)
    (root / "masks" / "val").mkdir(parents=True)
    preds = tmp_path / "preds"
    preds.mkdir()
    truths = []
    for k in range(2):
        truth = rng.integers(0, 3, (16, 24)).astype(np.uint8)
        truth[0] = 255
        truths.append(truth)
        Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(root / "images" / "val" / f"f{k}.jpg")
        Image.fromarray(truth).save(root / "masks" / "val" / f"f{k}.png")
        Image.fromarray(np.where(truth == 255, 0, truth).astype(np.uint8)).save(preds / f"f{k}.png")
    classes = tmp_path / "classes.yaml"
    classes.write_text("names: [background, road, car, extra]\n")
    out = tmp_path / "out"
    assert (
        _evaluate(
            "--preds",
            str(preds),
            "--dataset",
            "folder",
            "--data-root",
            str(root),
            "--split",
            "val",
            "--classes-file",
            str(classes),
            "--out",
            str(out),
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["per_class"]) == ["background", "road", "car", "extra"]
    assert m["mIoU"] == 1.0 and m["aAcc"] == 1.0
    assert m["per_class"]["extra"] == {"IoU": None, "Acc": None}
    assert "category_IoU" not in m and "iIoU" not in m


# ------------------------------------------------------------------ safety and named errors


def test_save_preds_into_the_dataset_is_refused_before_writing(synthetic, synthetic_ckpt, tmp_path, capsys):
    labels = synthetic / "valannot"
    before = {p.name: p.read_bytes() for p in labels.iterdir()}
    for target in (labels, synthetic, synthetic / "val" / "inner"):
        out = tmp_path / f"o_{target.name}"
        assert (
            _evaluate(
                "--checkpoint",
                str(synthetic_ckpt),
                "--data-root",
                str(synthetic),
                "--device",
                "cpu",
                "--save-preds",
                str(target),
                "--out",
                str(out),
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "--save-preds" in err and str(target) in err
        assert not out.exists()
    assert {p.name: p.read_bytes() for p in labels.iterdir()} == before
    assert not (synthetic / "val" / "inner").exists()


def test_out_that_is_a_file_fails_before_scoring(synthetic, synthetic_ckpt, tmp_path, capsys):
    out = tmp_path / "report"
    out.write_text("not a folder")
    assert (
        _evaluate(
            "--checkpoint", str(synthetic_ckpt), "--data-root", str(synthetic), "--device", "cpu", "--out", str(out)
        )
        == 2
    )
    captured = capsys.readouterr()
    assert "is an existing file" in captured.err and "evaluating" not in captured.err
    assert out.read_text() == "not a folder"


def test_missing_synthetic_root_is_an_error_not_a_new_dataset(synthetic_ckpt, tmp_path, capsys):
    typo = tmp_path / "synthetc"
    assert (
        _evaluate(
            "--checkpoint",
            str(synthetic_ckpt),
            "--data-root",
            str(typo),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "o"),
        )
        == 2
    )
    assert str(typo) in capsys.readouterr().err and not typo.exists()


@pytest.mark.parametrize(
    "override,key", [("eval.scales=abc", "eval.scales"), ("data.size_divisor=abc", "data.size_divisor")]
)
def test_bad_set_values_are_named_errors(synthetic, synthetic_ckpt, tmp_path, capsys, override, key):
    assert (
        _evaluate(
            "--checkpoint",
            str(synthetic_ckpt),
            "--data-root",
            str(synthetic),
            "--device",
            "cpu",
            "--set",
            override,
            "--out",
            str(tmp_path / "o"),
        )
        == 2
    )
    err = capsys.readouterr().err
    assert key in err and "abc" in err and "Traceback" not in err


def test_evaluate_split_matches_a_naive_count_and_shards_add_up(synthetic, synthetic_ckpt):
    """The library call scores full-size labels; scoring two halves and adding the matrices gives the whole."""
    from reseg.config import Config
    from reseg.data import build_dataset
    from reseg.evaluation import evaluate_split
    from reseg.predictor import Predictor

    cfg = Config()
    cfg.data.dataset, cfg.data.root = "synthetic", str(synthetic)
    dataset = build_dataset(cfg, "val", transform=None)
    predictor = Predictor.from_checkpoint(synthetic_ckpt, device="cpu")
    whole = evaluate_split(predictor, dataset, batch_size=2, samples=2)
    naive = np.zeros((11, 11), np.int64)
    for i in range(len(dataset)):
        image, truth = dataset.load_pair(i)
        pred = predictor.predict([image])[0]
        keep = truth != 255
        np.add.at(naive, (truth[keep].astype(int), pred[keep].astype(int)), 1)
    assert whole.metrics["confusion_matrix"] == naive.tolist() and whole.images == len(dataset)
    assert [p[0] for p in whole.picks][0] == 0
    halves = [evaluate_split(predictor, dataset, indices=[i]) for i in range(len(dataset))]
    total = np.sum([np.asarray(h.metrics["confusion_matrix"]) for h in halves], axis=0)
    assert total.tolist() == naive.tolist()
