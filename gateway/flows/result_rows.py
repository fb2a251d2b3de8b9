"""A results file's rows: decrypted, checked, judged against the ledger, sealed for the bank.

The Arrow and NumPy half of :mod:`gateway.flows.results`, imported only when a results
file is read (a pass with nothing to read loads neither library).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.flows import Context, Interrupted
from gateway.flows.arrival import read_signed_csv
from gateway.flows.results import _Forward, _forward_name, _Reading
from gateway.flows.stage import Stage
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.validation import chunks, csvio, ownership
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import Checked, ColumnarResults, Foreign
from gateway.validation.results import FREE_TEXT_RESULT_FIELDS, map_results_header


@dataclass(frozen=True)
class Results:
    """The results file being read: whose, its file id and its staging directory."""

    agency: str
    file_id: int
    staging: Path


def read(ctx: Context, file: Results, archive: Path, out: _Reading) -> None:
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


def owners(ctx: Context, agency: str, out: _Reading) -> Foreign:
    """How the file's case ids are told the agency's or not: by an :class:`OwnerIndex` read
    once (*out* keeps the agency's purge count it was read at, which the commit checks
    again), or — an agency too large for it — by asking the ledger per chunk."""
    purges = ctx.ledger.finished_purges(agency)
    index = ownership.load(ctx.ledger.live_case_pages(agency, ownership.PAGE))
    if index is None:
        return lambda ids: ctx.ledger.foreign_cases(agency, chunks.json_rows(ids))
    out.purges = purges
    return index.foreign


def _rows(ctx: Context, file: Results, reader: chunks.ChunkReader, columns: tuple[str, ...],
          out: _Reading) -> None:
    """Chunk by chunk: the columnar rules, ownership and the CALL/SMS counts against the
    ledger, the flags, then the accepted rows sealed for the bank.

    Two stages (:class:`Stage`): this thread reads chunk *k+1*, checks it and tells which
    of its cases are not the agency's, while the other counts chunk *k*'s attempts, stages
    them and seals its rows. The rules are Arrow kernels and the ledger's work SQLite's,
    both without the GIL, so the two share two cores; one after the other, half the time
    went to SQLite while a core stood idle. The counts stay on one thread: a chunk's must
    be staged before the next chunk's are asked."""
    gw, agency = ctx.cfg.gateway, file.agency
    engine = ColumnarResults(columns, gw.tz, ctx.now(), agency=agency, window=gw.contact_window,
                             contract_end=ctx.cfg.agency(agency).contract.effective_end,
                             max_attempts=gw.max_daily_attempts)
    free_text = frozenset(c for c in engine.present if c in FREE_TEXT_RESULT_FIELDS)
    foreign = owners(ctx, agency, out)
    judge = Stage("judge", lambda checked: _judge(ctx, file, engine, checked, out, free_text))
    try:
        for chunk in reader.chunks(len(columns)):
            out.records += chunk.records
            judge.put(engine.owned(engine.check(chunk), foreign=foreign))
            ctx.run.progress.rows(out.records)
            if ctx.run.stop.is_set():
                raise Interrupted
        judge.finish()
    except BaseException:
        judge.stop()  # before the caller aborts the forward writer the thread may be using
        raise


def _judge(ctx: Context, file: Results, engine: ColumnarResults, checked: Checked,
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
