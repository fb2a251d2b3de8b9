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
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway import clock, faults, identifiers, outbox
from gateway.flows import Context, intake
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
from gateway.ledger import BatchRow, DeliveryRow, FileStatus
from gateway.ledger.schema import UNMASK_BATCH_PREFIX
from gateway.names import file_fields
from gateway.state import file_sha256

if TYPE_CHECKING:
    from gateway.flows.batch_rows import AgencySlices

log = structlog.get_logger("gateway.batches")

NAME_RE = re.compile(rf"^(?P<batch>{identifiers.BATCH_ID}){identifiers.ENCRYPTED_CSV}$")
BANK_OUT, BANK_IN = "bank.outgoing", "bank.incoming"


def run(ctx: Context) -> collections.Counter[str]:
    """Everything pending for the bank's outgoing zone, each file under ``ctx.run.guard``;
    returns how each file ended."""
    return intake.run_channel(ctx, BANK)


# --- process (the rows themselves: gateway/flows/batch_rows.py) -----------------------


@dataclass
class _Reading(Reading):
    batch_id: str = ""
    per_agency: collections.Counter[str] = field(default_factory=collections.Counter)
    agencies: dict[str, AgencySlices] = field(default_factory=dict)

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
    from gateway.flows import batch_rows  # Arrow and NumPy: only when a file is read

    batch_rows.read(ctx, batch_rows.Batch(arrival.id, out.batch_id, staging),
                    ctx.state.archived(arrival.sha256), out)


def _verdict(ctx: Context, _arrival: Arrival, out: _Reading) -> Rejection | None:
    return out.refusal(strict=ctx.cfg.schema_.on_invalid == "reject_batch")


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
