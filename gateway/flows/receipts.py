"""Receipts (docs/formats.md §5.1): one per input file, signed by the gateway, encrypted to the sender.

This module builds the JSON and picks the name; the flows seal it (to the bank,
or to an agency's receipts role) and send it through the two-phase path in the
ledger so a crash never loses or doubles a receipt.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.transfer.base import display_name, is_plain
from gateway.validation.cases import RowError

MAX_LISTED_ERRORS = 1000
SUFFIX = ".receipt.json.pgp"


class ErrorList:
    """Every error counted; the first :data:`MAX_LISTED_ERRORS` kept — memory stays bounded."""

    def __init__(self) -> None:
        self.listed: list[RowError] = []
        self.total = 0

    def add(self, errors: list[RowError]) -> None:
        if not errors:
            return
        self.total += len(errors)
        room = MAX_LISTED_ERRORS - len(self.listed)
        if room > 0:
            self.listed.extend(errors[:room])

    def __bool__(self) -> bool:
        return self.total > 0


@dataclass
class Receipt:
    file: str
    sha256: str
    received_at: dt.datetime
    status: str  # accepted | rejected | duplicate | partial
    signer: str | None = None
    batch_id: str | None = None
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    per_agency: dict[str, int] = field(default_factory=dict)
    neutralised: int = 0  # free-text values written with a leading '
    errors: ErrorList = field(default_factory=ErrorList)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "file": display_name(self.file),  # the sender's name, escaped where not printable
            "sha256": self.sha256,
            "received_at": self.received_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "signer": self.signer,
            "status": self.status,
        }
        if self.batch_id:
            body["batch_id"] = self.batch_id
        body["counts"] = {"records": self.records, "accepted": self.accepted,
                          "rejected": self.rejected, "neutralised": self.neutralised}
        if self.per_agency:
            body["counts"]["per_agency"] = dict(sorted(self.per_agency.items()))
        body["errors"] = [e.as_dict() for e in self.errors.listed]
        body["errors_total"] = self.errors.total
        body |= self.extra
        return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_BASE = 200  # bytes of the input name kept: with ".NNN" and the suffix, well under 255


def receipt_name(input_name: str, taken: Callable[[str], bool]) -> str:
    """``<input>.receipt.json.pgp``, or ``<input>.2.receipt.json.pgp``, … if taken.

    The receipt must always be writable, whatever the sender called the input: a name
    that is not plain (control or invisible characters, backslash, not UTF-8) has every
    character outside ``[A-Za-z0-9._-]`` replaced by ``_``, and any name is cut to
    :data:`MAX_BASE` *bytes* on a character boundary."""
    base = input_name if is_plain(input_name) else _UNSAFE.sub("_", input_name)
    base = base.encode("utf-8")[:MAX_BASE].decode("utf-8", "ignore")
    if base.startswith("."):
        base = "_" + base[1:]  # never a hidden (temporary-looking) name
    name = base + SUFFIX
    n = 2
    while taken(name):
        name = f"{base}.{n}{SUFFIX}"
        n += 1
    return name
