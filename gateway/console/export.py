"""The audit log as a file to take away (``/audit/export.csv``, ``.jsonl``): the entries a
filter selects, written a few hundred at a time so memory stays flat however many match.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

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


def _cell(value: Any) -> str:
    """A CSV cell's text: a list of codes joined with ``;``."""
    if value is None:
        return ""
    return ";".join(map(str, value)) if isinstance(value, list) else str(value)
