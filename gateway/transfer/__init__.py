"""Drop zones behind one interface (:mod:`base`): local directories (:mod:`local`) and
SFTP servers (:mod:`sftp`), with retrying and monitoring as wrappers (:mod:`wrappers`)."""

from __future__ import annotations

from gateway import config as config_mod
from gateway.transfer.base import Zone
from gateway.transfer.local import LocalZone
from gateway.transfer.wrappers import MonitoredZone, RetryingZone


def open_zone(key: str, spec: config_mod.LocalZone | config_mod.SftpZone, *,
              settle: float | None = None) -> MonitoredZone:
    """The zone a flow uses: SFTP zones retry transient failures; every zone is monitored."""
    inner: Zone
    if isinstance(spec, config_mod.LocalZone):
        inner = LocalZone(key, spec.path, file_mode=spec.file_mode,
                          settle=spec.settle_seconds if settle is None else settle)
    else:  # paramiko (~30 MB) is loaded only by a gateway that has an SFTP zone
        from gateway.transfer.sftp import SftpZone

        inner = RetryingZone(SftpZone(key, spec, settle=spec.settle_seconds if settle is None
                                      else settle))
    return MonitoredZone(inner)
