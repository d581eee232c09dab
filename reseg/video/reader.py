"""The reading thread: decodes ahead of inference into a bounded queue (`--realtime`: newest frame wins)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from reseg.video.sources import Frame, Source
from reseg.video.timing import StageTimes

_END = object()


class Reader(threading.Thread):
    """Decodes ahead of inference into a bounded queue; with `realtime`, the newest frame replaces a stale one.

    A live source (camera, stream) delivers at its own rate; files, folders and arrays are paced at the
    source's frame rate in realtime mode, as if a camera produced them.
    """

    def __init__(self, source: Source, size: int, times: StageTimes, realtime: bool = False) -> None:
        super().__init__(name="reseg-video-reader", daemon=True)
        self.source = source
        self.times = times
        self.realtime = realtime
        self.pace = realtime and source.kind not in ("camera", "stream")
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.stale: list[int] = []

    def run(self) -> None:
        try:
            frames = iter(self.source)
            start, k = time.perf_counter(), 0
            while not self.stop_event.is_set():
                if self.pace:
                    delay = start + k / self.source.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    k += 1
                t0 = time.perf_counter()
                frame = next(frames, None)
                dt = time.perf_counter() - t0
                self.times.add("decode", dt)
                self.times.busy("reader", dt)
                if frame is None or not self._put(frame):
                    break
        except BaseException as err:
            self.error = err
        finally:
            self._put(_END, newest_wins=False)

    def _put(self, item: Any, newest_wins: bool | None = None) -> bool:
        if self.realtime if newest_wins is None else newest_wins:
            while True:
                try:
                    self.queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        stale = self.queue.get_nowait()
                    except queue.Empty:
                        continue
                    if isinstance(stale, Frame):
                        self.stale.append(stale.index)
        t0 = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            self.times.waited("reader_blocked", time.perf_counter() - t0)

    def frames(self) -> Iterator[Frame]:
        """Decoded frames in order; the time spent waiting for them is the inference thread's starvation."""
        while True:
            t0 = time.perf_counter()
            item = self.queue.get()
            self.times.waited("inference_starved", time.perf_counter() - t0)
            if item is _END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
