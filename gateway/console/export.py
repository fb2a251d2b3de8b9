"""The audit log as a file to take away (``/audit/export.csv``, ``.jsonl``): the entries a
filter selects, written a few hundred at a time so memory stays flat however many match;
and the unmask register of a month (``/unmask/register.csv``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from gateway import clock
from gateway.unmask.register import Entry
from gateway.validation.csvio import neutralise

EXPORT_COLUMNS = ("seq", "ts", "event", "actor", "agency", "role", "zone", "file", "batch_id",
                  "contract_id", "status", "reason", "records", "accepted", "rejected", "count",
                  "account", "page")


def lines(entries: Iterator[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    """The filtered log, a few hundred entries at a time (memory stays flat)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(EXPORT_COLUMNS)
    for n, e in enumerate(entries, start=1):
        if fmt == "csv":
            # a spreadsheet runs a cell that starts with = + - @ (an actor or zone such as
            # "-2-3"): neutralised as in every CSV the gateway writes
            writer.writerow([neutralise(_cell(e.get(k))) for k in EXPORT_COLUMNS])
        else:
            buf.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
        if n % 500 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


REGISTER_COLUMNS = ("request_id", "agency", "role", "requester_key", "purpose", "cases",
                    "fields", "approvers", "released_at", "expires_at", "deleted_at")


def register_csv(rows: list[Entry]) -> bytes:
    """The register's rows as CSV (a month holds at most a few thousand releases: written
    whole). Times in UTC as every file of the gateway writes them; lists joined with ``;``;
    every cell neutralised — a purpose, role or account name is configured text, and a
    spreadsheet would run one that began with ``=``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(REGISTER_COLUMNS)
    for e in rows:
        writer.writerow([neutralise(_cell(v)) for v in (
            e.request_id, e.agency, e.role, e.requester, e.purpose, e.cases, list(e.fields),
            list(e.approvers), clock.iso(e.released_at), clock.iso(e.expires_at),
            clock.iso(e.purged_at) if e.purged_at else None)])
    return buf.getvalue().encode()


def _cell(value: Any) -> str:
    """A CSV cell's text: a list of codes joined with ``;``."""
    if value is None:
        return ""
    return ";".join(map(str, value)) if isinstance(value, list) else str(value)
