"""A results file's rows: decrypted, checked, judged against the ledger, sealed for the bank.

The Arrow and NumPy half of :mod:`gateway.flows.results`, imported only when a results
file is read (a pass with nothing to read loads neither library).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gateway.flows import Context, Interrupted
from gateway.flows.arrival import read_signed_csv
from gateway.flows.results import _Forward, _forward_name, _Reading
from gateway.flows.stage import Stage
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.validation import chunks, csvio, file_counts, ownership
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import Checked, ColumnarResults, Foreign, whole
from gateway.validation.results import FREE_TEXT_RESULT_FIELDS, map_results_header

# Rows per chunk: four times the reader's default. A chunk costs the same few dozen Arrow
# and NumPy calls, one ledger statement (its committed counts) and two hand-overs of the
# interpreter lock whatever its size, and a result row is small (~80 bytes of CSV; a
# chunk's columns, its copies and its forwarded CSV are a few MB): result_stages.py at a
# million rows, CPU s of the rules + the judging, 4,096 rows 0.66-0.69 + 0.96-1.03, 8,192
# rows 0.43-0.46 + 0.83-0.90, 16,384 rows 0.40-0.41 + 0.86-0.88 (the daemon's heap
# settings; 16,000 rows, whose int64 arrays stay under the mmap threshold, no better).
ROWS_PER_CHUNK = 16_384


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
        return lambda ids: ctx.ledger.foreign_cases(agency, chunks.json_rows(pc.unique(ids)))
    out.purges = purges
    return index.foreign


class _Counts:
    """The file's CALL/SMS counts so far (see :mod:`gateway.validation.file_counts`): in
    memory until they pass its bound, then in the ledger's staging, as before."""

    def __init__(self, ctx: Context, file: Results) -> None:
        self.ctx, self.file = ctx, file
        self.held: file_counts.FileCounts | None = file_counts.FileCounts()

    def counted(self, case: pa.Array, day: pa.Array) -> dict[int, int]:
        """What committed files and this file's earlier chunks counted, by key position."""
        found = self.ctx.ledger.attempt_counts(self.file.agency, self.file.file_id,
                                               chunks.json_rows(case, day),
                                               staged=self.held is None)
        if self.held is not None:
            for key, n in self.held.counted(case, day).items():
                found[key] = found.get(key, 0) + n
        return found

    def add(self, attempts: pa.Table) -> None:
        """A chunk's counts (each key once)."""
        case, day, count = (whole(c) for c in attempts.columns)
        if self.held is not None and file_counts.fits(day):
            self.held.add(case, day, count)
            if self.held.nbytes > file_counts.MAX_BYTES:
                self._spill(self.held)
            return
        if self.held is not None:
            self._spill(self.held)
        self.ctx.ledger.stage_attempts(self.file.file_id, chunks.json_rows(case, day, count))

    def _spill(self, held: file_counts.FileCounts) -> None:
        """Past the memory bound: what is held goes to the ledger's staging, and so does
        every later chunk's."""
        for rows in held.rows():
            self.ctx.ledger.stage_attempts(self.file.file_id, rows)
        self.held = None

    def rows(self) -> Iterator[str]:
        """The counts held in memory, for the commit (those staged it finds itself)."""
        if self.held is not None:
            yield from self.held.rows()


def _rows(ctx: Context, file: Results, reader: chunks.ChunkReader, columns: tuple[str, ...],
          out: _Reading) -> None:
    """Chunk by chunk: the columnar rules, ownership and the CALL/SMS counts against the
    ledger, the flags, then the accepted rows sealed for the bank.

    Two stages (:class:`Stage`): this thread reads chunk *k+1*, checks it and tells which
    of its cases are not the agency's, while the other counts chunk *k*'s attempts, keeps
    them (:class:`_Counts`) and seals its rows. The rules are Arrow kernels and the ledger's work SQLite's,
    both without the GIL, so the two share two cores; one after the other, half the time
    went to SQLite while a core stood idle. The counts stay on one thread: a chunk's must
    be staged before the next chunk's are asked."""
    gw, agency = ctx.cfg.gateway, file.agency
    engine = ColumnarResults(columns, gw.tz, ctx.now(), agency=agency, window=gw.contact_window,
                             contract_end=ctx.cfg.agency(agency).contract.effective_end,
                             max_attempts=gw.max_daily_attempts)
    free_text = frozenset(c for c in engine.present if c in FREE_TEXT_RESULT_FIELDS)
    foreign = owners(ctx, agency, out)
    counts = _Counts(ctx, file)
    out.attempt_rows = counts.rows
    judge = Stage("judge", lambda checked: _judge(ctx, file, engine, checked, out, free_text,
                                                  counts))
    try:
        for chunk in reader.chunks(len(columns), rows_per_chunk=ROWS_PER_CHUNK):
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
           out: _Reading, free_text: frozenset[str], counts: _Counts) -> None:
    """A checked chunk against the ledger; its counts staged, its accepted rows sealed
    (the *free_text* columns neutralised). The receipt's errors are added here, in chunk
    order."""
    judged = engine.judge(checked, counted=counts.counted)
    out.errors.add(judged.errors)
    out.not_assigned += judged.not_assigned
    out.flagged.update(judged.flagged)
    out.unflagged += judged.unflagged
    counts.add(judged.attempts)
    table = judged.forward
    if table.num_rows:
        if out.forward is None:
            out.forward = _open_forward(ctx, file.agency, file.staging, list(table.column_names))
        written = []
        for name in table.column_names:
            col = whole(table.column(name))
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
