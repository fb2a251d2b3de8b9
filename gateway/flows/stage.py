"""A step of a flow on a thread of its own, fed through a short queue.

The flows' work is mostly Arrow kernels, SQLite statements and pipe writes, all of which
run without the GIL: split into stages, one file's chunks keep both cores busy — one
stage reading and checking chunk *k+1* while the next asks the ledger about chunk *k*.
Each stage keeps its :class:`~gateway.timing.Times` (busy, idle, waiting on the
next stage), and joins the timeline of the file being read on the thread that builds it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway import timing


class Stage:
    """Work items handled in order on a thread of their own; at most :data:`QUEUED` wait
    (memory stays bounded). An error there is raised here, at the next item handed over
    or at the end; the items after it are dropped."""

    QUEUED = 2

    def __init__(self, name: str, handle: Callable[[Any], None]) -> None:
        self.times = timing.Times(name, queued=True)
        line = timing.timeline()  # built on the feeding thread: the file it reads
        if line is not None:
            line.join(self.times)
        self._line = line
        self._handle = handle
        self._queue: queue.Queue[tuple[Any] | None] = queue.Queue(maxsize=self.QUEUED)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        times, clock = self.times, time.perf_counter
        timing.on_this_thread(times, self._line)
        cpu0 = time.thread_time()
        try:
            while True:
                t0 = clock()
                item = self._queue.get()
                t1 = clock()
                times.idle += t1 - t0
                if item is None:
                    break
                if times.first is None:
                    times.first = t1
                if self._error is None and not self._stopping:
                    try:
                        self._handle(item[0])
                    except BaseException as exc:  # handed to the thread that feeds this one
                        self._error = exc
                    times.items += 1
                    times.active += clock() - t1
        finally:
            times.cpu = time.thread_time() - cpu0

    def put(self, item: Any) -> None:
        self._raise()
        t0 = time.perf_counter()
        self._queue.put((item,))
        waited = time.perf_counter() - t0
        self.times.full += waited
        if (feeder := timing.worker()) is not None:
            feeder.blocked += waited

    def finish(self) -> None:
        """Wait until everything handed over is handled."""
        self._end()
        self._raise()

    def stop(self) -> None:
        """Handle nothing more; wait for the item in hand (a pipe write returns or fails)."""
        self._stopping = True
        self._end()

    def _end(self) -> None:
        """The end of the queue handed over, and the thread waited for: the feeder's
        *drain* time."""
        if not self._thread.is_alive():
            return
        t0 = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        if (feeder := timing.worker()) is not None:
            feeder.drain += time.perf_counter() - t0

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
