"""What every section of ``gateway.toml`` is built on: the strict base model, paths
relative to the file, file modes, the identifiers' patterns, and how a validation error
names its key path."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
)
from pydantic_core import ErrorDetails

from gateway import identifiers
from gateway.errors import ConfigError

MAX_PURGE_AFTER_DAYS = 30
AGENCY_CODE_RE = f"^{identifiers.AGENCY_CODE}$"  # appears in file names: no dots
ROLE_NAME_RE = identifiers.full(identifiers.ROLE)
_HOSTKEY_TYPES = {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"}


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file (docs/configuration.md)."""
    base = (info.context or {}).get("base")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return Path(os.path.normpath(value))


ConfigPath = Annotated[Path, AfterValidator(_resolve)]


def within(path: Path | str, folder: Path | str) -> bool:
    """Whether *path* is *folder* or lies below it, both with symlinks resolved, compared
    component by component — never as strings, where ``/zones/AG0010`` would start with
    ``/zones/AG001`` (SFTPGo's path checks by string prefix, 2024)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _file_mode(v: int) -> int:
    """Zone files are ciphertext the party's SFTP user reads; the gateway (owner) must
    read and write them, nobody may execute them, and others may never write."""
    if not 0 <= v <= 0o777 or v & 0o600 != 0o600 or v & 0o113:
        raise ValueError(f"is {v:#o}; must give the owner read and write, and no execute or "
                         "world-write bits (e.g. 0o640)")
    return v


FileMode = Annotated[int, AfterValidator(_file_mode)]


_FILE_MODE_HELP = (
    "Permissions of the files the gateway places in the zone, in octal: the default 0o640 lets "
    "the zone's SFTP group read them. The owner (the gateway) must have read and write; no "
    "execute bits, and no write for others.")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("local", "sftp") and out.endswith(("outgoing", "incoming", "inbox", "outbox")):
            continue  # pydantic's discriminator tag; the user wrote no such key
        elif part in ("syslog", "webhook") and out.startswith("forward[") and out.endswith("]"):
            continue  # the same, for a [[forward]] table
        else:
            out += ("." if out else "") + str(part)
    return out.replace("schema_", "schema")


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = str(err.get("ctx", {}).get("expected_tags", "'local', 'sftp'")).replace("'", "")
        words = " or ".join(f'"{t.strip()}"' for t in tags.split(","))
        return f"kind must be {words}" if kind == "union_tag_invalid" else f"needs kind = {words}"
    if kind == "enum":
        return msg.replace("Input should be", "must be")
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "must be").replace("String should", "must")


def is_loopback_host(host: str) -> bool:
    """Whether *host* (a name or an address) is this machine alone. A name other than
    localhost is not: what it resolves to may change."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_toml(path: Path, *, init_hint: str) -> tuple[bytes, dict[str, object]]:
    """A configuration file's bytes and TOML, or a ConfigError a person can act on (*init_hint*: the
    command that writes one) — the gateway's and the agency kit's loaders alike."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found (create one with '{init_hint}')",
                          source=label) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=label) from exc
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=label) from exc
