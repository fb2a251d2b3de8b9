"""The gateway's private gpg home, and what opening it needs: the keyring holding exactly
the configured keys (kept while they are the same), the passphrase that never shows in a
repr, and gpg's diagnostics made readable. The engine (:mod:`gateway.crypto.engine`)
works on a keyring; it re-exports these names.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from gateway.crypto import _gpg
from gateway.errors import GatewayError


class Secret:
    """A passphrase that never shows up in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Keyring:
    """A private gpg home holding exactly the configured keys, rebuilt whenever they change.

    Rebuilding from the key files means the keyring can never drift from the
    config: a key removed from ``gateway.toml`` is gone at the next start. After a build
    the home records what it was built from (the SHA-256 of each file's bytes, in order,
    secret or public) and which secret key files gpg wrote, synced; a start given the
    same key files keeps the home if those secret key files are still there, not empty —
    two gpg imports and an agent's start were most of what a start with nothing to do
    spent on keys. Anything else (a key file changed, a secret key file missing or damaged,
    no record: a build that did not finish) builds the home again, as before.
    """

    STAMP = "gateway-keyring.json"

    def __init__(
        self,
        home: Path,
        *,
        secret_keys: Sequence[Path] = (),
        public_keys: Sequence[Path] = (),
        passphrase: Secret | None = None,
    ) -> None:
        self.path = Path(home)
        self.passphrase = passphrase
        self._alias_dir: Path | None = None
        self.home = self.path
        self._build(list(secret_keys), list(public_keys))

    def _build(self, secret_keys: list[Path], public_keys: list[Path]) -> None:
        _gpg.kill_agent(self.path)  # an agent left behind by a killed run
        _gpg.remove_aliases(self.path)  # and the short path it was reached by
        sources = self._sources(secret_keys, public_keys)
        if self._intact(sources):
            self.home, self._alias_dir = _gpg.short_home(self.path)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(mode=0o700, parents=True)
        self.home, self._alias_dir = _gpg.short_home(self.path)
        try:
            if public_keys:
                self._import([str(p) for p in public_keys], secret=False)
            if secret_keys:
                self._import([str(p) for p in secret_keys], secret=True)
            if self._sources(secret_keys, public_keys) == sources:  # not swapped meanwhile
                self._record(sources)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _sources(secret_keys: list[Path], public_keys: list[Path]) -> str:
        digest = hashlib.sha256()
        for kind, paths in ((b"secret", secret_keys), (b"public", public_keys)):
            for path in paths:
                digest.update(kind + b" " + hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def _secret_files(self) -> list[str]:
        """The secret key files gpg wrote, by name (the keygrip), those not empty. Not their
        bytes: the agent rewrites a key file when it first uses the key."""
        folder = self.path / "private-keys-v1.d"
        return sorted(f.name for f in folder.glob("*.key")
                      if f.is_file() and f.stat().st_size > 0) if folder.is_dir() else []

    def _record(self, sources: str) -> None:
        """What the home was built from and what gpg wrote, once it is all on disk: a
        record that survives a crash whose key files did not is a keyring without keys."""
        from gateway.state import write_private  # the state module imports the config

        secret = self._secret_files()
        for name in [*(f"private-keys-v1.d/{n}" for n in secret), "pubring.kbx"]:
            with contextlib.suppress(FileNotFoundError), (self.path / name).open("rb") as fh:
                os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # unrecorded: the next start builds it again
            write_private(self.path / self.STAMP,
                          json.dumps({"sources": sources, "secret": secret}).encode())

    def _intact(self, sources: str) -> bool:
        try:
            record = json.loads((self.path / self.STAMP).read_bytes())
            pubring = (self.path / "pubring.kbx").stat()
            return (isinstance(record, dict) and record.get("sources") == sources
                    and pubring.st_size > 0 and bool(record.get("secret"))
                    and record.get("secret") == self._secret_files())
        except (OSError, ValueError):
            return False

    def _import(self, files: list[str], *, secret: bool) -> None:
        pw = self.passphrase.reveal() if (secret and self.passphrase) else ("" if secret else None)
        proc = _gpg.run(self.home, ["--import", "--", *files], passphrase=pw)  # "--": files, not options
        if proc.returncode != 0:
            raise_if_disk_full(self.path, proc.stderr)
            what = "secret" if secret else "public"
            raise GatewayError(f"could not import {what} keys into the gateway keyring: "
                               f"{stderr_tail(proc.stderr)}")

    def close(self) -> None:
        """Stop the agent; the key files stay (they are copies of configured keys)."""
        _gpg.kill_agent(self.home)
        if self._alias_dir is not None:
            shutil.rmtree(self._alias_dir, ignore_errors=True)
            self._alias_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_if_disk_full(home: Path, stderr: bytes) -> None:
    """gpg says "import failed" when the real story is a full disk; say that, with the path."""
    st = os.statvfs(home)
    if b"No space left" in stderr or st.f_bavail * st.f_frsize < 256 * 1024:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(home))


def stderr_tail(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines()
             if ln.startswith("gpg:")]
    return "; ".join(ln[5:] for ln in lines[-2:]) or "no diagnostic from gpg"
