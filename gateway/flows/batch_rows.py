"""The reading of a bank case file: its rows checked, staged and sealed, chunk by chunk.

The columnar half of :mod:`gateway.flows.batches`, apart because it is the half that needs
Arrow and NumPy: the daemon imports this module when a case file is read, not for each
pass that finds nothing to do (an idle ``run --once`` does not pay for loading them).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from gateway import faults
from gateway.config import Config
from gateway.crypto.engine import SealWriter
from gateway.flows import Context, Interrupted
from gateway.flows.arrival import read_signed_csv
from gateway.flows.stage import Stage
from gateway.masking import RolePolicy, Rule
from gateway.masking_columns import ChunkMasks, Tokenizer, needs_neutralising, tokens_here
from gateway.token_worker import TokenWorker
from gateway.validation import chunks, csvio
from gateway.validation.cases import HeaderMap, RowError, map_header
from gateway.validation.columnar import Checked, ColumnarCases
from gateway.validation.schema import FREE_TEXT_CASE_FIELDS

if TYPE_CHECKING:
    from gateway.flows.batches import _Reading as Reading

log = structlog.get_logger("gateway.batches")

# Rows checked, staged and sealed at a time in a bank batch: twice the reader's default.
# Each chunk costs the same few hundred Arrow and NumPy calls whatever its size, and each
# call gives up and takes back the interpreter lock the batch's three threads share: at
# 8,192 rows the Python stages cost ~20 % less CPU than at 4,096 (benchmarks/stages.py).
# Up to seven chunks are in flight (two short queues, docs/engineering/performance.md,
# "Fewer, larger calls"): 16,384 rows saved a little more CPU but took the daemon's peak
# to ~210 MB PSS when the sealer fell behind.
ROWS_PER_CHUNK = 8192


class Hashed:
    """A slice's file as gpg's output is written into it, hashed on the way: the digest
    the manifest and the ledger record, without reading every slice back at the end."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.name = fh.name  # what an error about the file names
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.fh.write(data)


@dataclass
class Slice:
    name: str
    role: str
    path: Path
    out: Hashed  # the file, hashed as it is written
    writer: SealWriter
    sink: csvio.TextSink
    columns: list[str]
    policy: RolePolicy
    records: int = 0


class AgencySlices:
    """One sealed CSV per role of an agency, written as rows arrive."""

    def __init__(self, ctx: Context, staging: Path, batch_id: str, code: str,
                 present: frozenset[str]) -> None:
        agency = ctx.cfg.agency(code)
        self.code, self.contract_id = code, agency.contract.id
        self.slices: list[Slice] = []
        uses_token = any(Rule.TOKEN in ctx.cfg.roles[r].values() for r in agency.roles)
        self.secret = ctx.state.token_secret(agency.contract.id) if uses_token else None
        try:
            for role in agency.roles:
                policy = RolePolicy(role, ctx.cfg.roles[role])
                columns = policy.columns(present)
                name = f"{batch_id}.{code}.{role}.csv.pgp"
                path = staging / name
                fh = path.open("xb")
                out = Hashed(fh)
                writer = ctx.crypto.seal_for_role(code, role, cast(BinaryIO, out))
                sink = csvio.TextSink(writer)
                csvio.writer(sink).writerow(columns)
                self.slices.append(Slice(name, role, path, out, writer, sink, columns, policy))
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        for s in self.slices:
            s.sink.flush()
            s.writer.close()
            s.out.fh.flush()
            s.out.fh.close()

    def abort(self) -> None:
        for s in self.slices:
            s.writer.abort()
            with contextlib.suppress(OSError):
                s.out.fh.close()


@dataclass(frozen=True)
class Batch:
    """The batch a file is being read as: its file id, batch id and staging directory."""

    file_id: int
    batch_id: str
    staging: Path


def _encoding_hint(configured: str) -> str:
    """What the bank can do about an E_ENCODING: the message alone ("not valid utf-8
    text") never said that the case files' encoding is a setting."""
    other = "utf-8" if configured == "gb18030" else "gb18030"
    return f"if the bank's export uses another encoding (e.g. {other}), set schema.encoding"


def read(ctx: Context, batch: Batch, archive: Path, out: Reading) -> None:
    def handle(first: list[str], reader: chunks.ChunkReader) -> list[RowError]:
        header, errors = map_header(first, ctx.cfg)
        if header is None:
            return errors
        _rows(ctx, batch, reader, header, out)
        return []

    try:
        with archive.open("rb") as raw, ctx.crypto.open_from_bank(
                ctx.run.progress.track(raw, batch.batch_id, archive.stat().st_size)) as msg:
            read_signed_csv(msg, out, handle, encoding=ctx.cfg.schema_.encoding,
                            delimiter=ctx.cfg.schema_.delimiter, source=archive,
                            encoding_hint=_encoding_hint(ctx.cfg.schema_.encoding))
    finally:
        ctx.run.progress.done()


def _rows(ctx: Context, batch: Batch, reader: chunks.ChunkReader, header: HeaderMap,
          out: Reading) -> None:
    """Chunk by chunk: the columnar rules, the case ids against this file and the ledger,
    then each agency's rows sealed into its slices — memory bounded by a few chunks.

    Three stages, each on a thread of its own, joined by short queues (:class:`Stage`):
    this thread reads and checks chunk *k+2* while the ledger stages chunk *k+1* and the
    sealer masks and writes chunk *k* into the gpg pipes. Most of each stage's work is
    Arrow, SQLite or a pipe write, which run without the GIL, so two cores share them."""
    engine = ColumnarCases(ctx.cfg, header, ctx.today())
    tokens = _tokenizer(ctx.cfg)
    sealer = Stage("seal", lambda item: _seal(ctx, batch, header, out, item, tokens))
    staging = _Staging(ctx.cfg, header, sealer)
    stager = Stage("stage", lambda checked: _stage(ctx, batch.file_id, staging, checked, out))
    try:
        for chunk in reader.chunks(len(header.fields), rows_per_chunk=ROWS_PER_CHUNK):
            out.records += chunk.records
            stager.put(engine.check(chunk))
            ctx.run.progress.rows(out.records)
            faults.point("mid_batch")
            if ctx.run.stop.is_set():
                raise Interrupted
        stager.finish()
        sealer.finish()
    except BaseException:
        stager.stop()  # first: it may be handing the sealer a chunk, which the sealer takes
        sealer.stop()  # before the caller aborts the gpg writers the thread may be using
        raise
    finally:
        if isinstance(tokens, TokenWorker):
            tokens.close()


def _tokenizer(cfg: Config) -> Tokenizer:
    """A worker process for the ``token`` rule if a role uses it (its HMACs are the one
    Python loop over values left in the flow, see :mod:`gateway.token_worker`), else none;
    this thread's own if the worker cannot start."""
    if not any(Rule.TOKEN in rules.values() for rules in cfg.roles.values()):
        return tokens_here
    try:
        return TokenWorker()
    except OSError as exc:
        log.warning("token_worker.unavailable", error=str(exc))
        return tokens_here


class _Staging:
    """What staging a chunk needs beside the chunk, the same for every chunk of a file."""

    def __init__(self, cfg: Config, header: HeaderMap, sealer: Stage) -> None:
        self.strict = cfg.schema_.on_invalid == "reject_batch"
        self.free_text = sorted(FREE_TEXT_CASE_FIELDS & header.present)
        self.contracts = {a.code: a.contract.id for a in cfg.agencies}
        self.sealer = sealer


def _stage(ctx: Context, file_id: int, staging: _Staging, checked: Checked,
           out: Reading) -> None:
    """A checked chunk's case ids against this file and the ledger; the new ones staged
    and handed to the sealer. The receipt's errors are added here, in chunk order. No
    Python object per row unless a case id is repeated or live (see the ledger on why).

    A chunk without a case id twice is staged by one statement that leaves out what is
    not new (``stage_new_cases``): a lookup of the file's staged ids, one of the live ones
    and an insert were ~2.7 of the ~4.7 CPU seconds the ledger took per million cases.
    Only a chunk that came back short is looked at again, row by row, with the same
    verdicts as before; one that repeats a case id takes the old way, which keeps the
    first of the two whatever order the database inserts a statement's rows in."""
    table, rows = checked.table, checked.rows
    repeated: list[RowError] = []
    if table.num_rows:
        cases = _cases_json(table, rows)
        ids = table.column("case_id")
        if pc.count_distinct(ids).as_py() != len(ids):  # a case id twice in the chunk
            staged, live = ctx.ledger.stage_chunk(file_id, cases)
            keep, repeated = _new_cases(ids.to_pylist(), rows, staged, live)
            table, rows = table.filter(pa.array(keep)), rows[keep]
            if table.num_rows:
                ctx.ledger.stage_cases(file_id, _cases_json(table, rows), staging.contracts)
        elif ctx.ledger.stage_new_cases(file_id, cases, staging.contracts) != len(ids):
            # Some were left out: staged from an earlier row of this file, or live in
            # another batch (not staged at all). Those staged from this chunk are its own.
            ids_list, here = ids.to_pylist(), set(rows.tolist())
            staged_rows = ctx.ledger.staged_rows(file_id, cases)
            staged = {cid for cid, row in staged_rows.items() if row not in here}
            live = set(ids_list) - staged_rows.keys()
            keep, repeated = _new_cases(ids_list, rows, staged, live)
            table, rows = table.filter(pa.array(keep)), rows[keep]
    out.errors.add(sorted(checked.errors + repeated, key=lambda e: e.row))
    out.accepted += table.num_rows
    counts = pc.value_counts(table.column("agency_code"))
    per_agency = collections.Counter(dict(zip(counts.field("values").to_pylist(),
                                              counts.field("counts").to_pylist(), strict=True)))
    out.per_agency.update(per_agency)
    out.neutralised += sum(needs_neutralising(table.column(k).combine_chunks())
                           for k in staging.free_text)
    if staging.strict and out.errors:  # the batch will be rejected: stop sealing, keep
        staging.sealer.finish()  # validating for the receipt
        out.abort()
        out.agencies.clear()
    elif table.num_rows:
        staging.sealer.put((table, per_agency))


def _cases_json(table: pa.Table, rows: np.ndarray) -> str:
    """``[["case id", row, "agency"], …]`` of a chunk's rows for the ledger."""
    return chunks.json_rows(table.column("case_id").combine_chunks(), pa.array(rows),
                            table.column("agency_code").combine_chunks())


def _seal(ctx: Context, batch: Batch, header: HeaderMap, out: Reading,
          item: tuple[pa.Table, collections.Counter[str]], tokens: Tokenizer) -> None:
    """A chunk's accepted rows into their agencies' slices. Sorted by agency (a stable
    sort: each slice keeps the file's row order), every mask is computed once for the
    chunk, each role's CSV is built once for all the agencies that have the role, and
    each agency's slice gets its span of those bytes. The token columns are asked of
    *tokens* first, all at once: a worker hashes them while this thread builds the rest."""
    table, per_agency = item
    table = table.take(pc.sort_indices(table.column("agency_code")))
    masks = ChunkMasks(table, FREE_TEXT_CASE_FIELDS, tokens)
    by_role: dict[str, list[tuple[Slice, int, int, bytes | None]]] = {}
    start = 0
    for code in sorted(per_agency):
        if code not in out.agencies:
            out.agencies[code] = AgencySlices(ctx, batch.staging, batch.batch_id, code,
                                               header.present)
        agency = out.agencies[code]
        for s in agency.slices:  # a role's policy and columns are the same for every agency
            by_role.setdefault(s.role, []).append((s, start, per_agency[code], agency.secret))
        start += per_agency[code]
    masks.prefetch(span for members in by_role.values()
                   for span in ChunkMasks.token_spans(members[0][0].policy, members[0][0].columns,
                                                      [(at, n, key) for _, at, n, key in members]))
    for members in by_role.values():
        first = members[0][0]
        columns, plain = masks.spans(first.policy, first.columns,
                                     [(at, n, key) for _, at, n, key in members])
        lines = chunks.csv_lines(columns, plain)
        at = 0
        for s, _, n, _ in members:
            s.sink.write_bytes(chunks.lines_buffer(lines, at, n))
            s.records += n
            at += n


def _new_cases(ids: list[str], rows: np.ndarray, staged: set[str],
               live: set[str]) -> tuple[np.ndarray, list[RowError]]:
    """Which of a chunk's valid rows bring a new case id: not earlier in this file (this
    chunk, or *staged* before it), not *live* in another batch."""
    keep = np.ones(len(ids), dtype=bool)
    errors: list[RowError] = []
    seen: set[str] = set()
    for i, cid in enumerate(ids):
        if cid in seen or cid in staged:
            errors.append(RowError(int(rows[i]), cid, "case_id", "E_DUPLICATE_CASE",
                                   "case_id appears more than once in this batch"))
            keep[i] = False
        elif cid in live:
            errors.append(RowError(int(rows[i]), cid, "case_id", "E_CASE_EXISTS",
                                   "case_id is a live case of an earlier batch"))
            keep[i] = False
        seen.add(cid)
    return keep, errors
