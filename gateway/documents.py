"""The agency's signed documents: slice acknowledgements and deletion attestations
(docs/formats.md §7).

Both travel like a results file — encrypted to the gateway, signed by one of the
agency's keys, dropped in the agency's outbox — and are told apart from results by
their names. The kit (``gateway-agency``) writes them with :meth:`to_json`; the gateway
reads them with :func:`parse`. This module does no I/O and knows no ledger: it says
whether a document is well formed, and the gateway's flow says whether it is *true*
(every listed hash delivered to that agency, the contract ended, the id new).

Only names, hashes, ids and times are in either document — nothing personal — so the
gateway may audit what they list.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateway import clock, identifiers

Kind = Literal["acknowledgement", "attestation"]
ACK: Final = "acknowledgement"
ATTESTATION: Final = "attestation"

# <name>.ack.json.pgp (or .gpg, .asc) and <name>.attestation.json.pgp: the stem is free
_SUFFIXES: dict[Kind, str] = {ACK: ".ack.json", ATTESTATION: ".attestation.json"}
_NAMES = {kind: identifiers.full(rf"{identifiers.BATCH_ID}{re.escape(suffix)}\.(?:pgp|gpg|asc)")
          for kind, suffix in _SUFFIXES.items()}
_TYPES: dict[str, Kind] = {"slice-acknowledgement": ACK, "deletion-attestation": ATTESTATION}
VERSION = 1
MAX_BYTES = 32 * 1024 * 1024  # of the decrypted JSON: 100,000 objects fit with room to spare
MAX_OBJECTS = 100_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{32}$")
_SLICE_FILE = re.compile(rf"^(?=.{{1,255}}$){identifiers.FILE_NAME}(?:(?<=\.csv\.pgp)|(?<=\.json\.pgp))$")
DECRYPTED = ("none", "destroyed")  # what became of an object's decrypted copy


def kind_of(name: str) -> Kind | None:
    """The document a file name announces, or None (then it is a results file, or no name
    the gateway accepts)."""
    for kind, pattern in _NAMES.items():
        if pattern.fullmatch(name):
            return kind
    return None


def file_name(kind: Kind, stem: str) -> str:
    """``<stem>.ack.json.pgp`` / ``<stem>.attestation.json.pgp``."""
    name = f"{stem}{_SUFFIXES[kind]}.pgp"
    if not _NAMES[kind].fullmatch(name):
        raise ValueError(f"{stem!r} cannot begin a document name")
    return name


def new_id() -> str:
    """A document's id: random, so that a replayed document is told from a new one."""
    return secrets.token_hex(16)


class DocumentError(ValueError):
    """A document that is not what its name says: the receipt's code, and where."""

    def __init__(self, code: str, message: str, *, row: int = 0, field: str | None = None
                 ) -> None:
        super().__init__(message)
        self.code, self.message, self.row, self.field = code, message, row, field


@dataclass(frozen=True)
class Held:
    """One file the agency received: a slice or a manifest, by name and ciphertext hash."""

    batch_id: str
    name: str
    sha256: str
    received_at: dt.datetime
    destroyed_at: dt.datetime | None = None  # attestations only
    decrypted: str = "none"  # attestations only: "destroyed" if a decrypted copy was kept

    def as_dict(self, kind: Kind) -> dict[str, Any]:
        body: dict[str, Any] = {"batch_id": self.batch_id, "name": self.name,
                                "sha256": self.sha256, "received_at": clock.iso(self.received_at)}
        if kind == ATTESTATION:
            assert self.destroyed_at is not None  # noqa: S101 — invariant, not an input check
            body |= {"destroyed_at": clock.iso(self.destroyed_at), "decrypted": self.decrypted}
        return body


@dataclass(frozen=True)
class Acknowledgement:
    """What the agency's kit received whole from one batch: the manifest and the slices
    whose hashes matched it."""

    id: str
    agency: str
    batch_id: str
    created_at: dt.datetime
    files: tuple[Held, ...]
    kind: Kind = ACK

    def to_json(self) -> bytes:
        return _dump({"type": "slice-acknowledgement", "version": VERSION, "id": self.id,
                      "agency": self.agency, "batch_id": self.batch_id,
                      "created_at": clock.iso(self.created_at),
                      "files": [f.as_dict(ACK) for f in self.files]})


@dataclass(frozen=True)
class Attestation:
    """The agency's signed word that it destroyed every copy of a contract's files."""

    id: str
    agency: str
    contract_id: str
    created_at: dt.datetime
    objects: tuple[Held, ...]
    kind: Kind = ATTESTATION

    def to_json(self) -> bytes:
        return _dump({"type": "deletion-attestation", "version": VERSION, "id": self.id,
                      "agency": self.agency, "contract_id": self.contract_id,
                      "created_at": clock.iso(self.created_at),
                      "objects": [o.as_dict(ATTESTATION) for o in self.objects]})


Document = Acknowledgement | Attestation


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def parse(data: bytes, kind: Kind) -> Document:
    """A document of *kind* from its decrypted bytes, or :class:`DocumentError`
    (``E_DOCUMENT``) naming the first thing wrong. Strict: unknown fields, a wrong type or
    version, a duplicate listing are all refused — a document is evidence."""
    body = json_object(data, MAX_BYTES, "E_DOCUMENT")
    wanted = next(t for t, k in _TYPES.items() if k == kind)
    if body.get("type") != wanted:
        raise DocumentError("E_DOCUMENT", f'"type" must be "{wanted}" for this file name',
                            field="type")
    listing = "files" if kind == ACK else "objects"
    scope = "batch_id" if kind == ACK else "contract_id"
    exact(body, {"type", "version", "id", "agency", scope, "created_at", listing})
    if type(body["version"]) is not int or body["version"] != VERSION:  # not 1.0, not true
        raise DocumentError("E_DOCUMENT", f'"version" must be {VERSION}', field="version")
    ident = text(body, "id", _ID, "32 lower-case hex digits")
    agency = text(body, "agency", identifiers.full(identifiers.AGENCY_CODE), "an agency code")
    pattern = identifiers.BATCH_ID if kind == ACK else identifiers.CONTRACT_ID
    scoped = text(body, scope, identifiers.full(pattern), f"a {scope.replace('_', ' ')}")
    created = utc_time(body, "created_at")
    items = body[listing]
    if not isinstance(items, list) or not items:
        raise DocumentError("E_DOCUMENT", f'"{listing}" must be a non-empty list', field=listing)
    if len(items) > MAX_OBJECTS:
        raise DocumentError("E_DOCUMENT", f'"{listing}" lists more than {MAX_OBJECTS} files',
                            field=listing)
    held = tuple(_items(items, kind, scoped if kind == ACK else None))
    if kind == ACK:
        return Acknowledgement(ident, agency, scoped, created, held)
    return Attestation(ident, agency, scoped, created, held)


def _items(items: list[Any], kind: Kind, batch: str | None) -> Iterator[Held]:
    fields = {"batch_id", "name", "sha256", "received_at"}
    if kind == ATTESTATION:
        fields |= {"destroyed_at", "decrypted"}
    seen: set[str] = set()
    for row, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise DocumentError("E_DOCUMENT", "each listed file must be a JSON object", row=row)
        exact(item, fields, row=row)
        batch_id = text(item, "batch_id", identifiers.full(identifiers.BATCH_ID), "a batch id",
                         row=row)
        if batch is not None and batch_id != batch:
            raise DocumentError("E_DOCUMENT", "a file of another batch than the document's",
                                row=row, field="batch_id")
        name = text(item, "name", _SLICE_FILE, "a slice or manifest file name", row=row)
        sha = text(item, "sha256", _SHA256, "64 lower-case hex digits", row=row)
        if sha in seen:
            raise DocumentError("E_DOCUMENT", "the same file is listed twice", row=row,
                                field="sha256")
        seen.add(sha)
        received = utc_time(item, "received_at", row=row)
        destroyed, decrypted = None, "none"
        if kind == ATTESTATION:
            destroyed = utc_time(item, "destroyed_at", row=row)
            decrypted = item["decrypted"]
            if decrypted not in DECRYPTED:
                raise DocumentError("E_DOCUMENT", '"decrypted" must be "none" or "destroyed"',
                                    row=row, field="decrypted")
            if destroyed < received:
                raise DocumentError("E_DOCUMENT", "destroyed before it was received", row=row,
                                    field="destroyed_at")
        yield Held(batch_id, name, sha, received, destroyed, decrypted)


def json_object(data: bytes, limit: int, code: str) -> dict[str, Any]:
    """The JSON object in *data*, strictly: UTF-8, no duplicate keys, no NaN, not nested
    past the stack, at most *limit* bytes — else :class:`DocumentError` with *code*."""
    if len(data) > limit:
        raise DocumentError(code, f"the document is larger than {limit} bytes")
    try:
        body = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_no_constant)
    except RecursionError:  # nesting deeper than the interpreter's stack: not a document
        raise DocumentError(code, "not a JSON document: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DocumentError(code, f"not a JSON document in UTF-8 ({_reason(exc)})") from None
    if not isinstance(body, dict):
        raise DocumentError(code, "the document must be a JSON object")
    return body


def exact(body: dict[str, Any], fields: set[str], *, row: int = 0, code: str = "E_DOCUMENT"
          ) -> None:
    """*body* has exactly *fields*: none missing, none unknown."""
    if missing := sorted(fields - body.keys()):
        raise DocumentError(code, f'"{missing[0]}" is missing', row=row, field=missing[0])
    if extra := sorted(body.keys() - fields):
        raise DocumentError(code, f"unknown field {extra[0][:40]!r}", row=row)


def text(body: dict[str, Any], key: str, pattern: re.Pattern[str], what: str, *,
         row: int = 0, code: str = "E_DOCUMENT") -> str:
    """*body[key]*, a string *pattern* matches whole."""
    value = body[key]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise DocumentError(code, f'"{key}" must be {what}', row=row, field=key)
    return value


_UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")
# No document predates the gateway; the far future cannot be stored by every database
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2999, 12, 31, tzinfo=dt.UTC)


def utc_time(body: dict[str, Any], key: str, *, row: int = 0, code: str = "E_DOCUMENT"
             ) -> dt.datetime:
    """A UTC time written exactly as the kit writes them (``…T…Z``), always aware."""
    value = body[key]
    try:
        if not isinstance(value, str) or not _UTC_TIME.fullmatch(value):
            raise ValueError
        t = dt.datetime.fromisoformat(value[:-1] + "+00:00")
        if not EARLIEST <= t <= LATEST:
            raise ValueError
        return t
    except ValueError:
        raise DocumentError(code, f'"{key}" must be a UTC time such as '
                            '2026-11-02T01:30:09Z', row=row, field=key) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        body[key] = value
    return body


def _reason(exc: Exception) -> str:
    return str(exc).split(":")[0][:80]


def citation(*, name: str, sha256: str, doc_id: str, created_at: dt.datetime,
             accepted_at: dt.datetime, files: int, not_listed: int) -> dict[str, object]:
    """How the gateway's signed documents to the bank cite an agency's attestation
    (docs/formats.md §7.2): by the hash of the file as received, so the bank can match
    it with the agency's own copy."""
    return {"name": name, "sha256": sha256, "id": doc_id, "created_at": clock.iso(created_at),
            "accepted_at": clock.iso(accepted_at), "files": files, "not_listed": not_listed}
