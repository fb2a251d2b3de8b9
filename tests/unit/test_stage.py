"""A flow's stage: items handled in order on its own thread; its error comes back to the
thread that feeds it; a stop waits for the item in hand and drops the rest."""

from __future__ import annotations

import threading

import pytest

from gateway.flows.stage import Stage


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
