"""The daemon's part of unmasking by approval, once per pass: requests that were not
decided in time expire, denials and expiries are told to the agency, approved requests
are released, and releases past their expiry are deleted with a certificate.

**A release** reads the requested cases again from the bank's archived ciphertext — the
gateway never keeps plaintext, so there is nothing else to read them from — through the
same reader, field rules and masking as the batch's slices, with one change to the
requesting role's policy: the approved fields are shown in full (a field the role never
sees is added). Everything else stays as the role's policy says. The rows go into one
CSV sealed to the requester's key alone, with a manifest (``unmask-<n>``, so the agency
kit takes it like a batch) naming the request and the expiry. Nothing is written before
the ledger commits the release but ciphertext, and a pass killed half-way releases the
request again from the start (the status is still *approved*).

**At expiry** the slice and its manifest are deleted from the agency's inbox if still
there (a kit has fetched them; it destroys its copies at that date), and a certificate
signed by the gateway says what was deleted, for the bank.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import structlog

from gateway import clock, faults, outbox
from gateway.crypto.engine import E_CORRUPT, E_NOT_FOR_US, E_TRUNCATED
from gateway.errors import CryptoError, GatewayError, KeyPolicyError
from gateway.flows import Context
from gateway.flows.arrival import SIGNATURE_CODES
from gateway.ledger import DeliveryRow, UnmaskCaseRow, UnmaskRequestRow, UnmaskStatus
from gateway.masking import RolePolicy, Rule
from gateway.state import file_sha256, write_private
from gateway.validation import csvio
from gateway.validation.cases import map_header
from gateway.validation.schema import CASE_FIELDS, FREE_TEXT_CASE_FIELDS

if TYPE_CHECKING:
    import pyarrow as pa

log = structlog.get_logger("gateway.unmask")
BANK_IN = "bank.incoming"


def staged(ctx: Context) -> Path:
    """Where releases, notices and certificates of unmasking wait for the outbox."""
    path = ctx.state.staging_root / "unmask"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def run(ctx: Context) -> None:
    """One pass's unmasking work; each request under its own lease and guard."""
    for row in ctx.ledger.unaudited_unmask():  # a pass killed after a commit
        _each(ctx, row, _catch_up)
    now = ctx.now()
    purged = ctx.ledger.purged_agencies()
    for row in ctx.ledger.unmask_requests(status=[UnmaskStatus.PENDING.value,
                                                  UnmaskStatus.APPROVED.value]):
        if row.agency_code in purged:  # its cases and the batches' archive are gone
            _each(ctx, row, _close)
        elif row.status == UnmaskStatus.PENDING.value and now >= clock.aware(row.decide_by):
            _each(ctx, row, _expire)
    for row in ctx.ledger.unmask_requests(status=[UnmaskStatus.DENIED.value]):
        if row.notified_at is None:
            _each(ctx, row, _tell_denied)
    for row in ctx.ledger.unmask_requests(status=[UnmaskStatus.APPROVED.value]):
        _each(ctx, row, _release)
    for row in ctx.ledger.unmask_requests(status=[UnmaskStatus.RELEASED.value]):
        if row.expires_at is not None and now >= clock.aware(row.expires_at):
            _each(ctx, row, _purge)
    outbox.finish_pending(ctx)


def _each(ctx: Context, row: UnmaskRequestRow,
          step: Callable[[Context, UnmaskRequestRow], None]) -> None:
    """*step* for one request, if no other node holds it and it has not moved on meanwhile."""
    with ctx.run.guard("unmask"), ctx.leases.hold(f"unmask:{row.id}") as held:
        fresh = ctx.ledger.unmask_request(row.id) if held else None
        if fresh is not None and fresh.status == row.status:
            step(ctx, fresh)


# --- telling the agency --------------------------------------------------------------

def _notice(ctx: Context, row: UnmaskRequestRow, status: str, reason: str) -> DeliveryRow:
    """A sealed note to the agency's keys (as its manifests): what became of its request."""
    name = f"{row.batch_id}.{row.agency_code}.decision.json.pgp"
    body = {"type": "unmask-decision", "request_id": row.request_id, "agency": row.agency_code,
            "status": status, "decided_at": clock.iso(ctx.now()), "reason": reason}
    path = staged(ctx) / name
    path.unlink(missing_ok=True)  # a killed attempt's copy
    with path.open("xb") as fh, ctx.crypto.seal_for_agency(row.agency_code, fh) as w:
        w.write(json.dumps(body, ensure_ascii=False, indent=2).encode() + b"\n")
    return DeliveryRow(kind="notice", agency_code=row.agency_code,
                       zone=ctx.cfg.zone_name(row.agency_code, "inbox"), name=name,
                       batch_id=row.batch_id, sha256=file_sha256(path), size=path.stat().st_size)


def _expire(ctx: Context, row: UnmaskRequestRow) -> None:
    notice = _notice(ctx, row, "expired", "not decided in time")
    if ctx.ledger.expire_unmask(row.id, ctx.now(), delivery=notice):
        ctx.audit.record("unmask.expired", agency=row.agency_code, request_id=row.request_id,
                         purpose=row.purpose, cases=row.cases)


def _close(ctx: Context, row: UnmaskRequestRow) -> None:
    """The agency's contract was purged before the request was released: it expires, with
    no notice (the agency's inbox is purged too)."""
    if ctx.ledger.expire_unmask(row.id, ctx.now(), delivery=None, purged=True):
        ctx.audit.record("unmask.expired", agency=row.agency_code, request_id=row.request_id,
                         purpose=row.purpose, cases=row.cases, reason="purged")


def _tell_denied(ctx: Context, row: UnmaskRequestRow) -> None:
    decisions = ctx.ledger.unmask_decisions([row.id])[row.id]
    reason = next((d.reason for d in decisions if d.decision == "deny"), "")
    ctx.ledger.notify_unmask(row.id, ctx.now(), _notice(ctx, row, "denied", reason))


# --- the release -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Source:
    batch_id: str
    archive: Path
    committed: dt.date
    cases: frozenset[str]


class _NotReleasable(GatewayError):
    """What makes an approved request one that can never be released as approved: a
    reason word for the audit log, and words for the agency."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# a bank file that no longer opens this way will not open next pass either
_PERMANENT_CRYPTO = SIGNATURE_CODES | {E_CORRUPT, E_TRUNCATED, E_NOT_FOR_US}


def _release(ctx: Context, row: UnmaskRequestRow) -> None:
    """Check the request against the configuration, contract and keys as they are now —
    an approval is for what the rules allowed when it is released, not only when it was
    asked — then release it; or fail it with a notice when it never can be, instead of
    trying again every pass."""
    try:
        problem = _still_allowed(ctx, row)
        if problem is not None:
            raise problem
        needed = max(row.approvals_needed, ctx.cfg.unmask.purposes[row.purpose].approvals
                     if ctx.cfg.unmask else 0)
        if (approvals := ctx.ledger.approvals_now(row.id)) < needed:
            if ctx.ledger.reopen_unmask(row.id):  # an approver disabled, the purpose raised
                ctx.audit.record("unmask.reopened", agency=row.agency_code,
                                 request_id=row.request_id, purpose=row.purpose,
                                 approvals=approvals, needed=needed)
            return
        _seal_release(ctx, row)
    except _NotReleasable as exc:
        _fail(ctx, row, exc)
    except KeyPolicyError as exc:
        _fail(ctx, row, _NotReleasable("key_removed", str(exc)))
    except CryptoError as exc:
        if exc.code not in _PERMANENT_CRYPTO:
            raise  # our own gpg: next pass
        _fail(ctx, row, _NotReleasable("batch_unreadable", "a batch of these cases no longer "
                                       f"opens as the bank's signed file ({exc.code})"))


def _still_allowed(ctx: Context, row: UnmaskRequestRow) -> _NotReleasable | None:
    cfg, settings = ctx.cfg, ctx.cfg.unmask
    try:
        agency = cfg.agency(row.agency_code)
    except KeyError:
        return _NotReleasable("not_configured", f"agency {row.agency_code} is no longer "
                              "configured")
    today = ctx.today()
    if not agency.contract.start <= today <= agency.contract.effective_end:
        return _NotReleasable("contract_ended", f"contract {agency.contract.id} is not running "
                              f"(it runs {agency.contract.start} to "
                              f"{agency.contract.effective_end})")
    if settings is None or row.purpose not in settings.purposes:
        return _NotReleasable("not_configured", f"purpose {row.purpose} is no longer "
                              "configured for unmasking")
    if row.role not in agency.roles:
        return _NotReleasable("not_configured", f"role {row.role} is no longer the agency's")
    allowed = settings.requestable.get(row.role, [])
    if missing := [f for f in row.field_list if f not in allowed]:
        return _NotReleasable("not_requestable", f"{', '.join(missing)} may no longer be "
                              f"requested by role {row.role}")
    if row.signer not in ctx.crypto.staff_keys(row.agency_code, row.role):
        return _NotReleasable("key_removed", f"the requester's key {row.signer} is no longer "
                              f"one of the agency's {row.role} keys")
    return None


def _fail(ctx: Context, row: UnmaskRequestRow, exc: _NotReleasable) -> None:
    notice = _notice(ctx, row, "failed", f"approved, but not released: {exc}")
    if ctx.ledger.fail_unmask(row.id, ctx.now(), notice):
        ctx.audit.record("unmask.failed", agency=row.agency_code, request_id=row.request_id,
                         purpose=row.purpose, cases=row.cases, reason=exc.reason)
        log.warning("unmask.failed", agency=row.agency_code, reason=exc.reason)


def _seal_release(ctx: Context, row: UnmaskRequestRow) -> None:
    from gateway.masking_columns import ChunkMasks  # Arrow: only when something is released
    from gateway.validation import chunks

    agency = ctx.cfg.agency(row.agency_code)
    wanted = ctx.ledger.unmask_cases(row.id)
    sources = _sources(ctx, row, wanted)
    rules = dict(ctx.cfg.roles[row.role]) | {f: Rule.FULL for f in row.field_list}
    policy = RolePolicy(row.role, rules)
    table, present = _rows(ctx, row, sources)
    if table.num_rows != len(wanted):
        raise _NotReleasable("batch_unavailable", f"{table.num_rows} of the request's "
                             f"{len(wanted)} cases were found in their batches")
    columns = policy.columns(present)
    secret = (ctx.state.token_secret(agency.contract.id)
              if Rule.TOKEN in (rules[c] for c in columns) else None)
    masks = ChunkMasks(table, FREE_TEXT_CASE_FIELDS & present)
    cols, plain = masks.role(policy, columns, 0, table.num_rows, secret)
    lines = chunks.csv_lines(cols, plain)
    now = ctx.now().replace(microsecond=0)  # whole seconds: the manifest, audit and register
    expires = now + dt.timedelta(days=ctx.cfg.unmask.release_days if ctx.cfg.unmask else 7)
    inbox = ctx.cfg.zone_name(row.agency_code, "inbox")
    where = staged(ctx)
    name = f"{row.batch_id}.{row.agency_code}.{row.role}.csv.pgp"
    path = where / name
    path.unlink(missing_ok=True)
    with path.open("xb") as fh, ctx.crypto.seal_for_requester(
            row.agency_code, row.role, row.signer, cast(BinaryIO, fh)) as w:
        sink = csvio.TextSink(w)
        csvio.writer(sink).writerow(columns)
        sink.write_bytes(chunks.lines_buffer(lines))
        sink.flush()
    digest = file_sha256(path)
    files = [{"name": name, "role": row.role, "records": table.num_rows, "sha256": digest}]
    manifest = {"batch_id": row.batch_id, "agency": row.agency_code,
                "contract_id": agency.contract.id, "created_at": clock.iso(now), "files": files,
                "unmask": {"request_id": row.request_id, "purpose": row.purpose,
                           "fields": row.field_list, "recipient": row.signer,
                           "expires_at": clock.iso(expires)}}
    mname = f"{row.batch_id}.{row.agency_code}.manifest.json.pgp"
    mpath = where / mname
    mpath.unlink(missing_ok=True)
    with mpath.open("xb") as fh, ctx.crypto.seal_for_agency(row.agency_code, fh) as w:
        w.write(json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n")
    deliveries = [
        DeliveryRow(kind="slice", batch_id=row.batch_id, agency_code=row.agency_code,
                    role=row.role, zone=inbox, name=name, sha256=digest,
                    size=path.stat().st_size, records=table.num_rows),
        DeliveryRow(kind="manifest", batch_id=row.batch_id, agency_code=row.agency_code,
                    role=None, zone=inbox, name=mname, sha256=file_sha256(mpath),
                    size=mpath.stat().st_size)]
    if ctx.ledger.release_unmask(row.id, deliveries=deliveries, released_at=now,
                                 expires_at=expires):
        faults.point("after_unmask_release")
        _audit(ctx, ctx.ledger.unmask_request(row.id))
        log.info("unmask.released", agency=row.agency_code, cases=table.num_rows)


def _catch_up(ctx: Context, row: UnmaskRequestRow) -> None:
    """After a pass killed between a commit and its audit entry — or between the entry and
    its mark: an entry already in the log (the same event and request id) is only marked,
    never written twice. Reads the log once; this runs only after such a kill."""
    written = {(e["event"], e.get("request_id")) for e in ctx.audit.entries()
               if e["event"] in ("unmask.released", "unmask.purged")}
    for event, which, done in (("unmask.released", "released", row.release_audited_at),
                               ("unmask.purged", "purged", row.purge_audited_at)):
        if done is None and (event, row.request_id) in written:
            ctx.ledger.mark_unmask_audited(row.id, which, ctx.now())
    _audit(ctx, ctx.ledger.unmask_request(row.id))


def _audit(ctx: Context, row: UnmaskRequestRow | None) -> None:
    """The audit entries of a release and of its deletion, from the ledger's record, each
    marked once written: the register and the log match one to one, also after a pass
    killed between a commit and its entry (the next pass writes it)."""
    if row is None:
        return
    if row.released_at is not None and row.release_audited_at is None:
        slice_ = next((d for d in ctx.ledger.release_deliveries(row) if d.kind == "slice"), None)
        ctx.audit.record("unmask.released", agency=row.agency_code, role=row.role,
                         signer=row.signer, request_id=row.request_id, purpose=row.purpose,
                         cases=slice_.records if slice_ else row.cases, fields=row.field_list,
                         file=slice_.name if slice_ else None,
                         sha256=slice_.sha256 if slice_ else None,
                         expires_at=clock.iso(clock.aware(row.expires_at)) if row.expires_at
                         else None)
        faults.point("after_unmask_audit")
        ctx.ledger.mark_unmask_audited(row.id, "released", ctx.now())
    if row.purged_at is not None and row.purge_audited_at is None:
        name = f"unmask-deletion-certificate.{row.request_id}.json.asc"
        files = sum(d.kind in ("slice", "manifest") for d in ctx.ledger.release_deliveries(row))
        ctx.audit.record("unmask.purged", agency=row.agency_code, request_id=row.request_id,
                         files=files, file=name)
        ctx.ledger.mark_unmask_audited(row.id, "purged", ctx.now())


def _sources(ctx: Context, row: UnmaskRequestRow, wanted: list[UnmaskCaseRow]) -> list[_Source]:
    by_batch: dict[str, set[str]] = {}
    for c in wanted:
        by_batch.setdefault(c.batch_id, set()).add(c.case_id)
    out = []
    for batch_id, cases in sorted(by_batch.items()):
        batch = ctx.ledger.batch(batch_id)
        if batch is None:
            raise _NotReleasable("batch_unavailable", f"batch {batch_id} is not in the ledger")
        file = ctx.ledger.file(batch.file_id)
        archive = ctx.state.archived(file.sha256)
        if not archive.is_file():
            raise _NotReleasable("batch_unavailable", f"the archived ciphertext of batch "
                                 f"{batch_id} is gone")
        committed = clock.aware(batch.committed_at).astimezone(ctx.cfg.gateway.tz).date()
        out.append(_Source(batch_id, archive, committed, frozenset(cases)))
    return out


def _rows(ctx: Context, row: UnmaskRequestRow, sources: list[_Source]
          ) -> tuple[pa.Table, frozenset[str]]:
    """The requested cases' rows, checked again as on the day their batch was taken, from
    each batch's archived ciphertext (the bank's signature verified again); one table, in
    the batches' order, every column present in any of them (empty where a batch had none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from gateway.validation import chunks
    from gateway.validation.columnar import ColumnarCases

    parts: list[pa.Table] = []
    present: set[str] = set()
    for src in sources:
        found: list[pa.Table] = []
        with src.archive.open("rb") as raw, ctx.crypto.open_from_bank(raw) as msg:
            reader = chunks.ChunkReader(msg, encoding=ctx.cfg.schema_.encoding,
                                        delimiter=ctx.cfg.schema_.delimiter)
            try:
                first = reader.header()
                header, _ = map_header(first or [], ctx.cfg)
                if header is None:
                    raise _NotReleasable("batch_unavailable", f"batch {src.batch_id} no longer "
                                         "reads with this configuration's [schema]")
                engine = ColumnarCases(ctx.cfg, header, src.committed)
                ids = pa.array(sorted(src.cases))
                for chunk in reader.chunks(len(header.fields)):
                    table = engine.check(chunk).table
                    keep = pc.and_(pc.is_in(table.column("case_id"), value_set=ids),
                                   pc.equal(table.column("agency_code"), row.agency_code))
                    if (hit := table.filter(keep)).num_rows:
                        found.append(hit)
            finally:
                reader.close()
            msg.verdict()  # raises unless the bank's signature holds, as on the first day
        present |= header.present
        parts += found
    if not parts:
        return pa.table({"case_id": pa.array([], pa.string())}), frozenset(present)
    names = [f for f in CASE_FIELDS if any(f in p.column_names for p in parts)]
    filled = [pa.table({f: p.column(f) if f in p.column_names else
                        pa.array([""] * p.num_rows, pa.string()) for f in names}) for p in parts]
    table = pa.concat_tables(filled)
    # a batch taken with skip_rows may repeat a valid row's case id: the intake kept the
    # first (the later ones were E_DUPLICATE_CASE), and so does the release
    seen: set[str] = set()
    unique: list[bool] = []
    for case_id in table.column("case_id").to_pylist():
        unique.append(case_id not in seen)
        seen.add(case_id)
    return table.filter(pa.array(unique)), frozenset(present)


# --- expiry ----------------------------------------------------------------------------

def _purge(ctx: Context, row: UnmaskRequestRow) -> None:
    """Plan the expiry's deletions and record the plan (marking the deliveries purged, so
    the deletion is never taken for the agency's fetch), then delete, then one certificate
    and the ledger's record in one transaction. A pass killed anywhere finishes the same
    plan. Each file's state: ``deleted`` (it was in the inbox), ``collected`` (the agency
    had taken it), ``never_placed`` (its zone was down until the expiry) or ``absent``
    (gone, no one knows how: the agency's purge, a hand)."""
    plan: list[dict[str, object]] = []
    for d in ctx.ledger.release_deliveries(row):
        if d.kind not in ("slice", "manifest"):
            continue
        if d.delivered_at is None:
            state = "never_placed"
        elif d.collected_at is not None:
            state = "collected"
        else:
            state = "deleted" if ctx.zones[d.zone].stat(d.name) is not None else "absent"
        plan.append({"zone": d.zone, "name": d.name, "size": d.size, "sha256": d.sha256,
                     "state": state})
    objects = json.loads(ctx.ledger.plan_unmask_purge(
        row.id, json.dumps(plan, ensure_ascii=False), ctx.now()))
    for obj in objects:
        if obj["state"] == "deleted":
            ctx.zones[obj["zone"]].remove(obj["name"])
            faults.point("mid_unmask_purge")
        (staged(ctx) / obj["name"]).unlink(missing_ok=True)
    now = ctx.now()
    body = {"type": "unmask-deletion-certificate", "request_id": row.request_id,
            "agency": row.agency_code, "contract_id": row.contract_id, "role": row.role,
            "purpose": row.purpose, "cases": row.cases, "fields": row.field_list,
            "released_at": clock.iso(clock.aware(row.released_at)) if row.released_at else None,
            "expires_at": clock.iso(clock.aware(row.expires_at)) if row.expires_at else None,
            "purged_at": clock.iso(now), "gateway_key": ctx.crypto.fingerprint,
            "objects": objects,
            "note": "copies the agency fetched before the expiry are the agency's to destroy; "
                    "its kit does so at the expiry and its deletion attestation lists them"}
    name = f"unmask-deletion-certificate.{row.request_id}.json.asc"
    path = ctx.state.certificates / name
    signed = ctx.crypto.clearsign(json.dumps(body, ensure_ascii=False, indent=2).encode() + b"\n")
    write_private(path, signed)  # a retried purge writes it again
    ctx.state.publish(path)
    cert = DeliveryRow(kind="certificate", agency_code=row.agency_code, zone=BANK_IN, name=name,
                       sha256=file_sha256(path), size=len(signed))
    if ctx.ledger.finish_unmask_purge(row.id, now, cert):
        faults.point("after_unmask_purge")
        _audit(ctx, ctx.ledger.unmask_request(row.id))
