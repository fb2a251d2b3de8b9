"""``gateway unmask``: agencies' requests to see named cases unmasked — the pending list,
a decision by an approver (password and TOTP code, as at the console's login), and the
register of releases. The path for a site without the console; the console does the
same through the same functions (:mod:`gateway.unmask.decide`)."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from gateway.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    audit_log,
    load,
    new_table,
    open_ledger,
    out,
    render,
)
from gateway.errors import UsageError

unmask_app = typer.Typer(help="Unmasking by approval: pending requests, decisions, the "
                              "register.", no_args_is_help=True)
AsOpt = Annotated[str, typer.Option("--as", help="Your approver account (a console account of "
                                                 "role approver).")]
StdinOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password, then the TOTP code, from two lines of "
    "standard input instead of asking at the terminal.")]
RequestArg = Annotated[str, typer.Argument(help="The request: its id, or the first 8 characters "
                                                "of it (as gateway unmask list shows).")]


def _when(t: dt.datetime | None, tz: dt.tzinfo) -> str:
    return t.astimezone(tz).isoformat(timespec="minutes") if t else "-"


@unmask_app.command("list")
def unmask_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Requests waiting for approvers: agency, role, purpose, cases, fields, approvals so far."""
    from gateway.unmask import register

    cfg = load(config)
    with open_ledger(cfg) as ledger:
        rows = register.pending(ledger, dt.datetime.now(dt.UTC))
    tz = cfg.gateway.tz
    items: list[dict[str, Any]] = [
        {"request_id": p.request_id, "agency": p.agency, "role": p.role,
         "requester_key": p.requester, "purpose": p.purpose, "cases": p.cases,
         "fields": list(p.fields), "note": p.note, "received_at": _when(p.received_at, tz),
         "decide_by": _when(p.decide_by, tz), "approvals": p.approvals, "needed": p.needed,
         "approved_by": list(p.decided_by)} for p in rows]

    def text() -> None:
        if not rows:
            out.print("no unmask request is waiting" + (
                "" if cfg.unmask else " ([unmask] is not configured)"))
            return
        table = new_table("request", "agency", "role", "purpose", "cases", "fields",
                          "approvals", "decide by", "note")
        for p in rows:
            table.add_row(p.request_id[:8], p.agency, p.role, p.purpose, str(p.cases),
                          ", ".join(p.fields), f"{p.approvals}/{p.needed}",
                          _when(p.decide_by, tz), Text(p.note or "-"))  # the agency's words: no markup
        out.print(table)

    render(items, as_json, text)


def _login(cfg: Any, name: str, from_stdin: bool) -> Any:
    from gateway.console.auth import Accounts

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        code = sys.stdin.readline().strip()
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for the password on: use --password-stdin")
        password = typer.prompt("Password", hide_input=True)
        code = typer.prompt("TOTP code")
    with open_ledger(cfg) as ledger:
        login = Accounts(ledger, audit_log(cfg)).login(name, password, code)
    if not login.ok or login.account is None:
        raise UsageError(f"login as {name} refused (wrong name, password or code, or the account "
                         "is locked or disabled)")
    return login.account


def _decide(request: str, account_name: str, decision: str, reason: str, from_stdin: bool,
            config: Any) -> None:
    from gateway.unmask.decide import APPROVER, check_reason, decide

    cfg = load(config)
    check_reason(reason, required=decision == "deny")  # before asking for a password
    account = _login(cfg, account_name, from_stdin)
    if account.role != APPROVER:
        raise UsageError(f"account {account.name} is an {account.role} account; only approver "
                         "accounts decide unmask requests")
    with open_ledger(cfg) as ledger:
        decided = decide(ledger, audit_log(cfg), account, request, decision, reason,
                         dt.datetime.now(dt.UTC), cfg=cfg)
    if decided.status == "approved":
        out.print(f"request {request[:8]}: approved ({decided.approvals} of {decided.needed}); "
                  "the daemon releases it on its next pass", markup=False)
    elif decided.status == "denied":
        out.print(f"request {request[:8]}: denied; the agency is told on the daemon's next pass",
                  markup=False)
    else:
        out.print(f"request {request[:8]}: your approval is recorded ({decided.approvals} of "
                  f"{decided.needed}); another approver must decide too", markup=False)


@unmask_app.command("approve")
def unmask_approve(request: RequestArg, account: AsOpt, password_stdin: StdinOpt = False,
                   reason: Annotated[str, typer.Option("--reason", help="Why (optional).")] = "",
                   config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Approve a request as an approver account; with the purpose's number of approvals from
    distinct accounts, the daemon releases it."""
    _decide(request, account, "approve", reason, password_stdin, config)


@unmask_app.command("deny")
def unmask_deny(request: RequestArg, account: AsOpt,
                reason: Annotated[str, typer.Option("--reason", help="Why: the agency is told.")],
                password_stdin: StdinOpt = False, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Deny a request as an approver account; one denial ends it."""
    _decide(request, account, "deny", reason, password_stdin, config)


@unmask_app.command("register")
def unmask_register(
    month: Annotated[str | None, typer.Option(
        "--month", help="YYYY-MM (the gateway's time zone); default: this month.")] = None,
    agency: Annotated[str | None, typer.Option("--agency", help="One agency's code.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """The register of releases: requester key, approvers, purpose, cases, fields, released,
    expires, deleted."""
    from gateway import clock
    from gateway.reports.figures import check_month
    from gateway.unmask import register

    cfg = load(config)
    tz = cfg.gateway.tz
    now = dt.datetime.now(dt.UTC)
    month = month or clock.month_of(now, tz)
    try:
        check_month(month, today=now.astimezone(tz).date())
    except ValueError as exc:
        raise UsageError(f"--month: {exc}") from None
    with open_ledger(cfg) as ledger:
        rows = register.month(ledger, month, tz, agency=agency)

    def text() -> None:
        if not rows:
            out.print(f"no release in {month}")
            return
        table = new_table("request", "agency", "role", "requester key", "purpose", "cases",
                          "fields", "approvers", "released", "expires", "deleted")
        for e in rows:
            table.add_row(e.request_id[:8], e.agency, e.role, e.requester[-16:], e.purpose,
                          str(e.cases), ", ".join(e.fields), ", ".join(e.approvers),
                          _when(e.released_at, tz), _when(e.expires_at, tz),
                          _when(e.purged_at, tz))
        out.print(table)

    render([e.as_dict() for e in rows], as_json, text)
