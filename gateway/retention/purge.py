"""Purge an agency's data and prove it: the audited executor behind `gateway retention run`.

For a contract whose purge is due (see :mod:`policy`), everything the gateway
holds or placed for that agency goes, through the same zone interface as the
flows (local and SFTP alike):

* every file in the agency's inbox and outbox (slices, manifests, receipts, uploads);
* the archived and quarantined ciphertexts of the agency's result files;
* the contract's key for the ``token`` masking rule;
* a bank case file's archived ciphertext, once every agency it fed is purged;
* the agency's case assignments and attempt counts in the ledger (audit entries stay).

The plan is written to the ledger *before* anything is deleted, each deletion
is recorded as it happens, and the certificate is written last — so a purge
killed half-way completes on the next run and still yields one certificate
listing everything. ``dry_run`` returns the same plan and deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway import clock, documents, faults, outbox
from gateway.config import Agency
from gateway.flows import Context, Services
from gateway.ledger import DeliveryRow, PurgeObjectRow, PurgeRow
from gateway.names import display_name
from gateway.retention.policy import Decision, State, contracts
from gateway.state import file_sha256, write_private

log = structlog.get_logger("gateway.retention")
BANK_IN = "bank.incoming"


@dataclass(frozen=True)
class Obj:
    location: str  # a zone name (AG001.inbox) or state:archive / state:quarantine / state:secrets
    name: str
    size: int
    sha256: str


@dataclass
class PurgeReport:
    decision: Decision
    objects: list[Obj]
    cases: int
    certificate: str | None = None
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)


def decisions(ctx: Services, today: dt.date | None = None) -> list[Decision]:
    """Every contract's state today (local date in the gateway's time zone)."""
    return contracts(ctx.cfg, ctx.ledger, today or ctx.today())


def plan(ctx: Services, agency: Agency) -> list[Obj]:
    """Exactly what a purge of *agency* deletes now — names and sizes; the SHA-256 of each
    object is read by :func:`_hashed` only for what a certificate will list."""
    objs: list[Obj] = []
    for key in (ctx.cfg.zone_name(agency.code, "inbox"), ctx.cfg.zone_name(agency.code, "outbox")):
        objs += [Obj(key, e.name, e.size, "") for e in ctx.zones[key].list_all()]
    state = ctx.state

    def local(location: str, path: Path) -> None:
        if path.is_file():
            objs.append(Obj(location, path.name, path.stat().st_size, ""))

    for f in ctx.ledger.results_files(agency.code):
        local("state:archive", state.archived(f.sha256))
        if f.archive_name:
            local("state:quarantine", state.quarantine / f.archive_name)
    local("state:secrets", state.token_secret_path(agency.contract.id))
    done = ctx.ledger.purged_agencies() | {agency.code}
    for f, fed in ctx.ledger.batch_files_fed(agency.code):
        if fed <= done:
            local("state:archive", state.archived(f.sha256))
    return objs


def _hashed(ctx: Services, obj: Obj) -> Obj:
    if obj.location.startswith("state:"):
        digest = file_sha256(_path(ctx, obj))
    else:
        h = hashlib.sha256()
        with ctx.zones[obj.location].open_read(obj.name) as fh:
            while chunk := fh.read(256 * 1024):
                h.update(chunk)
        digest = h.hexdigest()
    return Obj(obj.location, obj.name, obj.size, digest)


def _path(ctx: Services, obj: PurgeObjectRow | Obj) -> Path:
    where = {"state:archive": ctx.state.archive, "state:quarantine": ctx.state.quarantine,
             "state:secrets": ctx.state.token_secrets}[obj.location]
    return where / obj.name


def preview(view: Services, today: dt.date | None = None) -> list[PurgeReport]:
    """What purging every contract that is due would delete now (``--dry-run``)."""
    reports = []
    for d in decisions(view, today):
        if d.state is not State.PURGE_DUE:
            continue
        agency = view.cfg.agency(d.agency)
        _, planned, fresh = _todo(view, agency)
        objs = [Obj(o.location, o.name, o.size, o.sha256) for o in planned if o.state == "planned"]
        reports.append(PurgeReport(d, objs + fresh, view.ledger.live_case_count(agency.code),
                                   dry_run=True))
    return reports


def run(ctx: Context, *, today: dt.date | None = None) -> list[PurgeReport]:
    """Purge every contract that is due, each under ``ctx.run.guard``."""
    reports = []
    for d in decisions(ctx, today):
        if d.state is not State.PURGE_DUE:
            continue
        with ctx.run.guard(f"retention.{d.agency}"), ctx.leases.hold(f"purge:{d.contract_id}") as held:
            # Another node purging it now, or it finished one between our look and the claim.
            if held and not finished(ctx, d):
                reports.append(purge(ctx, ctx.cfg.agency(d.agency), d))
    return reports


def _todo(view: Services, agency: Agency) -> tuple[PurgeRow | None, list[PurgeObjectRow],
                                                    list[Obj]]:
    """A purge of *agency* begun (if one was), what it planned, and what has appeared
    since — hashed, for the certificate."""
    existing = view.ledger.purge(agency.contract.id)
    planned = view.ledger.purge_objects(agency.contract.id) if existing else []
    known = {(o.location, o.name) for o in planned}
    return existing, planned, [_hashed(view, o) for o in plan(view, agency)
                               if (o.location, o.name) not in known]


def purge(ctx: Context, agency: Agency, decision: Decision) -> PurgeReport:
    existing, _, fresh = _todo(ctx, agency)
    cases = ctx.ledger.live_case_count(agency.code)
    row = None if existing else PurgeRow(
        contract_id=agency.contract.id, agency_code=agency.code, started_at=ctx.now(),
        effective_end=decision.effective_end.isoformat(), deadline=decision.deadline.isoformat())
    if row is not None or fresh:
        ctx.ledger.plan_purge(row, agency.contract.id, [
            PurgeObjectRow(contract_id=agency.contract.id, location=o.location, name=o.name,
                           size=o.size, sha256=o.sha256) for o in fresh])
    record = ctx.ledger.purge(agency.contract.id)
    assert record is not None  # noqa: S101 — invariant, not an input check
    started = clock.aware(record.started_at).astimezone(dt.UTC)
    todo = ctx.ledger.purge_objects(agency.contract.id)
    ctx.run.progress.count(f"purge {agency.code}", sum(o.state == "planned" for o in todo))
    for n, obj in enumerate(todo):
        if obj.state != "planned":
            continue
        if obj.location.startswith("state:"):
            path = _path(ctx, obj)
            gone = not path.exists()
            path.unlink(missing_ok=True)
        else:
            zone = ctx.zones[obj.location]
            gone = zone.stat(obj.name) is None
            zone.remove(obj.name)
        ctx.ledger.mark_purged_object(obj.id, "absent" if gone else "deleted")
        ctx.run.progress.step()
        if n == 0:
            faults.point("mid_purge")
    ctx.run.progress.done()
    objects = ctx.ledger.purge_objects(agency.contract.id)
    now = ctx.now()
    late = now.astimezone(ctx.cfg.gateway.tz).date() > decision.deadline
    # Named by the purge's start, so a purge resumed after a crash rewrites the same file.
    cert_name = f"deletion-certificate.{agency.contract.id}.{started:%Y%m%dT%H%M%SZ}.json.asc"
    body = {
        "type": "deletion-certificate",
        "contract_id": agency.contract.id,
        "agency": agency.code,
        "agency_name": agency.name,
        "effective_end": decision.effective_end.isoformat(),
        "deadline": decision.deadline.isoformat(),
        "purge_started_at": clock.iso(started),
        "purged_at": clock.iso(now),
        "late": late,
        "gateway_key": ctx.crypto.fingerprint,
        "ledger": {"case_assignments_deleted": cases},
        "objects": [{"zone": o.location, "name": o.name, "size": o.size, "sha256": o.sha256,
                     "state": o.state} for o in objects],
        "agency_attestation": _attestation(ctx, agency),
    }
    signed = ctx.crypto.clearsign(json.dumps(body, ensure_ascii=False, indent=2).encode() + b"\n")
    cert_path = ctx.state.certificates / cert_name
    write_private(cert_path, signed)  # not yet committed: a crashed attempt's copy is replaced
    ctx.state.publish(cert_path)
    purged_files = [f.id for f in ctx.ledger.results_files(agency.code)]
    done = ctx.ledger.purged_agencies() | {agency.code}
    purged_files += [f.id for f, fed in ctx.ledger.batch_files_fed(agency.code) if fed <= done]
    faults.point("before_certificate_commit")
    deleted_cases = ctx.ledger.finish_purge(
        contract_id=agency.contract.id, agency_code=agency.code, late=late, certificate=cert_name,
        purged_file_ids=purged_files,
        delivery=DeliveryRow(kind="certificate", agency_code=agency.code, zone=BANK_IN,
                             name=cert_name, sha256=file_sha256(cert_path), size=len(signed)))
    ctx.audit.record("retention.purged", agency=agency.code, contract_id=agency.contract.id,
                     files=len(objects), bytes=sum(o.size for o in objects), cases=deleted_cases,
                     late=late, file=cert_name)
    log.info("retention.purged", agency=agency.code, files=len(objects), late=late)
    outbox.finish_pending(ctx)
    return PurgeReport(decision, [Obj(o.location, o.name, o.size, o.sha256) for o in objects],
                       deleted_cases, certificate=cert_name)


def _attestation(ctx: Services, agency: Agency) -> dict[str, object] | None:
    """The agency's own word beside the gateway's (docs/formats.md §7.2): the latest
    attestation it sent for this contract, by the hash of the file as received — so the
    bank can match it with the agency's copy — or None if none was accepted."""
    found = ctx.ledger.attestation(agency.code, agency.contract.id)
    if found is None:
        return None
    doc, file = found
    # what the agency was delivered and did not list, as it stands now: a delivery placed
    # after the attestation (a zone that was down) counts
    not_listed = max(0, ctx.ledger.held_count(agency.code) - doc.listed)
    return documents.citation(name=display_name(file.name), sha256=file.sha256, doc_id=doc.doc_id,
                              created_at=doc.created_at, accepted_at=doc.accepted_at,
                              files=doc.listed, not_listed=not_listed)


def finished(ctx: Services, decision: Decision) -> bool:
    row = ctx.ledger.purge(decision.contract_id)
    return row is not None and row.finished_at is not None


def report(ctx: Services, decision: Decision) -> PurgeReport:
    """What the ledger says a (finished) purge deleted — whoever ran it."""
    row = ctx.ledger.purge(decision.contract_id)
    objs = [Obj(o.location, o.name, o.size, o.sha256)
            for o in ctx.ledger.purge_objects(decision.contract_id)]
    return PurgeReport(decision, objs, row.cases if row else 0,
                       certificate=row.certificate if row else None)


@dataclass(frozen=True)
class Holding:
    """What `retention status` shows for one contract."""

    decision: Decision
    files: int
    bytes: int
    cases: int
    certificate: str | None


def status(ctx: Services, today: dt.date | None = None) -> list[Holding]:
    out = []
    for d in decisions(ctx, today):
        agency = ctx.cfg.agency(d.agency)
        purge_row = ctx.ledger.purge(agency.contract.id)
        objs = plan(ctx, agency)
        out.append(Holding(d, len(objs), sum(o.size for o in objs),
                           ctx.ledger.live_case_count(agency.code),
                           purge_row.certificate if purge_row else None))
    return out
