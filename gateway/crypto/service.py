"""The gateway's cryptography named by intent, built from the config.

Callers never pick recipients or signers: ``seal_for_role(agency, role)`` knows
which keys that role has, ``open_from_bank`` knows whose signatures count. This
module also applies the key policy to every configured key (docs/operations.md): in a list,
a weak, expired or revoked key is skipped with a warning; a list left empty, a
missing file, or an unusable gateway key stops the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self

from gateway.config import Config
from gateway.config.trust import writable_problems
from gateway.crypto import keys
from gateway.crypto.engine import Engine, OpenedMessage, SealWriter
from gateway.crypto.keyring import Keyring, Secret
from gateway.crypto.keys import KeyInfo, KeyRefused, Purpose
from gateway.errors import ConfigError, KeyPolicyError
from gateway.streams import Readable


@dataclass(frozen=True)
class RefusedKey:
    """A configured key the policy skipped; audited as ``key.refused``."""

    key_path: str  # config key path, e.g. bank.signing_keys[1]
    fingerprint: str | None
    problem: str


@dataclass
class KeySet:
    """Every configured key, checked: what may sign, what we encrypt to, what was refused."""

    gateway: KeyInfo
    previous: list[KeyInfo]
    bank_signers: list[KeyInfo]
    bank_recipients: list[KeyInfo]
    agency_signers: dict[str, list[KeyInfo]]
    role_recipients: dict[tuple[str, str], list[KeyInfo]]
    refused: list[RefusedKey] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # public key files to import (refused ones too)
    notes: list[str] = field(default_factory=list)  # legal but worth a look (shared role keys)

    def uses(self) -> list[tuple[str, KeyInfo]]:
        """Every usable configured key with what it is used for (metrics, the console)."""
        out = [("gateway", self.gateway), *(("gateway_previous", k) for k in self.previous),
               *(("bank_signing", k) for k in self.bank_signers),
               *(("bank_encrypt", k) for k in self.bank_recipients)]
        for code, ks in self.agency_signers.items():
            out += [(f"{code}_signing", k) for k in ks]
        for (code, role), ks in self.role_recipients.items():
            out += [(f"{code}_{role}_encrypt", k) for k in ks]
        return out

    @property
    def warnings(self) -> list[str]:
        return [f"{r.key_path}: {r.problem}; this key is ignored" for r in self.refused] + self.notes


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def check_keys(cfg: Config, listings: keys.Listings | None = None) -> KeySet:
    """Apply the key policy to every key in *cfg*; raise ConfigError listing every hard problem,
    among them a key file, the configuration or the gateway's directories that someone other
    than the gateway may write (:mod:`gateway.config.trust`). *listings*: what gpg said of
    key files read before (the daemon keeps them in its state directory)."""
    base = cfg.source.resolve().parent
    problems: list[str] = []
    refused: list[RefusedKey] = []
    public_files: list[Path] = []

    def one(key_path: str, path: Path, purpose: Purpose) -> KeyInfo | None:
        try:
            return keys.check(path, purpose, listings)
        except KeyPolicyError as exc:
            msg = str(exc).replace(str(path), _shown(path, base), 1)
            problems.append(f"{key_path}: {msg}")
            return None

    def many(key_path: str, paths: Sequence[Path], purpose: Purpose) -> list[KeyInfo]:
        usable: list[KeyInfo] = []
        skipped: list[str] = []
        for i, path in enumerate(paths):
            where = f"{key_path}[{i}]"
            try:
                info = keys.check(path, purpose, listings)
            except KeyRefused as exc:
                msg = str(exc).replace(str(path), _shown(path, base), 1)
                skipped.append(f"{where}: {msg}")
                refused.append(RefusedKey(where, exc.fingerprint, msg))
                public_files.append(path)  # imported, so its signatures are named, never accepted
                continue
            except KeyPolicyError as exc:
                msg = str(exc).replace(str(path), _shown(path, base), 1)
                problems.append(f"{where}: {msg}")
                continue
            if purpose is Purpose.ENCRYPT and info.fingerprint in own:
                problems.append(f"{where}: {_shown(path, base)} is the gateway's own key "
                                f"({own[info.fingerprint]}, {info.fingerprint}), not the "
                                "recipient's; what is sealed to it only the gateway can read")
                continue
            usable.append(info)
            public_files.append(path)
        if not usable and skipped:
            problems.append(f"{skipped[-1]}; no usable key left in {key_path}")
            refused[:] = [r for r in refused if not r.key_path.startswith(key_path + "[")]
        return usable

    gw = one("gateway.secret_key", cfg.gateway.secret_key, Purpose.GATEWAY)
    olds: list[tuple[str, KeyInfo]] = []
    for i, p in enumerate(cfg.gateway.previous_secret_keys):
        if k := one(f"gateway.previous_secret_keys[{i}]", p, Purpose.DECRYPT_ONLY):
            olds.append((f"gateway.previous_secret_keys[{i}]", k))
    previous = [k for _, k in olds]
    # The gateway's keys, old and new, by fingerprint (a copy under a partner's file name
    # is the same key): as a recipient one passes every key check, yet the partner could
    # read nothing sealed to it — the bank no receipt, no result, no certificate.
    own = {k.fingerprint: where for where, k in [*([("gateway.secret_key", gw)] if gw else []),
                                                 *olds]}
    bank_signers = many("bank.signing_keys", cfg.bank.signing_keys, Purpose.VERIFY)
    bank_recipients = many("bank.encrypt_to", cfg.bank.encrypt_to, Purpose.ENCRYPT)
    agency_signers: dict[str, list[KeyInfo]] = {}
    role_recipients: dict[tuple[str, str], list[KeyInfo]] = {}
    for i, agency in enumerate(cfg.agencies):
        agency_signers[agency.code] = many(f"agencies[{i}].signing_keys", agency.signing_keys,
                                           Purpose.VERIFY)
        for role, spec in agency.roles.items():
            role_recipients[(agency.code, role)] = many(
                f"agencies[{i}].roles.{role}.encrypt_to", spec.encrypt_to, Purpose.ENCRYPT)
    notes: list[str] = []
    problems += _shared_keys(cfg, bank_signers + bank_recipients, agency_signers,
                             role_recipients, notes)
    # what the gateway trusts (its configuration, directories, keys) only it may change
    problems += writable_problems(cfg)
    if cfg.gateway.passphrase_env and cfg.gateway.passphrase_env not in os.environ:
        problems.append(f"gateway.passphrase_env: environment variable "
                        f"{cfg.gateway.passphrase_env} is not set")
    if problems or gw is None:
        raise ConfigError(list(dict.fromkeys(problems)), source=str(cfg.source))
    return KeySet(gateway=gw, previous=previous, bank_signers=bank_signers,
                  bank_recipients=bank_recipients, agency_signers=agency_signers,
                  role_recipients=role_recipients, refused=refused,
                  files=list(dict.fromkeys(public_files)), notes=notes)


def _shared_keys(cfg: Config, bank: list[KeyInfo], agency_signers: dict[str, list[KeyInfo]],
                 role_recipients: dict[tuple[str, str], list[KeyInfo]],
                 notes: list[str]) -> list[str]:
    """Keys are the access control: one key configured for two parties lets each read (or
    sign as) the other. Across agencies, or between the bank and an agency, that is a
    configuration error; across roles of one agency it is legal but defeats the roles'
    separation, so it is a warning."""
    problems: list[str] = []
    owner: dict[str, tuple[str, str]] = {}  # fingerprint -> (party, key path)
    roles_of: dict[tuple[str, str], str] = {}  # (agency, fingerprint) -> first role's key path
    index = {a.code: i for i, a in enumerate(cfg.agencies)}
    uses = [("bank", "bank keys", k) for k in bank]
    for code, ks in agency_signers.items():
        uses += [(code, f"agencies[{index[code]}].signing_keys", k) for k in ks]
    for (code, role), ks in role_recipients.items():
        uses += [(code, f"agencies[{index[code]}].roles.{role}.encrypt_to", k) for k in ks]
    for party, where, key in uses:
        first = owner.setdefault(key.fingerprint, (party, where))
        if first[0] != party:
            problems.append(f"{where}: key {key.fingerprint} is also configured for "
                            f"{'the bank' if first[0] == 'bank' else 'agency ' + first[0]} "
                            f"({first[1]}); one key for two parties lets each read or sign as the "
                            "other — every party needs keys of its own")
        elif party != "bank" and ".roles." in where:
            other = roles_of.setdefault((party, key.fingerprint), where)
            if other != where:
                notes.append(f"{where}: key {key.fingerprint} is also {other}; both roles can "
                             "read each other's slices")
    return problems


def passphrase_from_env(var: str | None) -> Secret | None:
    if not var:
        return None
    value = os.environ.get(var)
    return Secret(value) if value is not None else None


class Crypto:
    """Open and seal by intent; recipients and accepted signers are decided here."""

    def __init__(self, cfg: Config, keyset: KeySet) -> None:
        self.cfg = cfg
        self.keyset = keyset
        self.keyring = Keyring(
            cfg.gateway.state_dir / "gnupg",
            secret_keys=[keyset.gateway.path, *(k.path for k in keyset.previous)],
            public_keys=keyset.files,
            passphrase=passphrase_from_env(cfg.gateway.passphrase_env),
        )
        self.engine = Engine(self.keyring, signer=keyset.gateway,
                             max_plaintext=cfg.gateway.max_plaintext_mb * 1024 * 1024,
                             compress_level=cfg.gateway.compress_level)

    LISTINGS = "keys.listed.json"  # in the state directory: see keys.Listings

    @classmethod
    def start(cls, cfg: Config) -> Crypto:
        listings = keys.Listings(cfg.gateway.state_dir / cls.LISTINGS)
        keyset = check_keys(cfg, listings)
        listings.save()
        return cls(cfg, keyset)

    @property
    def fingerprint(self) -> str:
        return self.keyset.gateway.fingerprint

    def open_from_bank(self, src: Readable) -> OpenedMessage:
        return self.engine.open(src, allowed_signers=[k.fingerprint for k in self.keyset.bank_signers])

    def open_from_agency(self, code: str, src: Readable) -> OpenedMessage:
        """Only *this* agency's signing keys count — another agency's valid key does not."""
        return self.engine.open(src, allowed_signers=[
            k.fingerprint for k in self.keyset.agency_signers[code]])

    def open_from_agency_staff(self, code: str, src: Readable) -> OpenedMessage:
        """Unmask requests: signed by a member's own role key, any role of *this* agency (the
        flow then holds the signer to the role the request names)."""
        return self.engine.open(src, allowed_signers=self.staff_keys(code))

    def staff_keys(self, code: str, role: str | None = None) -> list[str]:
        """The role keys of *code* (of one *role*, if given), by fingerprint."""
        return list(dict.fromkeys(k.fingerprint for (c, r), ks in self.keyset.role_recipients.items()
                                  if c == code and role in (None, r) for k in ks))

    def seal_for_requester(self, code: str, role: str, fingerprint: str, dst: BinaryIO
                           ) -> SealWriter:
        """A one-off unmasked slice: the one key that asked for it, and only if it is still a
        key of that role — not the role's other members, not another role."""
        if fingerprint not in self.staff_keys(code, role):
            raise KeyPolicyError(f"key {fingerprint} is no longer one of {code}'s {role} keys; "
                                 "nothing is sealed to it")
        return self.engine.seal(dst, recipients=[fingerprint])

    def seal_for_bank(self, dst: BinaryIO, *, armor: bool = False) -> SealWriter:
        return self.engine.seal(dst, recipients=[k.fingerprint for k in self.keyset.bank_recipients],
                                armor=armor)

    def seal_for_role(self, code: str, role: str, dst: BinaryIO) -> SealWriter:
        """A slice: that role's keys only, so no other role or agency can read it."""
        return self.engine.seal(dst, recipients=[
            k.fingerprint for k in self.keyset.role_recipients[(code, role)]])

    def seal_for_agency(self, code: str, dst: BinaryIO) -> SealWriter:
        """Manifests: every role key of the agency."""
        fprs = [k.fingerprint for (c, _), ks in self.keyset.role_recipients.items() if c == code
                for k in ks]
        return self.engine.seal(dst, recipients=list(dict.fromkeys(fprs)))

    def seal_receipt_for_agency(self, code: str, dst: BinaryIO) -> SealWriter:
        role = self.cfg.agency(code).receipts_role
        return self.seal_for_role(code, role, dst)

    def clearsign(self, text: bytes) -> bytes:
        return self.engine.clearsign(text)

    def close(self) -> None:
        self.keyring.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
