"""The audit log read on from a destination's cursor: every line checked against the chain
as it is read (a broken chain is never forwarded, nor silently skipped), the entries the
destination does not want passed over, at most one batch held in memory."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gateway.audit import GENESIS, check_line
from gateway.errors import GatewayError

MAX_LINE = 1024 * 1024  # far above any entry the log admits; a longer "line" is damage
TAIL_WINDOW = 65536


class ChainBroken(GatewayError):
    """The log does not continue the chain this destination was sent: an entry damaged,
    removed or altered, or the log replaced. Forwarding to it stops until someone looks."""

    code = "E_AUDIT_CHAIN"

    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(f"audit log entry {seq}: {problem}; forwarding stopped (run "
                         "`gateway audit verify`)")
        self.seq = seq


@dataclass(frozen=True)
class Position:
    """An entry of the log: its seq and hash, and the byte offset just after its line
    (seq 0: before the first entry)."""

    seq: int = 0
    hash: str = GENESIS
    offset: int = 0


@dataclass
class Batch:
    """What to send next: the wanted entries' lines (newline included) and parsed forms, and
    where the cursor goes once they are confirmed — past any entry passed over after them."""

    start: Position
    end: Position
    lines: list[bytes] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    at_end: bool = False  # the read reached the end of the log (nothing more yet)
    broken: ChainBroken | None = None  # the line after ``end`` breaks the chain


def read_batch(path: Path, start: Position, *, wants: Callable[[str], bool], size: int,
               scan_limit: int = 10_000) -> Batch:
    """Up to *size* wanted entries after *start*, reading at most *scan_limit* lines (so a
    long run of entries passed over moves the cursor in steps). A last line without its
    newline is an entry being written: the read ends before it. The line that does not
    continue the chain ends the batch with :attr:`Batch.broken` set: the sound entries
    before it still go out, nothing after it does.

    The read holds a shared ``flock`` on the log (the writer's is exclusive, from its write
    until its fsync): an entry is read only once it is durable — one the writer then cut
    again, its fsync having failed, is never sent."""
    batch = Batch(start=start, end=start)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        batch.at_end = True
        return batch
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # released when the file closes
        fh.seek(start.offset)
        pos, scanned = start, 0
        while len(batch.lines) < size and scanned < scan_limit:
            line = fh.readline(MAX_LINE)
            if not line or (not line.endswith(b"\n") and len(line) < MAX_LINE):
                batch.at_end = True
                break
            problem, entry = check_line(line, pos.seq + 1, pos.hash)
            if problem:
                batch.broken = ChainBroken(pos.seq + 1, problem)
                break
            pos = Position(entry["seq"], entry["hash"], pos.offset + len(line))
            scanned += 1
            if wants(str(entry["event"])):
                batch.lines.append(line)
                batch.entries.append(entry)
        batch.end = pos
    return batch


def locate(path: Path, seq: int, hash_: str, offset: int) -> Position:
    """The cursor's entry in the log: at *offset* when the line ending there is entry *seq*
    with hash *hash_* (one read), else found by reading the chain from the start. Raises
    :class:`ChainBroken` when the log no longer holds that entry as it was sent."""
    if seq == 0:
        return Position()
    if offset > 0 and _entry_before(path, offset) == (seq, hash_):
        return Position(seq, hash_, offset)
    pos = Position()
    with _open(path, seq) as fh:
        while pos.seq < seq:
            line = fh.readline(MAX_LINE)
            if not line.endswith(b"\n"):
                raise ChainBroken(pos.seq + 1, f"the log ends before entry {seq}, the last one "
                                  "forwarded (truncated or replaced)")
            problem, entry = check_line(line, pos.seq + 1, pos.hash)
            if problem:
                raise ChainBroken(pos.seq + 1, problem)
            pos = Position(entry["seq"], entry["hash"], pos.offset + len(line))
    if pos.hash != hash_:
        raise ChainBroken(seq, "differs from the entry forwarded under that number (the log "
                          "was replaced)")
    return pos


def _open(path: Path, seq: int) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ChainBroken(1, f"the log is gone, but entries up to {seq} were forwarded") from None


def _entry_before(path: Path, offset: int) -> tuple[int, str] | None:
    """(seq, hash) of the sound line that ends exactly at *offset*, or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        start = max(0, offset - TAIL_WINDOW)
        data = os.pread(fd, offset - start, start)
    finally:
        os.close(fd)
    if len(data) != offset - start or not data.endswith(b"\n"):
        return None
    cut = data[:-1].rfind(b"\n")
    if cut < 0 and start > 0:
        return None
    line = data[cut + 1:]
    entry = _parse(line)
    if entry is None:
        return None
    problem, _ = check_line(line, entry["seq"], entry["prev"])
    return None if problem else (entry["seq"], entry["hash"])


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(entry, dict) and isinstance(entry.get("seq"), int) and "prev" in entry
    return entry if ok else None


def last_seq(path: Path) -> int:
    """The seq of the log's last complete entry (0 for none): what the backlog counts to."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_WINDOW)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    if end < 0:
        return 0
    entry = _parse(data[data.rfind(b"\n", 0, end) + 1:end + 1])
    return int(entry["seq"]) if entry else 0
