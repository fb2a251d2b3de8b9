"""Where the kit keeps things on disk, and the one way it writes a file.

``state_dir`` (0700) holds ``kit.db``, ``files/`` (the ciphertext of every slice and
manifest received), ``receipts/`` (the gateway's receipts as received), ``outgoing/``
(documents sealed for the gateway, kept until uploaded), ``attestations/`` (the agency's
own signed evidence) and ``tmp/`` (downloads and seals in progress). The optional
``store`` holds decrypted slices and nothing else.

Every file is written under a temporary name in its directory, fsynced, then renamed
into place and the directory fsynced: after a crash a name is either absent or whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.errors import ConfigError, UsageError
from gateway.streams import Readable
from gateway.transfer.local import fsync_dir as fsync_dir  # the local medium's one helper

CHUNK = 256 * 1024


class StateDir:
    """The directories of ``state_dir``, made (0700) on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("", "files", "receipts", "outgoing", "attestations", "tmp"):
            (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        root.chmod(0o700)

    def held(self, name: str) -> Path:
        return self.root / "files" / name

    def receipt(self, name: str, sha256: str) -> Path:
        """By its hash: the inbox name is the sender's, of any length and spelling."""
        return self.root / "receipts" / f"{sha256}.receipt.json.pgp"

    def outgoing(self, name: str) -> Path:
        return self.root / "outgoing" / name

    def attestation(self, name: str) -> Path:
        return self.root / "attestations" / name

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def clear_tmp(self) -> None:
        """What an interrupted run left half-written: nothing in tmp/ is ever relied on."""
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)


def part_name(target: Path) -> Path:
    """The temporary name :func:`atomic` writes *target* under, beside it."""
    return target.parent / f".{target.name[:100]}.{secrets.token_hex(4)}.part"


@contextlib.contextmanager
def atomic(target: Path, *, mode: int = 0o600, overwrite: bool = True,
           tmp_dir: Path | None = None, part: Path | None = None) -> Iterator[BinaryIO]:
    """Write *target* whole or not at all: a private temp name (*part*, or one in
    *tmp_dir*, default the target's directory — the same file system either way), fsync,
    rename, fsync the directory. *overwrite* False: a target that exists is refused,
    before and after."""
    if not overwrite and (target.exists() or target.is_symlink()):
        raise UsageError(f"{target} already exists; not overwriting it")
    tmp = part or (tmp_dir or target.parent) / f".{target.name[:100]}.{secrets.token_hex(4)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            tmp.replace(target)
        else:
            os.link(tmp, target)  # fails if the name appeared meanwhile
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def copy_hashing(src: Readable, dst: BinaryIO) -> str:
    """Copy *src* to *dst*; the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def destroy(path: Path) -> bool:
    """Remove *path* (overwritten first: a decrypted copy should not linger in free blocks
    where the file system keeps data in place); whether a regular file was there.

    Only a regular file is ever opened, and never through a symlink: a symlink found in
    its place is removed itself (its target untouched) and counts as not there."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        fd = -1  # not writable (its mode changed): removed all the same
    if fd >= 0:
        with contextlib.suppress(OSError), os.fdopen(fd, "wb") as fh:
            fst = os.fstat(fd)
            if stat.S_ISREG(fst.st_mode) and (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
                remaining = fst.st_size
                zero = bytes(min(CHUNK, max(remaining, 1)))
                while remaining > 0:
                    n = min(remaining, len(zero))
                    fh.write(zero[:n])
                    remaining -= n
                fh.flush()
                os.fsync(fd)
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def check_private_dir(path: Path, key: str) -> None:
    """*path* (the config's *key*) a directory of this user that no one else may write
    into — else a planted symlink or file could steer what the kit reads or destroys."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{key}: {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ConfigError(f"{key}: {path} belongs to another user (uid {st.st_uid}); the kit "
                          "works only in directories of the user that runs it")
    if st.st_mode & 0o022:
        raise ConfigError(f"{key}: {path} may be written by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):o}); chmod go-w it (0700 is best)")
