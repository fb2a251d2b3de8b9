"""A step of a flow on a thread of its own, fed through a short queue.

The flows' work is mostly Arrow kernels, SQLite statements and pipe writes, all of which
run without the GIL: split into stages, one file's chunks keep both cores busy — one
stage reading and checking chunk *k+1* while the next asks the ledger about chunk *k*.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Stage:
    """Work items handled in order on a thread of their own; at most :data:`QUEUED` wait
    (memory stays bounded). An error there is raised here, at the next item handed over
    or at the end; the items after it are dropped."""

    QUEUED = 2

    def __init__(self, name: str, handle: Callable[[Any], None]) -> None:
        self._handle = handle
        self._queue: queue.Queue[tuple[Any] | None] = queue.Queue(maxsize=self.QUEUED)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._stopping:
                try:
                    self._handle(item[0])
                except BaseException as exc:  # handed to the thread that feeds this one
                    self._error = exc

    def put(self, item: Any) -> None:
        self._raise()
        self._queue.put((item,))

    def finish(self) -> None:
        """Wait until everything handed over is handled."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def stop(self) -> None:
        """Handle nothing more; wait for the item in hand (a pipe write returns or fails)."""
        self._stopping = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
