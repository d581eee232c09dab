"""Time-budgeted training: `train.time_budget: 10m` ends a run in time on whatever machine runs it.

The schedule (poly, cosine, step) needs a run length in iterations before it starts decaying, but
how many iterations fit in ten minutes depends on the CPU. So the run first calibrates: after a few
warm-up iterations it times some more, times validation on a few images, and fixes the length that
fits the remaining time, validations, the final validation and the checkpoints included.

The first steps of a run are slower than its steady pace (caches, allocator, loader workers warming up)
and a validation estimated from a few images is rough, so a length fixed from them alone ends the run
early. The run therefore re-plans once, when about a quarter of the budget is spent (`replan_at`,
fixed at calibration): from the pace of the steady steps since calibration (validations excluded) and
the measured cost of a full validation, it fixes the length again. The schedule follows the new
length without a jump (reseg.engine.optim.RunLength).

Both lengths, the re-plan's iteration and the schedule's knots are stored in the checkpoint and kept on
`--resume`; the clock counts training time only (the time a run spent stopped is not charged). If the
machine slows down later, the run still stops at the budget, with the schedule cut short and said so.

This module has no torch import: the config validator uses `parse_duration`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from reseg.errors import ResegError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(value: Any, key: str = "train.time_budget") -> float | None:
    """Seconds from `90`, `90s`, `10m`, `1h`, `1h30m` or `1.5h`; None stays None (no budget)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ResegError(f"{key} is {value!r}; expected a duration such as 90s, 10m, 1h30m or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.fullmatch(text)
        if text and re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and match and any(match.groups()):
            seconds = sum(float(g) * _UNITS[u] for g, u in zip(match.groups(), "hms") if g)
        else:
            raise ResegError(f"{key} is {value!r}; expected a duration such as 90s, 10m, 1h30m or a number of seconds")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ResegError(f"{key} is {value!r}; expected a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """`1h05m`, `10m`, `45s`: how the log names a budget."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m" if m or not s else f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m" if not s else f"{m}m{s:02d}s"
    return f"{s}s"


@dataclass
class BudgetPlan:
    """What calibration measured and fixed; saved in the checkpoint (plain numbers only)."""

    seconds: float
    planned_iters: int
    iter_s: float  # seconds per training iteration after warm-up
    val_s: float  # seconds of one full validation (estimated from a few images, then measured)
    img_s: float  # training images per second (all processes)
    replan_at: int | None = None  # the iteration of the one re-plan (None: none planned, as in old checkpoints)
    replanned_at: int | None = None  # where it happened (None: not yet)


class TimeBudget:
    """Charges training time against `seconds` and fixes the run's length after calibrating.

    `clock` is injectable so that tests drive time by hand (no timed tests).
    """

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        warmup_iters: int = 5,
        calibration_iters: int = 20,
        margin: float = 0.05,
        replan_fraction: float = 0.25,
        replan_margin: float = 0.02,
    ) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self.warmup_iters = warmup_iters
        self.calibration_iters = calibration_iters  # also the fewest steady steps a re-plan measures
        # fraction of the budget kept for what calibration cannot see: saves, epoch ends, a machine that
        # drifts slower after the calibration than during it
        self.margin = margin
        self.replan_fraction = replan_fraction
        # the steady pace the re-plan measures includes saves and epoch ends: only drift is left to cover
        self.replan_margin = replan_margin
        self.spent_before = 0.0  # charged by earlier sessions of a resumed run
        self.plan: BudgetPlan | None = None
        self._t0: float | None = None
        self._calib_start: tuple[int, float] | None = None
        self._calib_end: tuple[int, float] | None = None
        self._last_seen: float | None = None
        self.last_step_s = 0.0
        # the steady steps a re-plan measures: (iteration, seconds spent) where they start, and the validation
        # time inside them, which is not a step's; charged time, so a resumed run continues the same window
        self._steady_start: tuple[int, float] | None = None
        self._steady_val_s = 0.0
        self._measured_val_s: float | None = None

    # -- the clock ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._t0 = self.clock()

    def spent(self) -> float:
        """Seconds of training charged so far, earlier sessions included."""
        return self.spent_before + (self.clock() - self._t0 if self._t0 is not None else 0.0)

    def left(self) -> float:
        return self.seconds - self.spent()

    # -- calibration -------------------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        return self.plan is not None

    def observe(self, iterations_this_session: int, done_iters: int) -> bool:
        """Call after each iteration; True when calibration has seen enough iterations to plan."""
        now = self.clock()
        if self._last_seen is not None:
            self.last_step_s = now - self._last_seen  # what the next step will likely cost
        self._last_seen = now
        if self.calibrated:
            if self._steady_start is None and iterations_this_session == self.warmup_iters:
                self._steady_start = (done_iters, self.spent())  # resumed from a checkpoint that lacks it
            return False
        if iterations_this_session == self.warmup_iters:
            self._calib_start = (done_iters, self.clock())
        ready = self._calib_start is not None and iterations_this_session >= self.warmup_iters + self.calibration_iters
        if ready:
            self._calib_end = (done_iters, self.clock())
        return ready

    def fix_length(
        self, done_iters: int, val_s: float, val_interval: int, upper_bound: int | None, images_per_iter: int
    ) -> BudgetPlan:
        """The run length that fits what is left: iterations plus a validation every `val_interval`
        (and the final one). `val_s` is the measured cost of one full validation."""
        start_iters, start_t = self._calib_start or (0, self._t0 or self.clock())
        end_iters, end_t = self._calib_end or (done_iters, self.clock())
        iter_s = max(1e-9, (end_t - start_t) / max(1, end_iters - start_iters))
        usable = self.left() - self.margin * self.seconds - val_s  # the final validation always runs
        per_iter = iter_s + (val_s / val_interval if val_interval > 0 else 0.0)
        more = max(0, int(usable // per_iter)) if usable > 0 else 0
        planned = done_iters + more
        if upper_bound is not None:
            planned = min(planned, upper_bound)
        planned = max(planned, done_iters)
        # the re-plan comes when about replan_fraction of the budget is spent (at this pace), after enough
        # steady steps to measure; none when the run would end first
        to_go = self.replan_fraction * self.seconds - self.spent()
        replan_at = done_iters + max(self.calibration_iters, math.ceil(to_go / per_iter) if to_go > 0 else 0)
        self.plan = BudgetPlan(
            self.seconds,
            planned,
            iter_s,
            val_s,
            images_per_iter / iter_s,
            replan_at=replan_at if replan_at < planned else None,
        )
        self._steady_start, self._steady_val_s = (done_iters, self.spent()), 0.0
        return self.plan

    # -- the one re-plan ----------------------------------------------------------------------------
    def note_validation(self, seconds: float) -> None:
        """A full validation (and its best.pt save) took `seconds`: kept out of the steady step pace, and
        the measured cost replaces calibration's estimate at the re-plan."""
        if self._steady_start is not None:
            self._steady_val_s += seconds
        self._measured_val_s = seconds

    def replan_due(self, done_iters: int) -> bool:
        """True at the planned re-plan iteration, in a resumed run too (the steady window is in the checkpoint)."""
        plan = self.plan
        if plan is None or plan.replan_at is None or plan.replanned_at is not None or done_iters < plan.replan_at:
            return False
        return self._steady_start is not None and done_iters > self._steady_start[0]

    def replan(self, done_iters: int, val_interval: int, upper_bound: int | None, images_per_iter: int) -> BudgetPlan:
        """Fix the length again from the steady pace and the measured validation cost."""
        assert self.plan is not None and self._steady_start is not None
        start_iters, start_spent = self._steady_start
        steady = max(1e-9, self.spent() - start_spent - self._steady_val_s)
        iter_s = max(1e-9, steady / max(1, done_iters - start_iters))
        val_s = self._measured_val_s if self._measured_val_s is not None else self.plan.val_s
        usable = self.left() - self.replan_margin * self.seconds - val_s
        per_iter = iter_s + (val_s / val_interval if val_interval > 0 else 0.0)
        planned = done_iters + (max(0, int(usable // per_iter)) if usable > 0 else 0)
        if upper_bound is not None:
            planned = min(planned, upper_bound)
        self.plan = replace(
            self.plan,
            planned_iters=max(planned, done_iters),
            iter_s=iter_s,
            val_s=val_s,
            img_s=images_per_iter / iter_s,
            replanned_at=done_iters,
        )
        return self.plan

    def must_stop(self, reserve_s: float = 0.0) -> bool:
        """True when the time left no longer covers `reserve_s` (the final validation and save)."""
        return self.left() <= reserve_s

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        steady = None
        if self._steady_start is not None:
            steady = {
                "start_iter": self._steady_start[0],
                "start_spent": self._steady_start[1],
                "val_s": self._steady_val_s,
            }
        return {
            "seconds": self.seconds,
            "spent": self.spent(),
            "plan": asdict(self.plan) if self.plan else None,
            "steady": steady,
            "measured_val_s": self._measured_val_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a budgeted run: what it already spent is charged, its length stays fixed, and a re-plan
        still to come measures the same steady window as in a run that never stopped."""
        self.spent_before = float(state.get("spent", 0.0))
        plan = state.get("plan")
        self.plan = BudgetPlan(**plan) if plan else None
        steady = state.get("steady")
        if steady:
            self._steady_start = (int(steady["start_iter"]), float(steady["start_spent"]))
            self._steady_val_s = float(steady["val_s"])
        measured = state.get("measured_val_s")
        self._measured_val_s = float(measured) if measured is not None else None
