"""train.time_budget: durations, the length fixed after calibrating, the stop, resume; driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from reseg.config import Config
from reseg.engine import trainer as trainer_mod
from reseg.engine.budget import TimeBudget, format_duration, parse_duration
from reseg.engine.checkpoint import load_checkpoint
from reseg.errors import ResegError

from train_utils import make_tiny_dataset, one_thread, read_metrics, tiny_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400),
                                          ("2m30s", 150), (600, 600), (45.5, 45.5), ("120", 120), (" 5m ", 300)])
def test_parse_duration(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 minutes", "m", "", "1d", -5, 0, True, "10m5h"])
def test_parse_duration_names_bad_values(bad) -> None:
    with pytest.raises(ResegError, match=r"train\.time_budget"):
        parse_duration(bad)


def test_format_duration_round_trips() -> None:
    for seconds in (45, 600, 630, 3600, 5400):
        assert parse_duration(format_duration(seconds)) == seconds


class FakeClock:
    """Time moves only when the patched training step or validation says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("synthetic"))


def drive(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, step_s, val_s_per_image: float = 0.25,
          interrupt_at: int | None = None) -> None:
    """Each training step costs step_s(iteration) seconds, each validated image val_s_per_image."""
    real_step, real_validate = trainer_mod.Trainer.train_one_step, trainer_mod.Trainer.validate

    def step(self, batch):
        if interrupt_at is not None and self.iteration == interrupt_at:
            raise KeyboardInterrupt
        loss = real_step(self, batch)
        clock.now += step_s(self.iteration + 1)
        return loss

    def validate(self, indices=None, workers=None):
        metrics = real_validate(self, indices, workers)
        clock.now += val_s_per_image * len(self.val_indices if indices is None else indices)
        return metrics

    monkeypatch.setattr(trainer_mod.Trainer, "train_one_step", step)
    monkeypatch.setattr(trainer_mod.Trainer, "validate", validate)


def budget_cfg(root: Path, **train) -> Config:
    return Config.from_dict(tiny_config(root, train={"max_iters": None, "time_budget": "100s", "val_interval": 30,
                                                     "checkpoint_interval": 10, "log_interval": 5, **train},
                                        sched={"name": "poly"}))


# Calibration: 5 warm-up steps, then 20 timed ones at 1 s; a validation of the 4 val images costs 1 s.
# At iteration 25 it has spent 25 s + 1 s (the timed validation sample); of the 100 s it keeps 5% (5 s)
# and the final validation (1 s): 68 s for steps of 1 s plus a 1 s validation every 30 -> 65 more.
WARMUP, CALIBRATION, MARGIN = 5, 20, 0.05
PLANNED = WARMUP + CALIBRATION + int((100 - (WARMUP + CALIBRATION + 1) - MARGIN * 100 - 1) // (1 + 1 / 30))


def test_budget_fixes_the_length_and_ends_in_time(data_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0)
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert result["status"] == "finished" and result["iteration"] == result["total_iters"] == PLANNED
    assert clock.now <= 100 and result["time_spent_s"] <= 100
    vals = [r["iter"] for r in read_metrics(run, "val")]
    assert vals == [*range(30, PLANNED, 30), PLANNED]  # the final validation runs
    state = load_checkpoint(run / "last.pt")
    assert state["iteration"] == state["total_iters"] == PLANNED
    assert state["budget"]["plan"]["planned_iters"] == PLANNED and state["budget"]["plan"]["iter_s"] == 1.0
    log = (run / "train.log").read_text()
    assert f"time budget 1m40s: {PLANNED} iterations" in log
    # the schedule decayed over the fixed length: poly reaches 0 at its end
    lrs = [r["lr"] for r in read_metrics(run, "train")]
    assert lrs[0] > lrs[-1] and lrs[-1] < 0.1 * lrs[0]


def test_resume_keeps_the_length_and_charges_only_training_time(data_root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0, interrupt_at=45)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert load_checkpoint(run / "last.pt")["iteration"] == 40
    assert "--resume continues from" in (run / "train.log").read_text()

    monkeypatch.undo()
    later = FakeClock(start=10_000.0)  # hours later: the pause is not charged
    drive(monkeypatch, later, step_s=lambda it: 1.0)
    result = trainer_mod.Trainer(budget_cfg(data_root), run, resume=run / "last.pt", progress=False,
                                 clock=later).fit()
    assert result["status"] == "finished" and result["iteration"] == PLANNED  # the length stayed fixed
    spent_before = load_checkpoint(run / "last.pt")["budget"]["spent"]
    assert spent_before <= 100 and result["time_spent_s"] <= 100
    assert "keeps its length of" in (run / "train.log").read_text()


def test_slower_machine_stops_at_the_budget_with_the_schedule_cut(data_root: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0 if it <= WARMUP + CALIBRATION else 2.5)  # slower after calibrating
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert result["status"] == "time budget reached" and result["iteration"] < result["total_iters"] == PLANNED
    assert result["time_spent_s"] <= 100
    vals = read_metrics(run, "val")
    assert vals[-1]["iter"] == result["iteration"]  # a final validation at the stop
    assert load_checkpoint(run / "last.pt")["iteration"] == result["iteration"]
    assert (run / "best.pt").is_file()
    assert "schedule was cut short" in (run / "train.log").read_text()


def test_max_iters_bounds_a_budgeted_run(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0)
    result = trainer_mod.Trainer(budget_cfg(data_root, max_iters=30), tmp_path / "run", progress=False,
                                 clock=clock).fit()
    assert result["iteration"] == result["total_iters"] == 30


def test_time_budget_unit() -> None:
    clock = FakeClock()
    b = TimeBudget(60, clock=clock, warmup_iters=1, calibration_iters=2, margin=0.0)
    b.start()
    for it in range(1, 4):
        clock.now += 2.0
        ready = b.observe(it, it)
    assert ready and not b.calibrated
    plan = b.fix_length(3, val_s=4.0, val_interval=0, upper_bound=None, images_per_iter=8)
    # 6 s spent, 4 s kept for the final validation: 50 s at 2 s a step
    assert plan.planned_iters == 3 + 25 and plan.img_s == 4.0
    assert b.state_dict()["spent"] == 6.0
