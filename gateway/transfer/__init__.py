"""Drop zones behind one interface (:mod:`base`), local directories (:mod:`local`).

SFTP zones arrive with the zones/daemon issue; until then a configured SFTP
zone is refused with a clear message instead of being half-supported.
"""

from __future__ import annotations

from gateway import config as config_mod
from gateway.errors import ConfigError
from gateway.transfer.base import Zone
from gateway.transfer.local import LocalZone


def open_zone(key: str, spec: config_mod.LocalZone | config_mod.SftpZone) -> Zone:
    if isinstance(spec, config_mod.LocalZone):
        return LocalZone(key, spec.path)
    raise ConfigError(f"{key}: SFTP zones are not supported by this version yet; use kind = \"local\"")
