"""Where a file's reading spent its time: each thread's busy and waiting seconds.

A file is read by one thread (decrypting through gpg, parsing and checking chunks) that
feeds :class:`~gateway.flows.stage.Stage` s, each on a thread of its own. Whether a
slower file is the reader's fault, a stage's, or gpg's is not visible from its total:
the stage that is busy all the time is the one to make faster, and one that mostly
waits for work is not. So every thread keeps its :class:`Times`, a :class:`Timeline`
gathers those of one file, and the driver logs them as one ``file.stages`` line
(:mod:`gateway.flows.arrival`) — for operators as for the benchmark.

The timeline reaches the stages through a context variable set on the reading thread:
a stage is built on that thread (its constructor joins the timeline), so the flows that
build stages need not pass anything along; the engine's pipes (:mod:`gateway.crypto.engine`)
count their waits to whichever thread is timed. Counting costs a few clock reads per
chunk. Here, not in :mod:`gateway.flows`: the engine, below the flows, reports to it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.streams import ReadsInto

if TYPE_CHECKING:
    from typing_extensions import Buffer

_timeline: contextvars.ContextVar[Timeline | None] = contextvars.ContextVar(
    "gateway_timeline", default=None)
# The Times of the thread running now: a put that waits is counted to its feeder.
_worker: contextvars.ContextVar[Times | None] = contextvars.ContextVar(
    "gateway_worker", default=None)


@dataclass
class Times:
    """One thread's share of a file's reading, in seconds.

    *active* is the time it worked or waited on something it needed (a stage: inside its
    handler; the reading thread: all of it); *busy* is that less those waits: its own
    work, which includes waiting for the interpreter lock or a core (compare *cpu*).
    *idle* is a stage waiting for work (its queue empty). *gpg* is waiting on gpg: for
    its plaintext and verdict (reading), for room in its pipe (sealing). *blocked* is
    waiting for room in the next stage's queue, *drain* waiting at the end for the next
    stage to finish. *full* is the other side of a stage's queue: how long its feeder
    waited for room in it. *cpu* is the thread's CPU time (``time.thread_time``);
    *items* the items a stage handled."""

    name: str
    active: float = 0.0
    idle: float = 0.0
    gpg: float = 0.0
    blocked: float = 0.0
    drain: float = 0.0
    full: float = 0.0
    cpu: float = 0.0
    items: int = 0
    queued: bool = False  # a stage (full, items); the reading thread has no queue
    first: float | None = None  # when a stage took its first item: the pipeline's order

    @property
    def busy(self) -> float:
        return max(0.0, self.active - self.gpg - self.blocked - self.drain)

    def fields(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "busy_s": round(self.busy, 3), "idle_s": round(self.idle, 3),
            "gpg_s": round(self.gpg, 3), "blocked_s": round(self.blocked, 3),
            "drain_s": round(self.drain, 3),
            "cpu_s": round(self.cpu, 3)}
        if self.queued:
            out["full_s"] = round(self.full, 3)
            out["items"] = self.items
        return out


@dataclass
class Timeline:
    """One file's reading: the reading thread's times and its stages'."""

    reader: Times = field(default_factory=lambda: Times("read"))
    stages: list[Times] = field(default_factory=list)
    wall: float = 0.0

    @contextlib.contextmanager
    def reading(self) -> Iterator[Timeline]:
        """Time the current thread as the file's reader; stages built inside join."""
        tokens = _timeline.set(self), _worker.set(self.reader)
        t0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            yield self
        finally:
            self.wall = time.perf_counter() - t0
            self.reader.cpu = time.thread_time() - cpu0
            self.reader.active = self.wall
            _worker.reset(tokens[1])
            _timeline.reset(tokens[0])

    def join(self, times: Times) -> None:
        """A stage's times, named uniquely within the file (a name used twice gets .2)."""
        names = {self.reader.name, *(t.name for t in self.stages)}
        base, n = times.name, 2
        while times.name in names:
            times.name, n = f"{base}.{n}", n + 1
        self.stages.append(times)

    def fields(self) -> dict[str, object]:
        """What the ``file.stages`` line carries: numbers and stage names only, the
        stages in the order work reached them (a later stage is often built first)."""
        stages = sorted(self.stages, key=lambda t: (t.first is None, t.first or 0.0))
        return {"wall_s": round(self.wall, 3),
                "stages": {t.name: t.fields() for t in (self.reader, *stages)}}


def timeline() -> Timeline | None:
    """The file being read on this thread, if its reading is timed."""
    return _timeline.get()


def worker() -> Times | None:
    """The Times of the thread running now (the reader's, or a stage's)."""
    return _worker.get()


def on_this_thread(times: Times, line: Timeline | None) -> None:
    """A stage's thread starts with an empty context: make its times the current ones,
    and the timeline its stages join, should it build any."""
    _worker.set(times)
    _timeline.set(line)


class WaitedInput(io.RawIOBase):
    """A stream whose reads are counted as the reader's *gpg* time: how long the
    reading thread waited for gpg's plaintext (a read returns what the pipe holds, or
    waits until gpg writes some)."""

    def __init__(self, stream: ReadsInto, times: Times) -> None:
        super().__init__()
        self._stream, self._times = stream, times

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int | None:
        t0 = time.perf_counter()
        try:
            return self._stream.readinto(memoryview(buffer))
        finally:
            self._times.gpg += time.perf_counter() - t0


def waited(stream: ReadsInto) -> ReadsInto:
    """*stream* (gpg's plaintext), its reads timed as the current thread's wait on gpg
    (*stream* as it is, if this thread's reading is not timed)."""
    times = _worker.get()
    return stream if times is None else WaitedInput(stream, times)


@contextlib.contextmanager
def on_gpg() -> Iterator[None]:
    """Count the block as the current thread's wait on gpg (if it is timed)."""
    times = _worker.get()
    if times is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        times.gpg += time.perf_counter() - t0
