"""A flow's stage: items handled in order on its own thread; its error comes back to the
thread that feeds it; a stop waits for the item in hand and drops the rest."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest

from gateway import timing
from gateway.flows.stage import Stage
from gateway.timing import Timeline, waited


def test_items_are_handled_in_order():
    seen: list[int] = []
    stage = Stage("t", seen.append)
    for i in range(100):
        stage.put(i)
    stage.finish()
    assert seen == list(range(100))


def test_an_error_is_raised_to_the_feeder_and_later_items_are_dropped():
    seen: list[int] = []

    def handle(i: int) -> None:
        if i == 3:
            raise ValueError("chunk 3")
        seen.append(i)

    stage = Stage("t", handle)
    with pytest.raises(ValueError, match="chunk 3"):
        for i in range(50):
            stage.put(i)
        stage.finish()
    assert seen == [0, 1, 2]


def test_stop_waits_for_the_item_in_hand_and_drops_the_rest():
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def handle(i: int) -> None:
        started.set()
        release.wait(5)
        seen.append(i)

    stage = Stage("t", handle)
    stage.put(0)
    started.wait(5)
    stage.put(1)  # waits in the queue
    threading.Timer(0.2, release.set).start()
    stage.stop()
    assert seen == [0]  # the item in hand finished; the queued one was dropped


# --- where a file's reading waits (gateway.timing) ---------------------------


def test_a_slow_handler_shows_as_the_stage_busy_and_its_feeder_blocked():
    line = Timeline()
    with line.reading():
        stage = Stage("slow", lambda _i: time.sleep(0.05))
        for i in range(6):
            stage.put(i)
        stage.finish()
    slow = line.stages[0]
    assert slow.name == "slow" and slow.items == 6
    assert slow.busy >= 0.25  # six sleeps of 0.05 s
    assert slow.idle < 0.1  # never short of work
    # the queue holds two: the feeder waited for room for most of the items, then for the end
    assert line.reader.blocked >= 0.1 and slow.full == pytest.approx(line.reader.blocked)
    assert line.reader.drain >= 0.05
    assert line.reader.busy < 0.1  # the reader itself did nothing
    assert slow.cpu < 0.1  # sleeping is no CPU time


def test_a_slow_feeder_shows_as_the_stage_idle():
    line = Timeline()
    with line.reading():
        stage = Stage("fast", lambda _i: None)
        for i in range(5):
            time.sleep(0.04)  # the reader's own work
            stage.put(i)
        stage.finish()
    fast = line.stages[0]
    assert fast.idle >= 0.15 and fast.busy < 0.05 and fast.full < 0.05
    assert line.reader.busy >= 0.15 and line.reader.blocked < 0.05


def test_a_stage_feeding_a_stage_has_its_wait_counted_as_blocked_not_busy():
    line = Timeline()
    with line.reading():
        second = Stage("second", lambda _i: time.sleep(0.05))
        first = Stage("first", second.put)
        for i in range(6):
            first.put(i)
        first.finish()
        second.finish()
    assert list(line.fields()["stages"]) == ["read", "first", "second"]  # as work flows
    by_name = {t.name: t for t in line.stages}
    assert by_name["first"].blocked >= 0.1  # waited for room in second's queue
    assert by_name["first"].busy < 0.05
    assert by_name["second"].busy >= 0.25


def test_the_reader_waiting_on_gpg_is_not_busy_and_cpu_is_per_thread():
    class Slow(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 3

        def readinto(self, buffer: Any) -> int:
            time.sleep(0.05)
            if not self.left:
                return 0
            self.left -= 1
            buffer[:1] = b"x"
            return 1

    line = Timeline()
    with line.reading():
        stream = waited(Slow())  # gpg's plaintext
        while stream.readinto(memoryview(bytearray(8))):
            pass
        with timing.on_gpg():  # its verdict
            time.sleep(0.05)
        sum(range(2_000_000))  # CPU time on the reading thread
    assert line.reader.gpg >= 0.2 and line.reader.idle == 0
    assert line.reader.cpu > 0.01 and line.reader.busy >= line.reader.cpu * 0.5
    assert line.wall >= line.reader.gpg + line.reader.busy - 1e-6


def test_untimed_stages_still_count_and_the_line_names_each_stage_once():
    stage = Stage("alone", lambda _i: None)  # no reading timed on this thread
    stage.put(1)
    stage.finish()
    assert stage.times.items == 1 and timing.timeline() is None
    line = Timeline()
    with line.reading():
        Stage("s", lambda _i: None).finish()
        Stage("s", lambda _i: None).finish()
    stages: Any = line.fields()["stages"]
    assert list(stages) == ["read", "s", "s.2"]
    assert set(stages["s"]) == {"busy_s", "idle_s", "gpg_s", "blocked_s", "drain_s", "cpu_s",
                                "full_s", "items"}
    assert "items" not in stages["read"]
    assert timing.timeline() is None and timing.worker() is None  # reset after the reading
    with timing.on_gpg():  # nothing timed on this thread: nothing counted, nothing raised
        pass


def test_a_stage_writing_into_gpg_counts_the_full_pipe_as_gpg_time(tmp_path):
    """The sealing stage's writes into gpg's pipe (SealWriter.write): a write waits while
    gpg, slower, has not taken what came before."""
    from gateway.crypto.engine import SealWriter

    class Pipe:
        def write(self, data: bytes) -> int:
            time.sleep(0.05)  # gpg taking its time
            return len(data)

    class Proc:
        stdin = Pipe()

    writer = SealWriter.__new__(SealWriter)  # no gpg: only the write path is under test
    writer._gpg = type("G", (), {"proc": Proc()})()
    line = Timeline()
    with line.reading():
        stage = Stage("seal", writer.write)
        for _ in range(4):
            stage.put(b"x" * 10)
        stage.finish()
    seal = line.stages[0]
    assert seal.gpg >= 0.15 and seal.busy < 0.1
