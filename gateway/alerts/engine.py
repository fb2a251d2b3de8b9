"""The alert engine: once per daemon pass, what holds now, synced with the ledger's open
alerts (see :mod:`gateway.alerts`).

Event rules read the audit log through a cursor of their own in the ledger (per node), as
forwarding does, rather than taking the entries the pass writes: the entries that matter
most are often written by other processes — the console locking an account, `gateway
users` changing one, `run --once` — and a cursor also carries the events across a daemon
restart. The first start begins at the log's end: an existing log's history is not
re-alerted. The read checks the chain; a break is itself an alert (``audit_verify``).

State rules read the ledger and the read model; each is a few indexed queries, and the
key files are read again at most every :data:`KEYS_EVERY` seconds, so a pass stays cheap.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog

from gateway import clock, queries
from gateway.alerts import rules
from gateway.alerts.rules import key_hash
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.errors import AuditError, GatewayError
from gateway.forward import reader
from gateway.ledger import AlertRow, Ledger
from gateway.ledger.alerting import Finding, Policy, Synced
from gateway.metrics import Metrics
from gateway.retention import policy
from gateway.unmask import register as unmask_register

log = structlog.get_logger("gateway.alerts")

KEYS_EVERY = 600.0  # seconds between readings of the key files
VERIFY_EVERY = 86400.0  # seconds between the daemon's checks of its own chain
STATE_RULES = frozenset({"purge_due", "key_expiry", "uncollected", "zone_down", "pass_failing",
                         "audit_verify", "console_locked", "unacknowledged",
                         "attestation_missing", "unmask_waiting", "unmask_limit"})
NODE_RULES = frozenset({"pass_failing", "audit_verify"})  # each node speaks for its own
EVENTS_PER_PASS = 1000

KeyList = list[tuple[str, str, dt.datetime | None]]  # fingerprint, whose/what, expiry


@dataclass(frozen=True)
class Sources:
    """What the engine reads and writes, from the daemon."""

    cfg: Config
    ledger: Ledger
    audit: AuditLog
    node: str
    metrics: Metrics


class Engine:
    def __init__(self, src: Sources, keys: Callable[[], KeyList],
                 wake: Callable[[], None] = lambda: None) -> None:
        assert src.cfg.alerts is not None  # noqa: S101 — invariant, not an input check
        self.src, self.section, self.keys, self.wake = src, src.cfg.alerts, keys, wake
        self.streaks: dict[str, int] = {}  # part -> passes in a row it failed
        self.first_failing: dict[str, dt.datetime] = {}
        self.verified_at: float | None = None  # when the log was last read whole
        self._verified: reader.Position | None = None  # how far the chain was checked
        self.broken: str | None = None  # why the chain does not verify, as last checked
        self._keys: KeyList = []
        self._keys_at: float | None = None

    # -- one evaluation ---------------------------------------------------------------
    def evaluate(self, now: dt.datetime, failed_parts: Collection[str] = (),
                 verify: bool = False) -> Synced:
        """Find what holds at *now* (the flows' clock), given the pieces of the pass that
        failed; *verify*: check the chain now (after a checkpoint). Returns what changed."""
        for part in list(self.streaks):
            # the checkpoint runs only when one is sealed (*verify*): a pass without it is
            # no success of it, and must not end its streak
            if part not in failed_parts and (part != "checkpoint" or verify):
                del self.streaks[part]
        for part in failed_parts:
            self.streaks[part] = self.streaks.get(part, 0) + 1
        if verify or self.verified_at is None or time.monotonic() - self.verified_at >= VERIFY_EVERY:
            self.check_chain()
        events, end = self._events()
        found = [*events, *self.state(now)]
        synced = self.src.ledger.sync_alerts(found, Policy(
            now=now, node=self.src.node, owns=self._owns,
            remind=dt.timedelta(hours=self.section.reminder_hours), channels=self.channels))
        if end is not None:
            self.src.ledger.save_alert_cursor(self.src.node, seq=end.seq, hash_=end.hash,
                                              offset=end.offset)
        for row in synced.cleared:
            self.src.audit.record("alert.cleared", rule=row.rule, severity=row.severity,
                                  alert_sha256=key_hash(row.key))
        for row in synced.opened:
            log.warning("alert.opened", rule=row.rule, severity=row.severity, subject=row.subject)
        self.measure()
        if synced.notices:
            self.wake()
        return synced

    def state(self, now: dt.datetime) -> list[Finding]:
        cfg, ledger, th = self.src.cfg, self.src.ledger, self.section.thresholds
        today = now.astimezone(cfg.gateway.tz).date()
        found = rules.purges(policy.contracts(cfg, ledger, today), th.purge_due_days)
        found += rules.key_expiries(self.key_list(), now, th.key_expiry_days)
        waiting = {a.code: ledger.uncollected(cfg.zone_name(a.code, "inbox")) for a in cfg.agencies}
        found += rules.uncollected(waiting, now, th.uncollected_days or cfg.console.stale_days)
        evidence = queries.agency_evidence(cfg, ledger, now)
        found += rules.unacknowledged(evidence)
        found += rules.attestations_missing(evidence)
        known = {name for name, _ in cfg.zones()}
        found += rules.zones_down([z for z in ledger.zone_statuses() if z.zone in known], now,
                                  th.zone_down_minutes, self.first_failing)
        found += rules.failing_parts(self.streaks, self.src.node, th.pass_failures)
        found += rules.audit_broken(self.broken, self.src.node)
        found += rules.locked_accounts(ledger.accounts(), now)
        found += rules.unmask_waiting((p.agency, p.purpose, p.decide_by)
                                      for p in unmask_register.pending(ledger, now))
        if (um := cfg.unmask) is not None and (um.monthly_cases or um.monthly_releases):
            since, until = clock.month_bounds(clock.month_of(now, cfg.gateway.tz), cfg.gateway.tz)
            used = {a.code: ledger.unmask_usage(a.code, since, until) for a in cfg.agencies}
            found += rules.unmask_limits((code, requests, um.monthly_releases, cases,
                                          um.monthly_cases)
                                         for code, (requests, cases) in used.items())
        return found

    def key_list(self) -> KeyList:
        if self._keys_at is None or time.monotonic() - self._keys_at >= KEYS_EVERY:
            self._keys, self._keys_at = self.keys(), time.monotonic()
        return self._keys

    def check_chain(self) -> None:
        """Verify this node's audit log (the daemon's own check: at start, after each
        checkpoint, daily). Read on from where the last check ended — on the pass's thread,
        a whole million-entry log would hold the pass for seconds every hour — except once a
        day and at start, when it is read whole (a log replaced under the daemon is caught
        then). Under the log's shared lock, as the forwarders read it: an entry being
        written is not yet there, not "incomplete"."""
        whole = self.verified_at is None or time.monotonic() - self.verified_at >= VERIFY_EVERY
        pos = reader.Position() if whole or self._verified is None else self._verified
        while True:
            batch = reader.read_batch(self.src.audit.path, pos, wants=_nothing, size=1,
                                      scan_limit=100_000)
            pos = batch.end
            if batch.broken is not None:
                self.broken = str(batch.broken)[:300]
                break
            if batch.at_end:
                self.broken = None
                break
        self._verified = pos
        if whole:
            self.verified_at = time.monotonic()

    def prime(self) -> None:
        """On a first start, place the event cursor at the log's end before the first pass:
        history is not alerted, but what that pass writes (the backlog of files met while
        the gateway was down) is."""
        if self.src.ledger.alert_cursor(self.src.node) is None:
            _, end = self._events()
            if end is not None:
                self.src.ledger.save_alert_cursor(self.src.node, seq=end.seq, hash_=end.hash,
                                                  offset=end.offset)

    def _events(self) -> tuple[list[Finding], reader.Position | None]:
        """One-shot findings from the entries after the cursor, and where they end."""
        path, node = self.src.audit.path, self.src.node
        row = self.src.ledger.alert_cursor(node)
        try:
            if row is None:  # the first start: from the log's end, not its history
                last = self.src.audit.last_entry()
                return [], (reader.Position(int(last["seq"]), str(last["hash"]),
                                            self.src.audit.size()) if last else reader.Position())
            start = reader.locate(path, row.seq, row.hash, row.offset)
            batch = reader.read_batch(path, start, wants=_wanted, size=EVENTS_PER_PASS)
        except (reader.ChainBroken, AuditError) as exc:
            self.broken = str(exc)[:300] or type(exc).__name__
            return [], None  # the cursor stays: nothing after a break is believed
        if batch.broken is not None:
            self.broken = str(batch.broken)[:300]
        tz, window = self.src.cfg.gateway.tz, self.section.window
        found = [f for e in batch.entries if (f := rules.from_entry(e, node, tz, window))]
        return found, (batch.end if batch.end != batch.start else None)

    def _owns(self, row: AlertRow) -> bool:
        """Whether this evaluation speaks for *row*: a state rule's (an event's clears once
        sent), and for a node's own rules, this node's."""
        return row.rule in STATE_RULES and (row.rule not in NODE_RULES or row.node == self.src.node)

    def channels(self, severity: str) -> list[str]:
        """Where an alert of *severity* goes: e-mail if anyone gets that severity, and every
        webhook."""
        out = ["email"] if self.section.smtp and self.section.recipients.of(severity) else []
        return out + [f"webhook{i}" for i in range(len(self.section.webhooks))]

    def measure(self) -> None:
        try:
            counts = self.src.ledger.open_alert_counts()
        except GatewayError:
            return
        for sev in ("critical", "warning", "info"):
            self.src.metrics.alerts_open.labels(severity=sev).set(counts.get(sev, 0))


def _wanted(event: str) -> bool:
    return event.startswith(("security.", "file.rejected", "console.account_"))


def _nothing(_event: str) -> bool:
    """The chain check reads every entry and keeps none."""
    return False
