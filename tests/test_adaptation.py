"""Batch-norm adaptation to new streets (reseg.adaptation): the statistics against torch's own `update_bn`,
modes and momenta restored, and the three ways in (`reseg adapt`, `Segmenter.adapt`, `evaluate --adapt-bn`)
agreeing with each other."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.optim.swa_utils import update_bn
from train_utils import REPO, make_tiny_dataset, one_thread, tiny_checkpoint  # noqa: F401  (one_thread: a fixture)

import reseg
from reseg.adaptation import DEFAULT_WEIGHT, batchnorm_layers, reestimate_batchnorm
from reseg.adaptation_runs import evenly_spaced
from reseg.cli import main
from reseg.engine.checkpoint import load_checkpoint
from reseg.errors import ResegError

NAMES = [f"class{i}" for i in range(11)]  # the synthetic streets' count


def _net(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    drop = nn.Dropout(dropout) if dropout else nn.Identity()
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), drop, nn.Conv2d(6, 5, 3), nn.BatchNorm2d(5)
    )


def _batches(count: int = 3, n: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(n, 3, 10, 12, generator=gen) * 3 + 1 for _ in range(count)]


def _stats(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in batchnorm_layers(model) for t in (m.running_mean, m.running_var)]


def test_one_batch_gives_torch_update_bns_statistics():
    ours, reference = _net(), _net()
    batch = torch.cat(_batches())
    assert reestimate_batchnorm(ours, [batch]) == 12
    update_bn([batch], reference)
    for a, b in zip(_stats(ours), _stats(reference), strict=True):
        torch.testing.assert_close(a, b)


def test_statistics_are_pooled_over_every_image_whatever_the_batch_size():
    """The first batch norm sees the first convolution's outputs: its statistics are their mean and unbiased
    variance over all images, also when they come one at a time (an average of per-batch variances would
    miss how the images differ)."""
    with torch.no_grad():
        conv = torch.cat([_net()[0](x) for x in _batches()])
    for size in (1, 4, 12):
        model = _net()
        pooled = torch.cat(_batches())
        assert reestimate_batchnorm(model, pooled.split(size)) == 12
        torch.testing.assert_close(model[1].running_mean, conv.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model[1].running_var, conv.transpose(0, 1).flatten(1).var(1), rtol=1e-5, atol=1e-5)


def test_a_weight_keeps_that_share_of_the_old_statistics():
    old, full, half = _net(), _net(), _net()
    update_bn(_batches(1), old)
    for model in (full, half):
        model.load_state_dict(old.state_dict())
    reestimate_batchnorm(full, _batches())
    reestimate_batchnorm(half, _batches(), weight=0.25)
    for layer in (1, 5):  # the second layer too: the pass normalises with each batch's own statistics either way
        for name in ("running_mean", "running_var"):
            expected = 0.25 * getattr(full[layer], name) + 0.75 * getattr(old[layer], name)
            torch.testing.assert_close(getattr(half[layer], name), expected)
    for bad in (0, 1.5, -0.1, True, "half"):
        with pytest.raises(ResegError, match=r"weight must be a number in \(0, 1\]"):
            reestimate_batchnorm(half, _batches(1), weight=bad)


def test_dropout_stays_off_and_modes_and_momenta_are_restored():
    model = _net(dropout=0.9).train()
    model[1].momentum = 0.3
    reestimate_batchnorm(model, [torch.cat(_batches())])
    twin = _net()  # the same weights with no dropout: what eval-mode dropout computes
    update_bn([torch.cat(_batches())], twin)
    for a, b in zip(_stats(model), _stats(twin), strict=True):
        torch.testing.assert_close(a, b)
    assert all(m.training for m in model.modules())
    assert model[1].momentum == 0.3 and model[5].momentum == 0.1
    model.eval()
    reestimate_batchnorm(model, _batches())
    assert not any(m.training for m in model.modules())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_a_failure_midway_leaves_the_statistics_as_they_were():
    model = _net()
    update_bn(_batches(1), model)
    before = _stats(model)

    def failing():
        yield _batches(1)[0]
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        reestimate_batchnorm(model, failing())
    with pytest.raises(ResegError, match="no images"):
        reestimate_batchnorm(model, [])
    for a, b in zip(_stats(model), before, strict=True):
        torch.testing.assert_close(a, b)
    assert model[1].momentum == 0.1


def test_a_model_without_batch_norm_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4))
    with pytest.raises(ResegError, match="Sequential.*no batch-norm layers"):
        reestimate_batchnorm(model, _batches(1))


def test_evenly_spaced_covers_start_and_end():
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(7, None) == list(range(7))
    assert evenly_spaced(9, 1) == [0]
    with pytest.raises(ResegError, match="must be >= 1, got 0"):
        evenly_spaced(9, 0)


# ------------------------------------------------------------------ checkpoints, commands and the API


def _tiny_checkpoint(folder: Path, data_root: Path | None = None, *extra: str) -> Path:
    """A tiny ReSeg with batch norms (VGG-16-BN), on the tiny synthetic set at `data_root` when given."""
    data = [f"data.root={data_root}", "data.dataset=synthetic", "data.synthetic_sizes=[4,4,0]"] if data_root else []
    path = folder / "tiny.pt"
    tiny_checkpoint(path, NAMES, "data.size_divisor=16", "model.encoder=vgg16_bn", *data, *extra, optimizer={"step": 3})
    return path


def _images(folder: Path, count: int = 5) -> list[np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [(rng.random((32, 48, 3)) * 120 + 100).astype(np.uint8) for _ in range(count)]  # bright streets
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"frame_{i:02d}.png")
    return images


def test_adapt_command_writes_the_statistics_the_predictor_computes(tmp_path, capsys, one_thread):  # noqa: F811
    ckpt = _tiny_checkpoint(tmp_path)
    images = _images(tmp_path / "frames")
    out = tmp_path / "adapted.pt"
    assert main(["adapt", "--checkpoint", str(ckpt), str(tmp_path / "frames"), "--out", str(out)]) == 0

    original, adapted = load_checkpoint(ckpt), load_checkpoint(out)
    assert adapted["adapted"]["images"] == 5 and "optimizer" not in adapted
    changed = {k for k, v in adapted["model"].items() if not torch.equal(v, original["model"][k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)

    reference = reseg.load(ckpt, device="cpu", backend="eager").predictor  # the same step, by hand
    reestimate_batchnorm(reference.model, reference.network_inputs(images), weight=DEFAULT_WEIGHT)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(adapted["model"][key], value, msg=key)

    capsys.readouterr()
    assert main(["adapt", "--checkpoint", str(ckpt), str(tmp_path / "frames"), "--out", str(out)]) == 2
    assert "adapted.pt exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert main(["adapt", "--checkpoint", str(ckpt), str(tmp_path / "frames"), "--out", str(ckpt)]) == 2
    assert "would write into the checkpoint" in capsys.readouterr().err
    assert load_checkpoint(ckpt)["optimizer"] == {"step": 3}  # the user's file untouched


def test_max_images_spreads_over_the_inputs(tmp_path, one_thread):  # noqa: F811
    ckpt = _tiny_checkpoint(tmp_path)
    _images(tmp_path / "a", 4)
    _images(tmp_path / "b", 4)
    record = reseg.adapt(ckpt, [str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "x.pt", max_images=3)
    assert record["images"] == 3


def test_segmenter_adapt_predicts_like_the_adapted_checkpoint(tmp_path, one_thread):  # noqa: F811
    ckpt = _tiny_checkpoint(tmp_path)
    images = _images(tmp_path / "frames")
    reseg.adapt(ckpt, [str(tmp_path / "frames")], tmp_path / "adapted.pt")
    seg = reseg.load(ckpt, device="cpu")
    before = seg.predict(images, probabilities=True)[1]
    assert seg.adapt(images) == 5
    after = seg.predict(images, probabilities=True)[1]
    expected = reseg.load(tmp_path / "adapted.pt", device="cpu").predict(images, probabilities=True)[1]
    for a, b, c in zip(after, expected, before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.abs(a - c).max() > 1e-3
    masks_before, masks_after = reseg.load(ckpt, device="cpu").predict(images), seg.predict(images)
    assert any(not np.array_equal(a, b) for a, b in zip(masks_before, masks_after, strict=True))
    assert "adapted on 5 images" in seg.predictor.describe()


def test_onnx_backends_ask_for_an_adapted_checkpoint(tmp_path):
    seg = reseg.load(_tiny_checkpoint(tmp_path), device="cpu", backend="onnxruntime")
    with pytest.raises(ResegError, match="reseg adapt"):
        seg.adapt([np.zeros((32, 48, 3), np.uint8)])


def test_evaluate_adapt_bn_scores_like_the_checkpoint_adapted_on_the_split(tmp_path, capsys, one_thread):  # noqa: F811
    root = make_tiny_dataset(tmp_path / "data", train=4, val=4)
    ckpt = _tiny_checkpoint(tmp_path, data_root=root)
    plain = reseg.evaluate(ckpt, out=tmp_path / "plain", workers=0)
    adapted_here = reseg.evaluate(ckpt, out=tmp_path / "here", workers=0, adapt_bn=True)
    reseg.adapt(ckpt, [str(root / "val")], tmp_path / "adapted.pt")
    adapted_first = reseg.evaluate(tmp_path / "adapted.pt", out=tmp_path / "first", workers=0)
    assert adapted_here["mIoU"] == pytest.approx(adapted_first["mIoU"], abs=1e-6)
    assert adapted_here["mIoU"] != pytest.approx(plain["mIoU"], abs=1e-6)
    report = json.loads((tmp_path / "here" / "metrics.json").read_text())
    assert "batch norms adapted on 4 images of the val split" in report["inference"]
    capsys.readouterr()
    args = ["evaluate", "--preds", str(tmp_path), "--dataset", "synthetic", "--data-root", str(root), "--adapt-bn"]
    assert main(args) == 2
    assert "--adapt-bn goes with --checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("self_train", ["", "2"])
def test_adapt_check_script_fills_its_table(tmp_path, self_train):
    """tools/adapt_check.sh on a drive of four frames: every column is a score, and its columns agree with
    the library (the whole drive plain and adapted on itself; with SELF_TRAIN, adapted by `reseg adapt`)."""
    root = make_tiny_dataset(tmp_path / "data", train=4, val=4)
    ckpt = _tiny_checkpoint(tmp_path, root, "data.val_sequences=[val]")
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", SELF_TRAIN=self_train)
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "adapt_check.sh"), str(root), "val", str(ckpt)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = tmp_path / "adapt_check" / (f"self_train_{self_train}" if self_train else "")
    lines = (folder / "table_val.md").read_text().splitlines()
    assert lines[0].startswith("drive val (4 frames; halves of 2 and 2)")
    cells = lines[-1].strip("| ").split(" | ")[1:]
    assert len(cells) == 7 and (cells[5] == "-") == bool(self_train)
    scores = [float(v) for v in cells if v != "-"]
    assert all(0 <= v <= 100 for v in scores)
    plain = reseg.evaluate(ckpt, out=tmp_path / "plain", workers=0)
    assert scores[0] == pytest.approx(100 * plain["mIoU"], abs=0.006)
    if self_train:
        assert load_checkpoint(folder / "adapted_whole.pt")["adapted"]["self_training"]["iterations"] == 2
        adapted = reseg.evaluate(folder / "adapted_whole.pt", out=tmp_path / "adapted", workers=0)
    else:
        adapted = reseg.evaluate(ckpt, out=tmp_path / "adapted", workers=0, adapt_bn=True)
    assert scores[2] == pytest.approx(100 * adapted["mIoU"], abs=0.006)
    late = json.loads((folder / "late" / "metrics.json").read_text())
    assert late["num_images"] == 2


def test_video_adapt_segments_like_the_checkpoint_adapted_on_the_video(tmp_path, capsys, one_thread):  # noqa: F811
    from reseg.commands.video import adapted_predictor
    from reseg.video.writer import write_video

    ckpt = _tiny_checkpoint(tmp_path)
    video = write_video(iter(_images(tmp_path / "frames", 6)), tmp_path / "street.avi", fps=5)
    reseg.adapt(ckpt, [str(video)], tmp_path / "adapted.pt", max_images=3)
    common = ["--device", "cpu", "--no-progress", "--backend", "eager", "--decoder", "opencv"]
    runs = {
        "live": ["--checkpoint", str(ckpt), "--adapt", "3"],
        "kept": ["--checkpoint", str(tmp_path / "adapted.pt")],
        "plain": ["--checkpoint", str(ckpt)],
    }
    for name, extra in runs.items():
        args = ["video", str(video), "--output", str(tmp_path / f"{name}.mp4"), "--masks-dir", str(tmp_path / name)]
        assert main(args + extra + common) == 0
    assert "batch norms adapted on 3 frames of the input" in capsys.readouterr().err
    live, kept = sorted((tmp_path / "live").iterdir()), sorted((tmp_path / "kept").iterdir())
    assert len(live) == 6 and [p.name for p in live] == [p.name for p in kept]
    for a, b in zip(live, kept, strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name
    plain = [np.asarray(Image.open(tmp_path / "plain" / p.name)) for p in live]
    assert any(not np.array_equal(np.asarray(Image.open(a)), b) for a, b in zip(live, plain, strict=True))
    with pytest.raises(ResegError, match="--adapt reads the input twice, which a stream cannot do"):
        adapted_predictor(argparse.Namespace(checkpoint=str(ckpt), input="rtsp://cam", adapt=3, device="cpu"), "stream")
