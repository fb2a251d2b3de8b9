"""``gateway run``: turn arrivals into flow runs until asked to stop.

Local zones are watched with inotify (watchdog): a file closed after writing,
moved into place, or removed wakes the loop at once; a rescan every
``rescan`` seconds is the safety net. SFTP zones are polled every
``interval`` seconds (a remote file must also be stable across two polls).
Each pass runs the batch flow, the results flow, pick-up tracking and
retention (so a deadline missed while the gateway was down is purged at
start-up), and records each zone's health for `gateway status`.

SIGTERM/SIGINT: stop taking new work; the file in hand is finished, or —
while its rows are still being read — rolled back (nothing was committed, the
claim is resumed by the next run). Never a partial delivery. Exit 0.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import structlog

from gateway import __version__
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.crypto.service import Crypto
from gateway.errors import GatewayError
from gateway.flows import Context, Interrupted, batches, intake, results
from gateway.ledger import Ledger
from gateway.retention import purge
from gateway.state import State
from gateway.transfer.base import ZoneError
from gateway.transfer.local import LocalZone
from gateway.transfer.wrappers import MonitoredZone

log = structlog.get_logger("gateway.daemon")


@contextlib.contextmanager
def open_context(cfg: Config, *, actor: str | None = "daemon") -> Iterator[Context]:
    """Everything a flow needs, opened in order and closed in reverse; one runner per state dir."""
    state = State(cfg.gateway.state_dir)
    with state.lock():
        state.clean_temporaries()
        audit = AuditLog(state.root / "audit", actor=actor)
        crypto = Crypto.start(cfg)
        ledger = Ledger(cfg.gateway.db_url)
        ctx = None
        try:
            audit.record("config.loaded", config_sha256=cfg.sha256, version=__version__,
                         fingerprint=crypto.fingerprint)
            for refused in crypto.keyset.refused:
                audit.record("key.refused", key=refused.key_path, fingerprint=refused.fingerprint)
                log.warning("key.refused", key=refused.key_path, problem=refused.problem)
            ctx = Context.build(cfg, crypto, ledger, audit, state)
            yield ctx
        finally:
            if ctx is not None:
                for zone in ctx.zones.values():
                    with contextlib.suppress(Exception):
                        zone.close()  # type: ignore[attr-defined]
            ledger.close()
            crypto.close()


@contextlib.contextmanager
def read_context(cfg: Config) -> Iterator[Context]:
    """For read-only commands (status, dry runs): no lock, no keyring, nothing audited."""
    state = State(cfg.gateway.state_dir)
    ledger = Ledger(cfg.gateway.db_url)
    ctx = Context.build(cfg, None, ledger, AuditLog(state.root / "audit"), state)  # type: ignore[arg-type]
    try:
        yield ctx
    finally:
        for zone in ctx.zones.values():
            with contextlib.suppress(Exception):
                zone.close()  # type: ignore[attr-defined]
        ledger.close()


def run_once(ctx: Context) -> collections.Counter[str]:
    """One pass over every zone; failing zones are recorded in ``ctx.zone_errors``."""
    ctx.zone_errors.clear()
    intake.finish_pending(ctx)  # what a crash or an unreachable zone left committed but unsent
    outcomes = batches.run(ctx)
    outcomes.update(results.run(ctx))
    track_collection(ctx)
    if not ctx.stop.is_set():
        for report in purge.run(ctx):  # start-up and every pass: a missed deadline is caught
            outcomes["purged"] += 1
            log.info("retention.purged", agency=report.decision.agency, files=len(report.objects))
    save_health(ctx)
    for key, exc in ctx.zone_errors.items():
        log.error("zone.failed", zone=key, error=str(exc))
    log.info("pass.done", **{k: v for k, v in outcomes.items()})
    return outcomes


def track_collection(ctx: Context) -> None:
    """Audit ``slice.collected`` when an agency has removed a delivered file from its inbox."""
    for agency in ctx.cfg.agencies:
        key = ctx.cfg.zone_key(agency.code, "inbox")
        if key in ctx.zone_errors:
            continue
        waiting = ctx.ledger.uncollected(key)
        if not waiting:
            continue
        try:
            present = {e.name for e in ctx.zones[key].list_all()}
        except ZoneError as exc:
            ctx.zone_failed(key, exc)
            continue
        for d in waiting:
            if d.name not in present:
                ctx.ledger.mark_collected(d.id)
                ctx.audit.record("slice.collected", file=d.name, agency=agency.code, role=d.role,
                                 batch_id=d.batch_id, zone=key)


def save_health(ctx: Context) -> None:
    """Persist each zone's health; a zone no flow touched this pass is listed once to check it."""
    for key, zone in ctx.zones.items():
        if not isinstance(zone, MonitoredZone):
            continue
        if not zone.touched and key not in ctx.zone_errors:
            try:
                zone.list_all()
            except ZoneError as exc:
                ctx.zone_failed(key, exc)
        zone.touched = False
        if key not in ctx.zone_errors:
            ctx.zone_reported.pop(key, None)  # recovered: a new failure is audited again
        h = zone.health
        ctx.ledger.save_zone_status(key, zone.describe(), last_scan_at=h.last_scan,
                                    waiting=h.waiting, last_error=(h.last_error or "")[:500] or None,
                                    last_error_at=h.last_error_at)


def install_signal_handlers(ctx: Context, wake: threading.Event | None = None) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop.requested", signal=signal.Signals(signum).name)
        ctx.stop.set()
        if wake is not None:
            wake.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def run_forever(ctx: Context, *, interval: float = 5.0, rescan: float = 30.0) -> None:
    """Watch and poll until SIGTERM/SIGINT (see the module docstring)."""
    wake = threading.Event()
    install_signal_handlers(ctx, wake)
    observers = []
    for zone in ctx.zones.values():
        inner = getattr(zone, "inner", None)
        if isinstance(inner, LocalZone):
            observers.append(inner.watch(lambda _key: wake.set()))
    has_remote = len(observers) < len(ctx.zones)
    ctx.audit.record("gateway.started", version=__version__)
    log.info("gateway.started", zones=len(ctx.zones), watched=len(observers))
    try:
        while not ctx.stop.is_set():
            wake.clear()
            try:
                run_once(ctx)
            except Interrupted:
                break
            except (GatewayError, OSError) as exc:  # e.g. a full disk: nothing was committed
                log.error("pass.failed", error=str(exc), kind=type(exc).__name__)
            wake.wait(interval if has_remote else rescan)
    finally:
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=5)
        ctx.audit.record("gateway.stopped")
        log.info("gateway.stopped")
