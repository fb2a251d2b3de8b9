"""The console's pages for unmasking by approval (docs/security-team.md): Requests, where
approver accounts decide — CSRF, a fresh TOTP code, then :func:`gateway.unmask.decide.decide`,
the one path the CLI takes too — and the Register, with its CSV export. The pages share the
app's sessions, rendering and audit (:mod:`gateway.console.app`)."""

from __future__ import annotations

import re
import urllib.parse

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import clock
from gateway.console import export
from gateway.console.app import (
    Console,
    _address,
    _render,
    signed_form,
    signed_in,
)
from gateway.console.auth import Session
from gateway.errors import UsageError
from gateway.ledger import AccountRow, LedgerError
from gateway.reports.figures import check_month
from gateway.unmask import decide as unmask_decide
from gateway.unmask import register as unmask_register


@signed_in
def unmask_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    """The requests waiting for approvers; every account sees them, an approver's also
    carry the Approve and Deny forms."""
    return _unmask_page(c, request, session, row)


def _unmask_page(c: Console, request: Request, session: Session, row: AccountRow, *,
                 outcome: str = "", refused: str = "", status: int = 200) -> Response:
    pending = unmask_register.pending(c.ledger, c.now())
    purposes = c.cfg.unmask.purposes if c.cfg.unmask else {}
    c.log.record("console.view", account=row.name, page="unmask", count=len(pending))
    return _render(c, request, "unmask.html", session, status=status, account=row,
                   active="unmask", pending=pending, configured=c.cfg.unmask is not None,
                   descriptions={k: p.description for k, p in purposes.items()},
                   approver=row.role == unmask_decide.APPROVER, outcome=outcome,
                   refused=refused)


@signed_form
def unmask_decision(c: Console, request: Request, session: Session, row: AccountRow,
                    form: FormData) -> Response:
    """Role first (an operator's or auditor's form is refused before any code is looked
    at), then the reason's rules (before a code is spent on a decision that cannot be
    made), then a fresh TOTP code, then :func:`gateway.unmask.decide.decide` — the one path
    the CLI takes too, with the two-person rule in the ledger."""
    def refuse(message: str, status: int) -> Response:
        return _unmask_page(c, request, session, row, refused=message, status=status)

    if row.role != unmask_decide.APPROVER:
        return refuse(f"Account {row.name} is an {row.role} account; only approver accounts "
                      "decide unmask requests.", 403)
    decision, number = str(form.get("decision", "")), str(form.get("request", ""))
    if decision not in ("approve", "deny") or not re.fullmatch(r"[0-9]{1,9}", number):
        return refuse("The form did not name a request and a decision: reload the page.", 400)
    reason = str(form.get("reason", ""))
    try:
        unmask_decide.check_reason(reason, required=decision == "deny")
    except UsageError as exc:
        return refuse(f"Not decided: {exc}.", 400)
    if not c.accounts.confirm_code(row.name, str(form.get("code", "")), address=_address(request)):
        return refuse("Not decided: the code is wrong or was used already (each code works "
                      "once; wait for the next one). After 5 failures the account is locked "
                      "for 15 minutes.", 403)
    try:
        done = unmask_decide.decide(c.ledger, c.log, row, int(number), decision, reason, c.now(),
                                    cfg=c.cfg)
    except (UsageError, LedgerError) as exc:
        return refuse(f"Not decided: {exc}.", 409)
    if done.status == "approved":
        outcome = (f"Approved ({done.approvals} of {done.needed}): the daemon releases the "
                   "cases on its next pass.")
    elif done.status == "denied":
        outcome = "Denied: the agency is told, with your reason, on the daemon's next pass."
    else:
        outcome = (f"Your approval is recorded ({done.approvals} of {done.needed}); another "
                   "approver must decide too.")
    return _unmask_page(c, request, session, row, outcome=outcome)


def _register_query(c: Console, request: Request) -> tuple[str, str, list[str]]:
    """The register's month (default: this one, in the gateway's zone) and agency from the
    query string, and what is wrong with them."""
    now = c.now()
    month = request.query_params.get("month", "").strip() or clock.month_of(now, c.cfg.gateway.tz)
    agency = request.query_params.get("agency", "").strip()
    problems = []
    try:
        check_month(month, today=now.astimezone(c.cfg.gateway.tz).date())
    except ValueError as exc:
        problems.append(f"month: {exc}")
    if agency and agency not in {a.code for a in c.cfg.agencies}:
        problems.append(f"agency: {agency[:32]!r} is not an agency of this gateway")
    return month, agency, problems


@signed_in
def register_page(c: Console, request: Request, session: Session, row: AccountRow) -> Response:
    """The register of releases: who asked (the key), who approved, for what, how many
    cases, which fields, when released, until when, when deleted."""
    month, agency, problems = _register_query(c, request)
    rows = [] if problems else unmask_register.month(c.ledger, month, c.cfg.gateway.tz,
                                                    agency=agency or None)
    c.log.record("console.view", account=row.name, page="unmask_register", count=len(rows),
                 agency=agency if agency and not problems else None)
    query = urllib.parse.urlencode({k: v for k, v in (("month", month), ("agency", agency)) if v})
    return _render(c, request, "register.html", session, status=400 if problems else 200,
                   account=row, active="register", rows=rows, month=month, agency=agency,
                   problems=problems, query=query, agencies=[a.code for a in c.cfg.agencies])


@signed_in
def register_export(c: Console, request: Request, _session: Session, row: AccountRow) -> Response:
    month, agency, problems = _register_query(c, request)
    if problems:
        return Response("; ".join(problems), status_code=400)
    rows = unmask_register.month(c.ledger, month, c.cfg.gateway.tz, agency=agency or None)
    c.log.record("console.export", account=row.name, page="unmask_register", format="csv",
                 count=len(rows), agency=agency or None)
    name = f"unmask-register-{month}{'-' + agency if agency else ''}.csv"
    return Response(export.register_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


ROUTES = [
    Route("/unmask", unmask_page, methods=["GET"]),
    Route("/unmask/decide", unmask_decision, methods=["POST"]),
    Route("/unmask/register", register_page),
    Route("/unmask/register.csv", register_export),
]
