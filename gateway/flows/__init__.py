"""The flows: bank case files to agency slices, agency results to the bank.

What a step is given comes in three parts, so a function's signature says what it
may touch:

- :class:`Services` — the long-lived parts a reader needs (configuration, ledger, audit
  log, state directory, zones, the clock, this node); frozen, so no step swaps one.
  Read-only commands and dry runs get only these: no keyring, no leases.
- :class:`Context` — the services plus what a writer needs: the keyring, the leases,
  the metrics, and :class:`Run`.
- :class:`Run` — the one mutable part: the stop flag, what failed this pass and what has
  been reported already, the daemon's guard, the progress display.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway import clock
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


class Guard(Protocol):
    """Runs one named piece of a pass (``results.AG001``, ``retention.AG002``): the daemon's
    guard (``Context.guard``, :func:`gateway.daemon.isolated`) keeps an unexpected failure
    of one piece from stopping the others; a command that does one thing keeps
    :func:`unguarded` and fails as a whole. Exceptions in *passing* go through to the
    caller, who handles them."""

    def __call__(self, part: str, /, *, passing: tuple[type[Exception], ...] = ()
                 ) -> contextlib.AbstractContextManager[object]: ...


def unguarded(_part: str, *, passing: tuple[type[Exception], ...] = ()
              ) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True, kw_only=True)
class Services:
    """The long-lived parts every step may read."""

    cfg: Config
    ledger: Ledger
    audit: AuditLog
    state: State
    zones: Mapping[str, Zone]
    now: Callable[[], dt.datetime] = clock.now

    @staticmethod
    def open_zones(cfg: Config) -> dict[str, Zone]:
        return {key: open_zone(key, spec) for key, spec in cfg.zones()}

    def close_zones(self) -> None:
        for zone in self.zones.values():
            with contextlib.suppress(Exception):
                zone.close()

    @property
    def node(self) -> str:
        """This node (State.node): lease holder, checkpoint author."""
        return self.state.node

    def today(self) -> dt.date:
        """The processing day in the gateway's time zone (contracts are local dates)."""
        return self.now().astimezone(self.cfg.gateway.tz).date()


@dataclass(kw_only=True)
class Run:
    """What changes while a process runs. The errors are this pass's; what was reported
    stays while the failure lasts, so an alert is raised once, not every pass."""

    stop: threading.Event = field(default_factory=threading.Event)
    zone_errors: dict[str, Exception] = field(default_factory=dict)  # this pass, by zone key
    zone_reported: dict[str, str] = field(default_factory=dict)  # zone -> code already audited
    part_errors: dict[str, Exception] = field(default_factory=dict)  # this pass, by pass part
    part_reported: dict[str, set[str]] = field(default_factory=dict)  # part -> errors audited
    # the daemon's guard while a pass runs (see Guard); a command's context keeps none, so
    # what fails there fails the command
    guard: Guard = field(default=unguarded)
    progress: Progress = field(default_factory=Progress)  # a bar on a terminal; else silent

    def failures(self) -> list[str]:
        """What failed this pass, a phrase each, for a person (``run --once``'s last line)."""
        return [str(e) for e in self.zone_errors.values()] + [
            f"{part} failed ({type(e).__name__}: {e}); the rest of the pass went on"
            for part, e in self.part_errors.items()]


@dataclass(frozen=True, kw_only=True)
class Context(Services):
    """The services and what writing needs besides."""

    crypto: Crypto
    leases: Leases
    metrics: Metrics = field(default_factory=Metrics)
    run: Run = field(default_factory=Run)

    @classmethod
    def build(cls, services: Services, crypto: Crypto, metrics: Metrics | None = None) -> Context:
        return cls(cfg=services.cfg, ledger=services.ledger, audit=services.audit,
                   state=services.state, zones=services.zones, now=services.now, crypto=crypto,
                   leases=Leases(services.ledger, services.node, services.cfg.gateway.lease_seconds),
                   metrics=metrics or Metrics())

    def zone_failed(self, key: str, exc: Exception) -> None:
        """Remember a zone's failure for this pass; audit it once (refusals as zone.refused)."""
        run = self.run
        if key in run.zone_errors:
            return
        run.zone_errors[key] = exc
        code = getattr(exc, "code", "E_ZONE")
        if run.zone_reported.get(key) == code:
            return  # still failing the same way: audited when it started, not every pass
        run.zone_reported[key] = code
        refused = code in ("E_HOST_KEY", "E_AUTH")
        self.audit.record("zone.refused" if refused else "zone.error", zone=key, code=code,
                          reason="host_key_mismatch" if code == "E_HOST_KEY" else
                          "authentication_refused" if code == "E_AUTH" else "unavailable")
