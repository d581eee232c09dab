"""Time-budgeted training: `train.time_budget: 10m` ends a run in time on whatever machine runs it.

The schedule (poly, cosine, step) needs a run length in iterations before it starts decaying, but
how many iterations fit in ten minutes depends on the CPU. So the run first calibrates: after a few
warm-up iterations it times some more, times validation on a few images, and fixes the length that
fits the remaining time, validations, the final validation and the checkpoints included. The length
is stored in the checkpoint and kept on `--resume`; the clock counts training time only (the time
a run spent stopped is not charged). If the machine slows down later, the run still stops at the
budget, with the schedule cut short and said so.

This module has no torch import: the config validator uses `parse_duration`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
            raise ResegError(f"{key} is {value!r}; expected a duration such as 90s, 10m, 1h30m or a number of "
                             f"seconds")
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
    val_s: float  # seconds of one full validation (estimated from a few images)
    img_s: float  # training images per second (all processes)


class TimeBudget:
    """Charges training time against `seconds` and fixes the run's length after calibrating.

    `clock` is injectable so that tests drive time by hand (no timed tests).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, warmup_iters: int = 5,
                 calibration_iters: int = 20, margin: float = 0.05) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self.warmup_iters = warmup_iters
        self.calibration_iters = calibration_iters
        # fraction of the budget kept for what calibration cannot see: saves, epoch ends, a machine that
        # drifts slower after the calibration than during it
        self.margin = margin
        self.spent_before = 0.0  # charged by earlier sessions of a resumed run
        self.plan: BudgetPlan | None = None
        self._t0: float | None = None
        self._calib_start: tuple[int, float] | None = None
        self._calib_end: tuple[int, float] | None = None
        self._last_seen: float | None = None
        self.last_step_s = 0.0

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
            return False
        if iterations_this_session == self.warmup_iters:
            self._calib_start = (done_iters, self.clock())
        ready = (self._calib_start is not None
                 and iterations_this_session >= self.warmup_iters + self.calibration_iters)
        if ready:
            self._calib_end = (done_iters, self.clock())
        return ready

    def fix_length(self, done_iters: int, val_s: float, val_interval: int, upper_bound: int | None,
                   images_per_iter: int) -> BudgetPlan:
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
        self.plan = BudgetPlan(self.seconds, max(planned, done_iters), iter_s, val_s, images_per_iter / iter_s)
        return self.plan

    def must_stop(self, reserve_s: float = 0.0) -> bool:
        """True when the time left no longer covers `reserve_s` (the final validation and save)."""
        return self.left() <= reserve_s

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "spent": self.spent(), "plan": asdict(self.plan) if self.plan else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a budgeted run: what it already spent is charged, and its length stays fixed."""
        self.spent_before = float(state.get("spent", 0.0))
        plan = state.get("plan")
        self.plan = BudgetPlan(**plan) if plan else None
