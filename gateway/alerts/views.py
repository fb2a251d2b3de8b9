"""Alerts as a person reads them (`gateway alerts`, the console): each alert with what was
sent for it, by channel — counts of notices and addresses, never an address."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.ledger import Ledger


@dataclass(frozen=True)
class ChannelSent:
    notices: int = 0  # notices that reached the channel
    recipients: int = 0  # addresses (e-mail) or receivers (webhook), summed over them
    pending: int = 0  # notices still to send (failed ones retried)
    last_error: str | None = None


@dataclass(frozen=True)
class AlertView:
    key: str
    rule: str
    severity: str
    subject: str
    detail: str
    node: str
    opened_at: dt.datetime
    cleared_at: dt.datetime | None
    state: str  # open | cleared
    channels: dict[str, ChannelSent] = field(default_factory=dict)


def alert_views(ledger: Ledger, *, open_only: bool = False, limit: int = 200) -> list[AlertView]:
    """Open alerts first, then the most recent cleared ones."""
    rows = ledger.alerts(open_only=open_only, limit=limit)
    sent: dict[int, dict[str, ChannelSent]] = {}
    for m in ledger.alert_messages([r.id for r in rows]):
        per = sent.setdefault(m.alert_id, {})
        c = per.get(m.channel, ChannelSent())
        per[m.channel] = ChannelSent(
            c.notices + (m.sent_at is not None), c.recipients + m.recipients,
            c.pending + (m.sent_at is None), m.last_error if m.sent_at is None else c.last_error)
    return [AlertView(r.key, r.rule, r.severity, r.subject, r.detail, r.node, r.opened_at,
                      r.cleared_at, "open" if r.cleared_at is None else "cleared",
                      sent.get(r.id, {})) for r in rows]
