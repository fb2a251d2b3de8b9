"""``gateway-agency fetch``: take what the gateway placed in the inbox, check it, say so.

For each manifest (signed by the gateway, or it is refused) the slices it lists are
downloaded and their SHA-256 compared with the manifest's; what matches is kept as
ciphertext in ``state_dir/files/`` and acknowledged to the gateway in one signed
:class:`~gateway.documents.Acknowledgement`; only once that acknowledgement is in the
outbox are the files removed from the inbox. A slice that does not match, or a manifest
the gateway did not sign, is not acknowledged and stays where it is.

A one-off release of an unmask request (``unmask-<n>``, docs/formats.md §8.3) is taken
as a batch is; its manifest's ``unmask`` object is recorded with it (the expiry, and the
one key its slice is sealed to: only an installation holding that key reads it). The
gateway's answers to requests — receipts (pending, rejected) and decision notices
(denied, expired) — are recorded for ``status``.

The order of the steps is the crash-safety argument (see :mod:`gateway.kit.ledger`):
download to ``tmp/``, fsync, rename into ``files/``; record; acknowledge (:mod:`.send`);
remove from the inbox last. Each step looks at the ledger first, so a second run after a
``kill -9`` does only what the first did not finish.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import clock, documents, identifiers
from gateway.errors import CryptoError, GatewayError
from gateway.kit import files, send, unmask
from gateway.kit.config import AgencyConfig
from gateway.kit.crypto import KitCrypto
from gateway.kit.files import StateDir
from gateway.kit.ledger import NOT_RELEASE, DocumentRow, FileRow, KitLedger, parse_time
from gateway.names import display_name
from gateway.transfer.base import Zone

MAX_JSON = 64 * 1024 * 1024  # bytes of a manifest or receipt once decrypted
RECEIPT_SUFFIX = ".receipt.json.pgp"
_MANIFEST = re.compile(rf"^(?P<batch>{identifiers.BATCH_ID})\.(?P<agency>{identifiers.AGENCY_CODE})"
                       r"\.manifest\.json\.pgp$")
_SLICE = re.compile(rf"^(?P<batch>{identifiers.BATCH_ID})\.(?P<agency>{identifiers.AGENCY_CODE})"
                    rf"\.(?P<role>{identifiers.ROLE})\.csv\.pgp$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DECISION = re.compile(rf"^(?P<batch>unmask-{identifiers.BATCH_ID})\.(?P<agency>"
                       rf"{identifiers.AGENCY_CODE})\.decision\.json\.pgp$")
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
_FINGERPRINT = re.compile(r"^[0-9A-Fa-f]{40}(?:[0-9A-Fa-f]{24})?$")
RELEASE_PREFIX = "unmask-"  # a release's batch id; the gateway refuses bank batches so named


@dataclass(frozen=True)
class Release:
    """A manifest's ``unmask`` object."""

    request_id: str
    purpose: str
    fields: tuple[str, ...]
    recipient: str
    expires_at: str


@dataclass
class Report:
    """What a fetch did, for a person: lines to read, and the problems (exit status 1)."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Fetch:
    cfg: AgencyConfig
    ledger: KitLedger
    state: StateDir
    crypto: KitCrypto
    inbox: Zone
    outbox: Zone
    now: Callable[[], dt.datetime] = clock.now
    report: Report = field(default_factory=Report)
    flagged: set[str] = field(default_factory=set)  # reported as a problem: never removed
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # size, mtime as listed

    def problem(self, name: str, text: str) -> None:
        self.flagged.add(name)
        self.report.problems.append(f"{display_name(name)}: {text}")

    def run(self) -> Report:
        self.report.lines += send.send_pending(self.ledger, self.state, self.outbox, self.crypto,
                                               self.now())
        self.state.clear_tmp()
        listed = self.inbox.list_ready()
        for e in listed:
            if e.refused is not None:
                self.problem(e.name, f"refused ({e.refused}, not a regular file); not taken, "
                                     "left in the inbox — ask the bank's IT")
        ready = {e.name: e for e in listed if e.refused is None}
        self.seen = {e.name: (e.size, e.mtime) for e in ready.values()}
        handled: set[str] = set(e.name for e in listed if e.refused is not None)
        for name in sorted(ready):
            if _MANIFEST.fullmatch(name):
                handled.add(name)
                self._manifest(name)
        self._slices(ready, handled)
        for batch in self.ledger.batches():
            if not batch["cases_recorded"]:
                self._cases(batch["batch_id"])
        if self.cfg.store is not None:
            self._store(self.cfg.store)
        self._acknowledge()
        self._remove()
        self.report.lines += unmask.expire(self.cfg, self.ledger, self.state, self.now())
        for name in sorted(ready):
            if name.endswith(RECEIPT_SUFFIX):
                handled.add(name)
                self._receipt(name)
            elif _DECISION.fullmatch(name):
                handled.add(name)
                self._decision(name)
        waiting = [n for n in ready if n not in handled and _SLICE.fullmatch(n)]
        if waiting:
            self.report.lines.append(f"{len(waiting)} slice(s) wait for their manifest "
                                     "(the gateway places it last); fetch again shortly")
        for name in sorted(set(ready) - handled - set(waiting)):
            self.report.lines.append(f"left in the inbox: {display_name(name)} (not a file "
                                     "the kit takes)")
        if not self.report.lines and not self.report.problems:
            self.report.lines.append("nothing new in the inbox")
        return self.report

    # --- downloads ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _download(self, name: str) -> Iterator[tuple[Path, str]]:
        """*name* from the inbox into ``tmp/`` (fsynced): its path and SHA-256. The temp
        file is gone afterwards unless the caller renamed it. ``seen[name]`` becomes the
        size read and the mtime listed: what removing it later checks."""
        tmp = self.state.tmp / f"{secrets.token_hex(8)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh, self.inbox.open_read(name) as src:
                sha = files.copy_hashing(src, fh)
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            listed = self.seen.get(name)
            self.seen[name] = (size, listed[1] if listed else 0.0)
            yield tmp, sha
        finally:
            tmp.unlink(missing_ok=True)

    def _keep(self, tmp: Path, target: Path) -> None:
        tmp.replace(target)
        files.fsync_dir(target.parent)

    def _read_json(self, path: Path) -> Any:
        """A small signed JSON document from the gateway, decrypted in memory."""
        with path.open("rb") as fh, self.crypto.open_from_gateway(fh) as msg:
            data = bytearray()
            for chunk in msg.chunks():
                data += chunk
                if len(data) > MAX_JSON:
                    raise GatewayError(f"decrypts to more than {MAX_JSON} bytes")
            msg.verdict()
        return json.loads(bytes(data).decode("utf-8"))

    # --- manifests and slices ----------------------------------------------------------

    def _manifest(self, name: str) -> None:
        known = self.ledger.file(name)
        with self._download(name) as (tmp, sha):
            if known is not None:
                if known.sha256 != sha:
                    self.problem(name, "a different manifest of this name was received before; "
                                       "left in the inbox — ask the bank's IT")
                return  # the same manifest, from a run that did not get to remove it
            try:
                body = self._read_json(tmp)
                batch, contract, created, slices = self._manifest_fields(name, body)
                release = _release(batch, body, slices)
            except CryptoError as exc:
                self.problem(name, f"not acknowledged, left in the inbox: {exc.code}: {told(exc)}")
                return
            except (GatewayError, ValueError, KeyError, TypeError) as exc:
                self.problem(name, f"not a manifest the kit can read ({exc}); left in the inbox")
                return
            clash = [n for n, *_ in slices if self.ledger.file(n) is not None]
            if clash:
                self.problem(name, f"lists {display_name(clash[0])}, a file of an earlier "
                                   "batch; not acknowledged, left in the inbox — ask the "
                                   "bank's IT")
                return
            self._keep(tmp, self.state.held(name))
        self.ledger.record_manifest(batch_id=batch, contract_id=contract, name=name, sha256=sha,
                                    created_at=created, received_at=clock.iso(self.now()),
                                    slices=slices, seen=self.seen.get(name),
                                    release=None if release is None else (
                                        release.request_id, release.purpose, release.fields,
                                        release.recipient, release.expires_at))
        note = "" if contract == self.cfg.contract_id else \
            f" (contract {contract}, not the configured {self.cfg.contract_id})"
        if release is None:
            self.report.lines.append(f"batch {batch}: manifest received, {len(slices)} slice(s) "
                                     f"listed{note}")
            return
        self.ledger.set_request_status(release.request_id, "released", batch, clock.iso(self.now()))
        whose = "" if self.crypto.holds_key(release.recipient) else \
            (f"; sealed to key {release.recipient} alone, which this installation does not "
             "hold: kept encrypted")
        self.report.lines.append(
            f"release {batch} of unmask request {release.request_id[:8]} ({release.purpose}: "
            f"{', '.join(release.fields)}): manifest received, expires {release.expires_at}"
            f"{whose}{note}")

    def _manifest_fields(self, name: str, body: Any) -> tuple[str, str, str, list[tuple[str, str, int, str]]]:
        m = _MANIFEST.fullmatch(name)
        assert m is not None  # noqa: S101 — invariant, not an input check
        if not isinstance(body, dict) or body.get("batch_id") != m["batch"] \
                or body.get("agency") != self.cfg.code or m["agency"] != self.cfg.code:
            raise ValueError(f"it is not agency {self.cfg.code}'s manifest of batch {m['batch']}")
        contract = body["contract_id"]
        if not isinstance(contract, str) or not identifiers.full(identifiers.CONTRACT_ID).fullmatch(contract):
            raise ValueError("no contract id")
        slices: list[tuple[str, str, int, str]] = []
        for item in body["files"]:
            sm = _SLICE.fullmatch(str(item["name"]))
            if (sm is None or sm["batch"] != m["batch"] or sm["agency"] != self.cfg.code
                    or sm["role"] != item["role"]
                    or not _SHA256.fullmatch(str(item["sha256"]))
                    or not isinstance(item["records"], int) or isinstance(item["records"], bool)):
                raise ValueError("a listed file is not a slice of this batch: "
                                 f"{display_name(str(item.get('name')))!r}")
            if any(sm.string == n for n, *_ in slices):
                raise ValueError(f"it lists {sm.string} twice")
            slices.append((sm.string, sm["role"], item["records"], item["sha256"]))
        return m["batch"], contract, clock.iso(parse_time(str(body["created_at"]))), slices

    def _slices(self, ready: dict[str, Any], handled: set[str]) -> None:
        for row in self.ledger.files(where="f.kind = 'slice' AND f.received_at IS NULL "
                                           "AND f.destroyed_at IS NULL"):
            handled.add(row.name)
            if row.name not in ready:
                where = "refused in" if row.name in self.flagged else "not in"
                self.problem(row.name, f"listed by batch {row.batch_id}'s manifest but {where} "
                                       "the inbox; not acknowledged")
                continue
            with self._download(row.name) as (tmp, sha):
                if sha != row.sha256:
                    self.problem(row.name, "its SHA-256 does not match the manifest's (damaged "
                                           "or changed); not acknowledged, left in the inbox")
                    continue
                self._keep(tmp, self.state.held(row.name))
            self.ledger.mark_received(row.name, clock.iso(self.now()), self.seen.get(row.name))
        for row in self.ledger.files(where="f.received_at IS NOT NULL AND f.removed_at IS NULL"):
            handled.add(row.name)  # received, still in the inbox until acknowledged

    def _readable(self, batch_id: str) -> list[FileRow]:
        return [f for f in self.ledger.files(batch_id=batch_id)
                if f.kind == "slice" and f.received_at and not f.destroyed_at
                and unmask.readable(self.ledger, self.crypto, f)]

    def _cases(self, batch_id: str) -> None:
        """The batch's case ids, from one slice the kit can read — streamed, nothing written.
        A release's are not recorded: its cases are the batches' it was asked of, and its
        slice may be sealed to another member's key."""
        if self.ledger.release(batch_id) is not None:
            self.ledger.record_cases(batch_id, [])
            return
        readable = self._readable(batch_id)
        if not readable:
            self.report.lines.append(f"batch {batch_id}: no slice of a role whose key this "
                                     "installation holds; case ids not recorded")
            return
        row = readable[0]
        ids: list[str] = []
        try:
            with self.state.held(row.name).open("rb") as fh, \
                    self.crypto.open_from_gateway(fh) as msg:
                text = io.TextIOWrapper(io.BufferedReader(msg), encoding="utf-8-sig", newline="")
                reader = csv.reader(text)
                header = next(reader, [])
                column = header.index("case_id")
                ids = [r[column] for r in reader if len(r) > column]
                msg.verdict()
        except (CryptoError, ValueError, csv.Error) as exc:
            self.problem(row.name, f"could not read its case ids ({exc})")
            return
        self.ledger.record_cases(batch_id, ids)

    def _closed(self, contract: str) -> str | None:
        """Why nothing more of *contract* may be decrypted into the store, if so."""
        if contract != self.cfg.contract_id:
            return (f"its contract {contract} is not the configured one ({self.cfg.contract_id}, "
                    "agency.toml contract_id)")
        if self.ledger.documents(kind=documents.ATTESTATION, scope=contract) or \
                self.ledger.files(contract_id=contract,
                                  where=f"f.destroyed_at IS NOT NULL AND {NOT_RELEASE}"):
            return f"contract {contract}'s data was destroyed (gateway-agency destroy)"
        if self.cfg.today(self.now()) > self.cfg.contract_end:
            return f"contract {contract} ended on {self.cfg.contract_end} (agency.toml contract_end)"
        return None

    def _store(self, store: Path) -> None:
        """A decrypted copy of each readable slice, in the store only (0600): its path
        recorded before a byte is written, so that a kill leaves nothing destroy misses."""
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.check_private_dir(store, "store")
        for leftover in store.glob(".*.part"):  # a decryption a kill interrupted
            files.destroy(leftover)
        for batch in self.ledger.batches():
            rows = [r for r in self._readable(batch["batch_id"]) if not r.stored_at]
            if not rows:
                continue
            if (why := self._closed(batch["contract_id"])) is not None:
                self.report.lines.append(f"batch {batch['batch_id']}: kept encrypted, not "
                                         f"decrypted into the store: {why}")
                continue
            for row in rows:
                target = store / row.name.removesuffix(".pgp")
                if target.exists() or target.is_symlink():
                    if row.stored_path == str(target) and target.is_file() \
                            and not target.is_symlink():  # a kill after the rename
                        self.ledger.mark_stored(row.name, clock.iso(self.now()))
                        continue
                    self.problem(row.name, f"not decrypted into the store: {target} is there "
                                           "already and the kit did not write it; move it away")
                    continue
                self.ledger.mark_store_intent(row.name, str(target))
                try:
                    with self.state.held(row.name).open("rb") as src, \
                            files.atomic(target, overwrite=False) as out, \
                            self.crypto.open_from_gateway(src) as msg:
                        for chunk in msg.chunks():
                            out.write(chunk)
                        msg.verdict()  # inside: a failed verdict leaves no file
                except CryptoError as exc:
                    self.problem(row.name, f"not decrypted into the store ({exc.code}: {exc})")
                    continue
                self.ledger.mark_stored(row.name, clock.iso(self.now()))
                self.report.lines.append(f"{row.name}: decrypted into {target}")

    # --- acknowledgement and removal ----------------------------------------------------

    def _acknowledge(self) -> None:
        for batch in self.ledger.batches():
            batch_id = batch["batch_id"]
            new = [f for f in self.ledger.files(batch_id=batch_id)
                   if f.received_at and not f.ack_id and not f.destroyed_at]
            if not new:
                continue
            assert new[0].received_at is not None  # noqa: S101 — invariant, not an input check
            doc = documents.Acknowledgement(
                id=documents.new_id(), agency=self.cfg.code, batch_id=batch_id,
                created_at=self.now(),
                files=tuple(documents.Held(batch_id, f.name, f.sha256,
                                           parse_time(f.received_at or ""))
                            for f in new))
            name = send.free_name(self.ledger, documents.ACK,
                                  [f"{batch_id}.{self.cfg.code}", f"ack-{doc.id}"])
            self.ledger.add_document(send.document_row(doc, name, batch_id),
                                     acknowledges=[f.name for f in new])
            row = next(d for d in self.ledger.documents(pending=True) if d.id == doc.id)
            send.upload(self.ledger, self.state, self.outbox, row, self.crypto, self.now())
            slices = sum(1 for f in new if f.kind == "slice")
            self.report.lines.append(f"batch {batch_id}: acknowledged {slices} slice(s) and "
                                     f"{len(new) - slices} manifest(s) in {name}")

    def _remove(self) -> None:
        """Out of the inbox: what an uploaded acknowledgement lists — if it is still the
        file that was verified (its size and mtime then), and was not reported this run."""
        for row in self.ledger.files(where="f.removed_at IS NULL AND f.ack_id IN (SELECT id "
                                           "FROM documents WHERE uploaded_at IS NOT NULL)"):
            if row.name in self.flagged:
                continue
            there = self.inbox.stat(row.name)
            if there is not None:
                if row.size is not None and (there.size != row.size or (
                        row.mtime and int(there.mtime) != int(row.mtime))):
                    self.problem(row.name, "changed in the inbox since the kit verified and "
                                           "acknowledged it; not removed — ask the bank's IT")
                    continue
                self.inbox.remove(row.name)
            self.ledger.mark_removed(row.name, clock.iso(self.now()))

    # --- receipts ------------------------------------------------------------------------

    def _answers(self, name: str, body: dict[str, Any] | None) -> DocumentRow | None:
        """The sent document a receipt answers: by the file it names, else by its own name
        (``<document>.receipt.json.pgp``, or ``<document>.N.receipt.json.pgp``)."""
        base = name.removesuffix(RECEIPT_SUFFIX)
        for candidate in (body.get("file") if body else None, base, re.sub(r"\.\d+$", "", base)):
            if isinstance(candidate, str) and (doc := self.ledger.document_by_name(candidate)):
                return doc
        return None

    def _receipt(self, name: str) -> None:
        with self._download(name) as (tmp, sha):
            if not self.ledger.has_receipt(display_name(name), sha):
                body: dict[str, Any] | None = None
                try:
                    parsed = self._read_json(tmp)
                    body = parsed if isinstance(parsed, dict) else None
                except CryptoError as exc:
                    if exc.code != "E_NOT_FOR_US":
                        self.problem(name, f"not taken, left in the inbox: {exc.code}: {told(exc)}")
                        return
                except (GatewayError, ValueError) as exc:
                    self.problem(name, f"not a receipt the kit can read ({exc}); left in the inbox")
                    return
                self._keep(tmp, self.state.receipt(name, sha))
                text = json.dumps(body, ensure_ascii=False) if body is not None else None
                doc = self._answers(name, body)
                self.ledger.record_receipt(display_name(name), sha, clock.iso(self.now()), body, text,
                                           answers=doc.id if doc else None)
                self.report.lines.append(receipt_line(name, body))
                if doc is not None:
                    self._outcome(doc, body)
        self.inbox.remove(name)

    def _outcome(self, doc: DocumentRow, body: dict[str, Any] | None) -> None:
        if body is None:
            self.ledger.set_outcome(doc.id, "unknown", "its receipt is encrypted to the "
                                    "agency's receipts role, whose key this installation "
                                    "does not hold")
            return
        status = str(body.get("status"))
        errors = [e for e in body.get("errors", []) if isinstance(e, dict)]
        code = str(errors[0].get("code")) if errors else None
        self.ledger.set_outcome(doc.id, status, code)
        if doc.kind == send.UNMASK:
            request = body.get("request")
            if status == "accepted" and isinstance(request, dict):
                self.ledger.set_request_status("", str(request.get("status") or "pending"), None,
                                               clock.iso(self.now()), doc_id=doc.id,
                                               decide_by=str(request.get("decide_by") or "") or None)
            elif status == "rejected":
                codes = ", ".join(sorted({str(e.get("code")) for e in errors})) or "no code"
                self.ledger.set_request_status("", "rejected", codes, clock.iso(self.now()),
                                               doc_id=doc.id)
        if status == "rejected" and doc.kind in (documents.ACK, documents.ATTESTATION):
            again = ("run 'gateway-agency destroy' again to send a new one once the cause is "
                     "fixed" if doc.kind == documents.ATTESTATION else "ask the bank's IT")
            self.report.lines.append(f"the gateway rejected {doc.name}: {code or 'no code'}; "
                                     f"{again}")


    def _decision(self, name: str) -> None:
        """A denial or an expiry of a request: recorded, then removed from the inbox."""
        with self._download(name) as (tmp, sha):
            if not self.ledger.has_decision(name, sha):
                try:
                    body = self._read_json(tmp)
                    request_id, status, decided, reason = _decision_fields(name, body, self.cfg.code)
                except CryptoError as exc:
                    self.problem(name, f"not taken, left in the inbox: {exc.code}: {told(exc)}")
                    return
                except (GatewayError, ValueError, KeyError, TypeError) as exc:
                    self.problem(name, f"not a decision notice the kit can read ({exc}); left "
                                       "in the inbox")
                    return
                self.ledger.record_decision(name=name, sha256=sha, request_id=request_id,
                                            status=status, decided_at=decided, reason=reason,
                                            at=clock.iso(self.now()))
                why = f": {reason}" if reason else ""
                self.report.lines.append(f"unmask request {request_id[:8]}: {status}{why}")
        self.inbox.remove(name)


def _release(batch: str, body: dict[str, Any], slices: list[tuple[str, str, int, str]]
             ) -> Release | None:
    """The manifest's ``unmask`` object, checked: present exactly when the batch is a
    release, one slice, a request id, the recipient's fingerprint and the expiry."""
    obj = body.get("unmask")
    if not batch.startswith(RELEASE_PREFIX):
        if obj is not None:
            raise ValueError("an \"unmask\" object in the manifest of a batch that is not a release")
        return None
    if not isinstance(obj, dict):
        raise ValueError(f"{batch} is a release's name, but its manifest has no \"unmask\" object")
    fields = obj["fields"]
    if len(slices) != 1 or not _REQUEST_ID.fullmatch(str(obj["request_id"])) \
            or not _FINGERPRINT.fullmatch(str(obj["recipient"])) \
            or not isinstance(obj["purpose"], str) or not isinstance(fields, list) \
            or not fields or not all(isinstance(f, str) for f in fields):
        raise ValueError("its \"unmask\" object is not a release's")
    expires = clock.iso(parse_time(str(obj["expires_at"])))
    return Release(str(obj["request_id"]), obj["purpose"], tuple(fields),
                   str(obj["recipient"]).upper(), expires)


def _decision_fields(name: str, body: Any, agency: str) -> tuple[str, str, str, str]:
    m = _DECISION.fullmatch(name)
    assert m is not None  # noqa: S101 — invariant, not an input check
    if not isinstance(body, dict) or body.get("type") != "unmask-decision" \
            or body.get("agency") != agency or m["agency"] != agency:
        raise ValueError(f"it is not agency {agency}'s decision notice")
    request_id, status, reason = body["request_id"], body["status"], body.get("reason", "")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id) \
            or status not in ("denied", "expired", "failed") or not isinstance(reason, str):
        raise ValueError("its request id, status or reason is not one the kit knows")
    return request_id, status, clock.iso(parse_time(str(body["decided_at"]))), reason[:500]


def told(exc: CryptoError) -> str:
    """The engine's verdict in the kit's words: its messages speak as the gateway."""
    if exc.code == "E_NOT_FOR_US":
        return "it is encrypted to none of the keys this installation holds (agency.toml [roles])"
    if exc.code == "E_UNKNOWN_SIGNER":
        return (f"signed by key {exc.signer or 'unknown'}, not by the gateway's key "
                "(agency.toml gateway_key); it did not come from the gateway")
    return str(exc)


def receipt_line(name: str, body: dict[str, Any] | None) -> str:
    if body is None:
        return (f"receipt {display_name(name)}: kept encrypted — it is for the agency's receipts role, whose "
                "key this installation does not hold")
    request = body.get("request")
    if isinstance(request, dict):  # an unmask request's, accepted: pending the approvers
        return (f"receipt for {display_name(str(body.get('file')))}: unmask request "
                f"{str(request.get('id'))[:8]} {request.get('status')}, "
                f"{request.get('approvals_needed')} approval(s) needed, undecided after "
                f"{request.get('decide_by')} it expires")
    errors = body.get("errors_total", 0)
    codes = sorted({str(e.get("code")) for e in body.get("errors", []) if isinstance(e, dict)})
    shown = f" ({', '.join(codes[:5])})" if codes else ""
    return (f"receipt for {display_name(str(body.get('file')))}: {body.get('status')}, "
            f"{errors} error(s){shown}")
