"""A zone that is a local directory (served to its party by the host's OpenSSH).

Symlinks are never followed (``O_NOFOLLOW``; listed symlinks are skipped), every
name is checked to stay inside the directory, and writes go to a private temp
name in the same directory, are fsynced, then hard-linked into place — which
fails if the name exists, so nothing is ever overwritten — and the directory is
fsynced so the new name survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from gateway.transfer.base import Entry, NameTaken, ZoneError, is_temporary, iter_chunks, validate_name

FILE_MODE = 0o644  # contents are OpenPGP ciphertext; the party's SFTP user must read them


class LocalZone:
    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self.path = Path(path)

    def describe(self) -> str:
        return f"local:{self.path}"

    def _p(self, name: str) -> Path:
        p = self.path / validate_name(name)
        if p.parent != self.path:  # pragma: no cover - validate_name already forbids this
            raise ZoneError(f"{name!r} is outside zone {self.key}")
        return p

    def list_ready(self) -> list[Entry]:
        return [e for e in self.list_all() if not is_temporary(e.name)]

    def list_all(self) -> list[Entry]:
        try:
            entries = []
            with os.scandir(self.path) as it:
                for e in it:
                    if e.is_symlink() or not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                    entries.append(Entry(e.name, st.st_size, st.st_mtime))
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot list {self.path}: {exc.strerror}") from exc
        return sorted(entries, key=lambda x: (x.mtime, x.name))

    @contextlib.contextmanager
    def open_read(self, name: str) -> Iterator[BinaryIO]:
        try:
            fd = os.open(self._p(name), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot open {name!r}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ZoneError(f"{self.key}: {name!r} is not a regular file")
            yield fh

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        final = self._p(name)
        if final.exists() or final.is_symlink():
            raise NameTaken(f"{self.key}: {name} exists already")
        tmp = self.path / f".{name[:200]}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                for chunk in iter_chunks(src):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, FILE_MODE)  # noqa: PTH101 - same call as os.open above, umask-proof
            try:
                os.link(tmp, final)  # atomic, and refuses to replace an existing name
            except FileExistsError:
                raise NameTaken(f"{self.key}: {name} exists already") from None
            _fsync_dir(self.path)
            st = final.stat()
            return Entry(name, st.st_size, st.st_mtime)
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot write {name}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def watch(self, wake: Callable[[str], None]) -> BaseObserver:
        """Call ``wake(key)`` when a file is complete here: closed after writing, or moved
        into place — never on create, when an upload has only just begun — or removed (an
        agency fetching a slice). The caller stops the returned observer."""
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

        observer = Observer()
        observer.schedule(Handler(), directory, recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def remove(self, name: str) -> None:
        try:
            self._p(name).unlink()
        except FileNotFoundError:
            return  # already gone: removal is idempotent
        except OSError as exc:
            raise ZoneError(f"{self.key}: cannot remove {name}: {exc.strerror}") from exc
        _fsync_dir(self.path)

    def stat(self, name: str) -> Entry | None:
        try:
            st = self._p(name).lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return Entry(name, st.st_size, st.st_mtime)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
