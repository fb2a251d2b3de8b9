"""An agency's unmask requests (docs/formats.md §8), taken from its outbox like its other
documents, on the same driver.

Judged in order: the envelope (encrypted to the gateway, signed by one of *this*
agency's role keys — the requester's own, not the agency's signing key), the form
(:func:`gateway.unmask.request.parse`, ``E_REQUEST``), then what the configuration
allows — unmasking configured at all, the role the agency's and the signer's, the
purpose one of ``unmask.purposes``, every field requestable by that role
(``E_NOT_REQUESTABLE``), not more cases than ``unmask.max_cases`` — the request's id new
(``E_REPLAY``), every case a live case of this agency (``E_NOT_ASSIGNED``, one error per
case), and the agency's monthly limits (``E_UNMASK_LIMIT``). A request is accepted or
refused whole, and accepted means *pending*: nothing is released before the approvers
decide (:mod:`gateway.unmask.decide`) and the daemon's next pass seals it
(:mod:`gateway.unmask.release`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway import clock, outbox
from gateway.crypto.engine import E_UNKNOWN_SIGNER
from gateway.documents import DocumentError
from gateway.flows import Context
from gateway.flows.arrival import (
    Arrival,
    Flow,
    Outcome,
    Reading,
    Rejection,
    commit_with_receipt,
)
from gateway.flows.documents import read_whole
from gateway.flows.receipts import ErrorList, Receipt
from gateway.ledger import FileStatus, UnmaskRequestRow, UnmaskStatus
from gateway.names import file_fields
from gateway.unmask import request as unmask_request
from gateway.unmask.request import UnmaskRequest
from gateway.validation.cases import RowError

log = structlog.get_logger("gateway.unmask")
SKEW = dt.timedelta(minutes=5)  # between the agency's clock and ours, as for results
KIND = "request"


@dataclass
class _Reading(Reading):
    request: UnmaskRequest | None = None
    form: DocumentError | None = None
    cases: dict[str, str] = field(default_factory=dict)  # case id -> batch id


def _begin(_ctx: Context, _arrival: Arrival) -> _Reading | Rejection:
    return _Reading()


def _read(ctx: Context, arrival: Arrival, out: _Reading, _staging: Path) -> None:
    """Decrypt the whole request (the documents' reader: small, capped), then its form.
    Nothing is written: the plaintext is only in memory."""
    agency = arrival.channel.agency
    assert agency is not None  # noqa: S101 — invariant, not an input check
    data = read_whole(ctx, arrival, out,
                      lambda raw: ctx.crypto.open_from_agency_staff(agency, raw),
                      unmask_request.MAX_BYTES)
    if data is None:
        return
    try:
        out.request = unmask_request.parse(data)
    except DocumentError as exc:
        out.form = exc
    except Exception as exc:
        # a fault of its own, not the pass's: answered E_REQUEST, never retried as poison
        log.warning("request.unreadable", error=type(exc).__name__)
        out.form = DocumentError(unmask_request.CODE, "the request could not be read as one")


def _verdict(ctx: Context, arrival: Arrival, out: _Reading) -> Rejection | None:
    if out.crypto is not None:
        return Rejection.of_file(out.crypto.code, out.crypto.message)
    signer = out.verified.fingerprint if out.verified else None
    if out.form is not None or out.request is None or signer is None:
        form = out.form or DocumentError(unmask_request.CODE, "the request could not be read")
        return Rejection.one(form.code, form.message, signer, row=form.row, field=form.field)
    req, agency_code = out.request, arrival.channel.agency
    assert agency_code is not None  # noqa: S101 — invariant, not an input check
    n = len(req.cases)

    def refused(code: str, message: str, fld: str) -> Rejection:
        return Rejection.one(code, message, signer, field=fld, records=n)

    settings = ctx.cfg.unmask
    if settings is None:
        return refused("E_REQUEST", "unmasking by approval is not offered by this gateway "
                       "(its configuration has no [unmask] section)", "type")
    if req.agency != agency_code:
        return refused("E_REQUEST", f"the request names agency {req.agency}, but it came "
                       f"through {agency_code}'s outbox", "agency")
    agency = ctx.cfg.agency(agency_code)
    if not agency.contract.start <= ctx.today() <= agency.contract.effective_end:
        return refused("E_CONTRACT_ENDED", f"contract {agency.contract.id} is not running (it "
                       f"runs {agency.contract.start} to {agency.contract.effective_end}); "
                       "nothing is unmasked outside it", "agency")
    if req.role not in agency.roles:
        return refused("E_REQUEST", f"agency {agency_code} has no role {req.role}", "role")
    if signer not in ctx.crypto.staff_keys(agency_code, req.role):
        return refused(E_UNKNOWN_SIGNER, f"signed by a key that is not one of {agency_code}'s "
                       f"{req.role} keys: a request is signed by the requester's own role key",
                       "role")
    if req.created_at > ctx.now() + SKEW:
        return refused("E_REQUEST", "created_at lies in the future (check the clock of the "
                       "machine that wrote it)", "created_at")
    if req.purpose not in settings.purposes:
        return refused("E_REQUEST", f"purpose {req.purpose} is not one of "
                       f"{', '.join(sorted(settings.purposes))}", "purpose")
    if n > settings.max_cases:
        return refused("E_REQUEST", f"{n} cases; a request names at most "
                       f"{settings.max_cases}", "cases")
    allowed = settings.requestable.get(req.role, [])
    errors = ErrorList()
    for name in req.fields:
        if name not in allowed:
            errors.add([RowError(0, None, "fields", "E_NOT_REQUESTABLE",
                                 f"{name} may not be requested by role {req.role} (requestable: "
                                 f"{', '.join(allowed) or 'nothing'})")])
    if errors:
        return Rejection("E_NOT_REQUESTABLE", errors, records=n, signer=signer)
    if ctx.ledger.unmask_seen(req.id) is not None:
        return refused("E_REPLAY", "a request with this id was accepted before; each request "
                       "is sent once", "id")
    live = ctx.ledger.live_cases_of(agency_code, req.cases)
    for row, case_id in enumerate(req.cases, start=1):
        if case_id not in live:
            errors.add([RowError(row, case_id, "cases", "E_NOT_ASSIGNED",
                                 "not a live case of this agency")])
    if errors:
        return Rejection("E_NOT_ASSIGNED", errors, records=n, signer=signer)
    if (limit := _over_limit(ctx, agency_code, n)) is not None:
        return refused("E_UNMASK_LIMIT", limit, "cases")
    out.cases = live
    out.records = out.accepted = n
    return None


def _over_limit(ctx: Context, agency_code: str, cases: int) -> str | None:
    settings = ctx.cfg.unmask
    assert settings is not None  # noqa: S101 — invariant, not an input check
    since, until = clock.month_bounds(clock.month_of(ctx.now(), ctx.cfg.gateway.tz),
                                      ctx.cfg.gateway.tz)
    used_requests, used_cases = ctx.ledger.unmask_usage(agency_code, since, until)
    if settings.monthly_releases is not None and used_requests + 1 > settings.monthly_releases:
        return (f"{agency_code} has {used_requests} requests this month; the limit is "
                f"{settings.monthly_releases} (unmask.monthly_releases)")
    if settings.monthly_cases is not None and used_cases + cases > settings.monthly_cases:
        return (f"{agency_code} has {used_cases} cases requested this month; {cases} more would "
                f"pass the limit of {settings.monthly_cases} (unmask.monthly_cases)")
    return None


def _commit(ctx: Context, arrival: Arrival, out: _Reading, _staging: Path) -> Outcome:
    req, agency_code = out.request, arrival.channel.agency
    settings = ctx.cfg.unmask
    assert req is not None and agency_code is not None and out.verified is not None  # noqa: S101 — invariant, not an input check
    assert settings is not None  # noqa: S101 — _verdict refused the request otherwise
    signer, now = out.verified.fingerprint, ctx.now()
    purpose = settings.purposes[req.purpose]
    decide_by = now + dt.timedelta(hours=settings.decide_within_hours)
    row = UnmaskRequestRow(
        request_id=req.id, file_id=arrival.id, agency_code=agency_code,
        contract_id=ctx.cfg.agency(agency_code).contract.id, role=req.role, signer=signer,
        purpose=req.purpose, fields=",".join(req.fields), cases=len(req.cases), note=req.note,
        created_at=req.created_at, received_at=now, decide_by=decide_by,
        approvals_needed=purpose.approvals, status=UnmaskStatus.PENDING.value)
    receipt = Receipt(
        file=arrival.name, sha256=arrival.sha256, received_at=arrival.received_at,
        status=FileStatus.ACCEPTED.value, signer=signer, records=out.records,
        accepted=out.accepted,
        extra={"request": {"type": "unmask-request", "id": req.id, "status": "pending",
                           "purpose": req.purpose, "role": req.role, "cases": len(req.cases),
                           "fields": list(req.fields), "approvals_needed": purpose.approvals,
                           "decide_by": clock.iso(decide_by)}})
    commit_with_receipt(ctx, arrival, receipt, lambda r: ctx.ledger.commit_unmask_request(
        file_id=arrival.id, request=row, cases=out.cases, receipt=r,
        end={"signer": signer, "records": out.records, "accepted": out.accepted, "rejected": 0,
             "batch_id": None}))
    ctx.audit.record("unmask.requested", agency=agency_code, role=req.role, signer=signer,
                     request_id=req.id, purpose=req.purpose, cases=len(req.cases),
                     fields=list(req.fields), needed=purpose.approvals,
                     **file_fields(arrival.name, arrival.sha256))
    log.info("unmask.requested", agency=agency_code, cases=len(req.cases))
    outbox.finish_pending(ctx)
    return Outcome.ACCEPTED


FLOW = Flow(begin=_begin, read=_read, verdict=_verdict, commit=_commit)
FLOWS = {KIND: FLOW}


def sort(name: str) -> str | None:
    """:data:`KIND` for a request's file name."""
    return KIND if unmask_request.is_request(name) else None
