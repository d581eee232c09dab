"""train.time_budget: durations, the length fixed after calibrating, the stop, resume; driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_utils import make_tiny_dataset, one_thread, read_metrics, tiny_config  # noqa: F401

from reseg.config import Config
from reseg.engine import trainer as trainer_mod
from reseg.engine.budget import TimeBudget, format_duration, parse_duration
from reseg.engine.checkpoint import load_checkpoint
from reseg.errors import ResegError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("90s", 90),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2m30s", 150),
        (600, 600),
        (45.5, 45.5),
        ("120", 120),
        (" 5m ", 300),
    ],
)
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


def drive(
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    step_s,
    val_s_per_image: float = 0.25,
    interrupt_at: int | None = None,
) -> None:
    """Each training step costs step_s(iteration) seconds, each validated image val_s_per_image."""
    real_step, real_validate = trainer_mod.Trainer.train_one_step, trainer_mod.Trainer.validate

    def step(self, batch):
        if interrupt_at is not None and self.state.iteration == interrupt_at:
            raise KeyboardInterrupt
        loss = real_step(self, batch)
        clock.now += step_s(self.state.iteration + 1)
        return loss

    def validate(self, indices=None, workers=None):
        metrics = real_validate(self, indices, workers)
        clock.now += val_s_per_image * len(self.data.val_indices if indices is None else indices)
        return metrics

    monkeypatch.setattr(trainer_mod.Trainer, "train_one_step", step)
    monkeypatch.setattr(trainer_mod.Trainer, "validate", validate)


def budget_cfg(root: Path, **train) -> Config:
    return Config.from_dict(
        tiny_config(
            root,
            train={
                "max_iters": None,
                "time_budget": "100s",
                "val_interval": 30,
                "checkpoint_interval": 10,
                "log_interval": 5,
                **train,
            },
            sched={"name": "poly"},
        )
    )


# Calibration: 5 warm-up steps, then 20 timed ones at 1 s; a validation of the 4 val images costs 1 s (and
# the untimed one-image validation before it 0.25 s). At iteration 25 it has spent 26.25 s; of the 100 s it
# keeps 5% (5 s) and the final validation (1 s): 67.75 s for steps of 1 s plus a 1 s validation every 30.
WARMUP, CALIBRATION, MARGIN, REPLAN_MARGIN, VAL_EVERY = 5, 20, 0.05, 0.02, 30
CALIBRATED_AT = WARMUP + CALIBRATION


def planned_after(at: int, spent: float, step_s: float, margin: float, budget: float = 100.0) -> int:
    """The length a plan at iteration `at` fixes: what is left, less the margin and the final validation,
    in steps of `step_s` plus a 1 s validation every VAL_EVERY."""
    return at + int((budget - spent - margin * budget - 1.0) // (step_s + 1.0 / VAL_EVERY))


SPENT_CALIBRATING = CALIBRATED_AT * 1.0 + 0.25 + 1.0
PLANNED = planned_after(CALIBRATED_AT, SPENT_CALIBRATING, 1.0, MARGIN)
# A quarter of the budget is already spent at calibration, so the re-plan comes after 20 steady steps;
# by then the run has also validated at 30 (1 s, measured: it replaces the estimate).
REPLAN_AT = CALIBRATED_AT + CALIBRATION
SPENT_AT_REPLAN = SPENT_CALIBRATING + (REPLAN_AT - CALIBRATED_AT) * 1.0 + 1.0
REPLANNED = planned_after(REPLAN_AT, SPENT_AT_REPLAN, 1.0, REPLAN_MARGIN)


def test_budget_fixes_the_length_replans_once_and_ends_in_time(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0)
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert PLANNED < REPLANNED  # the re-plan keeps a smaller margin: it measured saves and epoch ends
    assert result["status"] == "finished" and result["iteration"] == result["total_iters"] == REPLANNED
    assert 95 <= result["time_spent_s"] <= 100 and clock.now <= 100
    vals = [r["iter"] for r in read_metrics(run, "val")]
    assert vals == [*range(30, REPLANNED, 30), REPLANNED]  # the final validation runs
    state = load_checkpoint(run / "last.pt")
    assert state["iteration"] == state["total_iters"] == REPLANNED
    plan = state["budget"]["plan"]
    assert plan["planned_iters"] == REPLANNED and plan["iter_s"] == 1.0 and plan["val_s"] == 1.0
    assert plan["replan_at"] == plan["replanned_at"] == REPLAN_AT
    log = (run / "train.log").read_text()
    assert f"time budget 1m40s: {PLANNED} iterations" in log and f"re-plans at iteration {REPLAN_AT}" in log
    assert f"re-planned at iteration {REPLAN_AT}: {REPLANNED} iterations instead of {PLANNED}" in log
    # the schedule decayed over the final length: poly reaches 0 at its end
    lrs = [r["lr"] for r in read_metrics(run, "train")]
    assert lrs[0] > lrs[-1] and lrs[-1] < 0.1 * lrs[0]


def test_slow_first_steps_no_longer_end_the_run_early(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calibration sees 2 s steps, the steady pace is 1 s: the first plan alone would stop the run at about
    60% of the budget; the re-plan uses the rest, and poly still ends at the run's end."""
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 2.0 if it <= CALIBRATED_AT else 1.0)
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root, time_budget="200s"), run, progress=False, clock=clock).fit()
    spent_calibrating = CALIBRATED_AT * 2.0 + 0.25 + 1.0
    first = planned_after(CALIBRATED_AT, spent_calibrating, 2.0, MARGIN, budget=200)
    replanned = planned_after(REPLAN_AT, spent_calibrating + CALIBRATION * 1.0 + 1.0, 1.0, REPLAN_MARGIN, budget=200)
    assert first < replanned and result["status"] == "finished"
    assert result["iteration"] == result["total_iters"] == replanned
    assert 0.95 * 200 <= result["time_spent_s"] <= 200
    lrs = [r["lr"] for r in read_metrics(run, "train")]
    assert lrs[-1] < 0.1 * lrs[0]


def test_slower_steady_pace_shortens_the_run_at_the_replan(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slower after calibrating than during it: the re-plan shortens the schedule, which ends complete
    within the budget instead of being cut."""
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0 if it <= CALIBRATED_AT else 1.5)
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    replanned = planned_after(REPLAN_AT, SPENT_CALIBRATING + CALIBRATION * 1.5 + 1.0, 1.5, REPLAN_MARGIN)
    assert result["status"] == "finished" and result["iteration"] == result["total_iters"] == replanned < PLANNED
    assert result["time_spent_s"] <= 100
    assert "cut short" not in (run / "train.log").read_text()


def test_resume_keeps_the_length_and_charges_only_training_time(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0, interrupt_at=REPLAN_AT + 12)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert load_checkpoint(run / "last.pt")["iteration"] == 50
    assert "--resume continues from" in (run / "train.log").read_text()

    monkeypatch.undo()
    later = FakeClock(start=10_000.0)  # hours later: the pause is not charged
    drive(monkeypatch, later, step_s=lambda it: 1.0)
    result = trainer_mod.Trainer(budget_cfg(data_root), run, resume=run / "last.pt", progress=False, clock=later).fit()
    assert result["status"] == "finished" and result["iteration"] == REPLANNED  # the length stayed fixed
    spent_before = load_checkpoint(run / "last.pt")["budget"]["spent"]
    assert spent_before <= 100 and result["time_spent_s"] <= 100
    log = (run / "train.log").read_text()
    assert f"keeps its length of {REPLANNED} iterations" in log and log.count("re-planned at") == 1


@pytest.mark.parametrize("interrupt_at", [REPLAN_AT, REPLAN_AT + 12], ids=["before-the-replan", "after-the-replan"])
def test_resumed_run_follows_the_same_schedule(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt_at: int
) -> None:
    """Killed before the re-plan (the checkpoint at 40 predates it) or after it: the resumed run re-plans at the
    same iteration from the same measured window, or keeps the saved length and knots; either way every
    iteration's learning rate equals the uninterrupted run's."""
    cfg = budget_cfg(data_root, log_interval=1, checkpoint_interval=10)
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 2.0 if it <= CALIBRATED_AT else 1.0)
    whole = trainer_mod.Trainer(cfg, tmp_path / "whole", progress=False, clock=clock).fit()
    monkeypatch.undo()

    run = tmp_path / "cut"
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 2.0 if it <= CALIBRATED_AT else 1.0, interrupt_at=interrupt_at)
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.Trainer(cfg, run, progress=False, clock=clock).fit()
    saved = load_checkpoint(run / "last.pt")
    assert (saved["budget"]["plan"]["replanned_at"] is None) == (saved["iteration"] < REPLAN_AT)
    monkeypatch.undo()
    later = FakeClock(start=5_000.0)
    drive(monkeypatch, later, step_s=lambda it: 1.0)
    resumed = trainer_mod.Trainer(cfg, run, resume=run / "last.pt", progress=False, clock=later).fit()

    assert resumed["iteration"] == resumed["total_iters"] == whole["total_iters"]
    assert resumed["time_spent_s"] == pytest.approx(whole["time_spent_s"])
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["run_length"] == b["run_length"] and len(a["run_length"]["knots"]) == 3  # start, calibration, re-plan
    assert a["budget"]["plan"] == b["budget"]["plan"]
    lr_whole = {r["iter"]: r["lr"] for r in read_metrics(tmp_path / "whole", "train")}
    lr_resumed = {r["iter"]: r["lr"] for r in read_metrics(run, "train")}
    assert list(lr_resumed) == list(lr_whole) == list(range(1, whole["total_iters"] + 1))
    assert list(lr_resumed.values()) == pytest.approx(list(lr_whole.values()), rel=1e-12)


def test_slower_machine_stops_at_the_budget_with_the_schedule_cut(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0 if it <= REPLAN_AT else 2.5)  # slower after the re-plan
    run = tmp_path / "run"
    result = trainer_mod.Trainer(budget_cfg(data_root), run, progress=False, clock=clock).fit()
    assert result["status"] == "time budget reached" and result["iteration"] < result["total_iters"] == REPLANNED
    assert result["time_spent_s"] <= 100
    vals = read_metrics(run, "val")
    assert vals[-1]["iter"] == result["iteration"]  # a final validation at the stop
    assert load_checkpoint(run / "last.pt")["iteration"] == result["iteration"]
    assert (run / "best.pt").is_file()
    assert "schedule was cut short" in (run / "train.log").read_text()


def test_max_iters_bounds_a_budgeted_run(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    drive(monkeypatch, clock, step_s=lambda it: 1.0)
    result = trainer_mod.Trainer(
        budget_cfg(data_root, max_iters=30), tmp_path / "run", progress=False, clock=clock
    ).fit()
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
    # a quarter of the 60 s is 15 s: 9 s (5 steps of 2 s) after the 6 s spent, but at least 2 steady steps
    assert plan.replan_at == 3 + 5
    for it in range(4, 9):  # steady steps of 1 s, and a validation of 3 s inside them
        clock.now += 1.0
        b.observe(it, it)
        assert b.replan_due(it) == (it == 8)
        if it == 5:
            clock.now += 3.0
            b.note_validation(3.0)
    # 14 s spent: 46 s left, 2% kept (1.2 s) and the final validation (3 s, measured): 41.8 s at 1 s a step
    replanned = b.replan(8, val_interval=0, upper_bound=None, images_per_iter=8)
    assert (replanned.iter_s, replanned.val_s, replanned.img_s) == (1.0, 3.0, 8.0)
    assert replanned.planned_iters == 8 + 41 and replanned.replanned_at == 8 and not b.replan_due(9)
    # a resumed budget continues the same steady window
    again = TimeBudget(60, clock=FakeClock(100.0), warmup_iters=1, calibration_iters=2, margin=0.0)
    again.load_state_dict(b.state_dict())
    assert again.plan == replanned and again.spent() == pytest.approx(14.0)
