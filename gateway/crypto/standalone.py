"""``gateway open`` and ``gateway seal``: the tools agency staff (and the bank) run.

They work without a gateway config: a throw-away keyring holds the user's own
secret key and the other party's public key, and is removed afterwards. Output
files are written under a temporary name and renamed into place only when the
operation succeeded — for ``open``, only after the signature verdict, so a
failed verification never leaves a plausible-looking plaintext file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.crypto import keys
from gateway.crypto.engine import Engine, Keyring, Secret, Verified
from gateway.crypto.keys import KeyInfo, Purpose
from gateway.errors import UsageError


@contextlib.contextmanager
def _engine(secret: Path, public: Path, passphrase: Secret | None,
            own: Purpose, other: Purpose) -> Iterator[tuple[Engine, KeyInfo, KeyInfo]]:
    me = keys.check(secret, own)
    them = keys.check(public, other)
    home = Path(tempfile.mkdtemp(prefix="gwo", dir="/tmp"))
    keyring = None
    try:
        keyring = Keyring(home / "g", secret_keys=[secret], public_keys=[public],
                          passphrase=passphrase)
        yield Engine(keyring, signer=me), me, them
    finally:
        if keyring is not None:
            keyring.close()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _atomic_output(out: Path | None, default: BinaryIO) -> Iterator[BinaryIO]:
    """Write to OUT as :func:`_atomic_file` does, or to *default* when there is no OUT."""
    if out is None:
        yield default
        return
    with _atomic_file(out) as fh:
        yield fh


@contextlib.contextmanager
def _atomic_file(out: Path) -> Iterator[BinaryIO]:
    """Write to OUT via a private temp file renamed on success; never overwrite."""
    if out.exists():
        raise UsageError(f"{out} already exists; not overwriting it")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp_path, out)  # fails if OUT appeared meanwhile: still no overwrite
    finally:
        tmp_path.unlink(missing_ok=True)


def open_file(src: Path, *, key: Path, sender: Path, out: Path | None, stdout: BinaryIO,
              passphrase: Secret | None = None) -> tuple[Verified, KeyInfo]:
    """Decrypt SRC with KEY and accept it only if signed by SENDER's key."""
    with (_engine(key, sender, passphrase, Purpose.RECIPIENT, Purpose.VERIFY) as (eng, _me, them),
          src.open("rb") as fh,
          eng.open(fh, allowed_signers=[them.fingerprint]) as msg,
          _atomic_output(out, stdout) as sink):
        for chunk in msg.chunks():
            sink.write(chunk)
        return msg.verdict(), them


def seal_file(src: Path, *, key: Path, recipient: Path, out: Path,
              passphrase: Secret | None = None) -> tuple[KeyInfo, KeyInfo]:
    """Sign SRC with KEY and encrypt it to RECIPIENT (the gateway) into OUT."""
    with (_engine(key, recipient, passphrase, Purpose.SIGNER, Purpose.ENCRYPT) as (eng, me, them),
          src.open("rb") as fh,
          _atomic_file(out) as sink,
          eng.seal(sink, recipients=[them.fingerprint]) as writer):
        while chunk := fh.read(64 * 1024):
            writer.write(chunk)
    return me, them
