"""One path for a claimed file, whichever channel it came in on.

Once a file is claimed (:mod:`gateway.flows.intake`), it is an :class:`Arrival`, and
every channel takes it the same way::

    fresh staging -> the flow reads it (a Reading, or a Rejection) -> commit, or reject
                  -> the outbox places what the commit recorded

A channel's :class:`Flow` supplies only the two steps that differ — how to read its
files and what its commit records; the driver (:func:`drive`) owns the rest: the
staging reset, the rejection and its receipt, and a **bounded** retry when another node's
commit got in first (:class:`CommitConflict`: a case id or a name was taken after this
file was checked, so it is checked again, against that commit).
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar

import structlog

from gateway import outbox, timing
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
from gateway.ledger import CommitConflict, LeaseLost, ReceiptRow
from gateway.names import file_fields
from gateway.validation import csvio
from gateway.validation.cases import RowError

if TYPE_CHECKING:  # Arrow and NumPy are loaded when a file is read, not for a pass (below)
    from gateway.validation import chunks

log = structlog.get_logger("gateway.intake")

SIGNATURE_CODES = frozenset({E_UNSIGNED, E_BAD_SIGNATURE, E_UNKNOWN_SIGNER, E_REVOKED_OR_EXPIRED})
# How often one file is checked again because another node committed first. Each retry
# means another node committed a conflicting batch in the seconds this one was read; a
# file still in conflict after this many stays claimed and is taken again next pass
# (only this file waits: a conflict is not a ledger failure that stops the pass).
MAX_CONFLICTS = 5


class Outcome(enum.StrEnum):
    """How taking one file from a zone ended (``gateway run --once`` counts them)."""

    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    ANSWERED = "answered"  # a receipt had been sent; only the zone's copy was left
    REFUSED = "refused"  # not read at all (a symlink, a FIFO, unreadable)
    # not an outcome of the file: it is taken again later, here or by another node
    BUSY = "busy"
    NOT_READY = "not_ready"
    LEASE_LOST = "lease_lost"
    CONFLICT = "conflict"  # other nodes' commits kept getting in first: next pass

    @property
    def final(self) -> bool:
        return self not in (Outcome.BUSY, Outcome.NOT_READY, Outcome.LEASE_LOST, Outcome.CONFLICT)


@dataclass(frozen=True)
class Channel:
    """One sender's input zone. Its files are of the channel's *kind* (case files, results)
    unless *sort* gives a name one of the *others*' kinds: an agency's outbox also carries
    the agency's signed documents (acknowledgements, attestations), told apart by name —
    new kinds on the same driver, the same claims, the same receipts."""

    kind: str  # case_file | results
    zone: str  # config key of the input zone
    receipt_zone: str  # config key of the sender's receiving zone
    flow: Flow[Any]
    agency: str | None = None  # the sending agency, for results
    others: Mapping[str, Flow[Any]] = field(default_factory=dict)  # kind -> its flow
    sort: Callable[[str], str | None] = field(default=lambda _name: None)  # name -> kind

    def kind_of(self, name: str) -> str:
        """The kind of file *name* is, decided by the name alone (so a resumed claim is
        taken along the same flow)."""
        other = self.sort(name)
        return other if other is not None and other in self.others else self.kind

    def flow_for(self, kind: str) -> Flow[Any]:
        return self.flow if kind == self.kind else self.others[kind]

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, *self.others)

    @property
    def part(self) -> str:
        """The piece of a daemon pass this channel's files are (see :class:`Guard`)."""
        return "batches" if self.agency is None else f"results.{self.agency}"

    def seal_receipt(self, ctx: Context, dst: BinaryIO) -> SealWriter:
        """Receipts are encrypted to the sender: the bank, or the agency's receipts role."""
        if self.agency is None:
            return ctx.crypto.seal_for_bank(dst)
        return ctx.crypto.seal_receipt_for_agency(self.agency, dst)


@dataclass(frozen=True)
class Arrival:
    """A claimed file: what every step after the claim needs to know of it."""

    id: int  # the ledger's file id
    name: str  # as it was named in the zone (raw bytes kept; see gateway.names)
    sha256: str
    received_at: dt.datetime
    channel: Channel

    @property
    def kind(self) -> str:
        return self.channel.kind_of(self.name)

    def receipt_row(self, staged: str, status: str, removed_at: dt.datetime) -> ReceiptRow:
        return ReceiptRow(file_id=self.id, file_sha256=self.sha256, input_zone=self.channel.zone,
                          input_name=self.name, zone=self.channel.receipt_zone, staged=staged,
                          status=status, input_removed_at=removed_at)


@dataclass(frozen=True)
class Rejection:
    """Why a file is refused whole: the code its receipt leads with, and every error."""

    code: str
    errors: ErrorList
    records: int = 0
    signer: str | None = None  # a verified signer's fingerprint, if the envelope checked out

    @classmethod
    def of_file(cls, code: str, message: str, *, records: int = 0) -> Rejection:
        return cls(code, file_error(code, message), records=records)

    @classmethod
    def one(cls, code: str, message: str, signer: str | None, *, row: int = 0,
            field: str | None = None, records: int = 0) -> Rejection:
        """A document refused for one reason, after its envelope checked out (*signer*)."""
        errors = ErrorList()
        errors.add([RowError(row, None, field, code, message)])
        return cls(code, errors, records=records, signer=signer)


@dataclass
class Reading:
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

    def abort(self) -> None:
        """Stop the gpg writers this reading holds open (a flow's reading overrides it)."""

    def refusal(self, *, strict: bool = False) -> Rejection | None:
        """The file refused whole, or None: the envelope outranks everything (and then no
        signer is named — the sender is not authenticated); then a fatal format error,
        no accepted row, or, if *strict*, any error at all."""
        if self.crypto is not None:
            return Rejection.of_file(self.crypto.code, self.crypto.message, records=self.records)
        if self.fatal or self.accepted == 0 or (strict and self.errors):
            code = self.errors.listed[0].code if self.errors.listed else "E_NO_ROWS"
            return Rejection(code, self.errors, records=self.records,
                             signer=self.verified.fingerprint if self.verified else None)
        return None


R = TypeVar("R", bound=Reading)


@dataclass(frozen=True)
class Flow(Generic[R]):
    """What differs between channels, in the order the driver calls it:

    - *begin*: what the name alone decides — a rejection, or an empty reading;
    - *read*: the archived file decrypted into the reading, its output sealed into
      *staging* (the driver aborts the reading's gpg writers if this raises);
    - *verdict*: the file refused whole after reading, or None;
    - *commit*: the reading's end state recorded in one ledger transaction (raising
      :class:`CommitConflict` if another node's commit got in first); how it ended."""

    begin: Callable[[Context, Arrival], R | Rejection]
    read: Callable[[Context, Arrival, R, Path], None]
    verdict: Callable[[Context, Arrival, R], Rejection | None]
    commit: Callable[[Context, Arrival, R, Path], Outcome]


def drive(ctx: Context, arrival: Arrival) -> Outcome:
    """Take a claimed file to its end state along its channel's flow."""
    flow = arrival.channel.flow_for(arrival.kind)
    for _ in range(MAX_CONFLICTS):
        staging = ctx.state.staging(arrival.id)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        ctx.ledger.clear_staged(arrival.id)  # what an interrupted attempt counted
        reading = flow.begin(ctx, arrival)
        if isinstance(reading, Rejection):
            return reject(ctx, arrival, reading)
        try:
            _read(ctx, flow, arrival, reading, staging)
            refused = flow.verdict(ctx, arrival, reading)
        except BaseException:  # interrupted or failed: no gpg writer may outlive this
            reading.abort()
            raise
        if refused is not None:
            reading.abort()
            return reject(ctx, arrival, refused)
        try:
            return flow.commit(ctx, arrival, reading, staging)
        except CommitConflict as exc:  # another node's commit took a case id or a name
            log.info("file.conflict", kind=arrival.kind, file_id=arrival.id,
                     reason=str(exc))
        except BaseException:  # no gpg writer outlives a commit that failed
            reading.abort()
            raise
    log.warning("file.conflict_again", kind=arrival.kind, file_id=arrival.id,
                attempts=MAX_CONFLICTS)
    return Outcome.CONFLICT


def _read(ctx: Context, flow: Flow[R], arrival: Arrival, reading: R, staging: Path) -> None:
    """The flow's read, timed thread by thread (:mod:`gateway.timing`): one
    ``file.stages`` line per reading, whether it ended well or not, says where the file's
    time went — reading, a stage, or waiting on gpg. Numbers and stage names only."""
    line = timing.Timeline()
    try:
        with line.reading():
            flow.read(ctx, arrival, reading, staging)
    finally:
        log.info("file.stages", kind=arrival.kind, file_id=arrival.id, **line.fields())


def guarded(ctx: Context, arrival: Arrival,
            handle: Callable[[Context, Arrival], Outcome] = drive) -> Outcome:
    """Take a claimed file; if another node took it over meanwhile (this node could not
    renew its lease in time), nothing of this attempt was committed — theirs counts."""
    try:
        return handle(ctx, arrival)
    except LeaseLost as exc:
        log.warning("lease.lost", item=f"file:{arrival.id}", error=str(exc))
        return Outcome.LEASE_LOST


def commit_with_receipt(ctx: Context, arrival: Arrival, receipt: Receipt,
                        record: Callable[[ReceiptRow], None]) -> None:
    """Seal *receipt* into staging, then *record* the commit with its row. The staged
    receipt is dropped again only on a conflict, which is certain to have rolled back:
    after any other failure (a connection lost during COMMIT) the commit may have landed,
    and its receipt must still be there for the outbox to send."""
    staged = stage_receipt(ctx, arrival.channel, f"{arrival.id}-{secrets.token_hex(4)}", receipt)
    try:
        record(arrival.receipt_row(staged, receipt.status, ctx.now()))
    except CommitConflict:
        (ctx.state.staging_root / "receipts" / staged).unlink(missing_ok=True)
        raise


def reject(ctx: Context, arrival: Arrival, rejection: Rejection) -> Outcome:
    """Nothing is delivered: staging dropped, original quarantined, a receipt says why."""
    file_id, name, sha, channel = arrival.id, arrival.name, arrival.sha256, arrival.channel
    if ctx.ledger.owner is not None and not ctx.ledger.file_lease_held(file_id, ctx.node):
        raise LeaseLost(f"file {file_id} was taken over by another node")  # its archive stays
    shutil.rmtree(ctx.state.staging(file_id), ignore_errors=True)
    archive, quarantine = ctx.state.archived(sha), ctx.state.quarantined(sha, name)
    if archive.exists():
        archive.replace(quarantine)
    kept = quarantine.exists()  # an unencrypted file never had an archive copy
    code, records, errors = rejection.code, rejection.records, rejection.errors
    if code in SIGNATURE_CODES:
        ctx.audit.record("security.bad_signature", zone=channel.zone, code=code,
                         agency=channel.agency, **file_fields(name, sha))
    receipt = Receipt(file=name, sha256=sha, received_at=arrival.received_at, status="rejected",
                      signer=rejection.signer, records=records, accepted=0, rejected=records,
                      errors=errors)
    staged = stage_receipt(ctx, channel, f"{file_id}-{secrets.token_hex(4)}", receipt)
    ctx.ledger.reject_file(
        file_id=file_id, receipt=arrival.receipt_row(staged, "rejected", ctx.now()),
        error_code=code, signer=rejection.signer, records=records, rejected=records,
        archive_name=quarantine.name if kept else None)
    codes = sorted({e.code for e in errors.listed})[:20]
    ctx.audit.record("file.rejected", zone=channel.zone, sha256=sha, code=code, codes=codes,
                     records=records, errors=errors.total, agency=channel.agency,
                     **file_fields(name, sha))
    log.info("file.rejected", file_sha256=sha, code=code, errors=errors.total)
    outbox.finish_pending(ctx)
    return Outcome.REJECTED


def stage_receipt(ctx: Context, channel: Channel, tag: str, receipt: Receipt) -> str:
    """Seal the receipt to the sender into staging; returns its staged file name."""
    directory = ctx.state.staging_root / "receipts"
    directory.mkdir(mode=0o700, exist_ok=True)
    name = f"{tag}.receipt.json.pgp"
    with (directory / name).open("xb") as fh, channel.seal_receipt(ctx, fh) as w:
        w.write(receipt.to_json())
    return name


ChunksHandler = Callable[[list[str], "chunks.ChunkReader"], list[RowError]]


def read_signed_csv(msg: OpenedMessage, out: Reading, handle: ChunksHandler, *, encoding: str,
                    delimiter: str, source: Path, encoding_hint: str = "") -> None:
    """Stream a decrypted CSV into a handler, then take gpg's verdict.

    *handle(header, reader)* gets the header and a :class:`chunks.ChunkReader` for the
    columnar engine; it returns the header's errors (the file is then refused whole) or
    consumes the rows and returns ``[]``. Format errors make the file fatal; a crypto
    error (the size cap, or the verdict) lands in ``out.crypto`` and outranks everything
    else. *source* is the archived file, looked at again only to tell a truncated upload
    from a damaged one. *encoding_hint*, when the sender can choose the encoding, ends an
    E_ENCODING message with what to do about it.
    """
    from gateway.validation import chunks  # Arrow: a file is being read

    reader: chunks.ChunkReader | None = None
    try:
        reader = chunks.ChunkReader(timing.waited(msg), encoding=encoding, delimiter=delimiter)
        header = reader.header()
        if header is None:
            out.errors.add([RowError(0, None, None, "E_EMPTY", "the file is empty")])
            out.fatal = True
        elif header_errors := handle(header, reader):
            out.errors.add(header_errors)
            out.fatal = True
        elif out.records == 0:
            out.errors.add([RowError(0, None, None, "E_NO_ROWS", "the file has a header but no rows")])
            out.fatal = True
    except csvio.CsvFormatError as exc:
        message = exc.message
        if exc.code == "E_ENCODING" and encoding_hint:
            message = f"{message}; {encoding_hint}"
        out.errors.add([RowError(exc.row, None, None, exc.code, message)])
        out.fatal = True
    except CryptoError as exc:
        if exc.code != E_TOO_LARGE:  # E_SEAL: our own gpg failed — not the sender's fault;
            raise  # the claim stays and the file is processed again on the next pass
        out.crypto = exc
        return
    finally:
        if reader is not None:
            reader.close()
    try:
        with timing.on_gpg():  # gpg's last packets, the signature checked
            out.verified = msg.verdict()
    except CryptoError as exc:
        out.crypto = truncation(exc, source)


def truncation(exc: CryptoError, source: Path) -> CryptoError:
    """gpg calls a cut-off message damaged, like a tampered one; the sender needs to
    know which: a message whose packets run past the file's end is truncated."""
    if exc.code in (E_CORRUPT, E_DECRYPT) and packets.ends_early(source):
        return CryptoError("the file ended before the message did — was the upload complete?",
                           code=E_TRUNCATED)
    return exc


def file_error(code: str, message: str) -> ErrorList:
    errors = ErrorList()
    errors.add([RowError(0, None, None, code, message)])
    return errors
