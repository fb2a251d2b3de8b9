"""Bank case file -> per-agency, per-role encrypted slices + a receipt (SPEC §4–§7).

The path of one file (DESIGN.md "Data flow of a bank batch")::

    pick up: copy the ciphertext into the archive (hashing it), claim its SHA-256
             in the ledger, remove it from the zone
    open:    gpg decrypts from the archive into a pipe; the plaintext is untrusted
    check:   CSV -> header map -> field rules -> case ids (chunked against the ledger)
    seal:    route by agency, mask per role, one gpg writer per (agency, role)
             -> ciphertext in state_dir/staging/<file id>/
    verdict: signature from an accepted bank key? rows valid (per on_invalid)?
    commit:  one ledger transaction (batch, cases, pending deliveries, pending receipt)
    deliver: move staged files into the inboxes, send the receipt, drop staging

Before the commit, rollback is "delete the staging directory": nothing is
visible to anyone. After it, delivery is idempotent and a crash is finished by
the next run (:func:`finish_pending`). A file whose worker died before the
commit is processed again from the archive (:func:`resume`).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from gateway import faults
from gateway.crypto.engine import (
    E_BAD_SIGNATURE,
    E_REVOKED_OR_EXPIRED,
    E_UNKNOWN_SIGNER,
    E_UNSIGNED,
    SealWriter,
    Verified,
)
from gateway.errors import CryptoError
from gateway.flows import Context
from gateway.flows.receipts import ErrorList, Receipt, receipt_name
from gateway.ledger import BatchRow, ClaimOutcome, DeliveryRow, FileStatus, ReceiptRow
from gateway.masking import RolePolicy, Rule
from gateway.state import copy_hashed, file_sha256
from gateway.transfer.base import Entry, NameTaken, Zone, ZoneError
from gateway.validation import csvio
from gateway.validation.cases import CaseValidator, RowError, map_header

log = structlog.get_logger("gateway.batches")

NAME_RE = re.compile(r"^(?P<batch>[A-Za-z0-9][A-Za-z0-9._-]{0,63})\.csv\.(?:pgp|gpg|asc)$")
CHUNK_ROWS = 1000  # rows checked against the ledger at a time: bounds memory
BANK_OUT, BANK_IN = "bank.outgoing", "bank.incoming"
_SIGNATURE_CODES = {E_UNSIGNED, E_BAD_SIGNATURE, E_UNKNOWN_SIGNER, E_REVOKED_OR_EXPIRED}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def _file_fields(name: str, sha256: str) -> dict[str, str]:
    """Audit a file by name when the name is plainly safe, else by its hash only."""
    return {"file": name} if _SAFE_NAME.match(name) else {"file_sha256": sha256}


# --- pick up ---------------------------------------------------------------------


def run(ctx: Context) -> collections.Counter[str]:
    """Everything pending for the bank's outgoing zone; returns how each file ended."""
    outcomes: collections.Counter[str] = collections.Counter()
    finish_pending(ctx)
    for row in ctx.ledger.resumable(ctx.owner, "case_file"):
        if ctx.stop.is_set():
            return outcomes
        _finish_pickup(ctx, ctx.zones[row.zone], row.name, row.sha256, row.size)
        outcomes[_process(ctx, row.id, row.name, row.sha256, _aware(row.received_at))] += 1
    zone = ctx.zones[BANK_OUT]
    for entry in zone.list_ready():
        if ctx.stop.is_set():
            break
        outcomes[pick_up(ctx, zone, entry)] += 1
    return outcomes


def pick_up(ctx: Context, zone: Zone, entry: Entry) -> str:
    received_at = ctx.now()
    tmp = ctx.state.archive / f".incoming-{secrets.token_hex(8)}"
    try:
        with zone.open_read(entry.name) as src:
            sha, size = copy_hashed(src, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if ctx.ledger.open_receipt_for(zone.key, entry.name, sha) is not None:
        tmp.unlink()  # answered already; only the removal was interrupted
        finish_pending(ctx)
        return "answered"
    claim = ctx.ledger.claim_file(sha256=sha, kind="case_file", zone=zone.key, name=entry.name,
                                  size=size, owner=ctx.owner)
    if claim.outcome is ClaimOutcome.BUSY:
        tmp.unlink()
        return "busy"
    if claim.outcome is ClaimOutcome.DUPLICATE:
        tmp.unlink()
        return _duplicate(ctx, zone, entry.name, sha, received_at, claim.file_id)
    archive = ctx.state.archived(sha)
    if archive.exists():
        tmp.unlink()
    else:
        tmp.rename(archive)
    faults.point("after_claim")
    zone.remove(entry.name)  # durable in archive + ledger now
    ctx.audit.record("file.received", zone=zone.key, sha256=sha, bytes=size,
                     **_file_fields(entry.name, sha))
    return _process(ctx, claim.file_id, entry.name, sha, received_at)


def _finish_pickup(ctx: Context, zone: Zone, name: str, sha: str, size: int) -> None:
    """A worker died between claiming a file and removing it from the zone: remove it now —
    but only if the file there is still the one claimed (same size and SHA-256)."""
    entry = zone.stat(name)
    if entry is None or entry.size != size:
        return
    tmp = ctx.state.archive / f".verify-{secrets.token_hex(8)}"
    try:
        with zone.open_read(name) as src:
            current, _ = copy_hashed(src, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    if current == sha:
        if not ctx.state.archived(sha).exists():  # died before the archive rename
            with zone.open_read(name) as src:
                copy_hashed(src, ctx.state.archived(sha))
        zone.remove(name)


def _duplicate(ctx: Context, zone: Zone, name: str, sha: str, received_at: dt.datetime,
               file_id: int) -> str:
    original = ctx.ledger.file(file_id)
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status="duplicate",
                      signer=original.signer, batch_id=original.batch_id,
                      extra={"duplicate_of": {"file": original.name,
                                              "received_at": _iso(original.received_at)}})
    staged = _stage_receipt(ctx, f"dup-{secrets.token_hex(6)}", receipt)
    ctx.ledger.add_receipt(ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=zone.key,
                                      input_name=name, zone=BANK_IN, staged=staged,
                                      status="duplicate"))
    ctx.audit.record("file.duplicate", zone=zone.key, sha256=sha, batch_id=original.batch_id,
                     **_file_fields(name, sha))
    finish_pending(ctx)
    return "duplicate"


# --- process ---------------------------------------------------------------------


@dataclass
class _Slice:
    name: str
    role: str
    path: Path
    fh: IO[bytes]
    writer: SealWriter
    sink: csvio.TextSink
    csv: object
    columns: list[str]
    policy: RolePolicy
    records: int = 0


class _AgencySlices:
    """One sealed CSV per role of an agency, written as rows arrive."""

    def __init__(self, ctx: Context, staging: Path, batch_id: str, code: str,
                 present: frozenset[str]) -> None:
        agency = ctx.cfg.agency(code)
        self.code, self.contract_id = code, agency.contract.id
        self.slices: list[_Slice] = []
        uses_token = any(Rule.TOKEN in ctx.cfg.roles[r].values() for r in agency.roles)
        self.secret = ctx.state.token_secret(agency.contract.id) if uses_token else None
        try:
            for role in agency.roles:
                policy = RolePolicy(role, ctx.cfg.roles[role])
                columns = policy.columns(present)
                name = f"{batch_id}.{code}.{role}.csv.pgp"
                path = staging / name
                fh = path.open("xb")
                writer = ctx.crypto.seal_for_role(code, role, fh)
                sink = csvio.TextSink(writer)
                w = csvio.writer(sink)
                w.writerow(columns)
                self.slices.append(_Slice(name, role, path, fh, writer, sink, w, columns, policy))
        except BaseException:
            self.abort()
            raise

    def write(self, rec: dict[str, str]) -> None:
        for s in self.slices:
            s.csv.writerow(s.policy.row(s.columns, rec, self.secret))  # type: ignore[attr-defined]
            s.records += 1

    def close(self) -> None:
        for s in self.slices:
            s.sink.flush()
            s.writer.close()
            s.fh.flush()
            s.fh.close()

    def abort(self) -> None:
        for s in self.slices:
            s.writer.abort()
            with contextlib.suppress(OSError):
                s.fh.close()


@dataclass
class _Outcome:
    errors: ErrorList = field(default_factory=ErrorList)
    records: int = 0
    accepted: int = 0
    per_agency: collections.Counter[str] = field(default_factory=collections.Counter)
    fatal: bool = False  # the file as a whole is unusable (format, header)
    crypto: CryptoError | None = None
    verified: Verified | None = None
    agencies: dict[str, _AgencySlices] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return self.records - self.accepted


def _process(ctx: Context, file_id: int, name: str, sha: str, received_at: dt.datetime) -> str:
    staging = ctx.state.staging(file_id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700, parents=True)
    ctx.ledger.clear_staged(file_id)
    archive = ctx.state.archived(sha)

    def reject(errors: ErrorList, code: str, out: _Outcome | None = None) -> str:
        return _reject(ctx, file_id, name, sha, received_at, errors, code, out)

    m = NAME_RE.match(name)
    if not m:
        errs = ErrorList()
        errs.add([RowError(0, None, None, "E_NAME", "file name must be <batch_id>.csv.pgp "
                           "(or .csv.gpg/.csv.asc) with batch_id [A-Za-z0-9][A-Za-z0-9._-]{0,63}")])
        return reject(errs, "E_NAME")
    batch_id = m.group("batch")
    if ctx.ledger.batch(batch_id) is not None:
        errs = ErrorList()
        errs.add([RowError(0, None, None, "E_BATCH_EXISTS",
                           f"batch {batch_id} was already accepted from a different file")])
        return reject(errs, "E_BATCH_EXISTS")

    out = _slice(ctx, file_id, batch_id, archive, staging)
    if out.crypto is not None:
        for agency in out.agencies.values():
            agency.abort()
        errs = ErrorList()
        errs.add([RowError(0, None, None, out.crypto.code, out.crypto.message)])
        if out.crypto.code in _SIGNATURE_CODES:
            ctx.audit.record("security.bad_signature", zone=BANK_OUT, code=out.crypto.code,
                             **_file_fields(name, sha))
        return reject(errs, out.crypto.code)
    strict = ctx.cfg.schema_.on_invalid == "reject_batch"
    if out.fatal or out.accepted == 0 or (strict and out.errors):
        for agency in out.agencies.values():
            agency.abort()
        code = out.errors.listed[0].code if out.errors.listed else "E_NO_ROWS"
        return reject(out.errors, code, out)
    assert out.verified is not None
    return _commit(ctx, file_id, name, sha, received_at, batch_id, out, staging)


def _slice(ctx: Context, file_id: int, batch_id: str, archive: Path, staging: Path) -> _Outcome:
    out = _Outcome()
    try:
        _read(ctx, file_id, batch_id, archive, staging, out)
    except BaseException:  # interrupted or failed: no gpg writer may outlive this
        for agency in out.agencies.values():
            agency.abort()
        raise
    return out


def _read(ctx: Context, file_id: int, batch_id: str, archive: Path, staging: Path,
          out: _Outcome) -> None:
    strict = ctx.cfg.schema_.on_invalid == "reject_batch"
    today = ctx.today()
    with archive.open("rb") as fh, ctx.crypto.open_from_bank(fh) as msg:
        try:
            records = csvio.read_records(msg, encoding=ctx.cfg.schema_.encoding,
                                         delimiter=ctx.cfg.schema_.delimiter)
            first = next(records, None)
            if first is None:
                out.errors.add([RowError(0, None, None, "E_EMPTY", "the file is empty")])
                out.fatal = True
            else:
                header, header_errors = map_header(first[1], ctx.cfg)
                if header is None:
                    out.errors.add(header_errors)
                    out.fatal = True
                else:
                    _rows(ctx, file_id, batch_id, records, header, today, strict, out, staging)
                    if out.records == 0:
                        out.errors.add([RowError(0, None, None, "E_NO_ROWS",
                                                 "the file has a header but no rows")])
                        out.fatal = True
        except csvio.CsvFormatError as exc:
            out.errors.add([RowError(exc.row, None, None, exc.code, exc.message)])
            out.fatal = True
        except CryptoError as exc:  # E_TOO_LARGE from the reader
            out.crypto = exc
            return
        finally:
            records.close()
        try:
            out.verified = msg.verdict()
        except CryptoError as exc:
            out.crypto = exc


def _rows(ctx: Context, file_id: int, batch_id: str, records: object, header: object,
          today: dt.date, strict: bool, out: _Outcome, staging: Path) -> None:
    validator = CaseValidator(ctx.cfg, header, today)  # type: ignore[arg-type]
    present = header.present  # type: ignore[attr-defined]
    chunk: list[tuple[int, dict[str, str]]] = []

    def flush() -> None:
        ids = [rec["case_id"] for _, rec in chunk]
        staged, live = ctx.ledger.stage_chunk(file_id, ids)
        seen: set[str] = set()
        keep: list[tuple[int, dict[str, str]]] = []
        for row, rec in chunk:
            cid = rec["case_id"]
            if cid in seen or cid in staged:
                out.errors.add([RowError(row, cid, "case_id", "E_DUPLICATE_CASE",
                                         "case_id appears more than once in this batch")])
            elif cid in live:
                out.errors.add([RowError(row, cid, "case_id", "E_CASE_EXISTS",
                                         "case_id is a live case of an earlier batch")])
            else:
                keep.append((row, rec))
            seen.add(cid)
        contracts = {a.code: a.contract.id for a in ctx.cfg.agencies}
        ctx.ledger.stage_cases(file_id, [(r["case_id"], row, r["agency_code"],
                                          contracts[r["agency_code"]]) for row, r in keep])
        out.accepted += len(keep)
        doomed = strict and bool(out.errors)
        if doomed:  # the batch will be rejected: stop sealing, keep validating for the receipt
            for agency in out.agencies.values():
                agency.abort()
            out.agencies.clear()
        for _, rec in keep:
            code = rec["agency_code"]
            out.per_agency[code] += 1
            if doomed:
                continue
            if code not in out.agencies:
                out.agencies[code] = _AgencySlices(ctx, staging, batch_id, code, present)
            out.agencies[code].write(rec)
        chunk.clear()

    for row, values in records:  # type: ignore[attr-defined]
        out.records += 1
        rec, errors = validator.validate(row, values)
        if errors:
            out.errors.add(errors)
        else:
            chunk.append((row, rec))  # type: ignore[arg-type]
        if len(chunk) >= CHUNK_ROWS:
            flush()
            faults.point("mid_batch")
        if ctx.stop.is_set():
            raise Interrupted
    flush()


class Interrupted(Exception):
    """Stop requested while reading: roll back; the file stays claimed and is resumed later."""


# --- end states ------------------------------------------------------------------


def _stage_receipt(ctx: Context, tag: str, receipt: Receipt) -> str:
    """Seal the receipt to the bank into staging; returns its staged file name."""
    directory = ctx.state.root / "staging" / "receipts"
    directory.mkdir(mode=0o700, exist_ok=True)
    name = f"{tag}.receipt.json.pgp"
    with (directory / name).open("xb") as fh, ctx.crypto.seal_for_bank(fh) as w:
        w.write(receipt.to_json())
    return name


def _reject(ctx: Context, file_id: int, name: str, sha: str, received_at: dt.datetime,
            errors: ErrorList, code: str, out: _Outcome | None) -> str:
    shutil.rmtree(ctx.state.staging(file_id), ignore_errors=True)
    archive, quarantine = ctx.state.archived(sha), ctx.state.quarantined(sha, name)
    if archive.exists():
        archive.replace(quarantine)
    signer = out.verified.fingerprint if out and out.verified else None
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status="rejected",
                      signer=signer, records=out.records if out else 0, accepted=0,
                      rejected=out.records if out else 0, errors=errors)
    staged = _stage_receipt(ctx, f"{file_id}-{secrets.token_hex(4)}", receipt)
    ctx.ledger.reject_file(
        file_id=file_id,
        receipt=ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=BANK_OUT, input_name=name,
                           zone=BANK_IN, staged=staged, status="rejected",
                           input_removed_at=dt.datetime.now(dt.UTC)),
        error_code=code, signer=signer, records=receipt.records, rejected=receipt.rejected,
        archive_name=quarantine.name)
    codes = sorted({e.code for e in errors.listed})[:20]
    ctx.audit.record("file.rejected", zone=BANK_OUT, sha256=sha, code=code, codes=codes,
                     records=receipt.records, errors=errors.total, **_file_fields(name, sha))
    log.info("file.rejected", file_sha256=sha, code=code, errors=errors.total)
    finish_pending(ctx)
    return "rejected"


def _commit(ctx: Context, file_id: int, name: str, sha: str, received_at: dt.datetime,
            batch_id: str, out: _Outcome, staging: Path) -> str:
    assert out.verified is not None
    deliveries: list[DeliveryRow] = []
    created = ctx.now()
    for code, agency in sorted(out.agencies.items()):
        agency.close()
        inbox = ctx.inbox_key(code)
        files = []
        for s in agency.slices:
            digest = file_sha256(s.path)
            size = s.path.stat().st_size
            files.append({"name": s.name, "role": s.role, "records": s.records, "sha256": digest})
            deliveries.append(DeliveryRow(file_id=file_id, batch_id=batch_id, agency_code=code,
                                          role=s.role, zone=inbox, name=s.name, sha256=digest,
                                          size=size, records=s.records))
        manifest = {"batch_id": batch_id, "agency": code, "contract_id": agency.contract_id,
                    "created_at": _iso(created), "files": files}
        mname = f"{batch_id}.{code}.manifest.json.pgp"
        mpath = staging / mname
        with mpath.open("xb") as fh, ctx.crypto.seal_for_agency(code, fh) as w:
            w.write(json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n")
        deliveries.append(DeliveryRow(file_id=file_id, batch_id=batch_id, agency_code=code,
                                      role=None, zone=inbox, name=mname, sha256=file_sha256(mpath),
                                      size=mpath.stat().st_size, records=0))
    status = FileStatus.ACCEPTED if not out.errors else FileStatus.PARTIAL
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status=status.value,
                      signer=out.verified.fingerprint, batch_id=batch_id, records=out.records,
                      accepted=out.accepted, rejected=out.rejected,
                      per_agency=dict(out.per_agency), errors=out.errors)
    staged = _stage_receipt(ctx, f"{file_id}-{secrets.token_hex(4)}", receipt)
    ctx.ledger.commit_batch(
        file_id=file_id,
        batch=BatchRow(batch_id=batch_id, file_id=file_id, status=status.value,
                       records=out.records, accepted=out.accepted, rejected=out.rejected),
        deliveries=deliveries,
        receipt=ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=BANK_OUT, input_name=name,
                           zone=BANK_IN, staged=staged, status=status.value,
                           input_removed_at=dt.datetime.now(dt.UTC)),
        status=status, signer=out.verified.fingerprint)
    faults.point("after_commit")
    ctx.audit.record("batch.accepted", batch_id=batch_id, sha256=sha, status=status.value,
                     records=out.records, accepted=out.accepted, rejected=out.rejected,
                     signer=out.verified.fingerprint, **_file_fields(name, sha))
    finish_pending(ctx)
    return status.value


# --- deliver ---------------------------------------------------------------------


def finish_pending(ctx: Context) -> None:
    """Move committed files into their zones and send receipts; safe to repeat after a crash."""
    for d in ctx.ledger.pending_deliveries():
        zone = ctx.zones[d.zone]
        src = ctx.state.staging(d.file_id or 0) / d.name
        _place(zone, d.name, src, d.size)
        faults.point("after_first_delivery")
        ctx.ledger.mark_delivered(d.id)
        ctx.audit.record("slice.delivered", file=d.name, agency=d.agency_code, role=d.role,
                         batch_id=d.batch_id, records=d.records, zone=d.zone)
    for r in ctx.ledger.pending_receipts():
        src = ctx.state.root / "staging" / "receipts" / r.staged
        if r.sent_at is None:
            zone = ctx.zones[r.zone]
            name = r.name
            if name is None:  # choose once, remember, then write: a crash cannot pick ".2"
                name = receipt_name(r.input_name, lambda n, z=zone: z.stat(n) is not None)
                ctx.ledger.update_receipt(r.id, name=name)
            _place(zone, name, src, src.stat().st_size)
            faults.point("after_receipt_written")
            ctx.ledger.update_receipt(r.id, sent_at=dt.datetime.now(dt.UTC))
            ctx.audit.record("receipt.sent", zone=r.zone, status=r.status,
                             **_file_fields(name, r.file_sha256))
        if r.input_removed_at is None:
            ctx.zones[r.input_zone].remove(r.input_name)
            ctx.ledger.update_receipt(r.id, input_removed_at=dt.datetime.now(dt.UTC))
        src.unlink(missing_ok=True)
    for d in ctx.state.root.joinpath("staging").iterdir():  # delivered or abandoned attempts
        if d.name.isdigit() and ctx.ledger.file(int(d.name)).status != FileStatus.CLAIMED.value:
            shutil.rmtree(d, ignore_errors=True)


def _place(zone: Zone, name: str, src: Path, size: int) -> None:
    """Write *src* as *name*; if a previous attempt already did (same size), that counts."""
    try:
        with src.open("rb") as fh:
            zone.write_atomic(name, fh)
    except NameTaken:
        existing = zone.stat(name)
        if existing is None or existing.size != size:
            raise ZoneError(f"{zone.key}: {name} exists with different content; "
                            "not overwriting it") from None
    except FileNotFoundError:
        existing = zone.stat(name)
        if existing is None or existing.size != size:
            raise


def _iso(ts: dt.datetime) -> str:
    return _aware(ts).isoformat().replace("+00:00", "Z")


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)
