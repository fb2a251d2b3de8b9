"""Reading a growing, rotating log file exactly once (SPEC §14).

rsyslog writes internal-sftp's lines to a file; logrotate renames it (``sshd.log`` →
``sshd.log.1``) and rsyslog opens a new one. A cursor — the file's inode and the
offset after the last whole line — is kept in the ledger. When the file at the
configured path is no longer the inode the cursor names, the rest of the old file
is read first from wherever rotation put it (a file beside it with that inode),
then the new file from its start: nothing is lost and nothing read twice. A file
cut shorter than the offset in place (logrotate's ``copytruncate``) is read from its
start again; what was written between the last read and the cut is lost, which is
why the README asks for rotation by renaming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_READ = 8 * 1024 * 1024  # bytes read at a time: memory stays bounded however far behind


@dataclass(frozen=True)
class Cursor:
    inode: int | None
    offset: int


def read_new(path: Path, cursor: Cursor, *, limit: int = MAX_READ) -> tuple[list[str], Cursor]:
    """Whole lines written since *cursor* (at most about *limit* bytes of them) and the
    cursor after them. Call again while it returns lines."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return [], cursor  # between rotation and the new file: nothing yet
    if cursor.inode is not None and st.st_ino != cursor.inode:
        old = _rotated(path, cursor.inode)
        if old is not None:
            lines, offset = _lines(old, cursor.offset, limit, final=True)
            if lines or offset != cursor.offset:
                return lines, Cursor(cursor.inode, offset)
        return read_new(path, Cursor(st.st_ino, 0), limit=limit)  # the old one is done
    if st.st_size < cursor.offset:  # cut in place
        cursor = Cursor(st.st_ino, 0)
    lines, offset = _lines(path, cursor.offset, limit)
    return lines, Cursor(st.st_ino, offset)


def _rotated(path: Path, inode: int) -> Path | None:
    """The file beside *path* that holds inode *inode* (``.1``, ``-20261123``, …), if any."""
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(path.name) and p != path]
    except OSError:
        return None
    for p in sorted(candidates):
        try:
            if p.stat().st_ino == inode and not p.name.endswith(".gz"):
                return p
        except OSError:
            continue
    return None


def _lines(path: Path, offset: int, limit: int, *, final: bool = False) -> tuple[list[str], int]:
    """Whole lines of *path* from *offset*; a last line without its end waits, unless the
    file is *final* (rotated away: nothing more will be added to it)."""
    with path.open("rb") as fh:
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
    text = data.decode("utf-8", "replace")
    return text.splitlines(), offset + len(data)


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
