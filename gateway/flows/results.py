"""Agency result file -> the bank, with ownership checks and compliance flags (SPEC §8).

Each agency's outbox is its own channel: a file there must be signed by one of
*that* agency's keys (another agency's valid key is refused whole). Each row
must be about a case delivered to that agency and not purged; a row about any
other case is rejected with ``E_NOT_ASSIGNED`` and the attempt is audited as
``security.cross_agency`` (agency, file, count — never the case). Accepted rows
are forwarded to the bank's incoming zone with ``agency_code`` and ``flags``
added; the agency gets a receipt encrypted to its receipts role.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from gateway import faults, outbox
from gateway.crypto.engine import SealWriter
from gateway.flows import Context, Interrupted, intake
from gateway.flows.intake import Channel
from gateway.flows.receipts import ErrorList, Receipt
from gateway.flows.stage import Stage
from gateway.ledger import CommitConflict, DeliveryRow, FileStatus
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.state import file_sha256
from gateway.validation import chunks, csvio
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import Checked, ColumnarResults
from gateway.validation.results import FREE_TEXT_RESULT_FIELDS, map_results_header

log = structlog.get_logger("gateway.results")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.csv\.(?:pgp|gpg|asc)$")
BANK_IN = "bank.incoming"


def channels(ctx: Context) -> list[Channel]:
    return [Channel(kind="results", zone=ctx.cfg.zone_key(a.code, "outbox"),
                    receipt_zone=ctx.cfg.zone_key(a.code, "inbox"), agency=a.code)
            for a in ctx.cfg.agencies]


def run(ctx: Context) -> collections.Counter[str]:
    """Every agency's outbox, each (and each file in it) under ``ctx.guard``; returns how
    each file ended."""
    outcomes: collections.Counter[str] = collections.Counter()
    for channel in channels(ctx):
        with ctx.guard(channel.part):
            outcomes.update(intake.run_channel(ctx, channel, _process))
    return outcomes


@dataclass
class _Forward:
    """The bank's copy of the accepted rows, sealed as they arrive."""

    name: str
    path: Path
    fh: IO[bytes]
    writer: SealWriter
    sink: csvio.TextSink
    csv: Any
    columns: list[str]

    def abort(self) -> None:
        self.writer.abort()
        self.fh.close()


@dataclass
class _Outcome(intake.Outcome):
    not_assigned: int = 0
    unflagged: int = 0  # accepted rows without any flag
    flagged: collections.Counter[str] = field(default_factory=collections.Counter)
    forward: _Forward | None = None


def _forward_name(ctx: Context, agency: str) -> str:
    """``results.<agency>.<UTC timestamp>.csv.pgp``; ``.2``, ``.3`` … if that name was used."""
    stamp = ctx.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = f"results.{agency}.{stamp}.csv.pgp", 2
    while ctx.ledger.delivery_name_taken(name) or ctx.zones[BANK_IN].stat(name) is not None:
        name, n = f"results.{agency}.{stamp}.{n}.csv.pgp", n + 1
    return name


def _process(ctx: Context, channel: Channel, file_id: int, name: str, sha: str,
             received_at: dt.datetime) -> str:
    assert channel.agency is not None
    staging = ctx.state.staging(file_id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700, parents=True)
    ctx.ledger.clear_staged(file_id)  # what an interrupted attempt counted

    def reject(errors: ErrorList, code: str, out: _Outcome | None = None) -> str:
        if out and out.forward:
            out.forward.abort()
        return intake.reject(ctx, channel, file_id, name, sha, received_at, errors, code,
                             records=out.records if out else 0,
                             signer=out.verified.fingerprint if out and out.verified else None)

    if not NAME_RE.fullmatch(name):
        return reject(intake.file_error("E_NAME", "file name must be <name>.csv.pgp (or .csv.gpg/"
                                        ".csv.asc), name of [A-Za-z0-9._-], at most 64"), "E_NAME")
    out = _Outcome()
    try:
        _read(ctx, channel.agency, file_id, ctx.state.archived(sha), staging, out)
    except BaseException:
        if out.forward:
            out.forward.abort()
        raise
    if out.crypto is not None:
        out.verified = None
        return reject(intake.file_error(out.crypto.code, out.crypto.message), out.crypto.code, out)
    if out.not_assigned:  # attributable now that the agency's signature checked out
        ctx.audit.record("security.cross_agency", agency=channel.agency, count=out.not_assigned,
                         zone=channel.zone, **intake.file_fields(name, sha))
    if out.fatal or out.accepted == 0:
        code = out.errors.listed[0].code if out.errors.listed else "E_NO_ROWS"
        return reject(out.errors, code, out)
    return _commit(ctx, channel, file_id, name, sha, received_at, out)


def _read(ctx: Context, agency: str, file_id: int, archive: Path, staging: Path,
          out: _Outcome) -> None:
    def handle(first: list[str], reader: chunks.ChunkReader) -> list[RowError]:
        columns, errors = map_results_header(first)
        if columns is None:
            return errors
        _rows(ctx, agency, file_id, reader, columns, out, staging)
        return []

    try:
        with archive.open("rb") as raw, ctx.crypto.open_from_agency(
                agency, ctx.progress.track(raw, f"{agency} results", archive.stat().st_size)) as msg:
            intake.read_signed_csv(msg, out, encoding="utf-8", delimiter=",", handle_chunks=handle,
                                   source=archive)
    finally:
        ctx.progress.done()


def _rows(ctx: Context, agency: str, file_id: int, reader: chunks.ChunkReader,
          columns: tuple[str, ...], out: _Outcome, staging: Path) -> None:
    """Chunk by chunk: the columnar rules, ownership and the CALL/SMS counts against the
    ledger, the flags, then the accepted rows sealed for the bank.

    Two stages (:class:`Stage`): this thread reads chunk *k+1*, checks it and asks the
    ledger which of its cases are not the agency's, while the other counts chunk *k*'s
    attempts, stages them and seals its rows. The rules are Arrow kernels and the
    ledger's work SQLite's, both without the GIL, so the two share two cores; one after
    the other, half the time went to SQLite while a core stood idle. The counts stay on
    one thread: a chunk's must be staged before the next chunk's are asked."""
    gw = ctx.cfg.gateway
    engine = ColumnarResults(columns, gw.tz, ctx.now(), agency=agency, window=gw.contact_window,
                             contract_end=ctx.cfg.agency(agency).contract.effective_end,
                             max_attempts=gw.max_daily_attempts)
    free_text = [c for c in engine.present if c in FREE_TEXT_RESULT_FIELDS]
    judge = Stage("judge", lambda checked: _judge(ctx, agency, file_id, engine, checked,
                                                  free_text, out, staging))
    try:
        for chunk in reader.chunks(len(columns)):
            out.records += chunk.records
            judge.put(engine.owned(engine.check(chunk), foreign=lambda ids: ctx.ledger
                                   .foreign_cases(agency, chunks.json_rows(ids))))
            ctx.progress.rows(out.records)
            if ctx.stop.is_set():
                raise Interrupted
        judge.finish()
    except BaseException:
        judge.stop()  # before the caller aborts the forward writer the thread may be using
        raise


def _judge(ctx: Context, agency: str, file_id: int, engine: ColumnarResults, checked: Checked,
           free_text: list[str], out: _Outcome, staging: Path) -> None:
    """A checked chunk against the ledger; its counts staged, its accepted rows sealed.
    The receipt's errors are added here, in chunk order."""
    judged = engine.judge(checked, counted=lambda case, day: ctx.ledger.attempt_counts(
        agency, file_id, chunks.json_rows(case, day)))
    out.errors.add(judged.errors)
    out.not_assigned += judged.not_assigned
    out.flagged.update(judged.flagged)
    out.unflagged += judged.unflagged
    ctx.ledger.stage_attempts(file_id, chunks.json_rows(*judged.attempts.columns))
    table = judged.forward
    if table.num_rows:
        if out.forward is None:
            out.forward = _open_forward(ctx, agency, staging, list(table.column_names))
        written = []
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if name in free_text:
                out.neutralised += needs_neutralising(col)
                col = neutralise(col)
            written.append(col)
        out.forward.sink.write_bytes(chunks.csv_bytes(written))
        out.accepted += table.num_rows


def _open_forward(ctx: Context, agency: str, staging: Path, columns: list[str]) -> _Forward:
    name = _forward_name(ctx, agency)
    path = staging / name
    fh = path.open("xb")
    writer = ctx.crypto.seal_for_bank(fh)
    sink = csvio.TextSink(writer)
    w = csvio.writer(sink)
    w.writerow(columns)
    return _Forward(name, path, fh, writer, sink, w, columns)


def _commit(ctx: Context, channel: Channel, file_id: int, name: str, sha: str,
            received_at: dt.datetime, out: _Outcome) -> str:
    assert out.verified is not None and out.forward is not None and channel.agency is not None
    fwd = out.forward
    fwd.sink.flush()
    fwd.writer.close()
    fwd.fh.close()
    delivery = DeliveryRow(file_id=file_id, kind="results", agency_code=channel.agency, role=None,
                           zone=BANK_IN, name=fwd.name, sha256=file_sha256(fwd.path),
                           size=fwd.path.stat().st_size, records=out.accepted)
    status = FileStatus.ACCEPTED if not out.errors else FileStatus.PARTIAL
    receipt = Receipt(file=name, sha256=sha, received_at=received_at, status=status.value,
                      signer=out.verified.fingerprint, records=out.records, accepted=out.accepted,
                      rejected=out.rejected, errors=out.errors, neutralised=out.neutralised,
                      extra={"forwarded_as": fwd.name, "flags": dict(sorted(out.flagged.items()))})
    staged = intake.stage_receipt(ctx, channel, f"{file_id}-{secrets.token_hex(4)}", receipt)
    try:
        ctx.ledger.commit_results(
            file_id=file_id, agency_code=channel.agency, delivery=delivery,
            receipt=intake.receipt_row(channel, file_id, name, sha, staged, status.value),
            status=status, signer=out.verified.fingerprint, flags=dict(out.flagged),
            records=out.records, accepted=out.accepted, rejected=out.rejected)
    except CommitConflict as exc:  # another node counted attempts (or took the name) first
        intake.drop_staged_receipt(ctx, staged)
        log.info("results.conflict", file_id=file_id, reason=str(exc))
        return _process(ctx, channel, file_id, name, sha, received_at)
    faults.point("after_results_commit")
    for flag, n in [*out.flagged.items(), ("none", out.unflagged)]:
        ctx.metrics.result_rows.labels(agency=channel.agency, flag=flag).inc(n)
    ctx.audit.record("results.accepted", agency=channel.agency, zone=channel.zone, sha256=sha,
                     status=status.value, records=out.records, accepted=out.accepted,
                     rejected=out.rejected, signer=out.verified.fingerprint,
                     **intake.file_fields(name, sha))
    outbox.finish_pending(ctx)
    return status.value
