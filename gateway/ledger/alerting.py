"""Alerts (docs/operations.md, "Alerts"): the open and cleared conditions, their notices to
each channel (an outbox), and how far each node's engine has read its audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.ledger.core import Core, _first_row_race, _rowcount
from gateway.ledger.schema import AlertCursorRow, AlertMessageRow, AlertRow, utcnow


@dataclass(frozen=True)
class Finding:
    """A condition that holds now (or an event just seen): what an alert is opened for."""

    key: str  # rule:subject — stable, never personal data
    rule: str
    severity: str
    subject: str
    detail: str = ""
    oneshot: bool = False  # an event: cleared once its notices are sent


@dataclass(frozen=True)
class Policy:
    """How a sync treats what it finds: the time, this node, which open alerts this
    evaluation speaks for (others' it leaves alone), how often to remind, and which
    channels a severity goes to."""

    now: dt.datetime
    node: str
    owns: Callable[[AlertRow], bool]
    remind: dt.timedelta
    channels: Callable[[str], list[str]]


@dataclass
class Synced:
    opened: list[AlertRow] = field(default_factory=list)
    cleared: list[AlertRow] = field(default_factory=list)
    notices: int = 0  # messages queued


class AlertStore(Core):
    def sync_alerts(self, found: list[Finding], policy: Policy) -> Synced:
        """In one transaction: open an alert for each finding without an open one (dedup:
        one open alert per key), escalate one whose severity changed, queue a reminder for
        one whose reminder is due, and clear each open alert this evaluation owns whose
        condition no longer holds. Another node opening the same key at the same moment
        (the unique index) makes the whole sync run again, and find its row."""
        return _first_row_race(lambda: self._sync(found, policy))

    def _sync(self, found: list[Finding], policy: Policy) -> Synced:
        out = Synced()
        now = policy.now
        with self.session() as s:
            open_rows = {r.key: r for r in s.scalars(
                select(AlertRow).where(AlertRow.cleared_at.is_(None)).with_for_update())}
            holding = {f.key for f in found}
            for f in {f.key: f for f in found}.values():
                row = open_rows.get(f.key)
                if row is None:
                    row = AlertRow(key=f.key, rule=f.rule, severity=f.severity,
                                   subject=f.subject[:160], detail=f.detail[:500],
                                   node=policy.node, oneshot=f.oneshot, opened_at=now,
                                   remind_at=None if f.oneshot else now + policy.remind)
                    s.add(row)
                    s.flush()
                    out.opened.append(row)
                    queued = _queue(s, row, "opened", policy)
                    out.notices += queued
                    if row.oneshot and not queued:  # no channel takes this severity: an
                        row.cleared_at = now        # event alert would stay open for ever
                        out.cleared.append(row)
                elif row.oneshot:
                    continue  # the same event again before the first was sent: one alert
                elif row.severity != f.severity:
                    row.severity, row.detail = f.severity, f.detail[:500]
                    row.remind_at = now + policy.remind
                    out.notices += _queue(s, row, "escalated", policy)
                else:
                    row.detail = f.detail[:500]
                    if row.remind_at is not None and row.remind_at <= now:
                        row.remind_at = now + policy.remind
                        out.notices += _queue(s, row, "reminder", policy)
            for key, row in open_rows.items():
                if key not in holding and not row.oneshot and policy.owns(row):
                    row.cleared_at = now
                    out.cleared.append(row)
                    out.notices += _queue(s, row, "cleared", policy)
            s.flush()
            s.expunge_all()
        return out

    def due_messages(self, limit: int = 50) -> list[tuple[AlertMessageRow, AlertRow]]:
        """Unsent notices whose next try has come (by this host's clock), oldest first."""
        with self.session(write=False) as s:
            rows = [(m, a) for m, a in s.execute(
                select(AlertMessageRow, AlertRow).join(AlertRow, AlertRow.id == AlertMessageRow.alert_id)
                .where(AlertMessageRow.sent_at.is_(None), AlertMessageRow.next_try_at <= utcnow())
                .order_by(AlertMessageRow.id).limit(limit))]
            s.expunge_all()
            return rows

    def claim_message(self, message_id: int, seen: dt.datetime, until: dt.datetime) -> bool:
        """Take an unsent notice for sending until *until*, if its next try is still *seen*
        (as :meth:`due_messages` read it): of two delivery threads — two nodes on one ledger
        — that both found it due, one sends it. A sender that dies holding it only delays
        it to *until*."""
        with self.session() as s:
            return _rowcount(s.execute(
                update(AlertMessageRow).where(AlertMessageRow.id == message_id,
                                              AlertMessageRow.sent_at.is_(None),
                                              AlertMessageRow.next_try_at == seen)
                .values(next_try_at=until))) == 1

    def message_sent(self, message_id: int, recipients: int) -> bool:
        """Mark a notice sent; True when that clears its one-shot alert (nothing of it left
        to send)."""
        with self.session() as s:
            m = s.get_one(AlertMessageRow, message_id, with_for_update=True)
            m.sent_at, m.recipients, m.attempts = utcnow(), recipients, m.attempts + 1
            m.last_error = None
            s.flush()
            alert = s.get_one(AlertRow, m.alert_id, with_for_update=True)
            if not alert.oneshot or alert.cleared_at is not None:
                return False
            left = s.scalar(select(func.count()).select_from(AlertMessageRow).where(
                AlertMessageRow.alert_id == alert.id, AlertMessageRow.sent_at.is_(None)))
            if left:
                return False
            alert.cleared_at = utcnow()
            return True

    def message_failed(self, message_id: int, error: str, retry_at: dt.datetime) -> int:
        """Count a failed attempt and put the next one off to *retry_at*; the attempts so far."""
        with self.session() as s:
            m = s.get_one(AlertMessageRow, message_id, with_for_update=True)
            m.attempts += 1
            m.last_error, m.next_try_at = error[:200], retry_at
            return m.attempts

    def alerts(self, *, open_only: bool = False, limit: int = 200) -> list[AlertRow]:
        """Open alerts first, then the most recent cleared ones."""
        with self.session(write=False) as s:
            q = select(AlertRow)
            if open_only:
                q = q.where(AlertRow.cleared_at.is_(None))
            rows = list(s.scalars(q.order_by(AlertRow.cleared_at.is_not(None), AlertRow.id.desc())
                                  .limit(limit)))
            s.expunge_all()
            return rows

    def alert_messages(self, alert_ids: list[int]) -> list[AlertMessageRow]:
        with self.session(write=False) as s:
            rows = list(s.scalars(select(AlertMessageRow).where(
                AlertMessageRow.alert_id.in_(alert_ids)).order_by(AlertMessageRow.id)))
            s.expunge_all()
            return rows

    def open_alert_counts(self) -> dict[str, int]:
        with self.session(write=False) as s:
            return {str(sev): int(n) for sev, n in s.execute(
                select(AlertRow.severity, func.count()).where(AlertRow.cleared_at.is_(None))
                .group_by(AlertRow.severity))}

    def alert_cursor(self, node: str) -> AlertCursorRow | None:
        with self.session(write=False) as s:
            row = s.get(AlertCursorRow, node)
            if row is not None:
                s.expunge(row)
            return row

    def save_alert_cursor(self, node: str, *, seq: int, hash_: str, offset: int) -> None:
        def save() -> None:
            with self.session() as s:
                row = s.get(AlertCursorRow, node, with_for_update=True)
                if row is None:
                    row = AlertCursorRow(node=node)
                    s.add(row)
                row.seq, row.hash, row.offset, row.updated_at = seq, hash_, offset, utcnow()

        _first_row_race(save)


def _queue(s: Session, row: AlertRow, kind: str, policy: Policy) -> int:
    channels = policy.channels(row.severity)
    for channel in channels:
        s.add(AlertMessageRow(alert_id=row.id, kind=kind, channel=channel, created_at=utcnow(),
                              next_try_at=utcnow(), attempts=0, recipients=0))
    return len(channels)
