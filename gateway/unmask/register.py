"""What unmasking by approval looks like to people: the requests waiting for approvers,
and the register (查阅登记) — one row per release: who asked (the key), who approved,
for what purpose, how many cases, which fields, released, expires, deleted.

One read model for ``gateway unmask``, the console's Requests and Register pages and the
monthly supervision report. Identifiers, counts and times only — the requester's note is
shown to approvers on the pending list and never enters the register.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway import clock
from gateway.ledger import Ledger, UnmaskRequestRow, UnmaskStatus


@dataclass(frozen=True)
class Pending:
    """A request waiting for approvers, as they need to see it."""

    number: int
    request_id: str
    agency: str
    role: str
    requester: str  # the key that signed the request
    purpose: str
    cases: int
    fields: tuple[str, ...]
    note: str
    received_at: dt.datetime
    decide_by: dt.datetime
    approvals: int
    needed: int
    decided_by: tuple[str, ...]  # the accounts that approved so far


@dataclass(frozen=True)
class Entry:
    """One row of the register: a release."""

    request_id: str
    agency: str
    role: str
    requester: str
    purpose: str
    cases: int
    fields: tuple[str, ...]
    approvers: tuple[str, ...]
    requested_at: dt.datetime
    released_at: dt.datetime
    expires_at: dt.datetime
    purged_at: dt.datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"request_id": self.request_id, "agency": self.agency, "role": self.role,
                "requester_key": self.requester, "purpose": self.purpose, "cases": self.cases,
                "fields": list(self.fields), "approvers": list(self.approvers),
                "requested_at": clock.iso(self.requested_at),
                "released_at": clock.iso(self.released_at),
                "expires_at": clock.iso(self.expires_at),
                "purged_at": clock.iso(self.purged_at) if self.purged_at else None}


def pending(ledger: Ledger, now: dt.datetime) -> list[Pending]:
    """Requests approvers may still decide (oldest first); one past its time is not shown
    even before the daemon's next pass marks it expired."""
    rows = [r for r in ledger.unmask_requests(status=[UnmaskStatus.PENDING.value])
            if clock.aware(r.decide_by) > now]
    decisions = ledger.unmask_decisions([r.id for r in rows])
    return [Pending(
        r.id, r.request_id, r.agency_code, r.role, r.signer, r.purpose, r.cases,
        tuple(r.field_list), r.note, clock.aware(r.received_at), clock.aware(r.decide_by),
        sum(d.decision == "approve" for d in decisions[r.id]), r.approvals_needed,
        tuple(d.account for d in decisions[r.id] if d.decision == "approve")) for r in rows]


def entries(ledger: Ledger, since: dt.datetime, until: dt.datetime, *,
            agency: str | None = None) -> list[Entry]:
    """The register's rows for releases made in [since, until), in order."""
    rows = [r for r in ledger.released_between(since, until)
            if agency is None or r.agency_code == agency]
    decisions = ledger.unmask_decisions([r.id for r in rows])
    return [_entry(r, tuple(d.account for d in decisions[r.id] if d.decision == "approve"))
            for r in rows]


def month(ledger: Ledger, month: str, tz: dt.tzinfo, *, agency: str | None = None
          ) -> list[Entry]:
    """The register of *month* (``YYYY-MM``, the gateway's time zone)."""
    since, until = clock.month_bounds(month, tz)
    return entries(ledger, since, until, agency=agency)


def _entry(r: UnmaskRequestRow, approvers: tuple[str, ...]) -> Entry:
    assert r.released_at is not None and r.expires_at is not None  # noqa: S101 — released rows
    return Entry(r.request_id, r.agency_code, r.role, r.signer, r.purpose, r.cases,
                 tuple(r.field_list), approvers, clock.aware(r.received_at),
                 clock.aware(r.released_at), clock.aware(r.expires_at),
                 clock.aware(r.purged_at) if r.purged_at else None)


def summary(ledger: Ledger, agency: str, since: dt.datetime, until: dt.datetime
            ) -> dict[str, object]:
    """The monthly report's section: requests received and what became of them, and the
    register's rows of the month."""
    received = ledger.unmask_requests(agency_code=agency, since=since, until=until)
    by_status: dict[str, int] = {}
    for r in received:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    register = entries(ledger, since, until, agency=agency)
    return {"requests": len(received), "by_status": dict(sorted(by_status.items())),
            "releases": len(register), "cases_released": sum(e.cases for e in register),
            "register": [e.as_dict() for e in register]}
