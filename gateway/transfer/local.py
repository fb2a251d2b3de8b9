"""A zone that is a local directory (served to its party by the host's OpenSSH).

Symlinks are never followed (``O_NOFOLLOW``; a listed symlink, FIFO or device is
reported as refused, never opened), every name is checked to stay inside the
directory, and writes go to a private temp name in the same directory, are
fsynced, then hard-linked into place — which fails if the name exists, so
nothing is ever overwritten — and the directory is fsynced so the new name
survives a power cut. Placed files get the zone's ``file_mode``.

A file is ready only once it has been left alone for ``settle`` seconds: its
newest change — ``max(mtime, ctime)``; ctime cannot be set back by the sender,
so a copy that preserves an old mtime still counts as fresh — lies that long
ago. A file appended in several sessions is therefore never taken half-written,
and a reader that sees the file change under it (:class:`FileChanged`) gives it
back.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from gateway.streams import Readable
from gateway.transfer.base import (
    Entry,
    FileChanged,
    FileMissing,
    NameTaken,
    ZoneError,
    ZoneUnavailable,
    check_component,
    display_name,
    is_temporary,
    iter_chunks,
    snapshot_changed,
    validate_name,
)

DEFAULT_FILE_MODE = 0o640  # ciphertext; the party's SFTP user (same group) must read it
_STALE_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")  # our own write_atomic temporaries


class LocalZone:
    def __init__(self, key: str, path: Path, *, settle: float = 0.0,
                 file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.key = key
        self.path = Path(path)
        self.settle = settle  # seconds a file must be left unchanged before it is ready
        self.file_mode = file_mode
        self.next_ready_at: float | None = None  # epoch s when an unsettled file may be ready
        self.settling: dict[str, float] = {}  # the last listing's unsettled files: when ready

    def describe(self) -> str:
        return f"local:{self.path}"

    def _p(self, name: str) -> Path:
        p = self.path / check_component(name)
        if p.parent != self.path:  # pragma: no cover - check_component already forbids this
            raise ZoneError(f"{display_name(name)!r} is outside zone {self.key}")
        return p

    def _scan(self) -> Iterator[tuple[str, os.stat_result]]:
        try:
            with os.scandir(self.path) as it:
                found = list(it)
        except OSError as exc:
            raise ZoneUnavailable(f"{self.key}: cannot list {self.path}: {exc.strerror}") from exc
        for e in found:
            try:
                yield e.name, e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing: not there any more

    def list_ready(self) -> list[Entry]:
        now = time.time()
        ready: list[Entry] = []
        waiting: dict[str, float] = {}
        for name, st in self._scan():
            if is_temporary(name) or stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special"
                ready.append(Entry(name, 0, st.st_mtime, refused=kind))
                continue
            settled_at = max(st.st_mtime, st.st_ctime) + self.settle
            if settled_at > now:
                waiting[name] = settled_at
                continue
            ready.append(Entry(name, st.st_size, st.st_mtime))
        self.settling = waiting
        self.next_ready_at = min(waiting.values(), default=None)
        return sorted(ready, key=lambda x: (x.mtime, x.name))

    def list_all(self) -> list[Entry]:
        entries = [Entry(name, st.st_size, st.st_mtime) for name, st in self._scan()
                   if stat.S_ISREG(st.st_mode)]
        return sorted(entries, key=lambda x: (x.mtime, x.name))

    @contextlib.contextmanager
    def open_read(self, name: str) -> Iterator[Readable]:
        try:
            fd = os.open(self._p(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise FileMissing(f"{self.key}: {display_name(name)!r} is gone") from exc
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot open {display_name(name)!r}: "
                            f"{exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ZoneError(f"{self.key}: {display_name(name)!r} is not a regular file")
            yield _StableReader(self.key, name, fh)

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        final = self.path / validate_name(name)
        self._remove_stale_temporaries(name)  # first: a kill after the link leaves one too
        if final.exists() or final.is_symlink():
            raise NameTaken(f"{self.key}: {name} exists already")
        tmp = self.path / f".{name[:200]}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                for chunk in iter_chunks(src):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, self.file_mode)  # noqa: PTH101 - exact mode, whatever the umask
            try:
                os.link(tmp, final)  # atomic, and refuses to replace an existing name
            except FileExistsError:
                raise NameTaken(f"{self.key}: {name} exists already") from None
            fsync_dir(self.path)
            st = final.stat()
            return Entry(name, st.st_size, st.st_mtime)
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot write {name}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _remove_stale_temporaries(self, name: str) -> None:
        """A run killed mid-write leaves ``.<name>.<hex>.part``; the retry clears it so no
        partial file stays visible to the party."""
        prefix = f".{name[:200]}."
        for other, st in self._scan():
            if other.startswith(prefix) and _STALE_TEMP.match(other) and stat.S_ISREG(st.st_mode):
                with contextlib.suppress(FileNotFoundError):
                    (self.path / other).unlink()

    def watch(self, wake: Callable[[str], None]) -> BaseObserver:
        """Call ``wake(key)`` when a file is complete here: closed after writing, or moved
        into place — never on the create of an upload that has only just begun — or removed
        (an agency fetching a slice). The caller stops the returned observer.

        A file moved in from another directory (``mv`` from a drafts folder, another
        node's shared filesystem) arrives as a *create* with its content already there —
        inotify has no "moved from" half to pair it with; that one wakes the loop too."""
        key = self.key
        directory = str(self.path)

        class Handler(FileSystemEventHandler):
            def on_closed(self, event: FileSystemEvent) -> None:
                wake(key)

            def on_moved(self, event: FileSystemEvent) -> None:
                if Path(os.fsdecode(event.dest_path)).parent == Path(directory):
                    wake(key)

            def on_deleted(self, event: FileSystemEvent) -> None:
                wake(key)

            def on_created(self, event: FileSystemEvent) -> None:
                try:
                    moved_in = Path(os.fsdecode(event.src_path)).stat().st_size > 0  # not a fresh upload
                except OSError:
                    return
                if moved_in and not event.is_directory:
                    wake(key)

        observer = Observer()
        observer.schedule(Handler(), directory, recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def close(self) -> None:
        """A directory holds nothing open between calls."""

    def remove(self, name: str) -> None:
        try:
            self._p(name).unlink()
        except FileNotFoundError:
            return  # already gone: removal is idempotent
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot remove {name}: {exc.strerror}") from exc
        fsync_dir(self.path)

    def stat(self, name: str) -> Entry | None:
        try:
            st = self._p(name).lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return Entry(name, st.st_size, st.st_mtime)


class _StableReader:
    """Reads a zone file and, at its end, checks nobody was still writing it."""

    def __init__(self, key: str, name: str, fh: BinaryIO) -> None:
        self._key, self._name, self._fh = key, name, fh
        self._before = _identity(fh)
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._read += len(data)
        if not data and snapshot_changed(self._before, _identity(self._fh), self._read):
            raise FileChanged(f"{self._key}: {display_name(self._name)!r} changed while it was "
                              "read (still being uploaded?); it is taken once it has settled")
        return data


def _identity(fh: BinaryIO) -> tuple[int, ...]:
    st = os.fstat(fh.fileno())
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in *path* durable (the directory's entry, not the file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
