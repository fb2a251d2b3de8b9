"""The zone interface: the one surface flows see, for local directories and SFTP alike.

Small on purpose (borgstore/restic style): list what is ready, read it, write
atomically without ever overwriting, remove, stat. Names are validated at this
boundary, and temporary names (``.part``, ``.tmp``, ``.filepart``, dot-files)
are never listed as ready.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from gateway.errors import GatewayError
from gateway.names import display_name as display_name  # re-exported: callers stay as they are
from gateway.names import name_bytes as name_bytes
from gateway.names import raw_name as raw_name
from gateway.streams import Readable

TEMP_SUFFIXES = (".part", ".tmp", ".filepart")
_BAD_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_NAME = 255  # bytes, as most file systems allow


class ZoneError(GatewayError):
    """A zone operation failed."""

    code = "E_ZONE"
    zone_level = False  # True: the zone as a whole is unusable (not just one file in it)


class ZoneUnavailable(ZoneError):
    """The zone as a whole cannot be used now (its directory, server or login)."""

    zone_level = True


class TransientZoneError(ZoneUnavailable):
    """The server could not be reached or the connection broke; trying again may work."""

    code = "E_ZONE_UNREACHABLE"


class NameTaken(ZoneError):
    """The target name exists already; the gateway never overwrites."""

    code = "E_NAME_TAKEN"


class InvalidName(ZoneError):
    """A file name that could escape the zone or is not a plain name."""

    code = "E_NAME"


class FileMissing(ZoneError):
    """The file is not there (any more): someone removed it after it was listed."""

    code = "E_GONE"


class FileChanged(ZoneError):
    """The file changed while it was being read: an upload still in progress."""

    code = "E_CHANGED"


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def check_component(name: str) -> str:
    """A name that may be *acted on* in a zone (stat, read, remove): it cannot leave the
    directory. Looser than :func:`validate_name` on purpose: a sender's odd name — a
    newline, a backslash, bytes that are not UTF-8 — is still a file that must be
    answered and removed, not a reason to stop the zone."""
    try:
        fits = len(name_bytes(name)) <= MAX_NAME
    except UnicodeEncodeError:  # a lone surrogate os.fsdecode never makes: no file's name
        fits = False
    if not fits or not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise InvalidName(f"not a file name in this zone: {display_name(name)!r}")
    return name


def validate_name(name: str) -> str:
    """A plain file name the gateway may *write*: no separators, no '..', no control or
    invisible formatting characters, valid UTF-8, at most 255 bytes."""
    if not is_plain(name):
        raise InvalidName(f"not a plain file name: {display_name(name)!r}")
    return name


def is_plain(name: str) -> bool:
    """Printable UTF-8 of at most 255 bytes with no separator or invisible formatting
    character (U+202E would make ``gpj.exe`` look like ``exe.jpg``)."""
    if not name or name in (".", "..") or _BAD_CHARS.search(name):
        return False
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a non-UTF-8 name
        return False
    return len(raw) <= MAX_NAME and all(
        unicodedata.category(c) not in ("Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp") for c in name)


@dataclass(frozen=True)
class Entry:
    name: str
    size: int  # bytes
    mtime: float  # seconds since the epoch
    refused: str | None = None  # why this entry is never read: symlink | special


def snapshot_changed(before: tuple[int, ...], after: tuple[int, ...], read: int) -> bool:
    """Whether a file's (size, mtime, ...) identity moved while it was read, or the bytes
    read differ from its size — the mark of a writer that had not finished."""
    return before != after or read != before[0]


class Zone(Protocol):
    """A drop zone. ``key`` is the config key path naming it (e.g. ``bank.outgoing``)."""

    key: str

    def describe(self) -> str: ...

    def list_ready(self) -> list[Entry]:
        """Complete, regular files (no temp names), oldest first — plus, marked ``refused``,
        entries that are never read (symlinks, FIFOs, devices), so they can be reported."""
        ...

    def list_all(self) -> list[Entry]:
        """Every regular file, temporary names included — what a purge must remove."""
        ...

    def open_read(self, name: str) -> AbstractContextManager[Readable]: ...

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        """Write under a temporary name, then move into place; NameTaken if *name* exists."""
        ...

    def remove(self, name: str) -> None: ...

    def stat(self, name: str) -> Entry | None: ...

    def close(self) -> None:
        """Let go of what the zone holds open (an SFTP connection); it reopens when used."""
        ...


def iter_chunks(src: Readable, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := src.read(size):
        yield chunk
