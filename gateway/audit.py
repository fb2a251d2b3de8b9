"""The audit log (docs/formats.md §5.4) and the operational log set-up.

The audit log is ours, not a database's: append-only JSON Lines, each entry
chained to the previous one by SHA-256, so an auditor can verify it with a
twenty-line script and without trusting the gateway. It must never hold a
personal-data value, so :meth:`AuditLog.record` accepts only whitelisted
events and typed fields whose values are checked against strict patterns —
file names, batch ids, counts, fingerprints, error codes. A name, an ID number
or an address cannot pass any of those patterns by accident.

Operational logs (structlog) are separate: JSON lines on stdout for journald
when not on a terminal, readable key=value lines on a terminal.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from gateway import identifiers
from gateway.errors import AuditError

GENESIS = "0" * 64
RESERVED = frozenset({"seq", "ts", "event", "actor", "prev", "hash"})  # written by record()

EVENTS = frozenset({
    "config.loaded", "gateway.started", "gateway.stopped",
    "file.received", "file.rejected", "file.duplicate", "file.refused",
    "audit.checkpoint", "audit.repaired",
    "batch.accepted", "slice.delivered", "slice.collected", "receipt.sent",
    "results.accepted", "results.forwarded",
    "security.cross_agency", "security.bad_signature",
    "retention.purged", "certificate.delivered",
    "key.refused", "zone.refused", "zone.error",
    # the security team's console (docs/security-team.md): its accounts and everything they do
    "console.account_added", "console.account_disabled", "console.account_reset",
    "console.login", "console.login_failed", "console.locked", "console.logout",
    "console.view", "console.export",
    # access evidence from OpenSSH (docs/security-team.md)
    "slice.accessed", "security.role_mismatch", "security.foreign_access",
    "security.unknown_login", "report.delivered",
    # a value read from outside that no field pattern admits, kept as its hash (issue 22)
    "security.unsafe_field",
    # a piece of a daemon pass that raised something nobody expected; the rest went on
    "pass.failed",
    # a [[forward]] destination (the SIEM) stopped confirming entries, and took them again
    "forward.failing", "forward.recovered",
    # an alert told to a channel (e-mail, a webhook), and a condition that no longer holds
    "alert.sent", "alert.cleared",
    # the agency's signed documents (docs/formats.md §7): slices it received whole, and its
    # attestation that it destroyed a contract's files
    "slice.acknowledged", "agency.deletion_attested",
    # unmasking by approval (docs/operations.md): a request, each approver's decision, the
    # one-off slice released and deleted at its expiry — the register's evidence
    "unmask.requested", "unmask.approved", "unmask.denied", "unmask.expired",
    "unmask.released", "unmask.purged", "unmask.failed", "unmask.reopened",
})


def _pattern(regex: str, what: str) -> Callable[[Any], Any]:
    compiled = re.compile(regex)

    def check(value: Any) -> Any:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value
    return check


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _codes(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of error codes")
    check = _pattern(r"E_[A-Z0-9_]{1,40}", "an error code")
    return [check(v) for v in value]


def _fields(value: Any) -> Any:
    if not isinstance(value, list | tuple) or len(value) > 64:
        raise ValueError("must be a list of case field names")
    check = _pattern(r"[a-z][a-z0-9_]{0,63}", "a case field name")
    return [check(v) for v in value]


_SAFE_NAME = identifiers.FILE_NAME
_HEX64 = r"[0-9a-f]{64}"
FIELDS: dict[str, Callable[[Any], Any]] = {
    "file": _pattern(_SAFE_NAME, "a file name of [A-Za-z0-9._-]"),
    "file_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "name_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "config_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "zone": _pattern(r"[A-Za-z0-9_.\[\]-]{1,80}", "a zone key path"),
    "key": _pattern(r"[A-Za-z0-9_.\[\]-]{1,120}", "a config key path"),
    "batch_id": _pattern(identifiers.BATCH_ID, "a batch id"),
    "agency": _pattern(identifiers.AGENCY_CODE, "an agency code"),
    "role": _pattern(identifiers.ROLE, "a role name"),
    "contract_id": _pattern(identifiers.CONTRACT_ID, "a contract id"),
    "fingerprint": _pattern(r"[0-9A-F]{40}|[0-9A-F]{64}", "an upper-case key fingerprint"),
    "signer": _pattern(r"[0-9A-F]{40}|[0-9A-F]{64}", "an upper-case key fingerprint"),
    "code": _pattern(r"E_[A-Z0-9_]{1,40}", "an error code"),
    "codes": _codes,
    "status": _pattern(r"[a-z_]{1,32}", "a status word"),
    "reason": _pattern(r"[a-z0-9_]{1,64}", "a reason word"),
    "kind": _pattern(r"[a-z0-9_]{1,32}", "a kind word"),
    "records": _count, "accepted": _count, "rejected": _count, "count": _count,
    "bytes": _count, "errors": _count, "files": _count, "cases": _count, "rows": _count,
    "neutralised": _count, "covers_seq": _count, "at_seq": _count,
    "late": _flag, "dry_run": _flag,
    "date": _pattern(r"\d{4}-\d{2}-\d{2}", "an ISO date"),
    "node": _pattern(identifiers.NODE, "a host name"),
    # PEP 440 with a local part: a checkout past its tag, changed, is 0.2.1.dev103+gd63dc73b9.d20261207
    "version": _pattern(r"[0-9A-Za-z.+-]{1,64}", "a version"),
    "account": _pattern(r"[a-z][a-z0-9._-]{0,31}", "a console account name"),
    "page": _pattern(r"[a-z_]{1,32}", "a console page name"),
    # sshd logs IPv6 link-local addresses with their interface (fe80::1%eth0) and UNKNOWN
    # when it could not tell: both ordinary, both recorded as they are
    "address": _pattern(r"[0-9A-Fa-f:.]{1,45}(%[A-Za-z0-9_.-]{1,16})?|UNKNOWN", "an IP address"),
    "format": _pattern(r"csv|jsonl|asc|html", "csv, jsonl, asc or html"),
    "login": _pattern(r"[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}", "an SSH login name"),
    "complete": _flag,
    # the hash of an outside value that failed its own field's pattern (see outside())
    "login_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "address_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "field": _pattern(r"[a-z_]{1,32}", "a field name"),
    "part": _pattern(r"[a-z_]{1,32}(\.[A-Za-z0-9_-]{1,32})?", "a pass part"),
    "error": _pattern(r"[A-Za-z_][A-Za-z0-9_]{0,63}", "an exception class name"),
    "destination": _pattern(r"[a-z0-9_-]{1,32}", "a [[forward]] destination name"),
    # alerts: the rule, its severity, the channel, how many addresses — never an address —
    # and the condition key only as its hash (a key names a fingerprint, a zone, a file)
    "rule": _pattern(r"[a-z_]{1,32}", "an alert rule"),
    "severity": _pattern(r"critical|warning|info", "critical, warning or info"),
    "channel": _pattern(r"email|webhook[0-9]{1,2}", "an alert channel"),
    "recipients": _count,
    "alert_sha256": _pattern(_HEX64, "a lower-case SHA-256"),
    "document_id": _pattern(r"[0-9a-f]{32}", "a document id"),
    "not_listed": _count,
    "request_id": _pattern(r"[0-9a-f]{32}", "an unmask request id"),
    "purpose": _pattern(r"[a-z][a-z0-9_]{0,31}", "an unmask purpose"),
    "fields": _fields,
    "approvals": _count, "needed": _count,
    "expires_at": _pattern(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "a UTC time"),
}

OUTSIDE = frozenset({"login", "address"})  # fields whose values other parties write


def fits(name: str, value: Any) -> bool:
    """Whether *value* may be recorded as field *name* as it is."""
    try:
        FIELDS[name](value)
    except ValueError:
        return False
    return True


def outside(name: str, value: str | None) -> dict[str, str]:
    """A value read from outside (an sshd log line) as an audit field: itself when it fits
    the field's pattern, else its SHA-256 under ``<name>_sha256``. Never raises: a sender
    can write anything into a log, and an odd login must not stop the pass that reads it.
    The hash still lets an auditor confirm a suspected value (``printf %s 'CORP\\anna' |
    sha256sum``) without the log holding free text."""
    if value is None:
        return {}
    assert name in OUTSIDE, name  # noqa: S101 — invariant, not an input check
    if fits(name, value):
        return {name: value}
    raw = value.encode("utf-8", "surrogateescape")
    return {f"{name}_sha256": hashlib.sha256(raw).hexdigest()}


def checked(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields an entry of *event* would hold (None dropped); ValueError for an unknown
    event, field or unsafe value — before anything is written, or promised to be."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name in RESERVED or name not in FIELDS:
            raise ValueError(f"audit field {name!r} is not allowed")
        try:
            clean[name] = FIELDS[name](value)
        except ValueError as exc:
            raise ValueError(f"audit field {name!r} {exc}") from None
    return clean


def canonical(obj: dict[str, Any]) -> bytes:
    """The one serialisation that is hashed and written: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def default_actor() -> str:
    """Who runs this command, as the kernel says — never ``USER`` or ``LOGNAME``, which any
    caller sets (``USER=alice gateway users disable …`` once sealed alice into the chain).

    The OS account of the real uid; when a person became it through ``sudo`` or ``su``,
    ``person>account`` (``alice>root``). The person comes from the kernel's login uid
    (``/proc/self/loginuid``, set at login by pam_loginuid and unchangeable afterwards —
    what auditd calls the auid), or else from ``SUDO_USER`` when our parent process really
    is sudo running as root (a variable alone proves nothing)."""
    uid = os.getuid()
    account = _user_name(uid)
    person = None
    login_uid = _login_uid()
    if login_uid is not None and login_uid != uid:
        person = _user_name(login_uid)
    elif login_uid is None and _parent_is_sudo():
        sudo_user = os.environ.get("SUDO_USER", "")
        if _ACTOR_PART.fullmatch(sudo_user) and sudo_user != account:
            person = sudo_user
    return f"{person}>{account}" if person else account


_ACTOR_PART = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_ACTOR = re.compile(r"[A-Za-z0-9_.@-]{1,64}(>[A-Za-z0-9_.@-]{1,64})?")


def is_actor(value: object) -> bool:
    """Whether *value* is an actor :class:`AuditLog` would write (``console``, an account,
    ``person>account``): a checker reading the log trusts nothing else in that field."""
    return isinstance(value, str) and _ACTOR.fullmatch(value) is not None


def _user_name(uid: int) -> str:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no passwd entry (a container's)
        return f"uid{uid}"
    return name if _ACTOR_PART.fullmatch(name) else f"uid{uid}"


def _login_uid() -> int | None:
    """The kernel's login uid, or None where there is none (no PAM login: a service, a
    container, a CI runner: the value is then (uid_t)-1)."""
    try:
        raw = Path("/proc/self/loginuid").read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() and int(raw) != 4294967295 else None


def _parent_is_sudo() -> bool:
    """Whether our parent process is sudo running as root: only then does SUDO_USER come
    from sudo rather than from whoever started us."""
    try:
        status = Path(f"/proc/{os.getppid()}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    real_uid = fields.get("Uid", "").split()
    return fields.get("Name", "").strip() == "sudo" and real_uid[:1] == ["0"]


class AuditLog:
    """Append-only, hash-chained JSONL at ``state_dir/audit/audit.jsonl``.

    Appends take an exclusive ``flock`` so the daemon and CLI commands can
    write to the same chain; each entry is fsynced before ``record`` returns.
    """

    def __init__(self, directory: Path, *, actor: str | None = None,
                 listener: Callable[[str], None] | None = None) -> None:
        self.listener = listener  # told the event name of every entry written (metrics)
        self.directory = Path(directory)
        self.path = self.directory / "audit.jsonl"
        self.actor = actor or default_actor()
        if not _ACTOR.fullmatch(self.actor):
            self.actor = f"uid{os.getuid()}"

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one entry; raise ValueError for an unknown event, field or unsafe value."""
        clean = checked(event, fields)
        with self._locked() as fd:
            seq, prev = _tail(fd)
            ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            entry = {"seq": seq + 1, "ts": ts, "event": event, "actor": self.actor, **clean,
                     "prev": prev}
            entry["hash"] = entry_hash(entry)
            _append(fd, canonical(entry) + b"\n", self.path)
        if self.listener is not None:
            self.listener(event)
        return entry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The log open for appending, under an exclusive ``flock`` (released on close)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def repair(self) -> int:
        """Cut a torn last line — what a crash in the middle of :meth:`record` leaves — and
        say so in the log (``audit.repaired``). Returns the bytes removed. A complete but
        damaged line is not a crash and is left for `gateway audit verify` to report."""
        if not self.path.exists():
            return 0
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return 0
            window = min(size, 1024 * 1024)
            tail = os.pread(fd, window, size - window)
            keep = size - window + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
            os.ftruncate(fd, keep)
            os.fsync(fd)
        self.record("audit.repaired", bytes=size - keep, reason="torn_last_line")
        return size - keep

    def last_entry(self) -> dict[str, Any] | None:
        """The newest entry, or None for an empty log."""
        if not self.path.exists():
            return None
        with self._locked() as fd:
            if os.fstat(fd).st_size == 0:
                return None
            _tail(fd)  # raises for a damaged last line
            size = os.fstat(fd).st_size
            window = min(size, 65536)
            last: dict[str, Any] = json.loads(
                os.pread(fd, window, size - window).rstrip(b"\n").rsplit(b"\n", 1)[-1])
            return last

    def entries(self, *, start: int = 0) -> Iterator[dict[str, Any]]:
        """Parsed entries in order from byte *start* (a :meth:`size` taken earlier); no
        verification (see :func:`verify`)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(start)
            for line in fh:
                yield json.loads(line)

    def size(self) -> int:
        """Bytes in the log now: where the next entry will start."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


@dataclass(frozen=True)
class Filter:
    """Which entries a person asked for (`gateway audit show`, the console's Audit log).
    *event* is an event name, or a family ending in ``.`` (``security.``)."""

    event: str | None = None
    agency: str | None = None
    actor: str | None = None
    file: str | None = None
    batch_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def matches(self, e: dict[str, Any]) -> bool:
        if self.event and not (e.get("event") == self.event or (
                self.event.endswith(".") and str(e.get("event", "")).startswith(self.event))):
            return False
        for name, wanted in (("agency", self.agency), ("actor", self.actor), ("file", self.file),
                             ("batch_id", self.batch_id)):
            if wanted and e.get(name) != wanted:
                return False
        if self.since or self.until:
            ts = dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
            if (self.since and ts < self.since) or (self.until and ts >= self.until):
                return False
        return True


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]  # newest first
    matching: int  # entries matching the filter in the whole log
    older: int | None  # the seq to page on from (``before``), None on the last page


def search(log: AuditLog, flt: Filter) -> Iterator[dict[str, Any]]:
    """Matching entries in log order, streamed (memory does not grow with the log)."""
    return (e for e in log.entries() if flt.matches(e))


def page(log: AuditLog, flt: Filter, *, before: int | None = None, size: int = 50) -> Page:
    """One page of matching entries, newest first, older than seq *before*."""
    last: collections.deque[dict[str, Any]] = collections.deque(maxlen=size + 1)
    matching = 0
    for e in search(log, flt):
        matching += 1
        if before is None or e["seq"] < before:
            last.append(e)
    rows = list(reversed(last))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, matching, rows[-1]["seq"] if more and rows else None)


def _append(fd: int, data: bytes, path: Path) -> None:
    """Write all of *data* and fsync, or undo a partial write and raise: an entry is either
    in the log whole or not at all (a short write is an error, never ignored)."""
    start = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[n:]
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise AuditError(f"audit log {path}: could not append an entry: "
                         f"{exc.strerror or exc}") from exc


def _tail(fd: int) -> tuple[int, str]:
    """Sequence number and hash of the last entry (0 and the genesis hash for an empty log)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    window = min(size, 65536)
    data = os.pread(fd, window, size - window)
    lines = data.rstrip(b"\n").rsplit(b"\n", 1)
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError("the last audit entry is damaged; run 'gateway audit verify'") from exc


@dataclass(frozen=True)
class Verification:
    entries: int  # entries that verify, from the first
    ok: bool
    broken_seq: int | None = None  # the entry number (1-based line) where the chain breaks
    problem: str = ""
    last_hash: str = GENESIS
    hashes: dict[int, str] = field(default_factory=dict)  # of the entries asked for (collect)
    last_event: str | None = None  # of the last sound entry


def verify(path: Path, *, collect: Collection[int] = ()) -> Verification:
    """Check every entry's bytes, sequence, link and hash; stop at the first broken one.
    The hashes of the entries numbered in *collect* are returned (for checkpoints)."""
    path = Path(path)
    prev, n, last_event = GENESIS, 0, None
    hashes: dict[int, str] = {}
    if not path.exists():
        return Verification(entries=0, ok=True)
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            problem, entry = check_line(line, n, prev)
            if problem:
                return Verification(entries=n - 1, ok=False, broken_seq=n, problem=problem,
                                    last_hash=prev, hashes=hashes, last_event=last_event)
            prev, last_event = entry["hash"], entry["event"]
            if n in collect:
                hashes[n] = prev
    return Verification(entries=n, ok=True, last_hash=prev, hashes=hashes, last_event=last_event)


def check_line(line: bytes, n: int, prev: str) -> tuple[str, dict[str, Any]]:
    """(problem, entry) for entry number *n*; problem is empty when the entry is sound."""
    if not line.endswith(b"\n"):
        return "entry is incomplete (no line end)", {}
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "entry is not valid JSON", {}
    if not isinstance(entry, dict) or not {"seq", "hash", "prev", "event"} <= entry.keys():
        return "entry lacks seq/event/prev/hash", {}
    if canonical(entry) + b"\n" != line:
        return "entry bytes differ from their canonical form (edited)", {}
    if entry["seq"] != n:
        return f"sequence number is {entry['seq']}, expected {n}", {}
    if entry["prev"] != prev:
        return "prev does not match the previous entry's hash (entry removed or reordered)", {}
    if entry["hash"] != entry_hash(entry):
        return "hash does not match the entry's content (entry altered)", {}
    return "", entry


def configure_logging(*, json_output: bool | None = None, stream: TextIO | None = None,
                      level: int = logging.INFO) -> None:
    """Operational logs: JSON for journald when not on a terminal, readable lines on one."""
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
