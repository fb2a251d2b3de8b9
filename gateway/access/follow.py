"""Reading a growing, rotating log file exactly once (docs/security-team.md).

rsyslog writes internal-sftp's lines to a file; logrotate renames it (``sshd.log`` →
``sshd.log.1``) and rsyslog opens a new one. A cursor — the file's inode and the
offset after the last whole line — is kept in the ledger. When the file at the
configured path is no longer the inode the cursor names, the rest of the old file
is read first from wherever rotation put it (a file beside it with that inode),
then the new file from its start: nothing is lost and nothing read twice. A file
cut in place (logrotate's ``copytruncate``) is read from its start again — noticed
when the file is shorter than the offset, and also when it has regrown past the offset
before the next read: the cursor keeps a fingerprint of the file's first bytes
(:data:`HEAD` of them, or all there were), and a file whose start no longer matches is
a new file. What was written between the last read and the cut is lost, which is why
docs/operations.md asks for rotation by renaming.

Each line comes with the offset just after it, so a caller can save the cursor after
any line it has acted on: a restart never acts on a line twice.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_READ = 8 * 1024 * 1024  # bytes read at a time: memory stays bounded however far behind
HEAD = 1024  # bytes of a file's start that identify it (syslog lines begin with a time)


@dataclass(frozen=True)
class Cursor:
    inode: int | None
    offset: int
    head: str | None = None  # "<length>:<sha256>" of the file's first bytes when last read


@dataclass(frozen=True)
class Line:
    text: str  # without its line end; bytes that are not UTF-8 as surrogates (surrogateescape)
    end: int  # the offset just after this line: where a cursor saved after it points


def read_new(path: Path, cursor: Cursor, *, limit: int = MAX_READ) -> tuple[list[Line], Cursor]:
    """Whole lines written since *cursor* (at most about *limit* bytes of them) and the
    cursor after them. Call again while it returns lines. A path that is not a regular
    file (a FIFO would block the pass, and SIGTERM with it) is an OSError, as is one that
    cannot be read: the caller says so; nothing is skipped."""
    try:
        fh = _open_regular(path)
    except FileNotFoundError:
        return [], cursor  # between rotation and the new file: nothing yet
    with fh:
        st = os.fstat(fh.fileno())
        if cursor.inode is not None and st.st_ino != cursor.inode:
            old = _rotated(path, cursor.inode)
            if old is not None:
                with old:
                    lines, offset = _lines(old, cursor.offset, limit, final=True)
                if lines or offset != cursor.offset:
                    return lines, dataclasses.replace(cursor, offset=offset)
            cursor = Cursor(st.st_ino, 0)  # the old one is done
        head = os.pread(fh.fileno(), HEAD, 0)
        if st.st_size < cursor.offset or not _same_start(cursor.head, head):  # cut in place
            cursor = Cursor(st.st_ino, 0)
        lines, offset = _lines(fh, cursor.offset, limit)
    return lines, Cursor(st.st_ino, offset, _fingerprint(head))


def _open_regular(path: Path) -> BinaryIO:
    """*path* opened for reading without blocking, if it is a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def _fingerprint(head: bytes) -> str:
    return f"{len(head)}:{hashlib.sha256(head).hexdigest()}"


def _same_start(saved: str | None, head: bytes) -> bool:
    """Whether a file whose first bytes are *head* is the one the *saved* fingerprint was
    taken of (it may have grown since: only the bytes fingerprinted then are compared)."""
    if saved is None:
        return True  # a cursor saved before fingerprints: trust the inode and size
    length, _, _digest = saved.partition(":")
    if not length.isdigit() or int(length) > len(head):
        return False
    return _fingerprint(head[:int(length)]) == saved


def _rotated(path: Path, inode: int) -> BinaryIO | None:
    """The file beside *path* that holds inode *inode* (``.1``, ``-20261123``, …), open."""
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(path.name) and p != path and not p.name.endswith(".gz")]
    except OSError:
        return None
    for p in sorted(candidates):
        try:
            if p.lstat().st_ino == inode:
                return _open_regular(p)
        except OSError:
            continue
    return None


def _lines(fh: BinaryIO, offset: int, limit: int, *, final: bool = False) -> tuple[list[Line], int]:
    """Whole lines of *fh* from *offset*; a last line without its end waits, unless the
    file is *final* (rotated away: nothing more will be added to it)."""
    fh.seek(offset)
    data = fh.read(limit)
    if len(data) == limit:  # stop at the last line end within the limit
        end = data.rfind(b"\n") + 1
        data = data[:end] if end else data[:_char_end(data)]  # a huge line: in pieces
    elif not final or not data.endswith(b"\n"):
        end = data.rfind(b"\n") + 1
        if final and data and end < len(data):
            end = len(data)  # a rotated file's unfinished last line is all there will be
        data = data[:end]
    lines, at = [], offset
    for raw in data.splitlines(keepends=True):  # split on bytes: \x1c or U+2028 in a
        at += len(raw)                            # logged name does not cut its line
        lines.append(Line(raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape"), at))
    return lines, offset + len(data)


def _char_end(data: bytes) -> int:
    """The end of the last whole UTF-8 character in *data* (a piece of a line must decode)."""
    end = len(data)
    while end > 0 and data[end - 1] & 0xC0 == 0x80:
        end -= 1  # continuation bytes
    if end > 0 and data[end - 1] >= 0xC0:
        need = 2 if data[end - 1] < 0xE0 else 3 if data[end - 1] < 0xF0 else 4
        if len(data) - end + 1 < need:
            end -= 1  # its lead byte: the character is not whole yet
        else:
            end = len(data)
    return end or len(data)


def source(node: str, path: Path) -> str:
    """The ledger key of a node's cursor on a log file."""
    return f"{node}:{os.path.realpath(path)}"[:300]
