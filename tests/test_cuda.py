"""CUDA: the same behaviour as on CPU, on a GPU. Skipped where torch sees no CUDA device (CI, laptops).

Covers what only a GPU exercises: cuDNN's GRU against the fused path, AMP in bf16 and in fp16 with a
grad scaler, a CUDA checkpoint read back on the CPU, and the train/evaluate/video/export tools with
--device cuda.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_utils import make_tiny_dataset, read_metrics, run_cli, tiny_config, write_config

from reseg.benchmark import strict_fp32
from reseg.config import Config, load_config
from reseg.data import build_dataset
from reseg.engine import parts as parts_mod
from reseg.engine.checkpoint import load_checkpoint
from reseg.engine.trainer import train
from reseg.evaluation import evaluate_split
from reseg.models import build_model
from reseg.models.renet import ReNet
from reseg.predictor import Predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("synthetic"))


def gpu_config(root: Path, **sections) -> Config:
    train_section = {"device": "cuda", "deterministic": False, **sections.pop("train", {})}
    return Config.from_dict(tiny_config(root, train=train_section, **sections))


def test_renet_cudnn_and_fused_agree_on_cuda() -> None:
    """The fused loops are device-agnostic: on CUDA they must match cuDNN's GRU, outputs and gradients."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 7, 9, device="cuda")
    rnn = ReNet(16, 8, impl="rnn").cuda()
    fused = ReNet(16, 8, impl="fused").cuda()
    fused.load_state_dict(rnn.state_dict())
    assert not rnn.use_fused(x) and ReNet(16, 8).cuda().use_fused(x) is False  # auto: cuDNN on CUDA
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with strict_fp32():  # cuDNN's GRU uses TF32 by default (about 1e-3 off float32), forward and backward
        ya, yb = rnn(xa), fused(xb)
        torch.testing.assert_close(yb.contiguous(), ya, atol=1e-5, rtol=1e-4)
        w = torch.randn_like(ya)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-5, rtol=1e-4)
    for (name, pa), (_, pb) in zip(rnn.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-4, rtol=1e-4, msg=name)
    cpu = ReNet(16, 8).eval()
    cpu.load_state_dict(rnn.state_dict())
    with torch.no_grad(), strict_fp32():  # and the CPU default path gives the same numbers as cuDNN
        torch.testing.assert_close(cpu(x.cpu()).contiguous(), rnn(x).cpu(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_training_on_cuda_with_amp(
    data_root: Path, tmp_path: Path, dtype: torch.dtype | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32, bf16 autocast, and fp16 autocast with a grad scaler: the loss falls, the checkpoint holds the
    scaler's state, and it loads on the CPU."""
    monkeypatch.setattr(parts_mod, "amp_dtype", lambda *a, **k: dtype)
    cfg = gpu_config(
        data_root,
        train={"max_iters": 16, "val_interval": 8, "checkpoint_interval": 8, "amp": dtype is not None},
        optim={"lr": 0.05},
    )
    run = tmp_path / "run"
    result = train(cfg, run, progress=False)
    assert result["status"] == "finished" and result["iteration"] == 16
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses
    state = load_checkpoint(run / "last.pt")  # map_location cpu
    assert all(t.device.type == "cpu" for t in state["model"].values())
    scaler = state["scaler"]
    if dtype == torch.float16:
        assert scaler and scaler["scale"] > 0
    else:
        assert not scaler  # a disabled scaler has an empty state
    # resuming on CUDA continues the count
    cfg.train.max_iters = 18
    more = train(cfg, run, resume=run / "last.pt", progress=False)
    assert more["iteration"] == 18


def test_cuda_checkpoint_scores_the_same_on_cpu(data_root: Path, tmp_path: Path) -> None:
    cfg = gpu_config(data_root, train={"max_iters": 8, "val_interval": 8})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    val = read_metrics(run, "val")[-1]
    predictor = Predictor.from_checkpoint(run / "last.pt", device="cpu")
    metrics = evaluate_split(predictor, build_dataset(cfg, cfg.data.val_split, transform=None)).metrics
    assert metrics["mIoU"] == pytest.approx(val["mIoU"], abs=0.02)
    assert metrics["aAcc"] == pytest.approx(val["aAcc"], abs=0.01)


def test_predictor_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    cfg = load_config(None, ["model.renet_hidden=8", "model.decoder_filters=[8,8]", "model.encoder_weights=null"])
    model = build_model(cfg, 5)
    x = torch.randn(2, 3, 40, 56)
    cpu = Predictor(model, "cpu", num_classes=5).logits(x)
    gpu = Predictor(model, "cuda", num_classes=5)
    with strict_fp32():
        torch.testing.assert_close(gpu.logits(x.cuda()).cpu(), cpu, atol=1e-4, rtol=1e-3)
    for amp in ("bf16", "fp16"):
        fast = Predictor(model, "cuda", num_classes=5, amp=amp, channels_last=True).logits(x.cuda())
        assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
        assert (fast.argmax(1).cpu() == cpu.argmax(1)).float().mean() > 0.95


def test_tools_with_device_cuda(data_root: Path, tmp_path: Path) -> None:
    """train --device cuda --amp, then evaluate, video and export from that checkpoint."""
    cfg_file = write_config(tmp_path / "tiny.yaml", tiny_config(data_root, train={"max_iters": 6, "val_interval": 6}))
    run = tmp_path / "run"
    r = run_cli(
        ["train", str(cfg_file), "--work-dir", str(run), "--device", "cuda", "--amp", "--no-progress"], tmp_path
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cuda" in (run / "train.log").read_text()
    r = run_cli(
        [
            "evaluate",
            "--checkpoint",
            str(run / "last.pt"),
            "--out",
            str(tmp_path / "eval"),
            "--device",
            "cuda",
            "--amp",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert 0 <= json.loads((tmp_path / "eval" / "metrics.json").read_text())["mIoU"] <= 1
    r = run_cli(
        [
            "video",
            str(data_root / "val"),
            "--checkpoint",
            str(run / "last.pt"),
            "--output",
            str(tmp_path / "v.mp4"),
            "--device",
            "cuda",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "v.mp4").stat().st_size > 0
    r = run_cli(
        ["export", "--checkpoint", str(run / "last.pt"), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def test_video_with_a_batch_in_flight_on_cuda_matches_the_one_batch_loop(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the video loop queues batch i+1 before waiting for batch i: the same masks, in the same order."""
    import cv2
    import numpy as np

    import reseg.video.pipeline as pipeline_mod
    from reseg.video import VideoOptions, run_video

    torch.manual_seed(0)
    cfg = load_config(None, ["model.renet_hidden=8", "model.decoder_filters=[8,8]", "model.encoder_weights=null"])
    predictor = Predictor(build_model(cfg, 5), "cuda", num_classes=5)
    frames = sorted((data_root / "val").glob("*.png"))
    assert pipeline_mod.overlap_batches(predictor, VideoOptions())
    masks = {}
    for overlap in (True, False):
        monkeypatch.setattr(pipeline_mod, "overlap_batches", lambda p, o, overlap=overlap: overlap)
        out = tmp_path / f"overlap{overlap}"
        stats = run_video(
            str(data_root / "val"),
            predictor,
            str(out / "v.mp4"),
            VideoOptions(progress=False, batch=3, masks_dir=str(out / "m"), smooth=0.5),
        )
        assert stats["frames_out"] == len(frames)
        masks[overlap] = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((out / "m").rglob("*.png"))]
    assert len(masks[True]) == len(frames) and all(np.array_equal(a, b) for a, b in zip(masks[True], masks[False]))
