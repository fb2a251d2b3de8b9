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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from gateway import documents, faults, identifiers, outbox
from gateway.crypto.engine import SealWriter
from gateway.flows import Context, intake, unmask
from gateway.flows import documents as agency_documents
from gateway.flows.arrival import (
    Arrival,
    Channel,
    Flow,
    Outcome,
    Reading,
    Rejection,
    commit_with_receipt,
)
from gateway.flows.receipts import Receipt
from gateway.ledger import DeliveryRow, FileStatus
from gateway.names import file_fields
from gateway.state import file_sha256
from gateway.validation import csvio

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
    purges: int | None = None  # the agency's finished purges its ownership index was read at
    # the attempt counts held in memory, as JSON arrays for the commit (result_rows._Counts)
    attempt_rows: Callable[[], Iterator[str]] | None = None

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
    """The rows, read by :mod:`gateway.flows.result_rows` — imported here, so that a pass
    with no results file to read never loads Arrow and NumPy."""
    from gateway.flows import result_rows

    agency = arrival.channel.agency
    assert agency is not None  # noqa: S101 — invariant, not an input check
    result_rows.read(ctx, result_rows.Results(agency, arrival.id, staging),
                     ctx.state.archived(arrival.sha256), out)


def _verdict(ctx: Context, arrival: Arrival, out: _Reading) -> Rejection | None:
    if out.crypto is None and out.not_assigned:  # attributable: the agency's signature held
        ctx.audit.record("security.cross_agency", agency=arrival.channel.agency,
                         count=out.not_assigned, zone=arrival.channel.zone,
                         **file_fields(arrival.name, arrival.sha256))
    return out.refusal()


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
        attempts=out.attempt_rows() if out.attempt_rows else (), purges=out.purges, signer=signer,
        flags=dict(out.flagged), records=out.records, accepted=out.accepted,
        rejected=out.rejected))
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
