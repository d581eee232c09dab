"""What a training run tells its user: smoothed values with rate and ETA, metrics.jsonl, TensorBoard, train.log.

MetricLogger follows torchvision's references (a window of recent values per meter); MetricsLog
appends one JSON record per line, flushed per record, and on --resume drops records past the
checkpoint and any torn last line (a kill -9 or a full disk mid-append) with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG = logging.getLogger("reseg.train")
ROOT_LOG = logging.getLogger("reseg")  # train.log also receives the data modules' warnings


class SmoothedValue:
    """The recent window of one quantity and its mean."""

    def __init__(self, window: int = 20) -> None:
        self.values: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.values.append(value)

    @property
    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan


class MetricLogger:
    """Per-iteration values (loss, step time, data wait) smoothed over a window, and img/s from them."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.meters: dict[str, SmoothedValue] = {}
        self.images = SmoothedValue(window)

    def update(self, images: int, **values: float) -> None:
        self.images.update(float(images))
        for k, v in values.items():
            self.meters.setdefault(k, SmoothedValue(self.window)).update(float(v))

    def avg(self, name: str) -> float:
        return self.meters[name].avg

    def img_per_s(self) -> float:
        step = self.meters.get("step_time")
        if step is None or not step.values:
            return math.nan
        return sum(self.images.values) / max(sum(step.values), 1e-9)

    def data_wait(self) -> float:
        """Fraction of the recent step time spent waiting for the loader."""
        step, data = self.meters.get("step_time"), self.meters.get("data_time")
        if step is None or data is None or not step.values:
            return math.nan
        return sum(data.values) / max(sum(step.values), 1e-9)


def jsonable(x: Any) -> Any:
    """Tensors -> numbers/lists, NaN -> None (JSON has no NaN)."""
    if hasattr(x, "tolist") and hasattr(x, "dim"):
        x = x.tolist() if x.dim() else x.item()
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class MetricsLog:
    """metrics.jsonl: one record per line, each flushed to disk as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(jsonable(record)) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def keep_until(self, iteration: int) -> None:
        """On resume: keep the records up to `iteration`; a torn or unreadable line is dropped with a warning."""
        from reseg.io import write_text

        if not self.path.exists():
            return
        lines = [
            (n, ln)
            for n, ln in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if ln.strip()
        ]
        kept, torn = [], 0
        for number, line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                torn += 1
                LOG.warning("%s line %d is torn (a run killed mid-write?); dropped it", self.path, number)
                continue
            if record.get("iter", 0) <= iteration:
                kept.append(line)
        if len(kept) < len(lines):
            write_text(self.path, "".join(line + "\n" for line in kept))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class TensorBoardSink:
    """Scalars to work_dir/tensorboard (rank 0); a no-op where TensorBoard is not installed."""

    def __init__(self, folder: Path, purge_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
            return
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass(frozen=True)
class RunRecords:
    """Rank 0's records of a run: metrics.jsonl and the TensorBoard scalars, written together."""

    metrics: MetricsLog
    tensorboard: TensorBoardSink

    @classmethod
    def open(cls, work_dir: Path, iteration: int) -> RunRecords:
        """Continue the records of a run resumed at `iteration` (later ones are dropped), or start afresh."""
        metrics = MetricsLog(work_dir / "metrics.jsonl")
        if iteration > 0:
            metrics.keep_until(iteration)
        else:
            metrics.clear()
        return cls(metrics, TensorBoardSink(work_dir / "tensorboard", purge_step=iteration + 1))

    def write(self, record: dict[str, Any], scalars: dict[str, Any]) -> None:
        """`record` to metrics.jsonl; `scalars` to TensorBoard under the record's type, at its iteration."""
        self.metrics.append(record)
        self.tensorboard.scalars(record["type"], scalars, record["iter"])

    def close(self) -> None:
        self.tensorboard.close()


def hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _TqdmHandler(logging.Handler):
    """Console lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never kill training
            self.handleError(record)


def setup_logging(work_dir: Path | None) -> None:
    """Rank 0: console + work_dir/train.log. Other ranks: warnings only, to the console."""
    close_logging()
    ROOT_LOG.propagate = False
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    ROOT_LOG.addHandler(console)
    if work_dir is None:
        ROOT_LOG.setLevel(logging.WARNING)
        return
    ROOT_LOG.setLevel(logging.INFO)
    fh = logging.FileHandler(work_dir / "train.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ROOT_LOG.addHandler(fh)


def close_logging() -> None:
    """Detach the handlers setup_logging added (tests and notebooks run several trainings per process)."""
    for h in list(ROOT_LOG.handlers):
        if isinstance(h, (_TqdmHandler, logging.FileHandler)):
            ROOT_LOG.removeHandler(h)
            h.close()
    ROOT_LOG.propagate = True
    ROOT_LOG.setLevel(logging.NOTSET)
