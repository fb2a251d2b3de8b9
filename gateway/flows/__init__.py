"""The flows: bank case files to agency slices, agency results to the bank.

A :class:`Context` bundles what every flow step needs, so the flows are
functions of (context, input) and tests can build one over real parts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.audit import AuditLog
from gateway.config import Config
from gateway.crypto.service import Crypto
from gateway.leases import Leases
from gateway.ledger import Ledger
from gateway.metrics import Metrics
from gateway.progress import Progress
from gateway.state import State
from gateway.transfer import open_zone
from gateway.transfer.base import Zone


class Interrupted(Exception):
    """Stop requested while reading a file: roll back; its claim is resumed by the next run."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Guard(Protocol):
    """Runs one named piece of a pass (``results.AG001``, ``retention.AG002``): the daemon's
    guard (``Context.guard``, :func:`gateway.daemon.isolated`) keeps an unexpected failure
    of one piece from stopping the others; a command that does one thing keeps
    :func:`unguarded` and fails as a whole. Exceptions in *passing* go through to the
    caller, who handles them."""

    def __call__(self, part: str, *, passing: tuple[type[Exception], ...] = ()
                 ) -> contextlib.AbstractContextManager[object]: ...


def unguarded(_part: str, *, passing: tuple[type[Exception], ...] = ()
              ) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass
class Context:
    cfg: Config
    crypto: Crypto
    ledger: Ledger
    audit: AuditLog
    state: State
    zones: dict[str, Zone]
    leases: Leases
    owner: str  # this node (State.node): lease holder, checkpoint author
    now: Callable[[], dt.datetime] = _now
    stop: threading.Event = field(default_factory=threading.Event)
    zone_errors: dict[str, Exception] = field(default_factory=dict)  # this pass, by zone key
    zone_reported: dict[str, str] = field(default_factory=dict)  # zone -> code already audited
    part_errors: dict[str, Exception] = field(default_factory=dict)  # this pass, by pass part
    part_reported: dict[str, set[str]] = field(default_factory=dict)  # part -> errors audited
    # the daemon's guard while a pass runs (see Guard); a command's context keeps none, so
    # what fails there fails the command
    guard: Guard = field(default=unguarded)
    metrics: Metrics = field(default_factory=Metrics)
    progress: Progress = field(default_factory=Progress)  # a bar on a terminal; else silent

    @classmethod
    def build(cls, cfg: Config, crypto: Crypto, ledger: Ledger, audit: AuditLog,
              state: State, metrics: Metrics | None = None) -> Context:
        zones = {key: open_zone(key, spec) for key, spec in cfg.zones()}
        return cls(cfg=cfg, crypto=crypto, ledger=ledger, audit=audit, state=state, zones=zones,
                   leases=Leases(ledger, state.node, cfg.gateway.lease_seconds),
                   owner=state.node, metrics=metrics or Metrics())

    def zone_failed(self, key: str, exc: Exception) -> None:
        """Remember a zone's failure for this pass; audit it once (refusals as zone.refused)."""
        if key in self.zone_errors:
            return
        self.zone_errors[key] = exc
        code = getattr(exc, "code", "E_ZONE")
        if self.zone_reported.get(key) == code:
            return  # still failing the same way: audited when it started, not every pass
        self.zone_reported[key] = code
        refused = code in ("E_HOST_KEY", "E_AUTH")
        self.audit.record("zone.refused" if refused else "zone.error", zone=key, code=code,
                          reason="host_key_mismatch" if code == "E_HOST_KEY" else
                          "authentication_refused" if code == "E_AUTH" else "unavailable")

    def today(self) -> dt.date:
        """The processing day in the gateway's time zone (contracts are local dates)."""
        return self.now().astimezone(self.cfg.gateway.tz).date()
