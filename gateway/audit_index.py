"""An index of the audit log for the console (docs/security-team.md): filter and page 10⁶ entries fast.

The log stays the record; the index is a cache beside it (SQLite, one row per entry:
its byte offset and the fields people filter on) that can be deleted at any time and
is rebuilt from the log. It is brought up to date before each query by reading only
what was appended since; each new entry is checked against the chain as it is
indexed (its bytes, sequence number, link and hash, as :func:`audit.verify` checks
them), so the index knows the first broken entry without re-reading the log. If the
log no longer starts the way the index remembers it (rewritten, truncated, replaced),
the index is rebuilt from the first byte. A page is read from the log itself at the
offsets the index gives, and each entry read must still carry the hash the index
recorded — an entry edited since it was indexed is shown as broken, never silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit import GENESIS, Filter, Page, check_line

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    ts INTEGER NOT NULL, event TEXT NOT NULL, actor TEXT, agency TEXT, file TEXT, batch_id TEXT,
    hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_event ON entries (event, seq);
CREATE INDEX IF NOT EXISTS entries_agency ON entries (agency, seq);
CREATE INDEX IF NOT EXISTS entries_actor ON entries (actor, seq);
CREATE INDEX IF NOT EXISTS entries_file ON entries (file, seq);
CREATE INDEX IF NOT EXISTS entries_batch ON entries (batch_id, seq);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
BATCH = 5000  # entries inserted per transaction while catching up


@dataclass(frozen=True)
class State:
    entries: int  # indexed
    broken_seq: int | None  # the first entry that does not verify, if any
    problem: str


class AuditIndex:
    """The index, safe to share between the console's worker threads.

    It keeps one SQLite connection, which any thread may use (``check_same_thread=False``)
    but whose transactions are not per thread: two refreshes at once would begin a
    transaction inside the other's ("cannot start a transaction within a transaction")
    and read each other's half-indexed rows — an intact chain recorded as broken. So one
    call at a time holds the connection; an export's entries take it for each slice only,
    so a long export lets the other pages in between."""

    def __init__(self, log_path: Path, index_path: Path) -> None:
        self.log_path, self.path = Path(log_path), Path(index_path)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost tail is re-read
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- keeping up with the log ----------------------------------------------------------

    def _meta(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set(self, **values: object) -> None:
        self.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO "
                            "UPDATE SET value = excluded.value",
                            [(k, str(v)) for k, v in values.items()])

    def refresh(self) -> State:
        """Index what was appended since the last call (everything, the first time)."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> State:
        if not self.log_path.exists():
            self._reset()
            return self.state()
        with self.log_path.open("rb") as fh:
            if not self._same_start(fh):
                self._reset()
            offset = int(self._meta("offset", "0"))
            size = os.fstat(fh.fileno()).st_size
            if offset > size:  # truncated below what we indexed
                self._reset()
                offset = 0
            fh.seek(offset)
            seq, prev = int(self._meta("seq", "0")), self._meta("hash", GENESIS)
            broken = self._meta("broken_seq")
            rows: list[tuple[Any, ...]] = []
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # an entry being written: next time
                seq += 1
                problem, entry = ("", {}) if broken else check_line(line, seq, prev)
                if problem:
                    broken = str(seq)
                    self._set(broken_seq=seq, problem=problem)
                if not entry:
                    entry = _lenient(line)
                rows.append(_row(seq, offset, len(line), entry))
                prev = str(entry.get("hash", ""))
                offset += len(line)
                if len(rows) >= BATCH:
                    self._insert(rows, offset, seq, prev)
            self._insert(rows, offset, seq, prev)
        return self.state()

    def _same_start(self, fh: Any) -> bool:
        """Whether the log still holds the first and the last entry indexed where the index
        found them (else it was replaced, cut or rewritten: the index starts over)."""
        for (offset, length, digest) in self.db.execute(
                "SELECT offset, length, hash FROM entries WHERE seq IN "
                "(1, (SELECT max(seq) FROM entries))").fetchall():
            fh.seek(offset)
            if _lenient(fh.read(length)).get("hash") != digest:
                fh.seek(0)
                return False
        fh.seek(0)
        return True

    def _insert(self, rows: list[tuple[Any, ...]], offset: int, seq: int, prev: str) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            self._set(offset=offset, seq=seq, hash=prev)
        rows.clear()

    def _reset(self) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM entries")
            self.db.execute("DELETE FROM meta")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def state(self) -> State:
        with self._lock:
            broken = self._meta("broken_seq")
            return State(int(self._meta("seq", "0")), int(broken) if broken else None,
                         self._meta("problem"))

    # --- queries ---------------------------------------------------------------------------

    def page(self, flt: Filter, *, before: int | None = None, size: int = 50) -> Page:
        """What :func:`audit.page` gives, from the index: newest first, older than *before*."""
        where, params = _where(flt)
        with self._lock:
            matching = self.db.execute(f"SELECT count(*) FROM entries WHERE {where}",  # noqa: S608 — where: our clauses, ? marks
                                       params).fetchone()[0]
            if before is not None:
                where, params = f"{where} AND seq < ?", [*params, before]
            found = self.db.execute(
                f"SELECT seq, offset, length, hash FROM entries WHERE {where} "  # noqa: S608 — where: our clauses, ? marks
                "ORDER BY seq DESC LIMIT ?", [*params, size + 1]).fetchall()
        with self.log_path.open("rb") as fh:
            rows = [_read(fh, offset, length, digest, seq)
                    for seq, offset, length, digest in found[:size]]
        return Page(rows, matching, found[size - 1][0] if len(found) > size else None)

    def entries(self, flt: Filter) -> Iterator[dict[str, Any]]:
        """Matching entries in log order, read from the log at the indexed offsets."""
        where, params = _where(flt)
        last = 0
        while True:  # in slices: memory stays flat however many entries match
            with self._lock:
                found = self.db.execute(
                    f"SELECT seq, offset, length, hash FROM entries WHERE {where} AND seq > ? "  # noqa: S608 — where: our clauses, ? marks
                    "ORDER BY seq LIMIT 1000", [*params, last]).fetchall()
            if not found:
                return
            with self.log_path.open("rb") as fh:  # once per slice, not once per entry
                read = [_read(fh, offset, length, digest, seq) for seq, offset, length, digest in found]
            yield from read
            last = found[-1][0]


def _read(fh: Any, offset: int, length: int, digest: str, seq: int) -> dict[str, Any]:
    """The entry at *offset*, if it still carries the hash the index recorded."""
    fh.seek(offset)
    entry = _lenient(fh.read(length))
    if entry.get("hash") != digest or entry.get("seq") != seq:
        return {"seq": seq, "ts": entry.get("ts", ""), "event": "audit.changed",
                "actor": "", "problem": "this entry changed after it was indexed"}
    return entry


def _lenient(line: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return {}
    return entry if isinstance(entry, dict) else {}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _us(t: dt.datetime) -> int:
    """µs since the epoch: exact, as :meth:`Filter.matches` compares datetimes."""
    return (t - _EPOCH) // _US


def _row(seq: int, offset: int, length: int, e: dict[str, Any]) -> tuple[Any, ...]:
    try:
        ts = _us(dt.datetime.fromisoformat(str(e.get("ts", "")).replace("Z", "+00:00")))
    except (ValueError, TypeError):
        ts = 0
    return (seq, offset, length, ts, str(e.get("event", "")), e.get("actor"), e.get("agency"),
            e.get("file"), e.get("batch_id"), str(e.get("hash", "")))


def _where(flt: Filter) -> tuple[str, list[str | int]]:
    """The filter as SQL over the index; the same meaning as :meth:`Filter.matches`."""
    parts: list[str] = ["1=1"]
    params: list[str | int] = []
    if flt.event:
        if flt.event.endswith("."):
            parts.append("event >= ? AND event < ?")  # a family: every name with the prefix
            params += [flt.event, flt.event[:-1] + "/"]
        else:
            parts.append("event = ?")
            params.append(flt.event)
    for column, value in (("agency", flt.agency), ("actor", flt.actor), ("file", flt.file),
                          ("batch_id", flt.batch_id)):
        if value:
            parts.append(f"{column} = ?")
            params.append(value)
    if flt.since:
        parts.append("ts >= ?")
        params.append(_us(flt.since))
    if flt.until:
        parts.append("ts < ?")
        params.append(_us(flt.until))
    return " AND ".join(parts), params
