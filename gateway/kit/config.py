"""``agency.toml``: the kit's configuration, strict, with errors that name the key.

The same conventions as ``gateway.toml`` (:mod:`gateway.config.base`): unknown keys are
refused, relative paths are relative to the file, and every problem is one line
``<file>: <key.path>: <what is wrong>``. The zones are the gateway's own models, so an
agency describes its inbox and outbox exactly as the bank's IT does.

One installation per agency fetches: it acknowledges every slice in the inbox and
removes it, keeping sealed (ciphertext in ``state_dir``) the slices of roles whose key it
does not hold. A second installation fetching from the same inbox is not supported: it
would find the inbox emptied by the first and hold nothing. Give the one installation
the role keys whose slices are read there, or read the others with ``open``/``export``
on that machine.

Key files are checked (mode 0600, key policy) when the kit opens its keyring
(:mod:`gateway.kit.crypto`), not here: that needs gpg, and a command such as ``status``
does not.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from gateway import identifiers
from gateway.config import LocalZone, SftpZone
from gateway.config.base import ConfigPath, _loc, _message, _Model, read_toml
from gateway.errors import ConfigError

DEFAULT_PATH = Path("agency.toml")
ENV = "GATEWAY_AGENCY_CONFIG"
DELETION_DAYS = 30  # data must be gone within this many days of the contract's end

Zone = Annotated[LocalZone | SftpZone, Field(discriminator="kind")]


def _pattern(pattern: str, what: str) -> AfterValidator:
    compiled = identifiers.full(pattern)

    def check(v: str) -> str:
        if not compiled.fullmatch(v):
            raise ValueError(f"{v!r} is not {what}")
        return v
    return AfterValidator(check)


def _hours(v: str) -> str:
    """As ``gateway.contact_hours``: "HH:MM-HH:MM", start before end, end up to 24:00."""
    m = re.fullmatch(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})", v)
    if not m:
        raise ValueError('must look like "08:00-21:00"')
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2) or (h1, m1) >= (h2, m2):
        raise ValueError("is not a valid time range (start before end, end at most 24:00)")
    return v


class RoleKey(_Model):
    key: ConfigPath = Field(description="The role's secret key file (NAME.sec.asc, mode 0600).")


class AgencyConfig(_Model):
    code: Annotated[str, _pattern(identifiers.AGENCY_CODE, "an agency code")] = Field(
        description="The agency's code, as the bank's gateway knows it (AG001).")
    contract_id: Annotated[str, _pattern(identifiers.CONTRACT_ID, "a contract id")] = Field(
        description="The agency's contract with the bank.")
    contract_end: dt.date = Field(
        description="The contract's effective end (its last day, or the early termination).")
    timezone: str = Field(
        description="The gateway's time zone (its gateway.timezone), by IANA name: local "
                    "times in results files are read in it.")
    contact_hours: Annotated[str, AfterValidator(_hours)] = Field(
        default="08:00-21:00", description="The gateway's contact hours (for the flags only).")
    max_daily_attempts: int = Field(default=6, ge=1, le=1000,
                                    description="The gateway's limit (for the flags only).")
    state_dir: ConfigPath = Field(
        description="The kit's own directory (mode 0700): its ledger kit.db and the "
                    "ciphertext it holds.")
    store: ConfigPath | None = Field(
        default=None,
        description="Where decrypted slices are kept, if anywhere: the only place the kit "
                    "writes plaintext. Unset: ciphertext only, decrypted on demand.")
    signing_key: ConfigPath = Field(
        description="The agency's secret signing key file (mode 0600): results, "
                    "acknowledgements and attestations are signed with it.")
    passphrase_env: str | None = Field(
        default=None, description="Environment variable holding the secret keys' passphrase.")
    gateway_key: ConfigPath = Field(description="The gateway's public key file.")
    roles: dict[Annotated[str, _pattern(identifiers.ROLE, "a role name")], RoleKey] = Field(
        default={}, validate_default=True,
        description="The role keys this installation holds (a subset of the agency's roles is "
                    "fine; at least one).")
    inbox: Zone = Field(description="Where the gateway places slices, manifests, receipts "
                                    "(one kit installation per agency fetches from it).")
    outbox: Zone = Field(description="Where the kit uploads results and signed documents.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{v}" is not a known time zone (e.g. "Asia/Shanghai")') from None
        return v

    @field_validator("roles")
    @classmethod
    def _some_role(cls, v: dict[str, RoleKey]) -> dict[str, RoleKey]:
        if not v:  # the default too: the field validates its default
            raise ValueError("at least one role key is needed ([roles.NAME] key = ...): "
                             "without one the kit can read no slice and know no case")
        return v

    @model_validator(mode="after")
    def _separate(self) -> AgencyConfig:
        """Plaintext only in the store: so the store may not lie in the state directory (or
        the reverse), nor in a zone the other side reads."""
        if self.store is not None and (_inside(self.store, self.state_dir)
                                       or _inside(self.state_dir, self.store)):
            raise ValueError("store: must not be inside state_dir, nor state_dir inside it")
        for box in ("inbox", "outbox"):
            zone = getattr(self, box)
            if isinstance(zone, LocalZone):
                for key in ("state_dir", "store"):
                    path = getattr(self, key)
                    if path is not None and (_inside(path, zone.path) or _inside(zone.path, path)):
                        raise ValueError(f"{key}: must lie outside the {box} zone's directory")
        return self

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def contact_window(self) -> tuple[dt.time, dt.time]:
        a, b = self.contact_hours.split("-")
        end = dt.time.max if b == "24:00" else dt.time.fromisoformat(b)
        return dt.time.fromisoformat(a), end

    @property
    def deletion_deadline(self) -> dt.date:
        return self.contract_end + dt.timedelta(days=DELETION_DAYS)

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.tz).date()


def _inside(path: Path, parent: Path) -> bool:
    path, parent = Path(os.path.normpath(path)), Path(os.path.normpath(parent))
    return path == parent or parent in path.parents


def config_path(given: Path | None) -> Path:
    """``--config``, else ``$GATEWAY_AGENCY_CONFIG``, else ``./agency.toml``."""
    if given is not None:
        return given
    return Path(os.environ.get(ENV) or DEFAULT_PATH)


def load(path: Path) -> AgencyConfig:
    """Read and validate *path*; ConfigError lists every problem, one line each, by key."""
    label = str(path)
    _, data = read_toml(path, init_hint="gateway-agency init DIR")
    try:
        return AgencyConfig.model_validate(data, context={"base": path.resolve().parent})
    except ValidationError as exc:
        lines = [f"{_loc(e['loc']).replace('.[key]', '')}: {_message(e)}" if e["loc"]
                 else _message(e) for e in exc.errors()]
        raise ConfigError(list(dict.fromkeys(lines)), source=label) from None


SAMPLE = '''\
# agency.toml: the agency kit's configuration (gateway-agency --help).
# Relative paths are relative to this file. Ask the bank's IT for the values marked (bank).

code = "AG001"                      # (bank) your agency's code
contract_id = "C-2026-001"          # (bank) your contract's id
contract_end = 2027-11-01           # (bank) the contract's effective end (last day)
timezone = "Asia/Shanghai"          # (bank) the gateway's time zone: results' local times
# contact_hours = "08:00-21:00"     # (bank) for the compliance flags shown by `results --check`
# max_daily_attempts = 6            # (bank) likewise

state_dir = "var"                   # the kit's ledger and the ciphertext it keeps (mode 0700)
# store = "/srv/agency/decrypted"   # keep decrypted slices here (the only plaintext); unset:
                                    # keep ciphertext only and decrypt on demand

signing_key = "keys/ag001.sec.asc"  # your agency's signing key (mode 0600)
# passphrase_env = "AGENCY_KEY_PASSPHRASE"
gateway_key = "keys/gateway.pub.asc"  # (bank) the gateway's public key

# The role keys held on this machine (a subset of your roles is fine).
[roles.supervisor]
key = "keys/ag001-supervisor.sec.asc"
# [roles.collector]
# key = "keys/ag001-collector.sec.asc"

# Your inbox and outbox on the gateway, as the bank's IT set them up. known_host is the
# server's pinned host key (`ssh-keyscan -t ed25519 HOST`, checked with the bank's IT): the
# placeholder below matches no server, so nothing connects until it is replaced.
[inbox]
kind = "sftp"
host = "gateway.bank.example"
username = "ag001"
private_key = "keys/ssh_ed25519"
known_host = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
path = "/inbox"

[outbox]
kind = "sftp"
host = "gateway.bank.example"
username = "ag001"
private_key = "keys/ssh_ed25519"
known_host = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
path = "/outbox"
'''


def write_sample(directory: Path) -> Path:
    """DIR/agency.toml with every key explained; never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / DEFAULT_PATH.name
    with target.open("x", encoding="utf-8") as fh:
        fh.write(SAMPLE)
    return target
