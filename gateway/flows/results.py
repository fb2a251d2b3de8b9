"""Agency result file -> the bank, with ownership checks and compliance flags (docs/formats.md §4).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from gateway import documents, faults, identifiers, outbox
from gateway.crypto.engine import SealWriter
from gateway.flows import Context, Interrupted, intake, unmask
from gateway.flows import documents as agency_documents
from gateway.flows.arrival import (
    Arrival,
    Channel,
    Flow,
    Outcome,
    Reading,
    Rejection,
    commit_with_receipt,
    read_signed_csv,
)
from gateway.flows.receipts import Receipt
from gateway.flows.stage import Stage
from gateway.ledger import DeliveryRow, FileStatus
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.names import file_fields
from gateway.state import file_sha256
from gateway.validation import chunks, csvio
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import Checked, ColumnarResults
from gateway.validation.results import FREE_TEXT_RESULT_FIELDS, map_results_header

log = structlog.get_logger("gateway.results")

NAME_RE = re.compile(rf"^{identifiers.BATCH_ID}{identifiers.ENCRYPTED_CSV}$")
BANK_IN = "bank.incoming"


def channels(ctx: Context) -> list[Channel]:
    """Each agency's outbox: results files, the agency's signed documents and its unmask
    requests (told apart by name: :func:`gateway.documents.kind_of`, :func:`unmask.sort`)."""
    return [Channel(kind="results", zone=ctx.cfg.zone_name(a.code, "outbox"),
                    receipt_zone=ctx.cfg.zone_name(a.code, "inbox"), flow=FLOW, agency=a.code,
                    others={**agency_documents.FLOWS, **unmask.FLOWS}, sort=_sort)
            for a in ctx.cfg.agencies]


def _sort(name: str) -> str | None:
    return documents.kind_of(name) or unmask.sort(name)


def run(ctx: Context) -> collections.Counter[str]:
    """Every agency's outbox, each (and each file in it) under ``ctx.run.guard``; returns how
    each file ended."""
    outcomes: collections.Counter[str] = collections.Counter()
    for channel in channels(ctx):
        with ctx.run.guard(channel.part):
            outcomes.update(intake.run_channel(ctx, channel))
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
class _Reading(Reading):
    not_assigned: int = 0
    unflagged: int = 0  # accepted rows without any flag
    flagged: collections.Counter[str] = field(default_factory=collections.Counter)
    forward: _Forward | None = None

    def abort(self) -> None:
        if self.forward:
            self.forward.abort()


def _forward_name(ctx: Context, agency: str) -> str:
    """``results.<agency>.<UTC timestamp>.csv.pgp``; ``.2``, ``.3`` … if that name was used."""
    stamp = ctx.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = f"results.{agency}.{stamp}.csv.pgp", 2
    while ctx.ledger.delivery_name_taken(name) or ctx.zones[BANK_IN].stat(name) is not None:
        name, n = f"results.{agency}.{stamp}.{n}.csv.pgp", n + 1
    return name


def _begin(_ctx: Context, arrival: Arrival) -> _Reading | Rejection:
    if not NAME_RE.fullmatch(arrival.name):
        return Rejection.of_file("E_NAME", "file name must be <name>.csv.pgp (or .csv.gpg/"
                                 ".csv.asc), name of [A-Za-z0-9._-], at most 64")
    return _Reading()


def _read_file(ctx: Context, arrival: Arrival, out: _Reading, staging: Path) -> None:
    agency = arrival.channel.agency
    assert agency is not None  # noqa: S101 — invariant, not an input check
    _read(ctx, _Results(agency, arrival.id, staging), ctx.state.archived(arrival.sha256), out)


def _verdict(ctx: Context, arrival: Arrival, out: _Reading) -> Rejection | None:
    if out.crypto is None and out.not_assigned:  # attributable: the agency's signature held
        ctx.audit.record("security.cross_agency", agency=arrival.channel.agency,
                         count=out.not_assigned, zone=arrival.channel.zone,
                         **file_fields(arrival.name, arrival.sha256))
    return out.refusal()


@dataclass(frozen=True)
class _Results:
    """The results file being read: whose, its file id and its staging directory."""

    agency: str
    file_id: int
    staging: Path


def _read(ctx: Context, file: _Results, archive: Path, out: _Reading) -> None:
    def handle(first: list[str], reader: chunks.ChunkReader) -> list[RowError]:
        columns, errors = map_results_header(first)
        if columns is None:
            return errors
        _rows(ctx, file, reader, columns, out)
        return []

    try:
        with archive.open("rb") as raw, ctx.crypto.open_from_agency(file.agency, ctx.run.progress.track(
                raw, f"{file.agency} results", archive.stat().st_size)) as msg:
            read_signed_csv(msg, out, handle, encoding="utf-8", delimiter=",", source=archive)
    finally:
        ctx.run.progress.done()


def _rows(ctx: Context, file: _Results, reader: chunks.ChunkReader, columns: tuple[str, ...],
          out: _Reading) -> None:
    """Chunk by chunk: the columnar rules, ownership and the CALL/SMS counts against the
    ledger, the flags, then the accepted rows sealed for the bank.

    Two stages (:class:`Stage`): this thread reads chunk *k+1*, checks it and asks the
    ledger which of its cases are not the agency's, while the other counts chunk *k*'s
    attempts, stages them and seals its rows. The rules are Arrow kernels and the
    ledger's work SQLite's, both without the GIL, so the two share two cores; one after
    the other, half the time went to SQLite while a core stood idle. The counts stay on
    one thread: a chunk's must be staged before the next chunk's are asked."""
    gw, agency = ctx.cfg.gateway, file.agency
    engine = ColumnarResults(columns, gw.tz, ctx.now(), agency=agency, window=gw.contact_window,
                             contract_end=ctx.cfg.agency(agency).contract.effective_end,
                             max_attempts=gw.max_daily_attempts)
    free_text = frozenset(c for c in engine.present if c in FREE_TEXT_RESULT_FIELDS)
    judge = Stage("judge", lambda checked: _judge(ctx, file, engine, checked, out, free_text))
    try:
        for chunk in reader.chunks(len(columns)):
            out.records += chunk.records
            judge.put(engine.owned(engine.check(chunk), foreign=lambda ids: ctx.ledger
                                   .foreign_cases(agency, chunks.json_rows(ids))))
            ctx.run.progress.rows(out.records)
            if ctx.run.stop.is_set():
                raise Interrupted
        judge.finish()
    except BaseException:
        judge.stop()  # before the caller aborts the forward writer the thread may be using
        raise


def _judge(ctx: Context, file: _Results, engine: ColumnarResults, checked: Checked,
           out: _Reading, free_text: frozenset[str]) -> None:
    """A checked chunk against the ledger; its counts staged, its accepted rows sealed
    (the *free_text* columns neutralised). The receipt's errors are added here, in chunk
    order."""
    agency, file_id = file.agency, file.file_id
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
            out.forward = _open_forward(ctx, agency, file.staging, list(table.column_names))
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


def _commit(ctx: Context, arrival: Arrival, out: _Reading, staging: Path) -> Outcome:
    agency, name, sha = arrival.channel.agency, arrival.name, arrival.sha256
    # invariants of a reading the verdict let through (not input checks)
    assert out.verified is not None and out.forward is not None and agency is not None  # noqa: S101
    fwd = out.forward
    fwd.sink.flush()
    fwd.writer.close()
    fwd.fh.close()
    delivery = DeliveryRow(file_id=arrival.id, kind="results", agency_code=agency, role=None,
                           zone=BANK_IN, name=fwd.name, sha256=file_sha256(fwd.path),
                           size=fwd.path.stat().st_size, records=out.accepted)
    status = FileStatus.ACCEPTED if not out.errors else FileStatus.PARTIAL
    receipt = Receipt(file=name, sha256=sha, received_at=arrival.received_at, status=status.value,
                      signer=out.verified.fingerprint, records=out.records, accepted=out.accepted,
                      rejected=out.rejected, errors=out.errors, neutralised=out.neutralised,
                      extra={"forwarded_as": fwd.name, "flags": dict(sorted(out.flagged.items()))})
    signer = out.verified.fingerprint
    commit_with_receipt(ctx, arrival, receipt, lambda row: ctx.ledger.commit_results(
        file_id=arrival.id, agency_code=agency, delivery=delivery, receipt=row, status=status,
        signer=signer, flags=dict(out.flagged), records=out.records,
        accepted=out.accepted, rejected=out.rejected))
    faults.point("after_results_commit")
    for flag, n in [*out.flagged.items(), ("none", out.unflagged)]:
        ctx.metrics.result_rows.labels(agency=agency, flag=flag).inc(n)
    ctx.audit.record("results.accepted", agency=agency, zone=arrival.channel.zone, sha256=sha,
                     status=status.value, records=out.records, accepted=out.accepted,
                     rejected=out.rejected, signer=out.verified.fingerprint,
                     **file_fields(name, sha))
    outbox.finish_pending(ctx)
    return Outcome(status.value)


FLOW = Flow(begin=_begin, read=_read_file, verdict=_verdict, commit=_commit)
