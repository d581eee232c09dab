"""reseg.metrics against hand-computed values, torchmetrics and the official Cityscapes evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cityscapes_fixture import (
    label_to_train_lut,
    make_cityscapes_fixture,
    noisy_predictions,
    official_labels,
    run_official,
    write_predictions,
)

from reseg.errors import ResegError
from reseg.metrics import (
    ConfusionMatrix,
    InstanceIoU,
    InstanceTables,
    category_iou,
    cityscapes_instance_tables,
    confusion,
)


def test_hand_computed_scores():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    assert cm.mat.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    r = cm.compute()
    iou = r["IoU"].tolist()
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])  # class 3 absent from truth and prediction
    assert r["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["Acc"].tolist()[:3] == pytest.approx([1 / 2, 1, 1 / 2])
    assert r["mAcc"] == pytest.approx(2 / 3)
    assert r["aAcc"] == pytest.approx(4 / 6)
    assert r["fwIoU"] == pytest.approx((2 * 1 / 3 + 2 * 2 / 3 + 2 * 1 / 2) / 6)
    assert r["Dice"].tolist()[:3] == pytest.approx([2 / 4, 4 / 5, 2 / 3])


def test_class_only_predicted_has_iou_zero_and_no_accuracy():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2]), torch.tensor([0, 0]))
    r = cm.compute()
    assert r["IoU"][2] == 0.0 and math.isnan(float(r["Acc"][2]))
    assert math.isnan(float(r["IoU"][1]))
    assert r["mIoU"] == pytest.approx((0.5 + 0.0) / 2)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.int32])
def test_matches_torchmetrics_on_random_data(dtype):
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    C = 7
    target = torch.randint(0, C, (3, 24, 32), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    target[target == 5] = 4  # class 5 only ever predicted
    pred = torch.randint(0, C, (3, 24, 32), generator=g)
    pred[pred == 6] = 0  # class 6 never predicted but in truth
    cm = ConfusionMatrix(C)
    for p, t in zip(pred, target):
        cm.update(p.to(dtype), t.to(dtype))
    ours = cm.compute()
    ref = MulticlassJaccardIndex(num_classes=C, ignore_index=255, average=None)(pred, target).double()
    present = ~torch.isnan(ours["IoU"])
    assert present.all()  # every class is in truth or prediction here
    torch.testing.assert_close(ours["IoU"][present], ref[present], rtol=0, atol=1e-6)
    assert ours["mIoU"] == pytest.approx(float(ref[present].mean()), abs=1e-6)


def test_absent_classes_are_nan_and_left_out_of_means():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (40, 40), generator=g)
    pred = torch.randint(0, 3, (40, 40), generator=g)
    cm = ConfusionMatrix(6)  # classes 3, 4, 5 never appear
    cm.update(pred, target)
    r = cm.compute()
    assert torch.isnan(r["IoU"][3:]).all() and torch.isnan(r["Acc"][3:]).all()
    ref = MulticlassJaccardIndex(num_classes=3, ignore_index=255, average="macro")(pred, target)
    assert r["mIoU"] == pytest.approx(float(ref), abs=1e-6)
    assert not math.isnan(r["mAcc"])


def test_all_ignore_image_changes_nothing():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 4, (16, 16), generator=g)
    pred = torch.randint(0, 4, (16, 16), generator=g)
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    before = cm.mat.clone(), cm.compute()
    batch = cm.update(torch.randint(0, 4, (16, 16), generator=g), torch.full((16, 16), 255))
    assert int(batch.sum()) == 0
    assert torch.equal(cm.mat, before[0])
    assert cm.compute()["mIoU"] == before[1]["mIoU"]


def test_empty_matrix_gives_nan_not_error():
    r = ConfusionMatrix(3).compute()
    assert math.isnan(r["mIoU"]) and math.isnan(r["aAcc"]) and math.isnan(r["fwIoU"])


def test_numpy_input_and_returned_batch_matrix():
    cm = ConfusionMatrix(3)
    b = cm.update(np.array([[0, 1], [2, 2]], np.uint8), np.array([[0, 1], [2, 1]], np.uint8))
    assert b.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    cm.reset()
    assert int(cm.mat.sum()) == 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_bad_values_raise_clear_errors(dtype):
    cm = ConfusionMatrix(4)
    with pytest.raises(ResegError, match=r"label map holds values 7.*outside 0\.\.3.*ignore index 255"):
        cm.update(torch.tensor([0, 1]).to(dtype), torch.tensor([0, 7]).to(dtype))
    with pytest.raises(ResegError, match=r"prediction holds values 4, 9 outside 0\.\.3"):
        cm.update(torch.tensor([4, 9, 0]).to(dtype), torch.tensor([0, 1, 2]).to(dtype))
    with pytest.raises(ResegError, match="shape"):
        cm.update(torch.zeros(2, 3, dtype=dtype), torch.zeros(3, 2, dtype=dtype))
    assert int(cm.mat.sum()) == 0  # nothing half-added
    # an out-of-range prediction on an ignored pixel is not an error (nothing is scored there)
    cm.update(torch.tensor([200, 1]).to(dtype), torch.tensor([255, 1]).to(dtype))
    assert int(cm.mat.sum()) == 1


def test_general_path_negative_values_and_other_ignore_index():
    cm = ConfusionMatrix(3, ignore_index=-1)
    cm.update(torch.tensor([0, 1, 2, 1]), torch.tensor([0, -1, 2, 1]))
    assert cm.mat.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ResegError, match="prediction holds values -3"):
        cm.update(torch.tensor([-3]), torch.tensor([0]))
    with pytest.raises(ResegError, match="label map holds values 300"):
        ConfusionMatrix(3).update(torch.tensor([0]), torch.tensor([300]))


def test_float_input_rejected():
    with pytest.raises(ResegError, match="integers"):
        confusion(torch.zeros(3), torch.zeros(3, dtype=torch.long), 3)


def test_category_iou_groups_rows_and_columns():
    mat = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 4, 6]])
    cats = category_iou(mat, ["a", "a", "b"])
    # category a: tp = 5+1+2+3 = 11, row sum 12, column sum 15 -> 11 / (12 + 15 - 11)
    assert cats["a"] == pytest.approx(11 / 16)
    assert cats["b"] == pytest.approx(6 / (10 + 7 - 6))


# ------------------------------------------------------------------ against the official evaluator


def reference_tables() -> InstanceTables:
    """InstanceTables built from cityscapesscripts' own label list (the reference)."""
    from cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling import args as official_args

    train = sorted((lab for lab in official_labels() if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    return InstanceTables(
        label_to_train=tuple(int(v) for v in label_to_train_lut()[:34]),
        categories=tuple(lab.category for lab in train),
        instance_size=tuple(official_args.avgClassSize[lab.name] if lab.hasInstances else None for lab in train),
    )


def test_reseg_class_table_matches_official_tables():
    ours = cityscapes_instance_tables()
    ref = reference_tables()
    assert ours.label_to_train[:34] == ref.label_to_train
    assert all(v == 255 for v in ours.label_to_train[34:])
    assert ours.categories == ref.categories
    assert ours.instance_size == ref.instance_size
    assert ours.instance_categories() == ["human", "vehicle"]


def test_equals_official_cityscapes_evaluator(tmp_path, monkeypatch):
    samples = make_cityscapes_fixture(tmp_path / "cs", n=3, size=(64, 128))
    preds = noisy_predictions(samples)
    pred_paths = write_predictions(preds, samples, tmp_path / "official_preds", label_ids=True)
    official = run_official(pred_paths, [s["gt"] for s in samples], monkeypatch, tmp_path)

    tables = cityscapes_instance_tables()
    cm = ConfusionMatrix(19)
    inst = InstanceIoU(tables)
    for p, s in zip(preds, samples):
        cm.update(torch.from_numpy(p), torch.from_numpy(s["train_ids"]))
        inst.update(torch.from_numpy(p), torch.from_numpy(s["instance_ids"]))
    r = cm.compute()
    ii = inst.compute(cm.mat)
    cats = category_iou(cm.mat, tables.categories)

    by_train = {lab.trainId: lab.name for lab in official_labels() if 0 <= lab.trainId < 255}

    def same(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6

    for tid, name in by_train.items():
        assert same(float(r["IoU"][tid]), official["classScores"][name]), name
        assert same(float(ii["per_class_iIoU"][tid]), official["classInstScores"][name]), name
    assert math.isnan(float(r["IoU"][16]))  # train: in neither truth nor prediction
    assert same(r["mIoU"], official["averageScoreClasses"])
    assert same(ii["iIoU"], official["averageScoreInstClasses"])
    for cat, value in official["categoryScores"].items():
        if cat == "void":
            assert math.isnan(value) and cat not in cats
        else:
            assert same(cats[cat], value), cat
    assert len(cats) == 7
    assert same(float(np.nanmean(list(cats.values()))), official["averageScoreCategories"])
    assert set(ii["category_iIoU"]) == {"human", "vehicle"}
    for cat, value in official["categoryInstScores"].items():
        if cat in ii["category_iIoU"]:
            assert same(ii["category_iIoU"][cat], value), cat
        else:
            assert math.isnan(value)
    assert same(ii["mean_category_iIoU"], official["averageScoreInstCategories"])
    # guard against a vacuous test: the fixture has instances and imperfect predictions
    assert 0.2 < r["mIoU"] < 0.95 and 0.2 < ii["iIoU"] < 0.95


def test_instance_iou_rejects_unknown_label_ids():
    inst = InstanceIoU(reference_tables())
    with pytest.raises(ResegError, match="label id"):
        inst.update(torch.zeros(1, 2, dtype=torch.uint8), torch.tensor([[26001, 99001]]))


def _two_rank_worker(rank: int, store: str, out: str) -> None:
    import json

    import numpy as np
    import torch.distributed as dist

    from reseg.evaluation import Scorer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        scorer = Scorer(["a", "b", "c"], n_samples=0)
        truth = np.array([[0, 1], [2, 255]], np.uint8)
        pred = np.array([[0, 1], [1, 0]], np.uint8) if rank == 0 else np.array([[2, 1], [2, 2]], np.uint8)
        scorer.add(rank, pred, truth)
        m = scorer.metrics()
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as fh:
        json.dump({"cm": m["confusion_matrix"], "n": m["num_images"]}, fh)


def test_all_reduce_sums_two_gloo_processes(tmp_path):
    """Two ranks each score one image; both end with the matrix of both images (the naive sum)."""
    import json

    import torch.multiprocessing as mp

    out = tmp_path / "rank"
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    naive = np.zeros((3, 3), np.int64)
    truth = np.array([0, 1, 2])
    for pred in (np.array([0, 1, 1]), np.array([2, 1, 2])):
        np.add.at(naive, (truth, pred), 1)
    for rank in (0, 1):
        got = json.loads(out.with_name(f"rank.{rank}").read_text())
        assert got["cm"] == naive.tolist() and got["n"] == 2
