"""Bank case file -> per-agency, per-role encrypted slices + a receipt (docs/formats.md §2, §3, §5.1).

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
the next run (:func:`gateway.outbox.finish_pending`). A file whose worker died before the
commit is processed again from the archive (:func:`resume`).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from gateway import clock, faults, identifiers, outbox
from gateway.config import Config
from gateway.crypto.engine import SealWriter
from gateway.flows import Context, Interrupted, intake
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
from gateway.ledger import BatchRow, DeliveryRow, FileStatus
from gateway.ledger.schema import UNMASK_BATCH_PREFIX
from gateway.masking import RolePolicy, Rule
from gateway.masking_columns import ChunkMasks, needs_neutralising
from gateway.names import file_fields
from gateway.state import file_sha256
from gateway.validation import chunks, csvio
from gateway.validation.cases import HeaderMap, RowError, map_header
from gateway.validation.columnar import Checked, ColumnarCases
from gateway.validation.schema import FREE_TEXT_CASE_FIELDS

log = structlog.get_logger("gateway.batches")

NAME_RE = re.compile(rf"^(?P<batch>{identifiers.BATCH_ID}){identifiers.ENCRYPTED_CSV}$")
BANK_OUT, BANK_IN = "bank.outgoing", "bank.incoming"




def run(ctx: Context) -> collections.Counter[str]:
    """Everything pending for the bank's outgoing zone, each file under ``ctx.run.guard``;
    returns how each file ended."""
    return intake.run_channel(ctx, BANK)


# --- process ---------------------------------------------------------------------


class _Hashed:
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
class _Slice:
    name: str
    role: str
    path: Path
    out: _Hashed  # the file, hashed as it is written
    writer: SealWriter
    sink: csvio.TextSink
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
                out = _Hashed(fh)
                writer = ctx.crypto.seal_for_role(code, role, cast(BinaryIO, out))
                sink = csvio.TextSink(writer)
                csvio.writer(sink).writerow(columns)
                self.slices.append(_Slice(name, role, path, out, writer, sink, columns, policy))
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


@dataclass
class _Reading(Reading):
    batch_id: str = ""
    per_agency: collections.Counter[str] = field(default_factory=collections.Counter)
    agencies: dict[str, _AgencySlices] = field(default_factory=dict)

    def abort(self) -> None:
        for agency in self.agencies.values():
            agency.abort()


def _begin(ctx: Context, arrival: Arrival) -> _Reading | Rejection:
    m = NAME_RE.fullmatch(arrival.name)
    if not m:
        return Rejection.of_file("E_NAME", "file name must be <batch_id>.csv.pgp (or .csv.gpg/"
                                 f".csv.asc) with batch_id {identifiers.BATCH_ID}")
    batch_id = m.group("batch")
    if batch_id.lower().startswith(UNMASK_BATCH_PREFIX):
        return Rejection.of_file("E_NAME", f"batch names beginning with {UNMASK_BATCH_PREFIX} "
                                 "are reserved for the gateway's one-off unmasked slices")
    if ctx.ledger.batch(batch_id) is not None:
        return Rejection.of_file("E_BATCH_EXISTS", f"batch {batch_id} was already accepted "
                                 "from a different file")
    return _Reading(batch_id=batch_id)


def _read_file(ctx: Context, arrival: Arrival, out: _Reading, staging: Path) -> None:
    _read(ctx, _Batch(arrival.id, out.batch_id, staging), ctx.state.archived(arrival.sha256), out)


def _verdict(ctx: Context, _arrival: Arrival, out: _Reading) -> Rejection | None:
    return out.refusal(strict=ctx.cfg.schema_.on_invalid == "reject_batch")


@dataclass(frozen=True)
class _Batch:
    """The batch a file is being read as: its file id, batch id and staging directory."""

    file_id: int
    batch_id: str
    staging: Path


def _encoding_hint(configured: str) -> str:
    """What the bank can do about an E_ENCODING: the message alone ("not valid utf-8
    text") never said that the case files' encoding is a setting."""
    other = "utf-8" if configured == "gb18030" else "gb18030"
    return f"if the bank's export uses another encoding (e.g. {other}), set schema.encoding"


def _read(ctx: Context, batch: _Batch, archive: Path, out: _Reading) -> None:
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


def _rows(ctx: Context, batch: _Batch, reader: chunks.ChunkReader, header: HeaderMap,
          out: _Reading) -> None:
    """Chunk by chunk: the columnar rules, the case ids against this file and the ledger,
    then each agency's rows sealed into its slices — memory bounded by a few chunks.

    Three stages, each on a thread of its own, joined by short queues (:class:`Stage`):
    this thread reads and checks chunk *k+2* while the ledger stages chunk *k+1* and the
    sealer masks and writes chunk *k* into the gpg pipes. Most of each stage's work is
    Arrow, SQLite or a pipe write, which run without the GIL, so two cores share them."""
    engine = ColumnarCases(ctx.cfg, header, ctx.today())
    sealer = Stage("seal", lambda item: _seal(ctx, batch, header, out, item))
    staging = _Staging(ctx.cfg, header, sealer)
    stager = Stage("stage", lambda checked: _stage(ctx, batch.file_id, staging, checked, out))
    try:
        for chunk in reader.chunks(len(header.fields)):
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


class _Staging:
    """What staging a chunk needs beside the chunk, the same for every chunk of a file."""

    def __init__(self, cfg: Config, header: HeaderMap, sealer: Stage) -> None:
        self.strict = cfg.schema_.on_invalid == "reject_batch"
        self.free_text = sorted(FREE_TEXT_CASE_FIELDS & header.present)
        self.contracts = {a.code: a.contract.id for a in cfg.agencies}
        self.sealer = sealer


def _stage(ctx: Context, file_id: int, staging: _Staging, checked: Checked,
           out: _Reading) -> None:
    """A checked chunk's case ids against this file and the ledger; the new ones staged
    and handed to the sealer. The receipt's errors are added here, in chunk order. No
    Python object per row unless the chunk repeats a case id (see the ledger on why)."""
    table, rows = checked.table, checked.rows
    repeated: list[RowError] = []
    if table.num_rows:
        cases = _cases_json(table, rows)
        staged, live = ctx.ledger.stage_chunk(file_id, cases)
        ids = table.column("case_id")
        if staged or live or pc.count_distinct(ids).as_py() != len(ids):
            keep, repeated = _new_cases(ids.to_pylist(), rows, staged, live)
            table, rows = table.filter(pa.array(keep)), rows[keep]
            cases = _cases_json(table, rows)
        if table.num_rows:
            ctx.ledger.stage_cases(file_id, cases, staging.contracts)
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


def _seal(ctx: Context, batch: _Batch, header: HeaderMap, out: _Reading,
          item: tuple[pa.Table, collections.Counter[str]]) -> None:
    """A chunk's accepted rows into their agencies' slices. Sorted by agency (a stable
    sort: each slice keeps the file's row order), every mask is computed once for the
    chunk, each role's CSV is built once for all the agencies that have the role, and
    each agency's slice gets its span of those bytes."""
    table, per_agency = item
    table = table.take(pc.sort_indices(table.column("agency_code")))
    masks = ChunkMasks(table, FREE_TEXT_CASE_FIELDS)
    by_role: dict[str, list[tuple[_Slice, int, int, bytes | None]]] = {}
    start = 0
    for code in sorted(per_agency):
        if code not in out.agencies:
            out.agencies[code] = _AgencySlices(ctx, batch.staging, batch.batch_id, code,
                                               header.present)
        agency = out.agencies[code]
        for s in agency.slices:  # a role's policy and columns are the same for every agency
            by_role.setdefault(s.role, []).append((s, start, per_agency[code], agency.secret))
        start += per_agency[code]
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


# --- end states ------------------------------------------------------------------


def _commit(ctx: Context, arrival: Arrival, out: _Reading, staging: Path) -> Outcome:
    assert out.verified is not None  # noqa: S101 — invariant, not an input check
    batch_id, file_id = out.batch_id, arrival.id
    deliveries: list[DeliveryRow] = []
    manifests: list[tuple[str, str, Path]] = []
    created = ctx.now()
    with contextlib.ExitStack() as sealing:  # every manifest's gpg at once (each starts up)
        for code, agency in sorted(out.agencies.items()):
            agency.close()
            inbox = ctx.cfg.zone_name(code, "inbox")
            files = []
            for s in agency.slices:
                digest = s.out.sha256.hexdigest()
                size = s.path.stat().st_size
                files.append({"name": s.name, "role": s.role, "records": s.records, "sha256": digest})
                deliveries.append(DeliveryRow(file_id=file_id, kind="slice", batch_id=batch_id,
                                              agency_code=code, role=s.role, zone=inbox,
                                              name=s.name, sha256=digest, size=size,
                                              records=s.records))
            manifest = {"batch_id": batch_id, "agency": code, "contract_id": agency.contract_id,
                        "created_at": clock.iso(created), "files": files}
            mname = f"{batch_id}.{code}.manifest.json.pgp"
            fh = sealing.enter_context((staging / mname).open("xb"))
            w = sealing.enter_context(ctx.crypto.seal_for_agency(code, fh))
            w.write(json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n")
            manifests.append((code, mname, staging / mname))
    for code, mname, mpath in manifests:  # after the slices they list
        deliveries.append(DeliveryRow(file_id=file_id, kind="manifest", batch_id=batch_id,
                                      agency_code=code, role=None,
                                      zone=ctx.cfg.zone_name(code, "inbox"), name=mname,
                                      sha256=file_sha256(mpath), size=mpath.stat().st_size))
    status = FileStatus.ACCEPTED if not out.errors else FileStatus.PARTIAL
    receipt = Receipt(file=arrival.name, sha256=arrival.sha256, received_at=arrival.received_at,
                      status=status.value, signer=out.verified.fingerprint, batch_id=batch_id,
                      records=out.records, accepted=out.accepted, rejected=out.rejected,
                      per_agency=dict(out.per_agency), errors=out.errors,
                      neutralised=out.neutralised)
    signer = out.verified.fingerprint
    commit_with_receipt(ctx, arrival, receipt, lambda row: ctx.ledger.commit_batch(
        file_id=file_id,
        batch=BatchRow(batch_id=batch_id, file_id=file_id, status=status.value,
                       records=out.records, accepted=out.accepted, rejected=out.rejected),
        deliveries=deliveries, receipt=row, status=status, signer=signer))
    faults.point("after_commit")
    for code, n in out.per_agency.items():
        if code in out.agencies:
            ctx.metrics.cases_delivered.labels(agency=code).inc(n)
    ctx.audit.record("batch.accepted", batch_id=batch_id, sha256=arrival.sha256, status=status.value,
                     records=out.records, accepted=out.accepted, rejected=out.rejected,
                     signer=out.verified.fingerprint, **file_fields(arrival.name, arrival.sha256))
    outbox.finish_pending(ctx)
    return Outcome(status.value)


BANK = Channel(kind="case_file", zone=BANK_OUT, receipt_zone=BANK_IN,
               flow=Flow(begin=_begin, read=_read_file, verdict=_verdict, commit=_commit))
