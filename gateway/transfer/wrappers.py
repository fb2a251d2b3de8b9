"""Cross-cutting zone behaviour as wrappers around a plain zone (restic/rclone style).

* :class:`RetryingZone` retries what failed *transiently* (network, server
  restart), with exponential backoff and jitter, re-opening the connection
  each time. Only errors classified transient are retried; a wrong host key or
  a refused login is not. Every operation is safe to repeat: listing, stat and
  remove are idempotent, an upload goes to a fresh temporary name and only the
  final rename makes it visible (a retried upload that finds its own file in
  place is recognised by the caller by size), and a read is retried only while
  opening, never half-way through a stream.
* :class:`MonitoredZone` remembers, per zone, the last successful scan, how
  many files were waiting and the last error — what `gateway status` shows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import structlog

from gateway.streams import Readable
from gateway.transfer.base import Entry, TransientZoneError, Zone

log = structlog.get_logger("gateway.transfer")
T = TypeVar("T")


@contextlib.contextmanager
def _guarded_open(inner: Zone, name: str,
                  guard: Callable[[Callable[[], Readable]], Readable]) -> Iterator[Readable]:
    """Open through *guard* (retry, or record); the stream itself is not guarded."""
    stack = contextlib.ExitStack()
    fh = guard(lambda: stack.enter_context(inner.open_read(name)))
    with stack:
        yield fh


class RetryingZone:
    def __init__(self, inner: Zone, *, attempts: int = 6, base: float = 0.5, cap: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.key = inner.key
        self.attempts = attempts  # tries in all, the first included
        self.base, self.cap = base, cap  # seconds: first delay, longest delay
        self._sleep = sleep

    def describe(self) -> str:
        return self.inner.describe()

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except TransientZoneError as exc:
                if attempt == self.attempts:
                    raise
                delay = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))  # noqa: S311 — jitter, not a secret
                log.warning("zone.retry", zone=self.key, op=what, attempt=attempt,
                            delay=round(delay, 2), error=str(exc))
                self._sleep(delay)
        raise AssertionError("unreachable")

    def list_ready(self) -> list[Entry]:
        return self._retry("list", self.inner.list_ready)

    def list_all(self) -> list[Entry]:
        return self._retry("list", self.inner.list_all)

    def stat(self, name: str) -> Entry | None:
        return self._retry("stat", lambda: self.inner.stat(name))

    def remove(self, name: str) -> None:
        self._retry("remove", lambda: self.inner.remove(name))

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        start = src.tell()

        def attempt() -> Entry:
            src.seek(start)
            return self.inner.write_atomic(name, src)
        return self._retry("upload", attempt)

    def open_read(self, name: str) -> contextlib.AbstractContextManager[Readable]:
        return _guarded_open(self.inner, name, lambda fn: self._retry("open", fn))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close:
            close()


@dataclass
class Health:
    last_scan: dt.datetime | None = None
    waiting: int = 0
    last_error: str | None = None
    last_error_at: dt.datetime | None = None


class MonitoredZone:
    """Passes every call through; records scans and errors in :attr:`health`."""

    def __init__(self, inner: Zone) -> None:
        self.inner = inner
        self.key = inner.key
        self.health = Health()

    def describe(self) -> str:
        return self.inner.describe()

    touched: bool = False  # any operation this pass (the daemon resets it)

    def _watch(self, fn: Callable[[], T]) -> T:
        self.touched = True
        try:
            result = fn()
        except Exception as exc:
            if getattr(exc, "zone_level", True):  # one file's problem is not the zone's
                self.health.last_error = str(exc)
                self.health.last_error_at = dt.datetime.now(dt.UTC)
            raise
        self.health.last_scan = dt.datetime.now(dt.UTC)  # the zone answered
        return result

    def list_ready(self) -> list[Entry]:
        return self._watch(self.inner.list_ready)

    def list_all(self) -> list[Entry]:
        return self._watch(self.inner.list_all)

    def stat(self, name: str) -> Entry | None:
        return self._watch(lambda: self.inner.stat(name))

    def remove(self, name: str) -> None:
        self._watch(lambda: self.inner.remove(name))

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        return self._watch(lambda: self.inner.write_atomic(name, src))

    def open_read(self, name: str) -> contextlib.AbstractContextManager[Readable]:
        return _guarded_open(self.inner, name, self._watch)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close:
            close()
