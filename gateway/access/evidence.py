"""Access evidence into the audit log (SPEC §14): each read of a delivered file, by whom.

Each pass the daemon reads what internal-sftp logged since the last pass
(:mod:`follow`), parses it (:mod:`sshlog`), and for every file the gateway delivered
that a login read, records ``slice.accessed`` — agency, role, file, SSH login, remote
address, bytes read, and whether that was the whole file. A login that no agency
names is ``security.unknown_login``; one of another agency is
``security.foreign_access`` (only a misconfigured chroot allows it); one of the
agency working in another role is ``security.role_mismatch``. The cursor and the
parser's open sessions are saved in the ledger after each slice of the log, so a
restart goes on where the last pass stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from pathlib import Path

import structlog

from gateway.access import follow
from gateway.access.sshlog import Event, SftpLog
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.ledger import Ledger, utcnow

log = structlog.get_logger("gateway.access")


def collect(cfg: Config, ledger: Ledger, audit: AuditLog, node: str,
            now: dt.datetime | None = None) -> int:
    """Read the configured sshd log from where this node stopped; returns how many reads
    of delivered files it recorded."""
    path = cfg.access.sshd_log
    if path is None:
        return 0
    key = follow.source(node, Path(path))
    row = ledger.access_cursor(key)
    cursor = follow.Cursor(row.inode, row.offset) if row else follow.Cursor(None, 0)
    parser = _restore(SftpLog(cfg.gateway.tz, now or utcnow()), row.state if row else "{}")
    recorded = 0
    while True:
        lines, after = follow.read_new(Path(path), cursor)
        if after == cursor and not lines:
            return recorded
        for line in lines:
            for event in parser.feed(line):
                recorded += record(cfg, ledger, audit, event)
        cursor = after
        ledger.save_access_cursor(key, cursor.inode, cursor.offset, _state(parser))


def record(cfg: Config, ledger: Ledger, audit: AuditLog, e: Event) -> int:
    """Audit one parsed event if it is a read of a file the gateway delivered."""
    if e.kind != "read":
        return 0
    delivery = ledger.delivery_named(posixpath.basename(e.path))
    if delivery is None or delivery.kind not in ("slice", "manifest") or delivery.delivered_at is None:
        return 0  # not one of ours (an agency reading its own upload, a listing)
    who = cfg.ssh_login(e.login) if e.login else None
    common = {"agency": delivery.agency_code, "file": delivery.name, "address": e.address,
              "login": e.login or "unknown"}
    audit.record("slice.accessed", role=delivery.role, bytes=e.bytes,
                 complete=e.bytes == delivery.size, **common)
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


def _state(parser: SftpLog) -> str:
    return json.dumps({"sessions": {str(pid): list(v) for pid, v in parser.sessions.items()},
                       "reading": [[pid, path, flags] for (pid, path), flags in parser.reading.items()]})


def _restore(parser: SftpLog, state: str) -> SftpLog:
    data = json.loads(state or "{}")
    parser.sessions = {int(pid): (v[0], v[1]) for pid, v in data.get("sessions", {}).items()}
    parser.reading = {(int(pid), path): list(flags) for pid, path, flags in data.get("reading", [])}
    return parser
