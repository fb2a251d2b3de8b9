"""``gateway users``: the console's accounts, kept from the host's shell only — the console
itself has no page that adds, resets or unlocks one."""

from __future__ import annotations

import datetime as dt
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway import config as config_mod
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

if TYPE_CHECKING:
    from gateway.console.auth import Accounts, Enrolment

users_app = typer.Typer(help="The security team's console accounts.",
                        no_args_is_help=True)

PasswordStdinOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from one line of standard input instead of "
    "asking twice at the terminal.")]


@contextmanager
def _accounts(cfg: config_mod.Config) -> Iterator[Accounts]:
    from gateway.console.auth import Accounts

    with open_ledger(cfg) as ledger:
        yield Accounts(ledger, audit_log(cfg))


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: use --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _show_enrolment(enrolment: Enrolment) -> None:
    """The otpauth:// URI, and at a terminal the same as a QR code to scan."""
    out.print(f"account {enrolment.account}: add it to an authenticator app (TOTP, 6 digits, "
              f"30 s):", markup=False)
    out.print(enrolment.uri, markup=False)
    if sys.stdout.isatty():
        import qrcode

        qr = qrcode.QRCode(border=2)
        qr.add_data(enrolment.uri)
        text = io.StringIO()
        qr.print_ascii(out=text, invert=True)
        out.print(text.getvalue(), markup=False)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Account name: 1-32 of a-z 0-9 . _ -.")],
    role: Annotated[str, typer.Option(
        "--role", help="auditor, operator or approver (decides unmask requests).")],
    password_stdin: PasswordStdinOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Add a console account; prints its TOTP enrolment (URI, and a QR code at a terminal)."""
    from gateway.console.auth import check_name, check_role

    check_name(name)  # before asking for a password
    check_role(role)
    with _accounts(load(config)) as accounts:
        _show_enrolment(accounts.add(name, role, _new_password(password_stdin)))


@users_app.command("reset")
def users_reset(
    name: Annotated[str, typer.Argument(help="The account.")],
    password_stdin: PasswordStdinOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """A new password and a new TOTP secret; unlocks and re-enables the account."""
    with _accounts(load(config)) as accounts:
        _show_enrolment(accounts.reset(name, _new_password(password_stdin)))


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="The account.")],
                  config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Refuse every login to the account from now on (reset enables it again)."""
    with _accounts(load(config)) as accounts:
        accounts.disable(name)
    out.print(f"account {name}: disabled", markup=False)


@users_app.command("list")
def users_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Every console account: role, state, failures, last login."""
    from gateway import queries

    cfg = load(config)
    with open_ledger(cfg) as ledger:
        found = queries.accounts(ledger, dt.datetime.now(dt.UTC))

    def when(t: dt.datetime | None) -> str | None:
        return t.astimezone(cfg.gateway.tz).isoformat(timespec="seconds") if t else None

    items: list[dict[str, Any]] = [{"name": a.name, "role": a.role, "state": a.state, "failures": a.failures,
              "locked_until": when(a.locked_until), "last_login": when(a.last_login),
              "created": when(a.created)} for a in found]

    def text() -> None:
        if not items:
            out.print("no console accounts yet (gateway users add NAME --role auditor)")
            return
        table = new_table("name", "role", "state", "failures", "last login", "created")
        for i in items:
            table.add_row(i["name"], i["role"], i["state"] + (f" until {i['locked_until']}"
                                                              if i["locked_until"] else ""),
                          str(i["failures"]), i["last_login"] or "never", i["created"])
        out.print(table)

    render(items, as_json, text)
