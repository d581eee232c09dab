"""Timing helpers of `reseg benchmark`: medians after a warm-up, interleaved timing, peak memory, the machine.

Quantities that are compared are timed interleaved, one repeat of each in turn, so that load from
other processes slows them alike: read the ratios, not the absolute figures, on a shared machine.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from reseg.runtime import cpu_has_native_bf16, cpu_name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """float32 arithmetic without TF32 on CUDA (cuDNN's RNNs and convolutions use TF32 by default), so
    implementations can be compared to 1e-4; the timings run with the defaults users get."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def time_fn(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, device: torch.device | str = "cpu") -> float:
    """Median seconds of `fn()` over `repeats` after `warmup` calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Median seconds of each function, running one repeat of each in turn (fair under shared load)."""
    device = torch.device(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


class PeakMemory:
    """Peak memory in MB above the level at entry: CUDA allocator peak, or sampled RSS on CPU.

    On CPU a thread reads /proc/self/statm every few milliseconds (no psutil needed); elsewhere it
    falls back to the process' ru_maxrss, which only grows.
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._base = 0
        self._max = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._max = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._rss())
        self.peak_mb = max(0.0, (peak - self._base) / 2**20)


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """CPU model, cores, threads, torch version (and GPU name on CUDA)."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": cpu_has_native_bf16(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def gemm_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best GFLOP/s of an n x n x n matrix product (a peak, so the fastest repeat counts)."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


@dataclass(frozen=True)
class BenchOptions:
    """What every section reads: device, image size and batch of the models, repeats, and section options."""

    device: str = "cpu"
    size: tuple[int, int] = (360, 480)
    batch: int = 4
    repeats: int = 3
    quick: bool = False
    renet_batch: int = 1
    skip_sequence_loop: bool = False
    compile: bool = False
    checkpoint: str | None = None  # predictor section: measure this checkpoint (else an untrained demo one)
    sizes: tuple[tuple[int, int], ...] = ()  # predictor section: sizes besides the checkpoint's own
    predictor_batch: int = 1  # predictor section: images per batch, as `reseg predict --batch`


def fmt(v: Any, digits: int = 2) -> str:
    """A table cell: floats to `digits` places, None as a dash."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)
