"""reseg.report and `reseg compare`: every output file appears, parses and agrees with the metrics."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from reseg.cli import main
from reseg.errors import ResegError
from reseg.metrics import ConfusionMatrix
from reseg.report import compare_markdown, load_runs, metrics_dict, report_markdown, write_report

NAMES = ["road", "car", "sky", "tree"]
PALETTE = [(128, 64, 128), (0, 0, 142), (70, 130, 180), (107, 142, 35)]


def _metrics(seed: int = 0, extra: dict | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 3, (20, 30), generator=g)  # "tree" never appears: NaN
    noise = torch.randint(0, 3, target.shape, generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target, noise)
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    return metrics_dict(cm, NAMES, categories=["flat", "vehicle", "sky", "nature"], info=extra)


def _samples() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(2):
        truth = rng.integers(0, 4, (24, 40)).astype(np.uint8)
        truth[:3] = 255
        pred = np.where(rng.random(truth.shape) < 0.8, truth, 1).astype(np.uint8)
        pred[pred == 255] = 0
        out.append(
            {
                "image": rng.integers(0, 255, (24, 40, 3), dtype=np.uint8),
                "truth": truth,
                "pred": pred,
                "title": f"img{k}",
            }
        )
    return out


def test_write_report_outputs(tmp_path):
    m = _metrics(extra={"dataset": "synthetic", "split": "val", "num_images": 1})
    paths = write_report(tmp_path, m, samples=_samples(), palette=PALETTE, title="test run")
    for name in (
        "metrics.json",
        "per_class.csv",
        "report.md",
        "confusion_matrix.png",
        "per_class_iou.png",
        "samples.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert set(paths) >= {"metrics", "per_class", "report", "confusion_matrix", "per_class_iou", "samples"}

    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU"):
        assert 0.0 <= data[key] <= 1.0
    assert list(data["per_class"]) == NAMES
    assert data["per_class"]["tree"] == {"IoU": None, "Acc": None}
    assert all(0 <= v["IoU"] <= 1 for n, v in data["per_class"].items() if n != "tree")
    assert set(data["category_IoU"]) == {"flat", "vehicle", "sky", "nature"}
    assert data["category_IoU"]["nature"] is None
    assert data["dataset"] == "synthetic" and data["num_images"] == 1

    rows = list(csv.reader((tmp_path / "per_class.csv").read_text().splitlines()))
    assert rows[0][:3] == ["class", "IoU", "Acc"] and len(rows) == 1 + len(NAMES)
    assert float(rows[1][1]) == pytest.approx(data["per_class"]["road"]["IoU"], abs=1e-6)
    assert rows[4][1] == ""

    md = (tmp_path / "report.md").read_text()
    assert "| Class | IoU | Acc |" in md
    assert f"| road | {100 * data['per_class']['road']['IoU']:.2f}% |" in md
    assert "| tree | n/a | n/a |" in md
    assert md.index("| aAcc |") < md.index("| mIoU |") < md.index("| mAcc |")
    assert md.index("| tree |") < md.index("| aAcc |")

    for png in ("confusion_matrix.png", "per_class_iou.png", "samples.png"):
        with Image.open(tmp_path / png) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def test_report_markdown_cityscapes_extras():
    m = _metrics()
    m.update({"iIoU": 0.5, "category_iIoU": {"vehicle": 0.25}, "mean_category_iIoU": 0.25})
    md = report_markdown(m)
    assert "| iIoU | 50.00% |" in md and "| vehicle |" in md and "| 25.00% |" in md


def test_compare_command(tmp_path, capsys):
    a, b = tmp_path / "run_a", tmp_path / "run_b" / "eval_val"
    write_report(a, _metrics(0))
    write_report(b, _metrics(1))
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(tmp_path / "run_b"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Class | run_a | run_b |" in printed and "**mIoU**" in printed
    for name in ("compare.md", "compare.csv", "compare.png"):
        assert (out / name).is_file()
    assert str(out.resolve()) in printed


def test_compare_labels_evaluate_folders_by_their_run(tmp_path):
    """Given <run>/eval_val folders (what `reseg evaluate` writes), the table names the runs."""
    for run, seed in (("reseg_run", 0), ("unet_run", 1)):
        write_report(tmp_path / run / "eval_val", _metrics(seed))
    write_report(tmp_path / "reseg_run" / "eval_test", _metrics(2))
    labels = [
        label
        for label, _ in load_runs(
            [
                tmp_path / "reseg_run" / "eval_val",
                tmp_path / "unet_run" / "eval_val",
                tmp_path / "reseg_run" / "eval_test" / "metrics.json",
            ]
        )
    ]
    assert labels == ["reseg_run", "unet_run", "reseg_run (2)"]


def test_compare_labels_option_names_the_runs_and_rejects_a_wrong_count(tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 1)):
        write_report(tmp_path / name, _metrics(seed))
    out = tmp_path / "cmp"
    assert (
        main(
            ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--labels", "ReSeg skip", "U-Net"]
        )
        == 0
    )
    assert (out / "compare.md").read_text().splitlines()[0].startswith("| Class | ReSeg skip | U-Net |")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "only-one"]) != 0
    assert "--labels got 1 names for 2 runs" in capsys.readouterr().err


def test_compare_keeps_the_name_of_an_evaluation_folder_the_user_chose(tmp_path):
    """`reseg evaluate --out runs/eval_unet` folders side by side are named by themselves, not all 'runs'."""
    for name, seed in (("eval_reseg_skip", 0), ("eval_unet", 1)):
        write_report(tmp_path / "runs" / name, _metrics(seed))
    labels = [label for label, _ in load_runs([tmp_path / "runs" / "eval_reseg_skip", tmp_path / "runs" / "eval_unet"])]
    assert labels == ["eval_reseg_skip", "eval_unet"]


def test_compare_marks_best_and_handles_missing_classes(tmp_path):
    m1 = {"mIoU": 0.5, "per_class": {"a": {"IoU": 0.4}, "b": {"IoU": None}}}
    m2 = {"mIoU": 0.6, "per_class": {"a": {"IoU": 0.3}, "c": {"IoU": 0.9}}}
    table = compare_markdown([("x", m1), ("y", m2)])
    assert "| a | **40.00%** | 30.00% |" in table
    assert "| b | - | - |" in table and "| c | - | 90.00% |" in table
    assert "| **mIoU** | 50.00% | **60.00%** |" in table


def test_compare_bad_inputs(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(Exception, match="not a reseg metrics.json"):
        load_runs([bad])


def test_compare_reads_a_training_log(tmp_path):
    run = tmp_path / "train_run"
    run.mkdir()
    recs = [
        {"type": "train", "iter": 1, "loss": 1.0},
        {
            "type": "val",
            "iter": 2,
            "mIoU": 0.3,
            "mAcc": 0.4,
            "aAcc": 0.5,
            "fwIoU": 0.2,
            "IoU": {"a": 0.2, "b": 0.4},
            "Acc": {"a": 0.3, "b": 0.5},
        },
        {
            "type": "val",
            "iter": 4,
            "mIoU": 0.5,
            "mAcc": 0.6,
            "aAcc": 0.7,
            "fwIoU": 0.4,
            "IoU": {"a": 0.6, "b": None},
            "Acc": {"a": 0.7, "b": None},
        },
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ((label, m),) = load_runs([run])
    assert label == "train_run" and m["mIoU"] == 0.5 and m["iteration"] == 4
    assert m["per_class"] == {"a": {"IoU": 0.6, "Acc": 0.7}, "b": {"IoU": None, "Acc": None}}


def test_compare_reads_old_and_new_training_logs(tmp_path, capsys):
    """metrics.jsonl of earlier runs kept IoU {name: v}; current ones keep the metrics.json record."""
    old, new = tmp_path / "old_run", tmp_path / "new_run"
    old.mkdir()
    new.mkdir()
    old_recs = [
        {"type": "train", "iter": 1, "loss": 1.0},
        {"type": "val", "iter": 2, "mIoU": 0.25, "IoU": {"a": 0.2, "b": 0.3}, "Acc": {"a": 0.5, "b": 0.6}},
        {"type": "val", "iter": 4, "mIoU": 0.5, "IoU": {"a": 0.4, "b": 0.6}, "Acc": {"a": 0.7, "b": 0.8}},
    ]
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_recs))
    new_rec = {
        "type": "val",
        "iter": 3,
        "mIoU": 0.75,
        "per_class": {"a": {"IoU": 0.7, "Acc": 0.9}, "b": {"IoU": 0.8, "Acc": None}},
    }
    (new / "metrics.jsonl").write_text(json.dumps(new_rec) + "\n" + '{"type": "val", "mI')  # torn last line
    runs = dict(load_runs([old, new]))
    assert runs["old_run"]["per_class"] == {"a": {"IoU": 0.4, "Acc": 0.7}, "b": {"IoU": 0.6, "Acc": 0.8}}
    assert runs["old_run"]["iteration"] == 4 and runs["old_run"]["mIoU"] == 0.5
    assert runs["new_run"]["per_class"] == new_rec["per_class"] and runs["new_run"]["iteration"] == 3
    out = tmp_path / "cmp"
    assert main(["compare", str(old), str(new), "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert "| a | 40.00% | **70.00%** |" in table and "| **mIoU** | 50.00% | **75.00%** |" in table
    assert "40.00%" in capsys.readouterr().out
    assert not list(out.glob(".*partial*"))  # atomic writes leave no temporary files


def test_one_unit_fractions_in_files_percent_for_people(tmp_path):
    from reseg.report import percent, scalars, summary_line

    m = _metrics()
    assert percent(0.4512) == "45.12%" and percent(None) == "n/a" and percent(float("nan"), missing="-") == "-"
    line = summary_line(m)
    assert f"mIoU {100 * m['mIoU']:.2f}%" in line and "aAcc" in line
    tags = scalars(m)
    assert tags["mIoU"] == m["mIoU"] and tags["IoU/road"] == m["per_class"]["road"]["IoU"]
    assert "IoU/tree" not in tags  # a class never seen has no value
    write_report(tmp_path, m)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mIoU"] == m["mIoU"] <= 1.0
    assert f"| mIoU | {100 * m['mIoU']:.2f}% |" in (tmp_path / "report.md").read_text()


def test_report_into_an_existing_file_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResegError, match="existing file"):
        write_report(blocker, _metrics())
    assert blocker.read_text() == "x"
