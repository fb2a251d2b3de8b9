"""The state directory: what lives where, and the few local-disk helpers the flows share.

Everything under it is ciphertext, identifiers or keys — never plaintext case
data::

    state_dir/
      gateway.db        ledger (SQLite default)
      gateway.lock      one runner per state directory (flock)
      gnupg/            the private keyring, rebuilt at start
      archive/          ciphertexts as received, named by SHA-256
      quarantine/       rejected originals, byte for byte
      staging/<file>/   sealed slices, manifests and receipts not yet delivered
      secrets/tokens/   per-contract keys for the `token` masking rule (0600)
      audit/            the hash-chained audit log
      certificates/     deletion certificates
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.errors import GatewayError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class State:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for sub in ("archive", "quarantine", "staging", "secrets/tokens", "audit", "certificates"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def archived(self, sha256: str) -> Path:
        return self.archive / f"{sha256}.pgp"

    def quarantined(self, sha256: str, name: str) -> Path:
        return self.root / "quarantine" / f"{sha256[:16]}-{_SAFE.sub('_', name)[:120]}"

    def staging(self, file_id: int) -> Path:
        return self.root / "staging" / str(file_id)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One runner per state directory on this host; a second one fails fast."""
        fd = os.open(self.root / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GatewayError(f"another gateway process is running on {self.root}") from None
            yield
        finally:
            os.close(fd)

    def clean_temporaries(self) -> int:
        """Remove half-written copies a killed run left in the archive (ciphertext, but
        garbage). Only safe under :meth:`lock`: no other runner is writing them."""
        removed = 0
        for pattern in (".incoming-*", ".verify-*"):
            for path in self.archive.glob(pattern):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def token_secret(self, contract_id: str) -> bytes:
        """The contract's key for the `token` rule: created once, 32 random bytes, mode 0600."""
        path = self.root / "secrets" / "tokens" / f"{_SAFE.sub('_', contract_id)}.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
        return path.read_bytes()

    def token_secret_path(self, contract_id: str) -> Path:
        return self.root / "secrets" / "tokens" / f"{_SAFE.sub('_', contract_id)}.key"


def copy_hashed(src: BinaryIO, dst: Path) -> tuple[str, int]:
    """Copy *src* into a new file *dst* (fsynced); return its SHA-256 and size."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(256 * 1024):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), size


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(256 * 1024):
            h.update(chunk)
    return h.hexdigest()
