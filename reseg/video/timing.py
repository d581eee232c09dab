"""Where a video run's time goes: busy time per stage and per thread, and time spent waiting on queues.

The stages overlap (each thread works on a different frame), so end-to-end throughput is set by the
busiest thread: its busy time is close to the wall time, and the others wait. The report names that
thread and its largest stage, so a user sees what to speed up on their machine.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# stage -> the thread it runs in, in pipeline order
STAGES: dict[str, str] = {
    "decode": "reader",
    "h2d": "inference",
    "preprocess": "inference",
    "model": "inference",
    "postprocess": "inference",  # argmax, smoothing, flicker; colourise and blend when the overlay is on the device
    "d2h": "inference",
    "overlay": "writer",  # resize, colourise and blend on the host, legend, side-by-side
    "encode": "writer",  # video encoding, mask PNGs, the --show window
}
# wait -> what it means, for the summary
WAITS: dict[str, str] = {
    "reader_blocked": "reader waited for room in the decoded-frame queue",
    "inference_starved": "inference waited for decoded frames",
    "inference_blocked": "inference waited for room in the writer queue",
    "writer_starved": "writer waited for segmented frames",
}


class StageTimes:
    """Accumulates seconds per stage, per thread and per wait; each thread writes only its own keys."""

    def __init__(self) -> None:
        self.stage: dict[str, float] = defaultdict(float)
        self.thread: dict[str, float] = defaultdict(float)
        self.wait: dict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self.stage[stage] += seconds

    def busy(self, thread: str, seconds: float) -> None:
        self.thread[thread] += seconds

    def waited(self, what: str, seconds: float) -> None:
        self.wait[what] += seconds

    @contextmanager
    def measure(self, stage: str, thread: str | None = None) -> Iterator[None]:
        """Time a block as `stage` (and as busy time of `thread`, when given)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.stage[stage] += dt
            if thread is not None:
                self.thread[thread] += dt

    def report(self, wall: float, frames: dict[str, int]) -> dict[str, Any]:
        """The JSON block: per-stage ms per frame (frames that thread handled), per-thread busy share of the
        wall time, waits, and the bound."""
        stages = {}
        for name, thread in STAGES.items():
            sec = self.stage.get(name, 0.0)
            stages[name] = {
                "thread": thread,
                "seconds": round(sec, 6),
                "ms_per_frame": round(1000 * sec / max(1, frames.get(thread, 0)), 4),
            }
        threads = {
            name: {"busy_seconds": round(sec, 6), "busy_share": round(sec / wall, 4) if wall > 0 else 0.0}
            for name, sec in self.thread.items()
        }
        waits = {name: round(self.wait.get(name, 0.0), 6) for name in WAITS}
        return {"stages": stages, "threads": threads, "waits": waits, "bound": bound(self.stage, self.thread, wall)}


def bound(stage: dict[str, float], thread: dict[str, float], wall: float) -> dict[str, Any] | None:
    """The busiest thread and its largest stage: what limits end-to-end throughput."""
    if not thread:
        return None
    name = max(thread, key=lambda t: thread[t])
    own = {s: stage.get(s, 0.0) for s, t in STAGES.items() if t == name}
    top = max(own, key=lambda s: own[s]) if own else name
    return {
        "thread": name,
        "stage": top,
        "busy_seconds": round(thread[name], 6),
        "busy_share": round(thread[name] / wall, 4) if wall > 0 else 0.0,
    }


class Clock:
    """Stage boundaries inside one inference batch: wall time on the CPU, CUDA events on a GPU.

    CUDA work is asynchronous, so wall time around a launch says nothing; events recorded on the stream
    between stages give each stage's device time once the last one (after the copy back) has completed.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, Any]] = [("start", self._now())]

    def _now(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, stage: str) -> None:
        """End of `stage` (which began at the previous mark)."""
        self.marks.append((stage, self._now()))

    def seconds(self) -> dict[str, float]:
        """Seconds per stage; on CUDA this waits for the last event, so results copied back are ready."""
        if self.cuda:
            self.marks[-1][1].synchronize()
        out: dict[str, float] = defaultdict(float)
        for (_, a), (stage, b) in zip(self.marks, self.marks[1:]):
            out[stage] += a.elapsed_time(b) / 1000.0 if self.cuda else b - a
        return dict(out)


def format_stages(report: dict[str, Any], wall: float) -> list[str]:
    """Summary lines: ms/frame per stage by thread, the bound, and the waits that matter."""
    stages = report["stages"]
    parts = []
    for thread in ("reader", "inference", "writer"):
        row = [
            f"{s} {stages[s]['ms_per_frame']:.2f}"
            for s, t in STAGES.items()
            if t == thread and stages[s]["seconds"] > 0
        ]
        if row:
            parts.append(f"{thread}: " + ", ".join(row))
    lines = ["ms per frame, " + " | ".join(parts)] if parts else []
    b = report.get("bound")
    if b:
        lines.append(
            f"bound by {b['stage']} ({b['thread']} thread busy {100 * b['busy_share']:.0f}% "
            f"of the {wall:.2f} s wall time)"
        )
    waits = [WAITS[w].replace("waited", f"waited {sec:.2f} s", 1) for w, sec in report["waits"].items() if sec >= 0.01]
    if waits:
        lines.append("waits: " + "; ".join(waits))
    return lines
