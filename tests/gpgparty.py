"""A party that uses plain GnuPG, as the bank and agency staff do — independent of our engine.

Integration tests use it on the other end of every exchange, so interoperability
is tested against the real `gpg` binary, not against ourselves.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


class GpgParty:
    def __init__(self, *key_files: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="gwt", dir="/tmp"))
        for f in key_files:
            self.gpg("--import", str(f), check=True)

    def gpg(self, *args: str, stdin: bytes | None = None, check: bool = False,
            faked_time: str | None = None) -> subprocess.CompletedProcess[bytes]:
        extra = ["--faked-system-time", faked_time] if faked_time else []
        proc = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", "--trust-model", "always",
             "--pinentry-mode", "loopback", "--passphrase", "", "--status-fd", "2", *extra, *args],
            input=stdin, capture_output=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"gpg {args} failed: {proc.stderr.decode()}")
        return proc

    def seal(self, plaintext: bytes, *, signer: str | None, recipients: list[str],
             extra: tuple[str, ...] = (), faked_time: str | None = None) -> bytes:
        args = [*extra]
        if signer:
            args += ["-u", signer, "--sign"]
        for r in recipients:
            args += ["-r", r]
        proc = self.gpg(*args, "--encrypt", stdin=plaintext, check=True, faked_time=faked_time)
        return proc.stdout

    def decrypt(self, ciphertext: bytes) -> tuple[bytes, list[str], int]:
        """(plaintext, status keywords with args, exit code)."""
        proc = self.gpg("--decrypt", stdin=ciphertext)
        status = [ln[9:] for ln in proc.stderr.decode("utf-8", "replace").splitlines()
                  if ln.startswith("[GNUPG:] ")]
        return proc.stdout, status, proc.returncode

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def validsig_primary(status: list[str]) -> str | None:
    for line in status:
        if line.startswith("VALIDSIG "):
            return line.split()[10]
    return None


def live_gpg_processes(marker: str = "") -> list[str]:
    """Command lines of gpg/gpg-agent processes that are alive (zombies excluded)."""
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        stat, _, args = line.strip().partition(" ")
        if stat.startswith("Z"):
            continue
        prog = args.split()[0] if args.split() else ""
        if Path(prog).name in ("gpg", "gpg-agent", "gpg2") and marker in args:
            found.append(args)
    return found
