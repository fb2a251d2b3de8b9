"""The zone interface: the one surface flows see, for local directories and SFTP alike.

Small on purpose (borgstore/restic style): list what is ready, read it, write
atomically without ever overwriting, remove, stat. Names are validated at this
boundary, and temporary names (``.part``, ``.tmp``, ``.filepart``, dot-files)
are never listed as ready.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from gateway.errors import GatewayError

TEMP_SUFFIXES = (".part", ".tmp", ".filepart")
_BAD_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_NAME = 255  # bytes, as most file systems allow


class ZoneError(GatewayError):
    """A zone operation failed."""

    code = "E_ZONE"


class NameTaken(ZoneError):
    """The target name exists already; the gateway never overwrites."""

    code = "E_NAME_TAKEN"


class InvalidName(ZoneError):
    """A file name that could escape the zone or is not a plain name."""

    code = "E_NAME"


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def validate_name(name: str) -> str:
    """A plain file name inside the zone: no separators, no '..', no control characters."""
    if (not name or name in (".", "..") or _BAD_CHARS.search(name)
            or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME):
        raise InvalidName(f"not a plain file name: {name!r}")
    return name


@dataclass(frozen=True)
class Entry:
    name: str
    size: int  # bytes
    mtime: float  # seconds since the epoch


class Zone(Protocol):
    """A drop zone. ``key`` is the config key path naming it (e.g. ``bank.outgoing``)."""

    key: str

    def describe(self) -> str: ...

    def list_ready(self) -> list[Entry]:
        """Complete, regular files (no temp names, no symlinks), oldest first."""
        ...

    def list_all(self) -> list[Entry]:
        """Every regular file, temporary names included — what a purge must remove."""
        ...

    def open_read(self, name: str) -> AbstractContextManager[BinaryIO]: ...

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        """Write under a temporary name, then move into place; NameTaken if *name* exists."""
        ...

    def remove(self, name: str) -> None: ...

    def stat(self, name: str) -> Entry | None: ...


def iter_chunks(src: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := src.read(size):
        yield chunk
