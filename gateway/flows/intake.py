"""What every input channel shares: pick-up, claims, duplicates, rejection.

A :class:`Channel` is one kind of input from one sender (the bank's case files,
one agency's result files). For each file in its zone::

    copy the ciphertext into the archive (hashing it) -> claim the SHA-256 ->
    remove it from the zone -> the flow's ``process`` -> commit or reject ->
    the outbox: move staged files into zones, send the receipt

Everything after the claim is recorded in the ledger before it happens in a
zone, and :func:`gateway.outbox.finish_pending` completes whatever a crash
interrupted, so a file is never lost, and no slice, forwarded file or receipt is
ever doubled.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import structlog

from gateway import clock, faults, outbox
from gateway.crypto import packets
from gateway.crypto.engine import (
    E_BAD_SIGNATURE,
    E_CORRUPT,
    E_DECRYPT,
    E_REVOKED_OR_EXPIRED,
    E_TOO_LARGE,
    E_TRUNCATED,
    E_UNKNOWN_SIGNER,
    E_UNSIGNED,
    OpenedMessage,
    SealWriter,
    Verified,
)
from gateway.errors import CryptoError
from gateway.flows import Context
from gateway.flows.receipts import ErrorList, Receipt
from gateway.ledger import ClaimOutcome, LeaseLost, ReceiptRow
from gateway.names import file_fields, name_fields
from gateway.state import copy_hashed
from gateway.transfer.base import (
    Entry,
    FileChanged,
    FileMissing,
    ZoneError,
    display_name,
)
from gateway.validation import chunks, csvio
from gateway.validation.cases import RowError

log = structlog.get_logger("gateway.intake")

HEAD = 64 * 1024  # bytes read first to tell an encrypted message from anything else
SIGNATURE_CODES = frozenset({E_UNSIGNED, E_BAD_SIGNATURE, E_UNKNOWN_SIGNER, E_REVOKED_OR_EXPIRED})


@dataclass(frozen=True)
class Channel:
    kind: str  # case_file | results
    zone: str  # config key of the input zone
    receipt_zone: str  # config key of the sender's receiving zone
    agency: str | None = None  # the sending agency, for results

    @property
    def part(self) -> str:
        """The piece of a daemon pass this channel's files are (see :class:`Guard`)."""
        return "batches" if self.agency is None else f"results.{self.agency}"

    def seal_receipt(self, ctx: Context, dst: BinaryIO) -> SealWriter:
        """Receipts are encrypted to the sender: the bank, or the agency's receipts role."""
        if self.agency is None:
            return ctx.crypto.seal_for_bank(dst)
        return ctx.crypto.seal_receipt_for_agency(self.agency, dst)


Process = Callable[[Context, Channel, int, str, str, dt.datetime], str]


def run_channel(ctx: Context, channel: Channel, process: Process) -> collections.Counter[str]:
    """Resume files whose worker died, then take every ready file of the channel's zone;
    each file under ``ctx.guard``, so one that fails unexpectedly holds back no other."""
    outcomes: collections.Counter[str] = collections.Counter()
    zone = ctx.zones[channel.zone]
    if channel.zone in ctx.zone_errors:
        return outcomes
    try:
        for row in ctx.ledger.resumable(ctx.owner, channel.kind, zone=channel.zone):
            if ctx.stop.is_set():
                return outcomes
            if not ctx.ledger.take_file(row.id, ctx.owner, ctx.leases.seconds):
                continue  # another node took it over first
            if row.lease_owner not in (None, ctx.owner):
                log.warning("lease.taken_over", item=f"file:{row.id}", previous=row.lease_owner)
            with ctx.guard(channel.part, passing=(ZoneError,)), ctx.leases.keep_file(row.id):
                try:
                    _finish_pickup(ctx, channel, row.name, row.sha256, row.size)
                except ZoneError as exc:  # the copy in the zone (gone, changed, unreadable):
                    if exc.zone_level:   # the archive's and the claim are what count
                        raise
                    log.warning("file.left_in_zone", file_id=row.id, error=str(exc))
                archived = ctx.state.archived(row.sha256).exists()
                if not archived and row.lease_owner not in (None, ctx.owner):
                    # Its node removed it from the zone: the copy must be in the archive —
                    # unless that node's archive is not the one this node sees.
                    log.error("file.not_in_shared_archive", file_id=row.id,
                              node=row.lease_owner, archive=str(ctx.state.archive))
                    continue
                handle = process if archived else reject_unencrypted
                _count(ctx, channel, outcomes, _guarded(handle, ctx, channel, row.id, row.name,
                                                        row.sha256, clock.aware(row.received_at)))
        if (until := ctx.ledger.next_expiry(ctx.owner, channel.kind, channel.zone)) is not None:
            ctx.leases.saw_busy(until.timestamp())  # a live node's — or a dead one's, until then
        entries = zone.list_ready()
        ctx.ledger.forget_refused(channel.zone, {e.name for e in entries})
        for entry in entries:
            if ctx.stop.is_set():
                break
            with ctx.guard(channel.part, passing=(ZoneError,)):
                if entry.refused:
                    _count(ctx, channel, outcomes, refuse(ctx, channel, entry.name, entry.refused))
                    continue
                _count(ctx, channel, outcomes, pick_up(ctx, channel, entry, process))
    except ZoneError as exc:  # this zone is unusable for now; the others go on
        ctx.zone_failed(channel.zone, exc)
    return outcomes


def _count(ctx: Context, channel: Channel, outcomes: collections.Counter[str], outcome: str) -> None:
    outcomes[outcome] += 1
    if outcome not in ("busy", "not_ready", "lease_lost"):  # not an outcome of the file
        ctx.metrics.files.labels(channel=channel.kind, outcome=outcome).inc()


def _guarded(handle: Process, ctx: Context, channel: Channel, file_id: int, name: str, sha: str,
             received_at: dt.datetime) -> str:
    """Process a claimed file; if another node took it over meanwhile (this node could not
    renew its lease in time), nothing of this attempt was committed — theirs counts."""
    try:
        return handle(ctx, channel, file_id, name, sha, received_at)
    except LeaseLost as exc:
        log.warning("lease.lost", item=f"file:{file_id}", error=str(exc))
        return "lease_lost"


def refuse(ctx: Context, channel: Channel, name: str, reason: str) -> str:
    """An entry the gateway will not read — a symlink, a FIFO, a file it may not open. It is
    neither taken nor removed (there is nothing to answer: no content was read), but it is
    never silent: audited once as ``file.refused`` and listed by `gateway status` until
    someone removes it."""
    if ctx.ledger.note_refused(channel.zone, name, reason):
        ctx.audit.record("file.refused", zone=channel.zone, reason=reason, agency=channel.agency,
                         **name_fields(name))
        log.warning("file.refused", zone=channel.zone, name=display_name(name), reason=reason)
    return "refused"


def pick_up(ctx: Context, channel: Channel, entry: Entry, process: Process) -> str:
    """Take one file: archive its bytes, claim them, remove it, process it. A problem of
    this one file (gone, still changing, unreadable) is its own, never the zone's.

    Only an *encrypted* message is copied into the archive. A file that is not one — a
    plaintext CSV dropped by mistake, a signed-only or clear-signed document — may hold
    case data in the clear: it is hashed, never copied, removed from the zone and
    answered with ``E_NOT_ENCRYPTED`` (no plaintext on the gateway's disk, ever)."""
    zone = ctx.zones[channel.zone]
    received_at = ctx.now()
    tmp = ctx.state.temporary("incoming")
    try:
        with zone.open_read(entry.name) as src:
            sha, size, keep = _copy_if_encrypted(src, tmp)
    except (FileMissing, FileChanged) as exc:  # removed, or still being written: not yet
        tmp.unlink(missing_ok=True)
        log.info("file.not_ready", zone=zone.key, name=display_name(entry.name), reason=exc.code)
        return "not_ready"
    except ZoneError as exc:
        tmp.unlink(missing_ok=True)
        if exc.zone_level:
            raise
        return refuse(ctx, channel, entry.name, "unreadable")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    faults.point("after_copy")
    ctx.metrics.bytes.labels(direction="in").inc(size)
    if ctx.ledger.open_receipt_for(zone.key, entry.name, sha) is not None:
        tmp.unlink(missing_ok=True)  # answered already; only the removal was interrupted
        outbox.finish_pending(ctx)
        return "answered"
    claim = ctx.ledger.claim_file(sha256=sha, kind=channel.kind, zone=zone.key, name=entry.name,
                                  size=size, owner=ctx.owner, agency_code=channel.agency,
                                  lease_seconds=ctx.leases.seconds)
    if claim.outcome is ClaimOutcome.BUSY:
        tmp.unlink(missing_ok=True)
        return "busy"
    if claim.outcome is ClaimOutcome.DUPLICATE:
        tmp.unlink(missing_ok=True)
        return _duplicate(ctx, channel, entry.name, sha, received_at, claim.file_id)
    archive = ctx.state.archived(sha)
    if archive.exists() or not keep:
        tmp.unlink(missing_ok=True)
    else:
        tmp.rename(archive)
    with ctx.leases.keep_file(claim.file_id):
        faults.point("after_claim")
        zone.remove(entry.name)  # durable in archive + ledger now
        ctx.audit.record("file.received", zone=zone.key, sha256=sha, bytes=size,
                         agency=channel.agency, **file_fields(entry.name, sha))
        handle = process if keep else reject_unencrypted
        return _guarded(handle, ctx, channel, claim.file_id, entry.name, sha, received_at)


def _copy_if_encrypted(src: BinaryIO, tmp: Path | None) -> tuple[str, int, bool]:
    """Hash *src*, copying it to *tmp* only if it starts as an encrypted message; returns
    (SHA-256, size, copied)."""
    head = src.read(HEAD)
    keep = tmp is not None and packets.is_encrypted(head)
    sha, size = copy_hashed(src, tmp if keep else None, head=head)
    return sha, size, keep


def reject_unencrypted(ctx: Context, channel: Channel, file_id: int, name: str, sha: str,
                       received_at: dt.datetime) -> str:
    return reject(ctx, channel, file_id, name, sha, received_at, file_error(
        "E_NOT_ENCRYPTED", "the file is not an OpenPGP message encrypted to the gateway "
        "(plaintext, signed-only or clear-signed?); it may hold personal data in the clear, so "
        "it was deleted unread and not kept — encrypt it to the gateway's key and send it again"),
        "E_NOT_ENCRYPTED")


def _finish_pickup(ctx: Context, channel: Channel, name: str, sha: str, size: int) -> None:
    """A worker died between claiming a file and removing it from the zone: remove it now —
    but only if the file there is still the one claimed (same size and SHA-256); archive
    it first if the archive copy was not made yet (never for an unencrypted file)."""
    zone = ctx.zones[channel.zone]
    entry = zone.stat(name)
    if entry is None or entry.size != size:
        return
    archived = ctx.state.archived(sha)
    tmp = ctx.state.temporary("verify")
    try:
        with zone.open_read(name) as src:
            current, _, keep = _copy_if_encrypted(src, None if archived.exists() else tmp)
        if current == sha:
            if keep:  # died before the archive rename
                tmp.rename(archived)
            zone.remove(name)
    finally:
        tmp.unlink(missing_ok=True)


def _duplicate(ctx: Context, channel: Channel, name: str, sha: str, received_at: dt.datetime,
               file_id: int) -> str:
    original = ctx.ledger.file(file_id)
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status="duplicate",
                      signer=original.signer, batch_id=original.batch_id,
                      extra={"duplicate_of": {"file": display_name(original.name),
                                              "received_at": clock.iso(original.received_at)}})
    staged = stage_receipt(ctx, channel, f"dup-{secrets.token_hex(6)}", receipt)
    ctx.ledger.add_receipt(ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=channel.zone,
                                      input_name=name, zone=channel.receipt_zone, staged=staged,
                                      status="duplicate"))
    ctx.audit.record("file.duplicate", zone=channel.zone, sha256=sha, batch_id=original.batch_id,
                     agency=channel.agency, **file_fields(name, sha))
    outbox.finish_pending(ctx)
    return "duplicate"


def stage_receipt(ctx: Context, channel: Channel, tag: str, receipt: Receipt) -> str:
    """Seal the receipt to the sender into staging; returns its staged file name."""
    directory = ctx.state.staging_root / "receipts"
    directory.mkdir(mode=0o700, exist_ok=True)
    name = f"{tag}.receipt.json.pgp"
    with (directory / name).open("xb") as fh, channel.seal_receipt(ctx, fh) as w:
        w.write(receipt.to_json())
    return name


def drop_staged_receipt(ctx: Context, staged: str) -> None:
    """A receipt staged for a commit that did not happen."""
    (ctx.state.staging_root / "receipts" / staged).unlink(missing_ok=True)


@dataclass
class Outcome:
    """What reading one signed CSV file produced — the part every channel shares."""

    errors: ErrorList = field(default_factory=ErrorList)
    records: int = 0
    accepted: int = 0
    neutralised: int = 0  # free-text values that would have been spreadsheet formulas
    fatal: bool = False  # the file as a whole is unusable (format, header)
    crypto: CryptoError | None = None  # the envelope failed: decryption or signature
    verified: Verified | None = None

    @property
    def rejected(self) -> int:
        return self.records - self.accepted


RowsHandler = Callable[[list[str], Iterator[tuple[int, list[str]]]], list[RowError]]
ChunksHandler = Callable[[list[str], chunks.ChunkReader], list[RowError]]


def read_signed_csv(msg: OpenedMessage, out: Outcome, *, encoding: str, delimiter: str,
                    handle: RowsHandler | None = None, handle_chunks: ChunksHandler | None = None,
                    source: Path) -> None:
    """Stream a decrypted CSV into a handler, then take gpg's verdict.

    *handle(header, records)* gets the rows one by one, *handle_chunks(header, reader)*
    a :class:`chunks.ChunkReader` for the columnar engine; either returns the header's
    errors (the file is then refused whole) or consumes the rows and returns ``[]``.
    Format errors make the file fatal; a crypto error (the size cap, or the verdict)
    lands in ``out.crypto`` and outranks everything else.
    """
    reader: chunks.ChunkReader | None = None
    records: Iterator[tuple[int, list[str]]] | None = None
    consume: Callable[[list[str]], list[RowError]]
    try:
        if handle_chunks is not None:
            reader = chunks.ChunkReader(msg, encoding=encoding, delimiter=delimiter)
            header = reader.header()
            consume = functools.partial(handle_chunks, reader=reader)  # type: ignore[call-arg]
        else:
            assert handle is not None
            records = csvio.read_records(msg, encoding=encoding, delimiter=delimiter)
            first = next(records, None)
            header = None if first is None else first[1]
            consume = functools.partial(handle, records=records)  # type: ignore[call-arg]
        if header is None:
            out.errors.add([RowError(0, None, None, "E_EMPTY", "the file is empty")])
            out.fatal = True
        elif header_errors := consume(header):
            out.errors.add(header_errors)
            out.fatal = True
        elif out.records == 0:
            out.errors.add([RowError(0, None, None, "E_NO_ROWS", "the file has a header but no rows")])
            out.fatal = True
    except csvio.CsvFormatError as exc:
        out.errors.add([RowError(exc.row, None, None, exc.code, exc.message)])
        out.fatal = True
    except CryptoError as exc:
        if exc.code != E_TOO_LARGE:  # E_SEAL: our own gpg failed — not the sender's fault;
            raise  # the claim stays and the file is processed again on the next pass
        out.crypto = exc
        return
    finally:
        if records is not None:
            records.close()  # type: ignore[attr-defined]
        if reader is not None:
            reader.close()
    try:
        out.verified = msg.verdict()
    except CryptoError as exc:
        out.crypto = truncation(exc, source)


def truncation(exc: CryptoError, source: Path) -> CryptoError:
    """gpg calls a cut-off message damaged, like a tampered one; the sender needs to
    know which (SPEC §15): a message whose packets run past the file's end is truncated."""
    if exc.code in (E_CORRUPT, E_DECRYPT) and packets.ends_early(source):
        return CryptoError("the file ended before the message did — was the upload complete?",
                           code=E_TRUNCATED)
    return exc


def file_error(code: str, message: str) -> ErrorList:
    errors = ErrorList()
    errors.add([RowError(0, None, None, code, message)])
    return errors


def reject(ctx: Context, channel: Channel, file_id: int, name: str, sha: str,
           received_at: dt.datetime, errors: ErrorList, code: str, *, records: int = 0,
           signer: str | None = None) -> str:
    """Nothing is delivered: staging dropped, original quarantined, a receipt says why."""
    if ctx.ledger.owner is not None and not ctx.ledger.file_lease_held(file_id, ctx.owner):
        raise LeaseLost(f"file {file_id} was taken over by another node")  # its archive stays
    shutil.rmtree(ctx.state.staging(file_id), ignore_errors=True)
    archive, quarantine = ctx.state.archived(sha), ctx.state.quarantined(sha, name)
    if archive.exists():
        archive.replace(quarantine)
    kept = quarantine.exists()  # an unencrypted file never had an archive copy
    if code in SIGNATURE_CODES:
        ctx.audit.record("security.bad_signature", zone=channel.zone, code=code,
                         agency=channel.agency, **file_fields(name, sha))
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status="rejected",
                      signer=signer, records=records, accepted=0, rejected=records, errors=errors)
    staged = stage_receipt(ctx, channel, f"{file_id}-{secrets.token_hex(4)}", receipt)
    ctx.ledger.reject_file(
        file_id=file_id,
        receipt=ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=channel.zone,
                           input_name=name, zone=channel.receipt_zone, staged=staged,
                           status="rejected", input_removed_at=dt.datetime.now(dt.UTC)),
        error_code=code, signer=signer, records=records, rejected=records,
        archive_name=quarantine.name if kept else None)
    codes = sorted({e.code for e in errors.listed})[:20]
    ctx.audit.record("file.rejected", zone=channel.zone, sha256=sha, code=code, codes=codes,
                     records=records, errors=errors.total, agency=channel.agency,
                     **file_fields(name, sha))
    log.info("file.rejected", file_sha256=sha, code=code, errors=errors.total)
    outbox.finish_pending(ctx)
    return "rejected"


def receipt_row(channel: Channel, file_id: int, name: str, sha: str, staged: str,
                status: str) -> ReceiptRow:
    return ReceiptRow(file_id=file_id, file_sha256=sha, input_zone=channel.zone, input_name=name,
                      zone=channel.receipt_zone, staged=staged, status=status,
                      input_removed_at=dt.datetime.now(dt.UTC))
