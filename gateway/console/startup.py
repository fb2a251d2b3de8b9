"""What is wrong with the console's setup before it serves a page, said once and the same
way by ``gateway check`` and ``gateway console`` (issue 22, findings 9 and 10): a plain
HTTP console reachable from other machines, a TLS key others may read, a ledger or an
audit log that does not exist yet.

Kept apart from :mod:`gateway.console.app` so that ``gateway check`` does not load the
web stack to ask.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from gateway.audit_index import AuditIndex
from gateway.config import Config, ConsoleSection
from gateway.config.base import is_loopback_host
from gateway.errors import GatewayError
from gateway.ledger import Ledger, LedgerError


def loopback_only(listen: str) -> bool:
    """Whether ``listen`` can be reached from this machine alone. A name other than
    localhost counts as reachable: what it resolves to may change."""
    return is_loopback_host(listen.rpartition(":")[0])


def cleartext_warning(section: ConsoleSection) -> str | None:
    """Why the console would take passwords and TOTP codes over the network in clear: it
    listens beyond loopback, without TLS of its own, and no trusted proxy in front
    (whose TLS ends at this machine) is configured."""
    if loopback_only(section.listen) or section.tls_cert is not None or section.trusted_proxy:
        return None
    return (f"console.listen: {section.listen} can be reached from other machines and the "
            "console serves plain HTTP there: passwords and TOTP codes would cross the "
            "network in clear; set console.tls_cert and console.tls_key, or listen on "
            "127.0.0.1 behind a TLS reverse proxy (console.trusted_proxy, see "
            "docs/console-behind-nginx.md)")


def tls_key_problem(section: ConsoleSection) -> str | None:
    """Why the console's TLS key file is refused: as the gateway's secret key
    (:func:`gateway.crypto.keys.file_mode_problem`), readable by its owner only."""
    path = section.tls_key
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"console.tls_key: {path} does not exist"
    except PermissionError:
        return None  # another user's file (the console's own): checked when it starts
    except OSError as exc:
        return f"console.tls_key: {path}: {exc.strerror}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (f"console.tls_key: {path}: TLS key file is readable by group or others "
                f"(mode {mode:04o}); run chmod 600 {path}")
    return None


def open_ledger(cfg: Config) -> Ledger:
    """The ledger, which the console reads but never creates: a SQLite file that is not
    there would otherwise be made empty by the connection and named by its missing
    schema revision."""
    url = cfg.gateway.db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise LedgerError(f"the ledger {url.removeprefix('sqlite:///')} does not exist yet: run "
                          "`gateway db upgrade` as the gateway's user first (or check "
                          "gateway.state_dir and gateway.database_url)")
    return Ledger(url, upgrade=False)


def open_index(cfg: Config, log_path: Path) -> AuditIndex:
    """The console's index of the audit log, beside a log directory the gateway made."""
    directory = log_path.parent
    if not directory.is_dir():
        raise GatewayError(f"the audit log's directory {directory} does not exist yet: the "
                           "gateway makes it — add the console's first account (`gateway "
                           "users add NAME --role auditor`) as the gateway's user first")
    path = cfg.console.audit_index or directory / "console-index.sqlite"
    try:
        return AuditIndex(log_path, path)
    except sqlite3.Error as exc:
        raise GatewayError(f"cannot open the console's index of the audit log {path}: {exc}; "
                           f"the console's user must be able to write {path.parent} (or set "
                           "console.audit_index)") from exc
