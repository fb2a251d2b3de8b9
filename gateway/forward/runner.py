"""The daemon's forwarding threads: one per ``[[forward]]`` destination, so a receiver that
is slow, gone or hostile holds back only its own copy — never the flows, never another
destination.

A thread holds the lease ``forward:<destination>:<node>`` while it forwards (the leases'
renewal thread keeps it), so of two processes that could forward one log only one does;
the cursor moves only in a transaction that finds the lease still ours. It sleeps until
an entry is written (the audit log's listener wakes it) or a second passes (entries that
other processes — the console, ``gateway users`` — append). On a failure it drops the
connection and tries again from the cursor after a back-off (1 s, doubling to a minute);
the first failure is audited as ``forward.failing``, the first success after it as
``forward.recovered``. A broken chain stops the destination for good (until restarted):
no entry after the break is sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.audit import AuditLog
from gateway.config import SyslogForward, WebhookForward
from gateway.config.forward import file_problems
from gateway.errors import AuditError, ConfigError, GatewayError
from gateway.forward import reader, senders
from gateway.leases import Leases
from gateway.ledger import LeaseLost, Ledger
from gateway.metrics import Metrics

log = structlog.get_logger("gateway.forward")

POLL = 1.0  # seconds between looks at the log when nothing woke the thread
BACKOFF = (1.0, 60.0)  # first and longest wait after a failure
SETTLE = 0.2  # seconds to let a burst of entries gather once woken


@dataclass(frozen=True)
class Link:
    """What a forwarding thread takes from the daemon."""

    ledger: Ledger
    audit: AuditLog
    node: str
    leases: Leases
    metrics: Metrics


class Forwarder:
    """One destination's thread (see the module docstring)."""

    def __init__(self, dest: SyslogForward | WebhookForward, link: Link,
                 sender: senders.Sender | None = None) -> None:
        self.dest, self.link = dest, link
        self.sender = sender or senders.sender_for(dest, link.node)
        self.item = f"forward:{dest.name}:{link.node}"
        self.wake, self.stop = threading.Event(), threading.Event()
        self.position: reader.Position | None = None  # the cursor as this thread last saved it
        self.failing: str | None = None  # the reason word while failing
        self.halted = False
        self.backlog = 0
        self.thread = threading.Thread(target=self._run, name=f"forward-{dest.name}", daemon=True)

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop.is_set() and not self.halted:
            try:
                with self.link.leases.hold(self.item) as held:
                    if held:
                        self.position = None  # another holder may have moved it meanwhile
                        self._forward()
                    else:
                        self.stop.wait(max(1.0, self.link.leases.seconds / 3))
            except Exception as exc:  # the ledger away while taking the lease;
                # a bug: said, and tried again; this thread must not die of it
                log.error("forward.thread_failed", destination=self.dest.name, error=str(exc),
                          exc_info=not isinstance(exc, GatewayError))
                self.stop.wait(BACKOFF[1])

    def _forward(self) -> None:
        """Batches until stopped, halted, or the lease is lost."""
        pause = BACKOFF[0]
        while not self.stop.is_set():
            try:
                more = self.step()
            except LeaseLost as exc:
                log.warning("forward.lease_lost", destination=self.dest.name, error=str(exc))
                self.sender.close()
                return
            except reader.ChainBroken as exc:
                self._failed(exc, at_seq=exc.seq)
                self.halted = True
                return
            except Exception as exc:  # the receiver, the network, TLS, the
                self.sender.close()  # ledger: each is the same here, retried from the cursor
                self._failed(exc)
                self.stop.wait(pause)
                pause = min(pause * 2, BACKOFF[1])
                continue
            pause = BACKOFF[0]
            if not more:
                self.wake.wait(POLL)
                # A pass writes entries in bursts: gather them for a moment, so one burst
                # is one batch and one cursor write, not one each (the ledger is the flows').
                self.stop.wait(SETTLE)

    def step(self) -> bool:
        """Send the next batch and move the cursor past it; True when there may be more."""
        self.wake.clear()  # before reading: an entry written meanwhile wakes the next wait
        path = self.link.audit.path
        if self.position is None:
            row = self.link.ledger.forward_cursor(self.dest.name, self.link.node)
            self.position = (reader.locate(path, row.seq, row.hash, row.offset) if row
                             else reader.Position())
        batch = reader.read_batch(path, self.position, wants=self.dest.wants, size=self.dest.batch)
        if batch.lines:
            self.sender.send(batch.lines, batch.entries)
        if batch.end != batch.start:
            self.link.ledger.save_forwarded(self.dest.name, self.link.node, seq=batch.end.seq,
                                            hash_=batch.end.hash, offset=batch.end.offset,
                                            lease=(self.item, self.link.node),
                                            sent=bool(batch.lines))
            self.position = batch.end
        if self.failing is not None:
            self._recovered()
        self.measure()
        if batch.broken is not None:  # the sound entries before a break went out first
            raise batch.broken
        return not batch.at_end

    def measure(self) -> None:
        """The backlog gauge — after a failure too, when it matters most: a destination that
        never worked, or stopped working, shows how far behind it is."""
        try:
            seq = self.position.seq if self.position is not None else 0
            if self.position is None and (row := self.link.ledger.forward_cursor(
                    self.dest.name, self.link.node)) is not None:
                seq = row.seq
            self.backlog = max(0, reader.last_seq(self.link.audit.path) - seq)
        except (OSError, GatewayError):
            return
        self.link.metrics.forward_backlog.labels(destination=self.dest.name).set(self.backlog)

    # -- failing and recovering ------------------------------------------------------
    def _failed(self, exc: Exception, *, at_seq: int | None = None) -> None:
        reason = "chain_broken" if at_seq is not None else senders.classify(exc)
        self.link.metrics.forward_errors.labels(destination=self.dest.name).inc()
        message = str(exc) or type(exc).__name__
        log.warning("forward.failed", destination=self.dest.name, reason=reason,
                    error=message[:300])
        with contextlib.suppress(GatewayError):
            self.link.ledger.save_forward_error(self.dest.name, self.link.node, message)
        if self.failing is None:
            self._audit("forward.failing", reason=reason, error=type(exc).__name__,
                        at_seq=at_seq)
        self.failing = reason
        self.measure()

    def _recovered(self) -> None:
        self.link.ledger.save_forward_error(self.dest.name, self.link.node, None)
        self._audit("forward.recovered")
        log.info("forward.recovered", destination=self.dest.name)
        self.failing = None

    def _audit(self, event: str, **fields: object) -> None:
        try:
            self.link.audit.record(event, destination=self.dest.name, kind=self.dest.kind,
                                   **fields)
        except (AuditError, OSError) as exc:  # the disk: the flows fail on it and say so
            log.error("forward.audit_failed", destination=self.dest.name, error=str(exc))


class Hub:
    """Every destination's thread; :meth:`wake` is the audit log's listener's second half."""

    def __init__(self, forwarders: list[Forwarder]) -> None:
        self.forwarders = forwarders

    def start(self) -> None:
        for f in self.forwarders:
            f.link.metrics.forward_errors.labels(destination=f.dest.name)  # each from 0
            f.measure()  # the backlog from the start, before the first batch succeeds
            f.thread.start()

    def wake(self, _event: str | None = None) -> None:
        for f in self.forwarders:
            f.wake.set()

    def close(self, drain: float = 2.0) -> None:
        """Stop every thread — after up to *drain* seconds for a working destination to send
        what is waiting (``gateway.stopped`` among it); the rest go at the next start."""
        deadline = time.monotonic() + drain
        self.wake()
        while time.monotonic() < deadline and any(
                f.failing is None and not f.halted and f.position is not None
                and reader.last_seq(f.link.audit.path) > f.position.seq
                for f in self.forwarders):
            time.sleep(0.05)
        for f in self.forwarders:
            f.stop.set()
            f.wake.set()
            f.sender.close()  # ends a send blocked on a receiver that does not read
        deadline = time.monotonic() + 10.0  # one bound for all: a stop must be prompt
        for f in self.forwarders:
            f.thread.join(timeout=max(0.0, deadline - time.monotonic()))


def start(cfg_forward: list[SyslogForward | WebhookForward], link: Link,
          listen: Callable[[Callable[[str], None]], None]) -> Hub:
    """Every destination's thread, running; *listen* adds the hub's wake-up to the audit
    log's listener. A destination whose files or secret are missing stops the start."""
    if problems := file_problems(cfg_forward):
        raise ConfigError(problems)
    hub = Hub([Forwarder(d, link) for d in cfg_forward])
    listen(hub.wake)
    hub.start()
    return hub
