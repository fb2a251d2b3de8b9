"""A month's figures for one agency (docs/security-team.md): what the bank files to show it supervised
how the agency handled its customers' data. Counted from the audit log — the record of
what happened, which holds no personal data — and, for flags per day and the contract,
from the ledger, through the same queries the console uses. No case, name or number
of a person is in them.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import statistics
from collections.abc import Iterable
from typing import Any

from gateway import queries
from gateway.clock import month_bounds, previous_month
from gateway.config import Config
from gateway.ledger import Ledger
from gateway.ledger.schema import UNMASK_BATCH_PREFIX
from gateway.retention import policy
from gateway.unmask import register

TYPE = "supervision-report"


FIRST_MONTH, LAST_MONTH = "1970-01", "9998-12"  # what every clock and database here can hold


def check_month(month: str, *, today: dt.date | None = None, ended: bool = False) -> str:
    """*month* if it names a month a report can cover (``YYYY-MM``, from 1970-01 to 9998-12,
    and, given *today*, one that has begun: there is no report of the future), else
    ValueError saying so — ``9999-12`` once ended in an internal error (its next month is
    past what a date holds), ``0001-01`` in an overflow converting to UTC.

    *ended*: the month must also be over. The console shows this month's page as it
    stands; a report someone files (`gateway report`) counts a whole month, and one made
    mid-month once went out half-counted under the whole month's name."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month, re.ASCII) or \
            not FIRST_MONTH <= month <= LAST_MONTH:
        raise ValueError(f"{month!r} is not a month from {FIRST_MONTH} to {LAST_MONTH} (YYYY-MM)")
    if today is not None:
        this = f"{today.year:04d}-{today.month:02d}"
        if month > this:
            raise ValueError(f"{month} has not begun yet")
        if ended and month == this:
            raise ValueError(f"{month} has not ended yet; the latest month to report is "
                             f"{previous_month(today)}")
    return month


def recent_months(day: dt.date, count: int) -> list[str]:
    """The month *day* falls in and the *count* - 1 before it, newest first. Stepped a
    calendar month at a time: a step of 31 days from the 1st once lost a month whenever
    a shorter one came between (December listed 2026-12, 2026-11, 2026-09)."""
    months = [f"{day.year:04d}-{day.month:02d}"]
    first = day.replace(day=1)
    for _ in range(count - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        months.append(f"{first.year:04d}-{first.month:02d}")
    return months


def figures(cfg: Config, ledger: Ledger, entries: Iterable[dict[str, Any]], agency: str,
            month: str, *, now: dt.datetime) -> dict[str, Any]:
    """The report's content. *entries*: the audit log in order (all of it: a slice of
    the month may be collected the month after, and that is reported as collected)."""
    tz = cfg.gateway.tz
    start, end = month_bounds(month, tz)
    a = cfg.agency(agency)
    inbox, outbox = cfg.zone_name(agency, "inbox"), cfg.zone_name(agency, "outbox")
    keys_of = cfg.zone_key(inbox).removesuffix("inbox")  # "agencies[i].": its config keys
    # Entries written before zones were named by code name them by list position: the
    # ledger recorded what each position was when it renamed its own rows (0009).
    before = ledger.zone_renames()
    outboxes = {outbox} | {old for old, new in before.items() if new == outbox}
    zones = {inbox} | outboxes | {old for old, new in before.items() if new == inbox}
    counts: collections.Counter[str] = collections.Counter()
    delivered: dict[str, tuple[dt.datetime, str]] = {}  # slice file -> when, role
    collected: dict[str, dt.datetime] = {}
    batches: set[str] = set()
    rows_by_batch: dict[str, int] = {}
    reads: list[dict[str, Any]] = []
    refused_keys: list[str] = []
    results = {"files": 0, "accepted_files": 0, "rejected_files": 0, "rows_received": 0,
               "rows_forwarded": 0, "rows_rejected": 0}
    for e in entries:
        at = dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        ours = e.get("agency") == agency or e.get("zone") in zones
        if not ours and e["event"] != "key.refused":
            continue
        event = e["event"]
        if event == "slice.collected":
            collected.setdefault(e["file"], at)  # collections after the month count too
        if not start <= at < end:
            continue
        if event == "slice.delivered" and e.get("role") and not str(
                e.get("batch_id", "")).startswith(UNMASK_BATCH_PREFIX):  # releases: section unmask
            delivered[e["file"]] = (at, e["role"])
            if e.get("batch_id"):
                batches.add(e["batch_id"])
                rows_by_batch[e["batch_id"]] = max(rows_by_batch.get(e["batch_id"], 0),
                                                   int(e.get("records", 0)))
        elif event == "slice.accessed":
            reads.append(e)
        elif event == "results.accepted":
            results["files"] += 1
            results["accepted_files"] += 1
            results["rows_received"] += int(e.get("records", 0))
            results["rows_forwarded"] += int(e.get("accepted", 0))
            results["rows_rejected"] += int(e.get("rejected", 0))
        elif event == "file.rejected" and e.get("zone") in outboxes:
            results["files"] += 1
            results["rejected_files"] += 1
            results["rows_received"] += int(e.get("records", 0))
            results["rows_rejected"] += int(e.get("records", 0))
        elif event == "security.cross_agency":
            counts["cross_agency_rows"] += int(e.get("count", 0))
            counts["cross_agency_files"] += 1
        elif event in ("security.bad_signature", "security.role_mismatch",
                       "security.foreign_access", "security.unknown_login",
                       "security.unsafe_field"):
            counts[event.removeprefix("security.")] += 1
        elif event == "key.refused" and str(e.get("key", "")).startswith(keys_of):
            refused_keys.append(e["key"])
    hours = sorted((collected[f] - at).total_seconds() / 3600 for f, (at, _) in delivered.items()
                   if f in collected and collected[f] >= at)
    never = sorted(f for f in delivered if f not in collected)
    logins: dict[str, dict[str, Any]] = {}
    for r in reads:
        login = queries.shown(r, "login", "unknown")
        seen = logins.setdefault(login, {"login": login, "reads": 0, "partial": 0,
                                         "addresses": set()})
        seen["reads"] += 1
        seen["partial"] += not r.get("complete")
        if address := queries.shown(r, "address"):
            seen["addresses"].add(address)
    flags = _flags_by_day(cfg, ledger, agency, start, end)
    contract = next(d for d in policy.contracts(cfg, ledger, now.astimezone(tz).date())
                    if d.agency == agency)
    purge = ledger.purge(a.contract.id)
    (evidence,) = [e for e in queries.agency_evidence(cfg, ledger, now) if e.agency == agency]
    acked = queries.acknowledged_in(cfg, ledger, agency, start, end, now)
    return {
        "type": TYPE, "agency": agency, "agency_name": a.name, "month": month,
        "period": {"from": start.isoformat(), "to": end.isoformat(), "timezone": str(tz)},
        "generated_at": now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "deliveries": {"batches": len(batches), "slices": len(delivered),
                       "cases": sum(rows_by_batch.values()),
                       "by_role": dict(sorted(collections.Counter(
                           r for _, r in delivered.values()).items()))},
        "collection": {"collected": len(hours), "never_collected": len(never),
                       "never_collected_files": never,
                       "median_hours": round(statistics.median(hours), 2) if hours else None,
                       "max_hours": round(hours[-1], 2) if hours else None,
                       "reads": len(reads),
                       "by_login": [{**v, "addresses": sorted(v["addresses"])}
                                    for _, v in sorted(logins.items())]},
        "results": results,
        "flags_by_day": flags,
        "flags_total": dict(sorted(sum((collections.Counter(v) for v in flags.values()),
                                       collections.Counter()).items())),
        "security": {k: counts.get(k, 0) for k in (
            "cross_agency_rows", "cross_agency_files", "bad_signature", "role_mismatch",
            "foreign_access", "unknown_login", "unsafe_field")},
        "keys": {"refused": refused_keys},
        "contract": {"id": a.contract.id, "state": contract.state.value,
                     "effective_end": contract.effective_end.isoformat(),
                     "deadline": contract.deadline.isoformat(), "late": contract.late,
                     "certificate": purge.certificate if purge else None,
                     "attestation": _attestation(evidence)},
        "acknowledgements": None if acked is None else {
            "within_days": a.acknowledge_within_days, "delivered": acked.delivered,
            "in_time": acked.in_time, "not_in_time": acked.not_in_time, "open": acked.open},
        "unmask": register.summary(ledger, agency, start, end),
    }


def _attestation(e: queries.AgencyEvidence) -> dict[str, Any]:
    """The agency's deletion attestation as the report states it when it is made."""
    out: dict[str, Any] = {"state": e.state, "due": e.attestation_due.isoformat()}
    if (a := e.attestation) is not None:
        out |= {"id": a.document_id, "name": a.file, "sha256": a.sha256,
                "created_at": _utc(a.created_at), "accepted_at": _utc(a.accepted_at),
                "files": a.files, "not_listed": a.not_listed}
    return out


def _utc(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _flags_by_day(cfg: Config, ledger: Ledger, agency: str, start: dt.datetime,
                  end: dt.datetime) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for d in queries.compliance(cfg, ledger, lambda _flt: iter(()), start.date()):
        if d.agency == agency and d.day < end.date():
            nonzero = {f: n for f, n in d.flags.items() if n}
            if nonzero:
                out[d.day.isoformat()] = nonzero
    return out

