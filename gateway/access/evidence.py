"""Access evidence into the audit log (SPEC §14): each read of a delivered file, by whom.

Each pass the daemon reads what internal-sftp logged since the last pass
(:mod:`follow`), parses it (:mod:`sshlog`), and for every file the gateway delivered
that a login read, records ``slice.accessed`` — agency, role, file, SSH login, remote
address, bytes read, and whether that was the whole file. A login that no agency
names is ``security.unknown_login``; one of another agency is
``security.foreign_access`` (only a misconfigured chroot allows it); one of the
agency working in another role is ``security.role_mismatch``. The cursor and the
parser's open sessions are saved in the ledger after each line that was recorded and
after each slice of the log, so a restart goes on where the last pass stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import posixpath
from pathlib import Path

import structlog

from gateway.access import follow
from gateway.access.sshlog import Event, SftpLog
from gateway.audit import AuditLog, fits, outside
from gateway.config import Config
from gateway.ledger import Ledger, utcnow

log = structlog.get_logger("gateway.access")


def collect(cfg: Config, ledger: Ledger, audit: AuditLog, node: str,
            now: dt.datetime | None = None) -> int:
    """Read the configured sshd log from where this node stopped; returns how many reads
    of delivered files it recorded.

    Nothing in the log can stop this: a value no audit pattern admits is kept as its hash
    (:func:`gateway.audit.outside`), and a line the parser cannot take is skipped, audited
    (``pass.failed``, part ``access.line``) and passed over. The cursor is saved after every
    line that was recorded, so a crash or a restart never records a read twice. What fails
    around the log (the ledger, the audit disk) is raised: nothing is skipped for it, and
    the next pass starts again from the last saved line."""
    path = cfg.access.sshd_log
    if path is None:
        return 0
    key = follow.source(node, Path(path))
    row = ledger.access_cursor(key)
    state = json.loads(row.state or "{}") if row else {}
    cursor = follow.Cursor(row.inode, row.offset, state.get("head")) if row \
        else follow.Cursor(None, 0)
    parser = SftpLog(cfg.gateway.tz, now or utcnow())
    parser.restore(state)
    recorded = 0
    while True:
        lines, after = follow.read_new(Path(path), cursor)
        if after == cursor and not lines:
            return recorded
        for line in lines:
            done = sum(record(cfg, ledger, audit, event) for event in _feed(parser, line, audit))
            if done:  # this line's reads are in the audit log: never again
                recorded += done
                _save(ledger, key, dataclasses.replace(after, offset=line.end), parser)
        cursor = after
        _save(ledger, key, cursor, parser)


def _feed(parser: SftpLog, line: follow.Line, audit: AuditLog) -> list[Event]:
    """The events one line completes; none, audited, if the parser cannot take it."""
    try:
        return parser.feed(line.text)
    except Exception as exc:  # a parser bug must not stop the evidence behind it
        log.exception("access.line_skipped", end=line.end)
        audit.record("pass.failed", part="access.line", error=type(exc).__name__)
        return []


def served_inbox(cfg: Config, agency: str) -> str:
    """The path at which an agency's chrooted sshd serves its inbox: the chroot is the
    inbox's parent directory (deploy/sshd_config.d), so ``/`` and the inbox's own name."""
    return "/" + Path(cfg.agency(agency).inbox.path).name


def record(cfg: Config, ledger: Ledger, audit: AuditLog, e: Event) -> int:
    """Audit one parsed event if it is a read of a file the gateway delivered, at the path
    its agency's chroot serves it at. A same-named file elsewhere (a copy in the outbox or
    in /tmp) is not the delivered file: reading it proves nothing about the slice."""
    if e.kind != "read":
        return 0
    name = posixpath.basename(e.path)
    if not fits("file", name):
        return 0  # not a name the gateway gives (nor one worth a database lookup)
    delivery = ledger.delivery_named(name)
    if delivery is None or delivery.kind not in ("slice", "manifest") or delivery.delivered_at is None:
        return 0  # not one of ours (an agency reading its own upload, a listing)
    try:
        inbox = served_inbox(cfg, delivery.agency_code)
    except KeyError:
        return 0  # an agency since removed from the config: its inbox is served no more
    if posixpath.normpath(posixpath.join(inbox, e.path)) != f"{inbox}/{name}":
        return 0  # relative names start in the login's home, the inbox (deploy/)
    who = cfg.ssh_login(e.login) if e.login else None
    login = outside("login", e.login or "unknown")
    common = {"agency": delivery.agency_code, "file": delivery.name,
              **outside("address", e.address), **login}
    audit.record("slice.accessed", role=delivery.role, bytes=e.bytes,
                 complete=e.bytes == delivery.size, **common)
    if "login" not in login:
        audit.record("security.unsafe_field", field="login", **common)
        log.warning("access.unsafe_login", login_sha256=login["login_sha256"],
                    agency=delivery.agency_code, file=delivery.name)
    if "address_sha256" in common:
        audit.record("security.unsafe_field", field="address", **common)
    if who is None:
        audit.record("security.unknown_login", **common)
        log.warning("access.unknown_login", **common)
    elif who[0] != delivery.agency_code:
        audit.record("security.foreign_access", role=who[1], **common)
        log.warning("access.foreign", **common)
    elif delivery.role is not None and who[1] != delivery.role:
        audit.record("security.role_mismatch", role=delivery.role, **common)
        log.warning("access.role_mismatch", role=delivery.role, login_role=who[1], **common)
    return 1


def _save(ledger: Ledger, key: str, cursor: follow.Cursor, parser: SftpLog) -> None:
    state = {**parser.snapshot(), "head": cursor.head}
    ledger.save_access_cursor(key, cursor.inode, cursor.offset, json.dumps(state))
