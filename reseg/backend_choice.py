"""`--backend auto`: the fastest of eager, onnxruntime, onnxruntime-int8 (and, on CPUs with native bf16, eager
under bf16 autocast) that keeps the masks, measured once per model, input shape and machine.

Which backend is fastest depends on the CPU (native bf16, VNNI), the thread count, the model (GRU or minGRU
ReNet) and the input shape, so it is measured rather than guessed: the Predictor's first batch fixes the shape
(batch, height, width, as the network sees it), each candidate is built as that Predictor builds it and run on
that batch a few times, interleaved (one run of each in turn, so that load from other processes slows them
alike), and its masks are compared with eager's on agreement inputs (calibration images at that shape).

The rule: a candidate whose masks give at least MIN_AGREEMENT of the pixels eager's class is kept; the fastest
kept one wins, another than plain eager only when it beats eager by MIN_GAIN (eager needs no export, no cache, no
onnxruntime and keeps float32, so a tie goes to it). The result is kept as a small JSON file beside the ONNX cache, keyed by the
weights' digest, the shape and the machine (CPU model, torch threads, torch and onnxruntime versions), so every
later run with that key reuses it without measuring.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from reseg.backend_names import AUTO_CANDIDATES
from reseg.errors import ResegError
from reseg.io import write_json
from reseg.preprocess import class_ids
from reseg.runtime import cpu_name

MIN_AGREEMENT = 0.99  # share of pixels whose class must equal eager's
MIN_GAIN = 1.05  # speed over eager another candidate needs to be chosen
RUNS = 5  # timed runs per candidate (after one warm-up run), the median kept
AGREEMENT_IMAGES = 8  # calibration images the masks are compared on
FORMAT = 2  # bump when the rule or the record changes: older records are then measured again

Net = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Choice:
    """The backend `auto` runs, and why: per candidate its seconds per batch, speed over eager and mask
    agreement with eager (or the error that ruled it out)."""

    backend: str
    shape: list[int]
    results: dict[str, dict[str, Any]]
    measured: str  # ISO date of the measurement
    machine: dict[str, Any]
    cached: bool = False
    rule: dict[str, float] = field(default_factory=lambda: {"min_agreement": MIN_AGREEMENT, "min_gain": MIN_GAIN})

    def summary(self) -> str:
        """One line: 'backend auto -> onnxruntime-int8 (2.3x eager, 99.6% mask agreement; measured
        2026-12-05, cached)', with the candidates that were faster but ruled out."""
        when = f"measured {self.measured}" + (", cached" if self.cached else "")
        chosen = self.results.get(self.backend, {})
        if self.backend == "eager":
            others = [
                f"{name} {r['speedup']:.2f}x eager at {100 * r['agreement']:.1f}% agreement"
                for name, r in self.results.items()
                if name != "eager" and "speedup" in r
            ]
            why = ", ".join(others) + "; " if others else ""
            why += f"another backend needs >= {MIN_GAIN:g}x and >= {100 * MIN_AGREEMENT:g}%"
        else:
            why = f"{chosen['speedup']:.2f}x eager, {100 * chosen['agreement']:.1f}% mask agreement"
        skipped = [
            f"{name} {r['speedup']:.2f}x but {100 * r['agreement']:.1f}% agreement < {100 * MIN_AGREEMENT:g}%"
            for name, r in self.results.items()
            if self.backend != "eager"
            and "speedup" in r
            and r["agreement"] < MIN_AGREEMENT
            and r["speedup"] > chosen.get("speedup", 0)
        ]
        reasons: dict[str, list[str]] = {}  # one reason, all the backends it rules out
        for name, r in self.results.items():
            if "error" in r:
                reasons.setdefault(str(r["error"]).splitlines()[0], []).append(name)
        failed = [f"{' and '.join(names)} unavailable: {reason}" for reason, names in reasons.items()]
        return f"backend auto -> {self.backend} ({'; '.join([why, *skipped, *failed, when])})"


# ---------------------------------------------------------------------------------------------- the record


def machine() -> dict[str, Any]:
    """What the ranking depends on besides the model and the shape."""
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": ort}


def record_path(folder: str | Path, model_digest: str, shape: Sequence[int]) -> Path:
    """The JSON file of one (weights, shape, machine) measurement in the cache folder."""
    key = json.dumps([FORMAT, model_digest, [int(v) for v in shape], machine()], sort_keys=True)
    return Path(folder) / f"auto-{hashlib.blake2b(key.encode(), digest_size=12).hexdigest()}.json"


def load_choice(path: Path) -> Choice | None:
    """A stored choice, or None when there is none or it cannot be read (it is then measured again)."""
    try:
        data = json.loads(path.read_text())
        choice = Choice(**{k: data[k] for k in ("backend", "shape", "results", "measured", "machine", "rule")})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if choice.backend not in AUTO_CANDIDATES:
        return None
    choice.cached = True
    return choice


def save_choice(path: Path, choice: Choice) -> None:
    """Written atomically: two processes measuring at once leave one whole record."""
    record = asdict(choice)
    record.pop("cached")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, record)
    except OSError:  # a read-only cache costs a measurement per run, not the run
        pass


# ---------------------------------------------------------------------------------------------- measuring


def masks_agreement(net: Net, reference: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> float:
    """Share of pixels whose argmax class from `net` equals the reference masks."""
    same = total = 0
    for x, ref in zip(inputs, reference):
        got = class_ids(net(x))
        same += int((got == ref).sum())
        total += ref.numel()
    return same / max(total, 1)


def time_nets(
    nets: Mapping[str, Net], x: torch.Tensor, runs: int = RUNS, clock: Callable[[], float] | None = None
) -> dict[str, float]:
    """Median seconds of each net on `x` up to the class map a user gets (the logits' layout differs between
    backends, and so does the cost of reading the classes out), one warm-up call each, then `runs` rounds of one
    call of each (`clock`: time.perf_counter unless given)."""
    clock = clock or time.perf_counter
    for net in nets.values():
        class_ids(net(x))
    times: dict[str, list[float]] = {name: [] for name in nets}
    for _ in range(runs):
        for name, net in nets.items():
            t0 = clock()
            class_ids(net(x))
            times[name].append(clock() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(
    candidates: Mapping[str, Callable[[], Net]],
    x: torch.Tensor,
    agreement_inputs: Callable[[], list[torch.Tensor]],
    runs: int = RUNS,
    clock: Callable[[], float] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Net]]:
    """Build every candidate (one that fails is recorded with its error), compare its masks with eager's and
    time them all on `x`. Returns per candidate {seconds, speedup, agreement} or {error}, and the built nets."""
    if "eager" not in candidates:
        raise ResegError("the auto backend compares every candidate with eager, which is missing")
    nets: dict[str, Net] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, build in candidates.items():
        try:
            nets[name] = build()
        except ResegError as err:
            if name == "eager":
                raise
            results[name] = {"error": str(err)}
    with torch.inference_mode():
        inputs = agreement_inputs() or [x]
        reference = [class_ids(nets["eager"](t)) for t in inputs]
        agreement = {"eager": 1.0}
        for name in [n for n in nets if n != "eager"]:
            try:
                agreement[name] = masks_agreement(nets[name], reference, inputs)
            except ResegError as err:  # a backend that makes its files on first use fails here
                results[name] = {"error": str(err)}
                del nets[name]
        seconds = time_nets(nets, x, runs, clock)
    for name in nets:
        results[name] = {
            "seconds": seconds[name],
            "speedup": seconds["eager"] / max(seconds[name], 1e-12),
            "agreement": agreement[name],
        }
    return {name: results[name] for name in candidates}, nets


def pick(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The rule of the module doc: the fastest candidate with MIN_AGREEMENT, eager unless one beats it by MIN_GAIN."""
    kept = {
        name: r
        for name, r in results.items()
        if name != "eager" and "speedup" in r and r["agreement"] >= MIN_AGREEMENT and r["speedup"] >= MIN_GAIN
    }
    return max(kept, key=lambda name: kept[name]["speedup"]) if kept else "eager"


def choose(
    model_digest: str,
    shape: Sequence[int],
    candidates: Mapping[str, Callable[[], Net]],
    x: torch.Tensor,
    agreement_inputs: Callable[[], list[torch.Tensor]],
    folder: str | Path,
    runs: int = RUNS,
    clock: Callable[[], float] | None = None,
) -> tuple[Choice, dict[str, Net]]:
    """The stored choice for (weights, shape, machine), or a new measurement, stored. Returns the choice and
    the nets built while measuring (empty when the choice was stored: only the chosen one is built then)."""
    path = record_path(folder, model_digest, shape)
    stored = load_choice(path)
    if stored is not None and stored.backend in candidates:
        return stored, {}
    results, nets = measure(candidates, x, agreement_inputs, runs, clock)
    choice = Choice(
        backend=pick(results),
        shape=[int(v) for v in shape],
        results=results,
        measured=datetime.date.today().isoformat(),
        machine=machine(),
    )
    save_choice(path, choice)
    return choice, nets
