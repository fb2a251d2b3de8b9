"""An agency's unmask request (docs/formats.md §8): named cases, the fields wanted, a
configured purpose — signed by the requester's own role key.

It travels like the agency's other documents (encrypted to the gateway, dropped in the
agency's outbox) under its own name, ``<name>.unmask.json.pgp``. This module does no
I/O and knows no ledger or configuration: it says whether a request is well formed;
the flow (:mod:`gateway.unmask.flow`) says whether it may be granted.

Case ids, field names and the purpose are identifiers. The note is free text for the
approvers; so that a person's number does not travel in it (and from it into the
ledger and the console), a note holding a run of seven or more digits is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Final

from gateway import clock, documents, identifiers
from gateway.documents import DocumentError

CODE: Final = "E_REQUEST"
VERSION = 1
MAX_BYTES = 4 * 1024 * 1024  # 10,000 case ids of 64 characters fit with room to spare
MAX_CASES = 10_000  # the configuration's unmask.max_cases can only lower it
MAX_NOTE = 500
_NAME = identifiers.full(rf"{identifiers.BATCH_ID}\.unmask\.json\.(?:pgp|gpg|asc)")
_ID = re.compile(r"^[0-9a-f]{32}$")
_CASE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as a case file's case_id (docs/formats.md §2)
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DIGITS = re.compile(r"\d{7,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
FIELDS = {"type", "version", "id", "agency", "role", "purpose", "created_at", "cases",
          "fields", "note"}


def is_request(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def file_name(stem: str) -> str:
    """``<stem>.unmask.json.pgp``."""
    name = f"{stem}.unmask.json.pgp"
    if not _NAME.fullmatch(name):
        raise ValueError(f"{stem!r} cannot begin a request's file name")
    return name


@dataclass(frozen=True)
class UnmaskRequest:
    id: str
    agency: str
    role: str
    purpose: str
    created_at: dt.datetime
    cases: tuple[str, ...]
    fields: tuple[str, ...]
    note: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"type": "unmask-request", "version": VERSION, "id": self.id,
                           "agency": self.agency, "role": self.role, "purpose": self.purpose,
                           "created_at": clock.iso(self.created_at), "cases": list(self.cases),
                           "fields": list(self.fields), "note": self.note},
                          ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def parse(data: bytes) -> UnmaskRequest:
    """A request from its decrypted bytes, or :class:`DocumentError` (``E_REQUEST``) naming
    the first thing wrong. Strict, as every document the gateway takes as evidence."""
    body = documents.json_object(data, MAX_BYTES, CODE)
    if body.get("type") != "unmask-request":
        raise DocumentError(CODE, '"type" must be "unmask-request" for this file name',
                            field="type")
    documents.exact(body, FIELDS, code=CODE)
    if type(body["version"]) is not int or body["version"] != VERSION:
        raise DocumentError(CODE, f'"version" must be {VERSION}', field="version")
    ident = documents.text(body, "id", _ID, "32 lower-case hex digits", code=CODE)
    agency = documents.text(body, "agency", identifiers.full(identifiers.AGENCY_CODE),
                            "an agency code", code=CODE)
    role = documents.text(body, "role", identifiers.full(identifiers.ROLE), "a role name",
                          code=CODE)
    purpose = documents.text(body, "purpose", _PURPOSE, "a purpose name", code=CODE)
    created = documents.utc_time(body, "created_at", code=CODE)
    cases = _list(body, "cases", _CASE, "a case id", MAX_CASES)
    fields = _list(body, "fields", _FIELD, "a case field name", 64)
    note = body["note"]
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise DocumentError(CODE, f'"note" must be text of at most {MAX_NOTE} characters',
                            field="note")
    if _CONTROL.search(note):
        raise DocumentError(CODE, '"note" must not hold control or direction characters',
                            field="note")
    if _DIGITS.search(note):
        raise DocumentError(CODE, '"note" must not hold a number of seven or more digits: '
                            "name the cases by id, and keep personal data out of the note",
                            field="note")
    return UnmaskRequest(ident, agency, role, purpose, created, cases, fields, note.strip())


def _list(body: dict[str, object], key: str, pattern: re.Pattern[str], what: str,
          limit: int) -> tuple[str, ...]:
    items = body[key]
    if not isinstance(items, list) or not items:
        raise DocumentError(CODE, f'"{key}" must be a non-empty list', field=key)
    if len(items) > limit:
        raise DocumentError(CODE, f'"{key}" lists more than {limit}', field=key)
    seen: set[str] = set()
    for row, item in enumerate(items, start=1):
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise DocumentError(CODE, f'each of "{key}" must be {what}', row=row, field=key)
        if item in seen:
            raise DocumentError(CODE, f'"{key}" lists {item!r} twice' if key == "fields"
                                else f'"{key}" lists the same case twice', row=row, field=key)
        seen.add(item)
    return tuple(items)
