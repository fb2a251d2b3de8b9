"""internal-sftp's log, read as evidence (docs/security-team.md): a pure parser, no I/O.

OpenSSH's ``internal-sftp -l INFO`` writes one syslog line per session event and per file
operation, each tagged with the session's process id::

    <38>Nov 23 04:58:18 internal-sftp[21350]: session opened for local user zoneuser from [127.0.0.1]
    <38>Nov 23 04:58:18 internal-sftp[21350]: open "/inbox/S1.csv.pgp" flags READ mode 0666
    <38>Nov 23 04:58:18 internal-sftp[21350]: close "/inbox/S1.csv.pgp" bytes read 17 written 0
    <38>Nov 23 04:58:18 internal-sftp[21350]: remove name "/inbox/S1.csv.pgp"
    <38>Nov 23 04:58:18 internal-sftp[21350]: session closed for local user zoneuser from [127.0.0.1]

The pid ties every line to its session's login and address. :class:`SftpLog` is fed
lines in order and returns what they prove: a file read (opened for reading, then
closed, with the bytes read), a file removed, a file written. It keeps only the open
sessions and files (bounded by what sshd has open at once), so a caller can feed it
a log of any length. A line that is not internal-sftp's is ignored; a session whose
opening line was not seen (the log began mid-session) is reported with no login.

File names are logged between double quotes without escaping; the patterns take the
longest name that leaves the rest of the line well-formed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LINE = re.compile(r"^(?:<\d{1,3}>)?(?P<ts>(?:" + "|".join(_MONTH_NAMES) + r") [ \d]\d \d{2}:\d{2}:\d{2}) "
                   r"(?:\S+ )?internal-sftp\[(?P<pid>\d+)\]: (?P<msg>.*)$", re.ASCII)
_SESSION = re.compile(r"^session (?P<what>opened|closed) for local user (?P<login>.+) "  # a
                      r"from \[(?P<address>[^\]\s]{1,64})\]$")  # directory login may hold spaces
MAX_LINE = 8192  # characters: rsyslog's default message size; a longer line is not sshd's
MAX_OPEN = 256  # handles remembered at once: an open refused by the file system logs no close
_OPEN = re.compile(r'^open "(?P<path>.*)" flags (?P<flags>[A-Z,]+) mode \d+$')
_CLOSE = re.compile(r'^close "(?P<path>.*)" bytes read (?P<read>\d+) written (?P<written>\d+)$', re.ASCII)
_REMOVE = re.compile(r'^remove name "(?P<path>.*)"$')
_RENAME = re.compile(r'^rename old "(?P<old>.*)" new "(?P<new>.*)"$')
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}


@dataclass(frozen=True)
class Event:
    """What one line proves. *kind*: ``read`` (a file opened for reading was closed;
    *bytes* read), ``write`` (*bytes* written), ``remove``, ``rename`` (*path* is the new
    name, *old* the old one), ``login``, ``logout``."""

    kind: str
    at: dt.datetime
    pid: int
    login: str | None
    address: str | None
    path: str = ""
    bytes: int = 0
    old: str = ""


@dataclass
class SftpLog:
    """Feed lines in order; each call returns the events the line completes."""

    tz: dt.tzinfo
    now: dt.datetime  # for the year syslog leaves out: the latest not after now + 1 day
    sessions: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> login, address
    # (pid, path) -> the flags of each handle open on it (a client may open a file twice)
    reading: dict[tuple[int, str], list[str]] = field(default_factory=dict)

    def feed(self, line: str) -> list[Event]:
        if len(line) > MAX_LINE:
            return []  # and the patterns below never see a line long enough to be slow
        m = _LINE.match(line.rstrip("\r\n"))
        if not m:
            return []
        pid, msg = int(m["pid"]), m["msg"]
        at = self._time(m["ts"])
        if s := _SESSION.match(msg):
            self._forget_handles(pid)  # a pid the kernel gave again starts with none
            if s["what"] == "opened":
                self.sessions.pop(pid, None)
                self.sessions[pid] = (s["login"], s["address"])
                while len(self.sessions) > MAX_OPEN * 16:  # sessions whose close never came
                    del self.sessions[next(iter(self.sessions))]
                return [Event("login", at, pid, s["login"], s["address"])]
            self.sessions.pop(pid, None)
            return [Event("logout", at, pid, s["login"], s["address"])]
        login, address = self.sessions.get(pid, (None, None))
        if o := _OPEN.match(msg):
            self.reading.setdefault((pid, o["path"]), []).append(o["flags"])
            while sum(len(v) for v in self.reading.values()) > MAX_OPEN:
                del self.reading[next(iter(self.reading))]  # the oldest: opens never closed
            return []
        if c := _CLOSE.match(msg):
            nread, written = int(c["read"]), int(c["written"])
            flags = self._close_handle(pid, c["path"], reading=nread > 0)
            out = []
            # Bytes read are a read whatever the handle's flags said (a refused WRITE open
            # logs no close, and its flags must not turn the next read into a write).
            if nread or "READ" in flags:
                out.append(Event("read", at, pid, login, address, c["path"], nread))
            if written or "WRITE" in flags:
                out.append(Event("write", at, pid, login, address, c["path"], written))
            return out
        if r := _REMOVE.match(msg):
            return [Event("remove", at, pid, login, address, r["path"])]
        if r := _RENAME.match(msg):
            return [Event("rename", at, pid, login, address, r["new"], old=r["old"])]
        return []

    def _close_handle(self, pid: int, path: str, *, reading: bool) -> list[str]:
        """The flags of the handle a close line ends: one opened for reading if bytes were
        read, else the oldest."""
        handles = self.reading.get((pid, path), [])
        pick = next((i for i, f in enumerate(handles) if reading and "READ" in f.split(",")), 0)
        flags = handles.pop(pick).split(",") if handles else []
        if not handles:
            self.reading.pop((pid, path), None)
        return flags

    def _forget_handles(self, pid: int) -> None:
        for key in [k for k in self.reading if k[0] == pid]:
            del self.reading[key]

    def snapshot(self) -> dict[str, Any]:
        """The open sessions and files as JSON-ready data: saved with the cursor, so a
        session that began before a restart still names its login after it."""
        return {"sessions": {str(pid): list(v) for pid, v in self.sessions.items()},
                "reading": [[pid, path, flags] for (pid, path), flags in self.reading.items()]}

    def restore(self, data: dict[str, Any]) -> None:
        """Take back what :meth:`snapshot` gave."""
        self.sessions = {int(pid): (v[0], v[1]) for pid, v in data.get("sessions", {}).items()}
        self.reading = {(int(pid), path): list(flags) for pid, path, flags in data.get("reading", [])}

    def _time(self, stamp: str) -> dt.datetime:
        """A syslog time ("Nov 23 04:58:18", no year, local): the latest such moment that is
        not more than a day after *now* (a log read in January holds December's lines)."""
        month, day, clock = stamp.split()
        h, mi, s = (int(x) for x in clock.split(":"))
        for year in (self.now.year + 1, self.now.year, self.now.year - 1):
            try:
                at = dt.datetime(year, _MONTHS[month], int(day), h, mi, s, tzinfo=self.tz)
            except ValueError:  # 29 February in a year without it
                continue
            if at <= self.now + dt.timedelta(days=1):
                return at
        return dt.datetime(self.now.year, 1, 1, tzinfo=self.tz)
