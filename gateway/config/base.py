"""What every section of ``gateway.toml`` is built on: the strict base model, paths
relative to the file, file modes, and the identifiers' patterns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
)

from gateway import identifiers

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
