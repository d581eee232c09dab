"""Training: a few iterations on a tiny synthetic set; optimizers, schedules, losses, AMP, non-finite loss,
early stopping and refusing an incompatible checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from train_utils import make_tiny_dataset, one_thread, read_metrics, tiny_config  # noqa: F401

from reseg.config import Config, load_config
from reseg.engine import parts as parts_mod
from reseg.engine import trainer as trainer_mod
from reseg.engine.checkpoint import load_checkpoint, save_checkpoint
from reseg.engine.loss import SegLoss
from reseg.engine.optim import RunLength, build_optimizer, build_scheduler, lr_factor
from reseg.engine.trainer import NonFiniteLossError, train
from reseg.errors import ResegError
from reseg.models.base import SegmentationModel
from reseg.runtime import launch_command, machine_description

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("synthetic"))


def cfg_for(root: Path, **sections) -> Config:
    return Config.from_dict(tiny_config(root, **sections))


# ---------------------------------------------------------------- pieces


class TwoPart(SegmentationModel):
    def __init__(self, freeze: bool = False) -> None:
        super().__init__()
        self.num_classes, self.stride = 2, 1
        self.encoder = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 2, 1)
        if freeze:
            self.encoder.requires_grad_(False)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@pytest.mark.parametrize(
    "name,cls",
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("adadelta", torch.optim.Adadelta),
    ],
)
def test_optimizers_and_encoder_lr(name: str, cls: type) -> None:
    cfg = load_config(None, [f"optim.name={name}", "optim.lr=0.1", "optim.encoder_lr_mult=0.1", "optim.nesterov=true"])
    opt = build_optimizer(cfg, TwoPart())
    assert isinstance(opt, cls)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.01, 0.1])
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    frozen = build_optimizer(cfg, TwoPart(freeze=True))
    n_params = sum(len(g["params"]) for g in frozen.param_groups)
    assert n_params == 2  # head weight + bias: the frozen encoder is not in any group


def test_schedules() -> None:
    def f(*sets: str, total: int = 100, ipe: int = 10):
        return lr_factor(load_config(None, ["optim.lr=1.0", *sets]), total, ipe)

    poly = f("sched.name=poly", "sched.power=0.9")
    assert poly(0) == 1.0 and poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    cos = f("sched.name=cosine", "sched.min_lr=0.1")
    assert cos(0) == pytest.approx(1.0) and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    step = f("sched.name=step", "sched.step_size=30", "sched.gamma=0.1")
    assert step(29) == 1.0 and step(30) == pytest.approx(0.1) and step(60) == pytest.approx(0.01)
    assert f("sched.name=constant")(77) == 1.0
    warm = f("sched.name=constant", "sched.warmup_iters=10", "sched.warmup_ratio=0.1")
    assert warm(0) == pytest.approx(0.1) and warm(5) == pytest.approx(0.55) and warm(10) == 1.0
    by_epoch = f("sched.name=poly", "sched.power=1.0", "sched.by_epoch=true")
    assert by_epoch(0) == by_epoch(9) == 1.0 and by_epoch(10) == pytest.approx(0.9)  # changes at epoch ends
    # the scheduler applies the factor to every group's own base lr
    cfg = load_config(
        None, ["optim.name=sgd", "optim.lr=0.1", "optim.encoder_lr_mult=0.5", "sched.name=poly", "sched.power=1.0"]
    )
    opt = build_optimizer(cfg, TwoPart())
    sched = build_scheduler(cfg, opt, 10, 5)
    for _ in range(5):
        opt.step()
        sched.step()
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.025, 0.05])


def test_run_length_change_keeps_the_progress_reached() -> None:
    """A length changed mid-run (a time budget's re-plan): the progress reached stays, the rest of the schedule
    spans the new remaining iterations, the learning rate does not jump, and the knots survive a checkpoint."""
    length = RunLength(100)
    assert length.progress(50) == 0.5 and length.progress(100) == length.progress(120) == 1.0
    cos = lr_factor(load_config(None, ["optim.lr=1.0", "sched.name=cosine", "sched.min_lr=0.1"]), length, 10)
    before = cos(40)
    length.change(40, 160)
    assert cos(40) == pytest.approx(before)  # no jump at the change
    assert length.progress(20) == 0.2 and length.progress(40) == pytest.approx(0.4)  # the past is unchanged
    assert length.progress(100) == pytest.approx(0.4 + 0.6 * 60 / 120) and length.progress(160) == 1.0
    assert cos(160) == pytest.approx(0.1) and cos(100) > cos(130) > cos(159)
    restored = RunLength(5)
    restored.load_state_dict(length.state_dict())
    assert [restored.progress(i) for i in range(0, 170, 7)] == [length.progress(i) for i in range(0, 170, 7)]
    # by epoch (10 iterations each): progress moves at epoch starts, the knot lands on one
    epochs = RunLength(95, granularity=10)
    assert epochs.progress(9) == 0.0 and epochs.progress(10) == pytest.approx(0.1)
    epochs.change(25, 145)
    assert epochs.knots[-1] == (20, pytest.approx(0.2)) and epochs.progress(29) == pytest.approx(0.2)
    assert epochs.progress(30) == pytest.approx(0.2 + 0.8 * 10 / 130) and epochs.progress(150) == 1.0


def test_loss_terms_ignore_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :2] = 255
    ce = SegLoss(3)(logits, target)
    assert torch.allclose(ce, nn.functional.cross_entropy(logits, target, ignore_index=255))
    weighted = SegLoss(3, class_weights=torch.tensor([1.0, 2.0, 3.0]))(logits, target)
    assert not torch.allclose(weighted, ce)
    full = SegLoss(3, dice_weight=0.5, lovasz_weight=0.5)(logits, target)
    assert torch.isfinite(full) and full > ce
    full.backward()
    assert logits.grad[:, :, :2].abs().sum() == 0  # ignored pixels get no gradient from any term


def test_label_smoothing_follows_its_formula_and_ignores_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6))
    target[:, :2] = 255
    eps = 0.1
    loss = SegLoss(4, label_smoothing=eps)(logits, target)
    # by hand: 1 - eps on the labelled class, eps spread over the 4 classes, mean over labelled pixels
    logp = logits.detach().log_softmax(1)
    valid = target != 255
    nll = -logp.gather(1, target.clamp_max(3).unsqueeze(1)).squeeze(1)
    expected = ((1 - eps) * nll + eps * -logp.mean(1))[valid].mean()
    assert torch.allclose(loss, expected) and not torch.allclose(loss, SegLoss(4)(logits, target))
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    weighted = SegLoss(4, class_weights=weights, label_smoothing=eps)(logits, target)
    assert torch.allclose(
        weighted, nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=255, label_smoothing=eps)
    )
    loss.backward()
    assert logits.grad[:, :, :2].abs().sum() == 0


def test_weight_ema_matches_the_average_by_hand() -> None:
    """Parameters and float buffers (BatchNorm's statistics) averaged with the warmed-up decay, integer buffers
    copied, the first update a copy."""
    from reseg.engine.ema import WeightEMA, decay_after

    assert decay_after(0.99, 0) == pytest.approx(0.1) and decay_after(0.99, 10_000) == 0.99
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = WeightEMA(model, decay=0.5)
    reference: dict[str, torch.Tensor] = {}
    for step in range(6):
        loss = model(torch.randn(2, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
        d = decay_after(0.5, step)
        for k, v in model.state_dict().items():
            if step == 0 or not v.is_floating_point():
                reference[k] = v.clone()
            else:
                reference[k] = d * reference[k] + (1 - d) * v
    averaged = ema.module.state_dict()
    assert averaged.keys() == reference.keys() and ema.updates == 6
    for k, v in reference.items():
        assert torch.allclose(averaged[k], v, atol=1e-6), k
    assert not torch.allclose(averaged["1.running_mean"], model.state_dict()["1.running_mean"])
    assert averaged["1.num_batches_tracked"] == 6 and not ema.module.training


# ---------------------------------------------------------------- real training


def test_short_training_loss_falls_and_files_appear(data_root: Path, tmp_path: Path) -> None:
    cfg = cfg_for(data_root, train={"max_iters": 16, "val_interval": 8, "checkpoint_interval": 4}, optim={"lr": 0.05})
    result = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "last.pt", "best.pt", "train.log", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run.glob(".*.tmp"))
    assert result["status"] == "finished" and result["iteration"] == 16

    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.85 * sum(losses[:4]) / 4, losses
    vals = read_metrics(run, "val")
    assert [v["iter"] for v in vals] == [8, 16]
    assert set(vals[-1]["per_class"]) == set(load_checkpoint(run / "last.pt")["class_names"])
    assert 0 <= vals[-1]["mIoU"] <= 1 and 0 <= vals[-1]["aAcc"] <= 1

    state = load_checkpoint(run / "last.pt")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "sampler",
        "epoch",
        "iteration",
        "best_metric",
        "config",
        "class_names",
        "palette",
    ):
        assert key in state, key
    assert state["iteration"] == 16 and state["config"]["model"]["num_classes"] == len(state["class_names"])
    assert len(state["palette"]) == len(state["class_names"])
    assert state["best_metric"] == pytest.approx(max(v["mIoU"] for v in vals))
    # provenance for the model card: the command line of this process and the machine it trained on
    assert state["command"] == launch_command() and state["machine"] == machine_description("cpu")
    assert "torch " + torch.__version__ in state["machine"]
    assert load_config(run / "config.yaml").model.num_classes == len(state["class_names"])  # resolved config
    log = (run / "train.log").read_text()
    assert "iter 16/16" in log and "val @ 16" in log

    # resuming a finished run is a no-op; a run extended by --set continues from the checkpoint
    again = train(cfg, run, resume=run / "last.pt", progress=False)
    assert again["status"] == "already finished"
    cfg.train.max_iters = 18
    more = train(cfg, run, resume=run / "last.pt", progress=False)
    assert more["iteration"] == 18 and [r["iter"] for r in read_metrics(run, "train")][-3:] == [16, 17, 18]


def _record_conv_dtypes(monkeypatch: pytest.MonkeyPatch) -> set:
    """The dtypes the model's convolutions produce while training (a forward hook on each one)."""
    seen: set = set()
    place = parts_mod.place_model

    def hooked(model: nn.Module, *args, **kwargs) -> nn.Module:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype) if mod.training else None)
        return place(model, *args, **kwargs)

    monkeypatch.setattr(parts_mod, "place_model", hooked)
    return seen


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-cpu", "cpu-without-bf16"])
def test_amp_on_cpu_and_loss_terms(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    """train.amp on a CPU: bf16 autocast where the CPU has BF16 units, float32 with a warning elsewhere."""
    from reseg import runtime

    if native_bf16 and not runtime.cpu_has_native_bf16():
        pytest.skip(
            "this CPU has no native bf16 (AVX512-BF16/AMX): train.amp runs float32 here "
            "(the cpu-without-bf16 case covers that)"
        )
    if not native_bf16:
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    dtypes = _record_conv_dtypes(monkeypatch)
    cfg = cfg_for(
        data_root,
        train={"max_iters": 2, "val_interval": 2, "amp": True},
        loss={"dice_weight": 0.5, "lovasz_weight": 0.5},
        optim={"name": "sgd", "grad_clip": 1.0},
        sched={"name": "poly", "warmup_iters": 1},
    )
    if native_bf16:
        result = train(cfg, tmp_path / "amp", progress=False)
    else:
        with pytest.warns(UserWarning, match="no native bf16 support; running in float32"):
            result = train(cfg, tmp_path / "amp", progress=False)
    assert dtypes == ({torch.bfloat16} if native_bf16 else {torch.float32})
    assert result["iteration"] == 2 and math.isfinite(read_metrics(tmp_path / "amp", "train")[-1]["loss"])


def test_channels_last_training_matches_and_learns(data_root: Path, tmp_path: Path) -> None:
    """train.channels_last: NHWC weights and activations, the same first loss as NCHW, and it learns."""
    runs = {}
    for cl in (False, True):
        cfg = cfg_for(data_root, train={"max_iters": 12, "val_interval": 12, "channels_last": cl}, optim={"lr": 0.05})
        result = train(cfg, tmp_path / f"cl{cl}", progress=False)
        assert result["iteration"] == 12
        runs[cl] = [r["loss"] for r in read_metrics(tmp_path / f"cl{cl}", "train")]
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4)  # same weights, same batch, other layout
    assert sum(runs[True][-3:]) < sum(runs[True][:3])
    conv = next(v for k, v in load_checkpoint(tmp_path / "clTrue" / "last.pt")["model"].items() if v.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_a_trainer_for_steps_alone_takes_a_plain_training_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainer.for_steps (the step the benchmarks time) reads no data, joins no process group and writes
    nothing; its step gives the loss and the weights of a hand-written cross-entropy + AdamW step, and a
    non-finite loss stops it before the weights."""
    import copy

    import torch.nn.functional as F

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResegError, match="model.num_classes"):
        trainer_mod.Trainer.for_steps(cfg_for(tmp_path / "no-data"))
    trainer = trainer_mod.Trainer.for_steps(cfg_for(tmp_path / "no-data", model={"num_classes": 11}))
    assert trainer.data is None and not torch.distributed.is_initialized()
    model = trainer.opt.model_bare
    reference = copy.deepcopy(model).train()
    started = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, 32, 48, generator=g), "mask": torch.randint(0, 11, (2, 32, 48), generator=g)}
    batch["mask"][:, :8] = 255  # unlabelled pixels count nowhere
    expected = F.cross_entropy(reference(batch["image"]), batch["mask"], ignore_index=255)
    expected.backward()
    torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=0.01, weight_decay=0.0).step()

    trainer.opt.model.train()
    assert trainer.train_one_step(batch) == pytest.approx(expected.item(), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    stepped = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(v, stepped[k]) for k, v in started.items())
    with pytest.raises(NonFiniteLossError, match=r"iteration 1\b.*No checkpoint was written yet"):
        trainer.train_one_step({"image": torch.full_like(batch["image"], float("nan")), "mask": batch["mask"]})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stepped.items())
    assert list(tmp_path.iterdir()) == []


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = SegLoss.forward

    def poisoned(self, logits, target, *args):
        calls["n"] += 1
        loss = original(self, logits, target, *args)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(SegLoss, "forward", poisoned)
    cfg = cfg_for(data_root, train={"max_iters": 12, "checkpoint_interval": 2, "val_interval": 100})
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"iteration 7\b.*last\.pt \(iteration 6\)"):
        train(cfg, run, progress=False)
    state = load_checkpoint(run / "last.pt")
    assert state["iteration"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_early_stopping(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.5, 0.4, 0.45, 0.9])

    def fake_validate(self, *args, **kwargs):
        return {"mIoU": next(scores), "aAcc": 0.5, "mAcc": 0.5, "per_class": {}}

    monkeypatch.setattr(trainer_mod.Trainer, "validate", fake_validate)
    cfg = cfg_for(
        data_root, train={"max_iters": 20, "val_interval": 2, "checkpoint_interval": 100, "early_stop_patience": 2}
    )
    result = train(cfg, tmp_path / "es", progress=False)
    assert result["status"] == "early stopped" and result["iteration"] == 6
    assert result["best_mIoU"] == 0.5 and result["best_iteration"] == 2
    assert load_checkpoint(tmp_path / "es" / "last.pt")["iteration"] == 6
    assert load_checkpoint(tmp_path / "es" / "best.pt")["iteration"] == 2


def test_no_progress_means_no_bars_not_even_class_statistics(
    data_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    cfg = cfg_for(data_root, train={"max_iters": 1}, data={"class_weights": "inverse_log"})
    train(cfg, tmp_path / "quiet", progress=False)
    err = capfd.readouterr().err
    assert "class statistics:" not in err and "mask/s" not in err
    train(cfg, tmp_path / "bars", progress=True)
    assert "mask/s" in capfd.readouterr().err  # the bar the quiet run left out


def test_levers_validate_the_average_and_resume_exactly(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.ema_decay, loss.label_smoothing, model.decoder_dropout and data.augment=strong together: every
    validation scores the weight average, which is the checkpoint's "model" (what `reseg evaluate` scores);
    the trained weights travel as "raw_model"; a run stopped at 4 and resumed ends bit-identical to one that
    never stopped, average included."""
    import json

    from reseg.cli import main

    levers = {
        "train": {"max_iters": 8, "val_interval": 4, "ema_decay": 0.9},
        "loss": {"label_smoothing": 0.1},
        "model": {"decoder_dropout": 0.2},
        "data": {"augment": "strong"},
        "optim": {"lr": 0.05},
    }
    scored = []
    real_evaluate = trainer_mod.evaluate_split

    def spy(predictor, *args, **kwargs):
        scored.append(predictor.model)
        return real_evaluate(predictor, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate_split", spy)
    whole = tmp_path / "whole"
    trainer = trainer_mod.Trainer(cfg_for(data_root, **levers), whole, progress=False)
    assert trainer.fit()["iteration"] == 8
    assert len(scored) == 2 and all(m is trainer.opt.ema.module for m in scored)
    assert trainer.opt.criterion.label_smoothing == 0.1
    assert isinstance(trainer.opt.model_bare.head_dropout, nn.Dropout2d)
    state = load_checkpoint(whole / "last.pt")
    assert state["ema"] == {"decay": 0.9, "updates": 8} and state["model"].keys() == state["raw_model"].keys()
    assert any(not torch.equal(state["model"][k], state["raw_model"][k]) for k in state["model"])
    assert all(torch.equal(v, trainer.opt.ema.module.state_dict()[k]) for k, v in state["model"].items())
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(whole / "last.pt"), "--out", str(out), "--device", "cpu"]) == 0
    logged = read_metrics(whole, "val")[-1]
    assert json.loads((out / "metrics.json").read_text())["mIoU"] == pytest.approx(logged["mIoU"], abs=1e-6)

    cut = tmp_path / "cut"
    train(cfg_for(data_root, **{**levers, "train": {**levers["train"], "max_iters": 4}}), cut, progress=False)
    assert "ema" in load_checkpoint(cut / "last.pt") and load_checkpoint(cut / "last.pt")["ema"]["updates"] == 4
    train(cfg_for(data_root, **levers), cut, resume=cut / "last.pt", progress=False)
    resumed = load_checkpoint(cut / "last.pt")
    for key in ("model", "raw_model"):
        for k, v in state[key].items():
            assert torch.equal(v, resumed[key][k]), (key, k)
    assert resumed["ema"] == state["ema"]


def test_resume_switching_the_average_on_or_off(data_root: Path, tmp_path: Path) -> None:
    """Turning train.ema_decay on at a resume starts the average from the checkpoint's weights; turning it off
    continues from the trained weights ("raw_model"), not from the average."""
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    train(cfg_for(data_root, train={"max_iters": 2, "val_interval": 2}), plain, progress=False)
    train(
        cfg_for(data_root, train={"max_iters": 4, "val_interval": 2, "ema_decay": 0.9}),
        plain,
        resume=plain / "last.pt",
        progress=False,
    )
    assert load_checkpoint(plain / "last.pt")["ema"]["updates"] == 2
    assert "holds no weight average; the average starts from its weights" in (plain / "train.log").read_text()

    train(cfg_for(data_root, train={"max_iters": 2, "val_interval": 2, "ema_decay": 0.9}), averaged, progress=False)
    raw = load_checkpoint(averaged / "last.pt")["raw_model"]
    trainer = trainer_mod.Trainer(
        cfg_for(data_root, train={"max_iters": 2}), averaged, resume=averaged / "last.pt", progress=False
    )
    assert trainer.fit()["status"] == "already finished" and trainer.opt.ema is None
    assert all(torch.equal(v, raw[k]) for k, v in trainer.opt.model_bare.state_dict().items())


def test_resume_refuses_other_model_or_classes(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "base"
    train(cfg_for(data_root, train={"max_iters": 2}), run, progress=False)
    with pytest.raises(ResegError, match=r"model\.renet_hidden: checkpoint 4, config 6"):
        train(cfg_for(data_root, train={"max_iters": 4}, model={"renet_hidden": 6}), run, resume=run / "last.pt")
    with pytest.raises(ResegError, match=r"model\.name: checkpoint 'reseg', config 'unet_vgg16'"):
        train(cfg_for(data_root, train={"max_iters": 4}, model={"name": "unet_vgg16"}), run, resume=run / "last.pt")
    state = load_checkpoint(run / "last.pt")
    state["class_names"] = state["class_names"][:5]
    state["config"]["model"]["num_classes"] = 5
    save_checkpoint(state, tmp_path / "five.pt")
    with pytest.raises(ResegError, match=r"num_classes: checkpoint 5, config 11.*classes: checkpoint 5"):
        train(cfg_for(data_root, train={"max_iters": 4}), tmp_path / "other", resume=tmp_path / "five.pt")
    with pytest.raises(ResegError, match="nothing to resume"):
        train(cfg_for(data_root), tmp_path / "empty", resume=tmp_path / "empty" / "last.pt")


# ---------------------------------------------------------------- one evaluation path, work dirs, logs


def test_logged_val_miou_equals_reseg_evaluate(data_root: Path, tmp_path: Path) -> None:
    """With data.eval_size set, the trainer's validation is `reseg evaluate`'s: full-size labels, same numbers."""
    import json

    from reseg.cli import main

    cfg = cfg_for(
        data_root, data={"eval_size": [16, 24]}, train={"max_iters": 6, "val_interval": 3}, optim={"lr": 0.05}
    )
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    logged = {r["iter"]: r for r in read_metrics(run, "val")}
    for name in ("last.pt", "best.pt"):
        it = load_checkpoint(run / name)["iteration"]
        out = tmp_path / f"eval_{name}"
        assert main(["evaluate", "--checkpoint", str(run / name), "--out", str(out), "--device", "cpu"]) == 0
        report = json.loads((out / "metrics.json").read_text())
        for key in ("mIoU", "aAcc", "mAcc"):
            assert report[key] == pytest.approx(logged[it][key], abs=1e-6), (name, key)
        assert report["num_images"] == logged[it]["num_images"] == 4  # every val image, at full size
        for cls, s in report["per_class"].items():
            assert (
                s["IoU"] == pytest.approx(logged[it]["per_class"][cls]["IoU"], abs=1e-6, nan_ok=True)
                if s["IoU"] is not None
                else logged[it]["per_class"][cls]["IoU"] is None
            )


def test_fresh_run_refuses_a_work_dir_holding_a_run(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(cfg_for(data_root, train={"max_iters": 2, "val_interval": 2}), run, progress=False)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ResegError, match=r"already holds a run.*--resume.*--overwrite"):
        train(cfg_for(data_root, train={"max_iters": 2}), run, progress=False)
    assert (run / "last.pt").read_bytes() == before and len(read_metrics(run)) > 0  # nothing touched
    result = train(cfg_for(data_root, train={"max_iters": 4, "val_interval": 4}), run, progress=False, overwrite=True)
    assert result["iteration"] == 4 and [r["iter"] for r in read_metrics(run, "val")] == [4]
    # a failed --resume creates nothing
    with pytest.raises(ResegError, match="nothing to resume"):
        train(cfg_for(data_root), tmp_path / "new", resume=tmp_path / "new" / "last.pt")
    assert not (tmp_path / "new").exists()
    (tmp_path / "bad.pt").write_bytes(b"")
    with pytest.raises(ResegError, match="bad.pt"):
        train(cfg_for(data_root), tmp_path / "new2", resume=tmp_path / "bad.pt")
    assert not (tmp_path / "new2").exists()


def test_torn_metrics_line_is_dropped_on_resume(
    data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    cfg = cfg_for(data_root, train={"max_iters": 4, "val_interval": 4, "checkpoint_interval": 2})
    train(cfg, run, progress=False)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"type": "train", "iter": 5, "lo')  # killed mid-append
    cfg.train.max_iters = 6
    result = train(cfg, run, resume=run / "last.pt", progress=False)
    assert result["iteration"] == 6
    assert [r["iter"] for r in read_metrics(run, "train")] == [1, 2, 3, 4, 5, 6]  # every line parses again
    assert "torn" in (run / "train.log").read_text()


def test_train_cli_needs_resume_or_overwrite(data_root: Path, tmp_path: Path, capsys) -> None:
    from train_utils import write_config

    from reseg.cli import main

    config = write_config(tmp_path / "tiny.yaml", tiny_config(data_root, train={"max_iters": 2, "val_interval": 2}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(config), "--work-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["train", str(config), "--work-dir", str(run), "--no-progress", "--overwrite"]) == 0
    assert main(["train", str(config), "--work-dir", str(run), "--resume", "--overwrite"]) == 2
