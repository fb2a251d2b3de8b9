"""Access evidence into the audit log (docs/security-team.md): each read of a delivered file, by whom.

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

import collections
import dataclasses
import datetime as dt
import json
import posixpath
from pathlib import Path
from typing import Any

import structlog

from gateway import faults
from gateway.access import follow
from gateway.access.sshlog import Event, SftpLog
from gateway.audit import RESERVED, AuditLog, checked, fits, outside
from gateway.config import Config
from gateway.ledger import Ledger, utcnow

log = structlog.get_logger("gateway.access")


Record = tuple[str, dict[str, Any]]  # an audit event and its fields, as written


def collect(cfg: Config, ledger: Ledger, audit: AuditLog, node: str,
            now: dt.datetime | None = None) -> int:
    """Read the configured sshd log from where this node stopped; returns how many reads
    of delivered files it recorded.

    Nothing in the log can stop this: a value no audit pattern admits is kept as its hash
    (:func:`gateway.audit.outside`), and a line the parser cannot take is passed over and
    counted (one ``pass.failed`` of part ``access.line`` per call). What fails around the
    log — the log unreadable or not a regular file, the ledger, the audit disk — is
    raised: nothing is skipped for it, and the next pass starts from the last saved line.

    Each read is recorded once, also across a kill at any moment: before a line's audit
    entries are written, the cursor after the line is saved together with those entries
    (a write-ahead record, ``pending``); a run that finds one writes whichever of them
    the audit log does not hold past the size it had then."""
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
    recorded = _finish_pending(audit, state.get("pending"))
    if state.get("pending"):
        _save(ledger, key, cursor, parser)  # written now, or found written
    skipped: collections.Counter[str] = collections.Counter()
    try:
        while True:
            lines, after = follow.read_new(Path(path), cursor)
            if after == cursor and not lines:
                return recorded
            for line in lines:
                records = [r for event in _feed(parser, line, skipped)
                           for r in _checked(evidence(cfg, ledger, event), skipped)]
                if records:  # the line's entries, ahead of writing them
                    _save(ledger, key, dataclasses.replace(after, offset=line.end), parser,
                          pending={"audit_size": audit.size(), "records": records})
                    faults.point("after_access_pending")
                    recorded += _write(audit, records)
                    faults.point("after_access_written")
            cursor = after
            _save(ledger, key, cursor, parser)
    finally:
        for error, n in skipped.items():
            log.error("access.lines_skipped", error=error, lines=n)
            audit.record("pass.failed", part="access.line", error=error, count=n)


def _feed(parser: SftpLog, line: follow.Line, skipped: collections.Counter[str]) -> list[Event]:
    """The events one line completes; none, counted, if the parser cannot take it."""
    try:
        return parser.feed(line.text)
    except Exception as exc:  # a parser bug must not stop the evidence behind it
        skipped[type(exc).__name__] += 1
        return []


def _checked(records: list[Record], skipped: collections.Counter[str]) -> list[Record]:
    """*records* as the audit log will take them — checked before they are promised (saved
    ahead as pending): one it would refuse must not stop every later run."""
    try:
        return [(event, checked(event, fields)) for event, fields in records]
    except ValueError:
        skipped["ValueError"] += 1
        return []


def served_inbox(cfg: Config, agency: str) -> str:
    """The path at which an agency's chrooted sshd serves its inbox (``[access] inbox_path``)."""
    inbox = Path(cfg.agency(agency).inbox.path).name
    return cfg.access.inbox_path.replace("{inbox}", inbox).replace("{agency}", agency)


def evidence(cfg: Config, ledger: Ledger, e: Event) -> list[Record]:
    """The audit entries one parsed event calls for: none unless it is a read of a file the
    gateway delivered, at the path its agency's chroot serves it at. A same-named file
    elsewhere (a copy in the outbox or in /tmp) is not the delivered file: reading it proves
    nothing about the slice (it is logged, for a site whose chroot layout differs)."""
    if e.kind != "read":
        return []
    name = posixpath.basename(e.path)
    if not fits("file", name):
        return []  # not a name the gateway gives (nor one worth a database lookup)
    delivery = ledger.delivery_named(name)
    if delivery is None or delivery.kind not in ("slice", "manifest") or delivery.delivered_at is None:
        return []  # not one of ours (an agency reading its own upload, a listing)
    try:
        inbox = served_inbox(cfg, delivery.agency_code)
    except KeyError:
        return []  # an agency since removed from the config: its inbox is served no more
    # Relative names start in the login's home, the inbox (deploy/); "//x" is "/x" to a
    # file system, though not to normpath.
    if "/" + posixpath.normpath(posixpath.join(inbox, e.path)).lstrip("/") != f"{inbox}/{name}":
        log.warning("access.read_elsewhere", agency=delivery.agency_code, file=name,
                    inbox_path=inbox)
        return []
    who = cfg.ssh_login(e.login) if e.login else None
    common = {"agency": delivery.agency_code, "file": delivery.name,
              **outside("address", e.address), **outside("login", e.login or "unknown")}
    out: list[Record] = [("slice.accessed", {"role": delivery.role, "bytes": e.bytes,
                                             "complete": e.bytes == delivery.size, **common})]
    for unsafe in ("login", "address"):
        if f"{unsafe}_sha256" in common:
            out.append(("security.unsafe_field", {"field": unsafe, **common}))
    if who is None:
        out.append(("security.unknown_login", common))
    elif who[0] != delivery.agency_code:
        out.append(("security.foreign_access", {"role": who[1], **common}))
    elif delivery.role is not None and who[1] != delivery.role:
        out.append(("security.role_mismatch", {"role": delivery.role, **common}))
    return [(event, {k: v for k, v in fields.items() if v is not None}) for event, fields in out]


def _write(audit: AuditLog, records: list[Record]) -> int:
    """Audit *records*; returns how many reads they hold."""
    for event, fields in records:
        audit.record(event, **fields)
        if event.startswith("security."):
            log.warning(event.replace("security.", "access."), **fields)
    return sum(event == "slice.accessed" for event, _ in records)


def _finish_pending(audit: AuditLog, pending: dict[str, Any] | None) -> int:
    """Write what a killed run saved ahead but may not have written: each pending entry
    that the audit log does not hold, in order, past the size it had then (the gateway
    alone writes access events to its log, so an equal entry there is this one)."""
    if not pending:
        return 0
    wanted = [(event, fields) for event, fields in pending["records"]]
    for entry in audit.entries(start=int(pending["audit_size"])):
        fields = {k: v for k, v in entry.items() if k not in RESERVED}
        if wanted and (entry["event"], fields) == wanted[0]:
            wanted.pop(0)
    return _write(audit, wanted)


def _save(ledger: Ledger, key: str, cursor: follow.Cursor, parser: SftpLog, *,
          pending: dict[str, Any] | None = None) -> None:
    state = {**parser.snapshot(), "head": cursor.head, "pending": pending}
    ledger.save_access_cursor(key, cursor.inode, cursor.offset, json.dumps(state))
