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
# seven or more digits, counted across the separators people type in numbers
# (138 0013 8000, 110105-1949…); a date written as a date is not a person's number
_DIGITS = re.compile(r"\d(?:[\s./-]?\d){6,}")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def free_text_problem(text: str) -> str | None:
    """Why *text* (a note, a denial's reason) may not be kept: a control, invisible or
    direction character, or a number of seven or more digits (a phone, an ID, an account:
    cases are named by id, and personal data stays out of the free text)."""
    if _CONTROL.search(text):
        return "must not hold control, invisible or direction characters"
    if _DIGITS.search(_DATE.sub(" ", text)):
        return ("must not hold a number of seven or more digits: name the cases by id, and "
                "keep personal data out of it")
    return None
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
    if (problem := free_text_problem(note)) is not None:
        raise DocumentError(CODE, f'"note" {problem}', field="note")
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
