"""The kit's OpenPGP: the agency's keys in a throw-away keyring, named by intent.

As ``gateway open``/``seal`` (:mod:`gateway.crypto.standalone`) do, the kit builds a
private gpg home in /tmp from the key files ``agency.toml`` names, for as long as a
command runs, and removes it afterwards: the keys live in their files, not in a keyring
that could drift from the configuration. Every key is checked against the gateway's key
policy first, and a refusal names the configuration key that gave the file.

Three operations, by what they are for: :meth:`KitCrypto.open_from_gateway` (decrypt
with whichever of the agency's keys the message is for; accept it only if the gateway
signed it), :meth:`KitCrypto.seal_for_gateway` (sign with the agency's signing key,
encrypt to the gateway's key) — the same envelope a results file has — and
:meth:`KitCrypto.seal_as_role` (the same, signed by a role key this installation holds:
an unmask request is the requester's own word, and the gateway seals the release to the
key that signed it, docs/formats.md §8).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from gateway.crypto import _gpg, keys
from gateway.crypto.engine import Engine, OpenedMessage, SealWriter
from gateway.crypto.keyring import Keyring, Secret
from gateway.crypto.keys import KeyInfo, Purpose
from gateway.errors import ConfigError, KeyPolicyError
from gateway.kit.config import AgencyConfig
from gateway.streams import Readable

TMP = Path("/tmp")  # noqa: S108 — where every gateway tool keeps its throw-away keyrings
_HOME = re.compile(r"^gwa(\d+)-[A-Za-z0-9_]+$")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_keyrings() -> list[Path]:
    """Remove the keyrings (copies of the agency's secret keys) of kit commands that were
    killed before they could: ``/tmp/gwa<pid>-*`` of this user whose process is gone."""
    swept = []
    for home in TMP.glob("gwa*"):
        m = _HOME.match(home.name)
        try:
            st = home.lstat()
        except OSError:
            continue
        if m is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() \
                or alive(int(m[1])):
            continue
        if (home / "g").is_dir():  # its gpg-agent may outlive the command that started it
            _gpg.kill_agent(home / "g")
        shutil.rmtree(home, ignore_errors=True)
        swept.append(home)
    return swept


def _checked(path: Path, purpose: Purpose, key: str) -> KeyInfo:
    try:
        return keys.check(path, purpose)
    except KeyPolicyError as exc:
        raise KeyPolicyError(f"{key}: {exc}") from exc


def passphrase(cfg: AgencyConfig) -> Secret | None:
    if cfg.passphrase_env is None:
        return None
    value = os.environ.get(cfg.passphrase_env)
    if value is None:
        raise ConfigError(f"passphrase_env: the environment variable {cfg.passphrase_env} "
                          "is not set")
    return Secret(value)


class KitCrypto:
    """The agency's keys for one command. Use as a context manager."""

    def __init__(self, cfg: AgencyConfig) -> None:
        self.signer = _checked(cfg.signing_key, Purpose.SIGNER, "signing_key")
        self.gateway = _checked(cfg.gateway_key, Purpose.VERIFY, "gateway_key")
        _checked(cfg.gateway_key, Purpose.ENCRYPT, "gateway_key")
        self.roles = {role: _checked(spec.key, Purpose.RECIPIENT, f"roles.{role}.key")
                      for role, spec in cfg.roles.items()}
        self._role_files = {role: spec.key for role, spec in cfg.roles.items()}
        sweep_keyrings()
        self._home = Path(tempfile.mkdtemp(prefix=f"gwa{os.getpid()}-", dir=str(TMP)))
        try:
            secrets = [cfg.signing_key, *(spec.key for spec in cfg.roles.values())]
            self.keyring = Keyring(self._home / "g", secret_keys=list(dict.fromkeys(secrets)),
                                   public_keys=[cfg.gateway_key], passphrase=passphrase(cfg))
        except BaseException:
            shutil.rmtree(self._home, ignore_errors=True)
            raise
        self.engine = Engine(self.keyring, signer=self.signer)

    def holds(self, role: str) -> bool:
        """Whether this installation has the key of *role* (and so can read its slices)."""
        return role in self.roles

    def holds_key(self, fingerprint: str) -> bool:
        """Whether one of the role keys here is *fingerprint* — a one-off release is sealed
        to one member's key only, not to every key of the role."""
        return any(k.fingerprint.upper() == fingerprint.upper() for k in self.roles.values())

    def role_signer(self, role: str) -> KeyInfo:
        """This installation's key of *role*, checked as a signing key."""
        if role not in self.roles:
            raise ConfigError(f"roles.{role}: this installation holds no key of role {role}")
        return _checked(self._role_files[role], Purpose.SIGNER, f"roles.{role}.key")

    def seal_as_role(self, role: str, dst: BinaryIO) -> SealWriter:
        """Signed by this installation's key of *role*, encrypted to the gateway only: the
        requester's own signature, which decides the one key a release is sealed to."""
        signer = self.role_signer(role)
        return Engine(self.keyring, signer=signer).seal(dst, recipients=[self.gateway.fingerprint])

    def open_from_gateway(self, src: Readable) -> OpenedMessage:
        """Decrypt *src*; its plaintext is untrusted until the verdict says the gateway's
        key signed it."""
        return self.engine.open(src, allowed_signers=[self.gateway.fingerprint])

    def seal_for_gateway(self, dst: BinaryIO) -> SealWriter:
        """Signed by the agency's signing key, encrypted to the gateway only."""
        return self.engine.seal(dst, recipients=[self.gateway.fingerprint])

    def close(self) -> None:
        self.keyring.close()
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
