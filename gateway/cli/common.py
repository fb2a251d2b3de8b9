"""What every command module of the CLI shares: its two consoles, its common options and
the few ways a command opens what it reads and prints what it found — kept here so that
each is done one way (a ledger always closed, ``--json`` always written alike)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway import audit as audit_mod
from gateway import config as config_mod
from gateway.errors import UsageError

if TYPE_CHECKING:
    from gateway.ledger import Ledger
    from gateway.progress import TerminalProgress

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # stdout stays clean for --json

ConfigOpt = Annotated[Path, typer.Option(
    "--config", "-c", envvar="GATEWAY_CONFIG", help="Path of gateway.toml.",
    show_default=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
PassEnvOpt = Annotated[str | None, typer.Option(
    "--passphrase-env", metavar="VAR",
    help="Name of the environment variable holding the secret key's passphrase.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="ISO date or date-time (UTC if no offset).")]
DEFAULT_CONFIG = Path("gateway.toml")


def load(path: Path) -> config_mod.Config:
    return config_mod.load(path)


def audit_log(cfg: config_mod.Config) -> audit_mod.AuditLog:
    return audit_mod.AuditLog(cfg.gateway.state_dir / "audit")


@contextmanager
def open_ledger(cfg: config_mod.Config) -> Iterator[Ledger]:
    """The ledger for one command, closed however the command ends: its engine keeps a pool
    of connections (a PostgreSQL server counts them) until it is disposed of. Opening it
    brings the schema to head under the migration lock, as every opening does."""
    from gateway.ledger import Ledger

    ledger = Ledger(cfg.gateway.db_url)
    try:
        yield ledger
    finally:
        ledger.close()


def render(data: Any, as_json: bool, text: Callable[[], None]) -> None:
    """Print *data* as JSON for a script, or call *text* to print it for a person. One place
    decides, so every ``--json`` is written alike: dataclasses as objects, times in ISO 8601."""
    if as_json:
        out.print_json(json.dumps(data, default=_plain))
    else:
        text()


def _plain(value: object) -> object:
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def new_table(*columns: str) -> Table:
    return Table(*columns, box=None)


def parse_since(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since: {value!r} is not an ISO date or date-time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def terminal_bar(wanted: bool) -> TerminalProgress | None:
    """A progress bar only where a person watches both streams: redrawn lines would garble
    a pipe, a file or journald, which get the log lines alone."""
    if not (wanted and sys.stderr.isatty() and sys.stdout.isatty()):
        return None
    from gateway.progress import TerminalProgress

    return TerminalProgress(err)
