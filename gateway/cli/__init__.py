"""The ``gateway`` command line: parse, call one service function, render.

Every user-facing failure is a GatewayError; :func:`main` prints its message
(one line per problem) and exits with its status — 0 success, 1 failure,
2 usage or configuration error. A traceback appears only for a bug,
and only with ``GATEWAY_DEBUG=1``.

The commands live in this package's modules by whom they serve (:mod:`.operate`,
:mod:`.install`, :mod:`.records`, :mod:`.keys`, :mod:`.audit`, :mod:`.users`, :mod:`.alerts`,
:mod:`.samples`, :mod:`.unmask`) over what they share (:mod:`.common`); they are named here, in the order
``gateway --help`` lists them.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from typer import _click as click  # Typer's own click: its commands are these types

from gateway import __version__
from gateway.cli.common import err, out
from gateway.clihelp import tidy
from gateway.errors import CryptoError, GatewayError

# Each command: its name, the module of this package it lives in, and its function (or, for
# a group, its Typer app) there — in the order `gateway --help` lists them. A command line
# that names one builds only that one (:func:`build`): the others' modules and Typer's work
# on their options are a start-up cost every `gateway run --once` would pay for nothing.
COMMANDS = (
    ("init", "operate", "init"), ("install", "install", "install_cmd"),
    ("check", "operate", "check"), ("demo", "operate", "demo"), ("run", "operate", "run_cmd"),
    ("status", "operate", "status"), ("batches", "records", "batches"),
    ("report", "records", "report"), ("access", "records", "access"),
    ("console", "operate", "console"), ("open", "keys", "open_cmd"), ("seal", "keys", "seal_cmd"))
GROUPS = (
    ("keys", "keys", "keys_app"), ("retention", "records", "retention_app"),
    ("audit", "audit", "audit_app"), ("db", "operate", "db_app"), ("users", "users", "users_app"),
    ("alerts", "alerts", "alerts_app"), ("unmask", "unmask", "unmask_app"),
    ("sample", "samples", "sample_app"))


def build(only: str | None = None) -> typer.Typer:
    """The command line's Typer app: every command, or only the one named *only* (a name
    that is none of them builds them all, so that click can say what is wrong and offer
    the near ones)."""
    if only not in {name for name, _, _ in COMMANDS + GROUPS}:
        only = None
    app = typer.Typer(
        name="gateway",
        help="Secure case-file exchange between a bank and its collection agencies.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback(invoke_without_command=True)(_root)
    for name, module, attr in COMMANDS + GROUPS:
        if only in (None, name):
            found = getattr(importlib.import_module(f"gateway.cli.{module}"), attr)
            if isinstance(found, typer.Typer):
                app.add_typer(found, name=name)
            else:
                app.command(name)(found)
    return app


def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    """Secure case-file exchange between a bank and its collection agencies."""
    from gateway.audit import configure_logging

    configure_logging(stream=sys.stderr)  # stdout stays clean for --json; `run` logs to stdout
    if version:
        out.print(f"gateway {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every failure to one readable message and an exit status."""
    os.umask(0o077)  # nothing the gateway writes is readable by group or others
    args = sys.argv[1:] if argv is None else argv
    try:  # a command named first is built alone; anything else (`--help run`) builds them all
        named = args[0] if args and not args[0].startswith("-") else None
        command(named)(args=args, prog_name="gateway", standalone_mode=True)
    except SystemExit as exc:  # typer/click end every run this way, usage errors included
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CryptoError as exc:  # peers and scripts key on the stable code
        err.print(f"error: {exc.code}: {exc}", markup=False)
        return exc.exit_code
    except GatewayError as exc:
        for line in str(exc).splitlines() or [exc.code]:
            err.print(f"error: {line}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:  # the machine, not the gateway: a full disk, a permission
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"error: {exc.strerror or exc}{where}", markup=False)
        return 1
    except Exception as exc:  # a bug: say so in one line, traceback only on request
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (this is a bug; rerun with "
                  "GATEWAY_DEBUG=1 for the traceback)", markup=False)
        return 1
    return 0


def command(only: str | None = None) -> click.Command:
    """The click command tree Typer builds (:func:`build`), its help made readable.

    Typer 0.29 prints a type after every option, flags included (``--json <bool>``) and
    lists as Python spells them (``--key <list[Path]>``). A flag takes no value, so it
    gets none; a repeatable option shows its element (``--key <path>...``)."""
    root = typer.main.get_command(build(only))
    tidy(root, click.Context(root))
    return root


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
