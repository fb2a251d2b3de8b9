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
import datetime as dt
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from gateway import __version__, checkpoint, clock, metrics, outbox
from gateway.access import evidence
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.crypto.service import Crypto
from gateway.errors import AuditError, GatewayError
from gateway.flows import Context, Interrupted, Services, batches, results
from gateway.ledger import Ledger, LedgerError, ZoneSeen
from gateway.metrics import Metrics
from gateway.progress import Progress
from gateway.reports import deliver
from gateway.retention import purge
from gateway.retention.policy import State as ContractState
from gateway.state import State, StateBusy
from gateway.transfer.base import ZoneError, is_temporary
from gateway.transfer.local import LocalZone
from gateway.transfer.wrappers import MonitoredZone
from gateway.unmask import release as unmask_release

if TYPE_CHECKING:  # the daemon's loop loads them: `run --once` needs neither
    from gateway import alerts
    from gateway.forward import runner as forward

log = structlog.get_logger("gateway.daemon")


@contextlib.contextmanager
def open_context(cfg: Config, *, actor: str | None = "daemon",
                 now: Callable[[], dt.datetime] = clock.now) -> Iterator[Context]:
    """Everything a flow needs, opened in order and closed in reverse; one runner per state
    dir. *now* is the flows' clock: the demo and tests move it to a deadline."""
    state = State.of(cfg)
    with state.lock(), contextlib.ExitStack() as stack:
        state.clean_temporaries()
        state.tighten()
        metrics = Metrics()
        audit = AuditLog(state.root / "audit", actor=actor, listener=metrics.audited)
        crypto = Crypto.start(cfg)
        stack.callback(crypto.close)  # closed last: the agent outlives nothing that uses it
        ledger = Ledger(cfg.gateway.db_url, owner=state.node)
        stack.callback(ledger.close)
        if removed := audit.repair():
            log.warning("audit.repaired", bytes=removed, reason="torn_last_line")
        audit.record("config.loaded", config_sha256=cfg.sha256, version=__version__,
                     fingerprint=crypto.fingerprint)
        state.share()  # the ledger and the audit log exist now: the console's group may reach them
        for refused in crypto.keyset.refused:
            audit.record("key.refused", key=refused.key_path, fingerprint=refused.fingerprint)
            log.warning("key.refused", key=refused.key_path, problem=refused.problem)
        ctx = Context.build(Services(cfg=cfg, ledger=ledger, audit=audit, state=state,
                                     zones=Services.open_zones(cfg), now=now), crypto, metrics)
        stack.callback(ctx.close_zones)
        ctx.leases.start()
        stack.callback(ctx.leases.close)  # before the ledger closes
        for use, key in crypto.keyset.uses():
            if key.expires is not None:
                metrics.key_expiry.labels(fingerprint=key.fingerprint, use=use).set(
                    key.expires.timestamp())
        try:
            yield ctx
        finally:
            try:  # whoever wrote audit entries seals them on the way out (docs/formats.md §5.4)
                checkpoint.seal(ctx)
            except (GatewayError, OSError) as exc:
                log.error("audit.checkpoint_failed", error=str(exc))


@contextlib.contextmanager
def read_context(cfg: Config) -> Iterator[Services]:
    """For read-only commands (status, dry runs): no lock, no keyring, nothing audited."""
    state = State.of(cfg)
    ledger = Ledger(cfg.gateway.db_url)
    services = Services(cfg=cfg, ledger=ledger, audit=AuditLog(state.root / "audit"),
                        state=state, zones=Services.open_zones(cfg))
    try:
        yield services
    finally:
        services.close_zones()
        ledger.close()


def purge_due(cfg: Config, *, timeout: float = 600.0,
              progress: Progress | None = None) -> tuple[list[purge.PurgeReport], int | None]:
    """`gateway retention run`: purge every contract that is due — here, or, while another
    gateway process holds the state directory, by asking it to run a pass now (SIGUSR1;
    every pass purges what is due) and waiting for its certificates. Returns the reports
    and the pid the work was handed to (None: done here)."""
    with read_context(cfg) as view:
        due = [d for d in purge.decisions(view) if d.state is ContractState.PURGE_DUE]
    handed_to: int | None = None
    deadline = time.monotonic() + timeout
    while due:
        try:
            with open_context(cfg, actor=None) as ctx:
                if progress is not None:  # a person at a terminal: one bar per contract
                    ctx.run.progress = progress
                purge.run(ctx)
            break
        except StateBusy as busy:
            with read_context(cfg) as view:
                if all(purge.finished(view, d) for d in due):
                    break
            if handed_to is None and busy.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):  # it purges
                    os.kill(busy.pid, signal.SIGUSR1)  # on its next pass all the same
                handed_to = busy.pid
                log.info("retention.handed_over", pid=busy.pid)
            if time.monotonic() > deadline:
                raise GatewayError(f"the running gateway (pid {busy.pid}) has not finished the "
                                   f"purge within {timeout:.0f} s; see `gateway retention "
                                   "status`") from None
            time.sleep(0.5)
    with read_context(cfg) as view:
        return [purge.report(view, d) for d in due], handed_to


def run_once(ctx: Context) -> collections.Counter[str]:
    """One pass over every zone; failing zones are recorded in ``ctx.run.zone_errors``."""
    with ctx.metrics.pass_duration.time():
        outcomes = _pass(ctx)
    observe(ctx)
    return outcomes


@dataclass(frozen=True)
class Settled:
    """What ``run --once`` did: every pass's outcomes and failures, and the files it left
    because they were still being written when its patience ran out."""

    outcomes: collections.Counter[str]
    failures: list[str]
    left: list[tuple[str, str, float]]  # zone, file name, epoch s it may be ready


def run_settled(ctx: Context, *, patience: float | None = None) -> Settled:
    """Passes until no local file is still settling, for ``run --once``.

    A file dropped a moment before ``run --once`` is not ready yet (it must be left
    unchanged for its zone's ``settle_seconds``): one pass would say "nothing pending"
    while it sits in the zone. So the run waits for such a file and passes again — for at
    most *patience* seconds (default: the longest ``settle_seconds`` and a second), since a
    file that keeps changing is an upload still under way, which a later run takes."""
    local = _local_zones(ctx)
    if patience is None:
        patience = max((z.settle for z in local), default=0.0) + 1.0
    deadline = time.time() + patience
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    while True:
        outcomes.update(run_once(ctx))
        failures += [f for f in ctx.run.failures() if f not in failures]
        due = [z.next_ready_at for z in local if z.next_ready_at is not None]
        if not due or ctx.run.stop.is_set() or min(due) > deadline:
            break
        ctx.run.stop.wait(max(0.0, min(due) - time.time() + 0.05))
    left = sorted((z.key, name, at) for z in local for name, at in z.settling.items())
    return Settled(outcomes, failures, left)


def observe(ctx: Context) -> None:
    """The gauges: what is pending, what this node holds, when each purge is due."""
    ctx.metrics.pending_deliveries.set(len(ctx.ledger.pending_deliveries()))
    ctx.metrics.leases_held.set(ctx.ledger.leases_held(ctx.node))
    due = {d.agency: dt.datetime.combine(d.deadline, dt.time(), tzinfo=ctx.cfg.gateway.tz)
           for d in purge.decisions(ctx) if d.state is not ContractState.PURGED}
    gauge = ctx.metrics.purge_deadline
    for agency, midnight in due.items():  # set, then drop the purged: a scrape in between
        gauge.labels(agency=agency).set(midnight.timestamp())  # never sees the family empty
    for agency in ctx.metrics.purge_agencies - due.keys():
        gauge.remove(agency)
    ctx.metrics.purge_agencies = set(due)


def _pass(ctx: Context) -> collections.Counter[str]:
    ctx.run.zone_errors.clear()
    ctx.run.part_errors.clear()
    ctx.leases.busy_until = None
    guard = ctx.run.guard = functools.partial(isolated, ctx)  # every piece below runs under it
    outcomes: collections.Counter[str] = collections.Counter()
    with guard("outbox"):  # what a crash or an unreachable zone left committed but unsent
        outbox.finish_pending(ctx)
    with guard("batches"):
        outcomes.update(batches.run(ctx))
    outcomes.update(results.run(ctx))
    with guard("unmask"):  # expiries, denials told, approved requests released, expired deleted
        unmask_release.run(ctx)
    with guard("access"):
        collect_access(ctx)
    track_collection(ctx)
    if not ctx.run.stop.is_set():
        for report in purge.run(ctx):  # start-up and every pass: a missed
            outcomes["purged"] += 1                  # deadline is caught
            log.info("retention.purged", agency=report.decision.agency, files=len(report.objects))
        if made := deliver.monthly(ctx):  # from the 1st: last month's, once
            outcomes["reports"] += made
    with guard("health"):
        save_health(ctx)
    for part in [p for p in ctx.run.part_reported
                 if p not in ctx.run.part_errors and p not in AFTER_PASS]:
        del ctx.run.part_reported[part]  # it went well: a new failure is audited again
    for key, exc in ctx.run.zone_errors.items():
        log.error("zone.failed", zone=key, error=str(exc))
    log.info("pass.done", **{k: v for k, v in outcomes.items()})
    return outcomes


# Pieces run by the daemon's loop after the pass (the checkpoint: hourly): their "audited
# once" mark is forgotten only once they have run and gone well, not by every pass.
AFTER_PASS = ("checkpoint", "alerts")


def parts(cfg: Config) -> list[str]:
    """Every piece a pass is made of, by the name :func:`isolated` gives it."""
    each = [f"{kind}.{a.code}" for kind in ("results", "collection", "retention", "reports")
            for a in cfg.agencies]
    return ["pass", "outbox", "batches", "unmask", "access", "access.line", "health", "checkpoint",
            "alerts", "reports", *each]


@contextlib.contextmanager
def isolated(ctx: Context, part: str, *, passing: tuple[type[Exception], ...] = ()
             ) -> Iterator[None]:
    """Run one piece of a pass so that whatever it raises stops only that piece: nothing
    read from outside (a log line, a file, a name) may stop the pass, and a bug met by one
    agency's work must not hold back another's purge. The failure is logged with its
    traceback, counted (``gateway_pass_failures_total``), reported by ``/healthz`` and
    ``run --once``, and audited as ``pass.failed`` once until the piece succeeds again
    (a failure that repeats every few seconds is one event per kind of exception, as with
    zones, until a pass in which the piece did not fail; "once" is per process — a
    restart, or each `run --once`, audits a failure it meets again). Pieces
    nest: an agency's results are one piece, each file in them another, so one file that
    always fails holds back neither the agency's other files nor anything else. What a
    piece had in hand is in the ledger's keeping: an unfinished file is resumed next pass
    as after a crash. A stop request still stops the pass, and so does the ledger or the
    audit log failing (the database gone, the disk full): no piece can go on without them,
    and the pass fails as one (``pass.failed`` in the log, ``/healthz`` 503 with the reason)."""
    through: tuple[type[BaseException], ...] = (Interrupted, LedgerError, AuditError, *passing)
    try:
        yield
    except through:
        raise  # a stop; the ledger or the audit log failing fails every piece: the pass
    except Exception as exc:
        kind = type(exc).__name__
        ctx.run.part_errors[part] = exc
        ctx.metrics.pass_failures.labels(part=part).inc()
        log.error("pass.part_failed", part=part, kind=kind, error=str(exc)[:500],
                  exc_info=not isinstance(exc, GatewayError | OSError))
        if kind not in ctx.run.part_reported.setdefault(part, set()):
            ctx.audit.record("pass.failed", part=part, error=kind)
            ctx.run.part_reported[part].add(kind)  # only once it is in the log


def collect_access(ctx: Context) -> None:
    """Who read which delivered file, from internal-sftp's log (docs/security-team.md): before the
    collections, so a slice's ``slice.accessed`` comes before its ``slice.collected``."""
    if ctx.cfg.access.sshd_log is not None:  # unreadable, a FIFO: the piece fails, is
        evidence.collect(ctx.cfg, ctx.ledger, ctx.audit, ctx.node)  # said and alerted


def track_collection(ctx: Context) -> None:
    """Audit ``slice.collected`` when an agency has removed a delivered file from its inbox."""
    for agency in ctx.cfg.agencies:
        key = ctx.cfg.zone_name(agency.code, "inbox")
        if key in ctx.run.zone_errors:
            continue
        with ctx.run.guard(f"collection.{agency.code}"):
            waiting = ctx.ledger.uncollected(key)
            if not waiting:
                continue
            try:
                present = {e.name for e in ctx.zones[key].list_all()}
            except ZoneError as exc:
                ctx.zone_failed(key, exc)
                continue
            for d in waiting:
                if d.name not in present and ctx.ledger.mark_collected(d.id):  # once, by one node
                    ctx.audit.record("slice.collected", file=d.name, agency=agency.code,
                                     role=d.role, batch_id=d.batch_id, zone=key)


def save_health(ctx: Context) -> None:
    """Persist each zone's health. Every zone is listed at the end of the pass — which
    also checks one no flow touched — so ``waiting`` is what lies there *now*: not the
    listing from before the pass took the files (a file just taken is not waiting), and
    counting a file still being written (it is waiting, only not yet ready)."""
    seen: list[ZoneSeen] = []
    try:
        for key, zone in ctx.zones.items():
            if not isinstance(zone, MonitoredZone):
                continue
            if key not in ctx.run.zone_errors:
                try:
                    zone.health.waiting = sum(1 for e in zone.list_all() if not is_temporary(e.name))
                except ZoneError as exc:
                    ctx.zone_failed(key, exc)
            zone.touched = False
            if key not in ctx.run.zone_errors:
                ctx.run.zone_reported.pop(key, None)  # recovered: a new failure is audited again
            ctx.metrics.zone_up.labels(zone=key).set(0 if key in ctx.run.zone_errors else 1)
            h = zone.health
            last_error, last_error_at = h.last_error, h.last_error_at
            if (failed := ctx.run.zone_errors.get(key)) is not None:
                # The pass's verdict, not only what the zone wrapper saw: a write refused for a
                # full disk is one file's error to the wrapper, yet the zone cannot take what is
                # pending for it — failing until a write succeeds (each pass retries it).
                last_error, last_error_at = str(failed), dt.datetime.now(dt.UTC)
            seen.append(ZoneSeen(key, zone.describe(), h.last_scan, h.waiting,
                                 (last_error or "")[:500] or None, last_error_at))
    finally:  # what was seen is saved, also when a zone's listing fails unexpectedly
        ctx.ledger.save_zone_statuses(seen)


def sleep_until_woken(wake: threading.Event, seconds: float, seen: Signals,
                      stop: threading.Event) -> None:
    """``wake.wait(seconds)`` in slices of at most half a second, ending early on a signal.
    A signal the kernel hands to another thread (the watcher's, the metrics server's) only
    runs its Python handler when the main thread next runs bytecode: in one long wait, a
    SIGTERM or SIGUSR1 could lie unnoticed for the whole rescan interval."""
    deadline = time.monotonic() + seconds
    while not (wake.is_set() or seen.pending or stop.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wake.wait(min(left, 0.5))


def next_wait(ctx: Context, default: float) -> float:
    """Seconds until the next pass: *default*, or sooner when a local file still settling
    becomes ready (inotify reports its last write, not the moment it has settled), or when
    another node's lease on work this pass wanted runs out (nothing reports a node's death)."""
    now = time.time()
    due = [z.next_ready_at for z in _local_zones(ctx) if z.next_ready_at is not None]
    if ctx.leases.busy_until is not None:  # another node's lease: take over when it runs out
        due.append(ctx.leases.busy_until)
    return max(0.05, min([default, *(t - now + 0.05 for t in due)]))


def _local_zones(ctx: Context) -> list[LocalZone]:
    return [z.inner for z in ctx.zones.values()
            if isinstance(z, MonitoredZone) and isinstance(z.inner, LocalZone)]


class Signals:
    """What the signal handlers saw, for the main loop to act on.

    A Python signal handler runs in the main thread *between two bytecodes of whatever it
    was doing* — possibly in the middle of writing a log line, holding the logger's lock.
    A handler that logs (or sets an Event the main thread may be clearing) can then wait
    for a lock its own thread holds: the daemon froze, deaf to SIGTERM (seen in CI). So the
    handlers only append to a list and set ``ctx.run.stop`` (whose lock the main thread never
    takes); the loop logs and wakes up within half a second."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def take(self) -> list[str]:
        taken, self.pending[:] = list(self.pending), []
        return taken


def install_signal_handlers(ctx: Context) -> Signals:
    seen = Signals()

    def stop(signum: int, _frame: FrameType | None) -> None:
        seen.pending.append(signal.Signals(signum).name)
        ctx.run.stop.set()

    def pass_now(signum: int, _frame: FrameType | None) -> None:
        seen.pending.append(signal.Signals(signum).name)  # e.g. `gateway retention run`

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, pass_now)  # never the default action: that kills
    return seen


def log_signals(seen: Signals) -> None:
    for name in seen.take():
        log.info("pass.requested" if name == "SIGUSR1" else "stop.requested", signal=name)


def run_forever(ctx: Context, *, interval: float = 5.0, rescan: float = 30.0) -> None:
    """Watch and poll until SIGTERM/SIGINT (see the module docstring)."""
    wake = threading.Event()
    seen = install_signal_handlers(ctx)
    observers = [zone.watch(lambda _key: wake.set()) for zone in _local_zones(ctx)]
    has_remote = len(observers) < len(ctx.zones)
    period = interval if has_remote else rescan
    health = metrics.Health(max_age=3 * period)  # docs/operations.md; a pass in progress is judged apart
    server = (metrics.serve(ctx.cfg.gateway.metrics_listen, ctx.metrics, health)
              if ctx.cfg.gateway.metrics_listen else None)
    for part in parts(ctx.cfg):  # each series from 0, so its first failure is an increase
        ctx.metrics.pass_failures.labels(part=part)
    hub = start_forwarding(ctx)
    alerting = start_alerts(ctx)
    ctx.audit.record("gateway.started", version=__version__)
    log.info("gateway.started", zones=len(ctx.zones), watched=len(observers),
             metrics=f"{server.server_address[0]!s}:{server.server_address[1]}" if server else None)
    sealed_at = time.monotonic()
    try:
        while not ctx.run.stop.is_set():
            wake.clear()
            log_signals(seen)
            try:
                health.begin()
                run_once(ctx)
                sealed = time.monotonic() - sealed_at >= checkpoint.INTERVAL
                if sealed:
                    with isolated(ctx, "checkpoint"):
                        checkpoint.seal(ctx)  # nothing new: nothing written
                    sealed_at = time.monotonic()
                if alerting is not None:
                    with isolated(ctx, "alerts"):
                        alerting.engine.evaluate(ctx.now(), list(ctx.run.part_errors), sealed)
                for part, ran in (("checkpoint", sealed), ("alerts", alerting is not None)):
                    if ran and part not in ctx.run.part_errors:
                        ctx.run.part_reported.pop(part, None)
                health.passed({k: str(e) for k, e in ctx.run.zone_errors.items()},
                              {k: f"{type(e).__name__}: {e}" for k, e in ctx.run.part_errors.items()})
            except Interrupted:
                break
            except Exception as exc:  # a full disk, the database gone: nothing committed. And
                # a bug outside every isolated piece: said, counted, tried again next pass —
                # a daemon that exits on it would be restarted into the same bug.
                log.error("pass.failed", error=str(exc), kind=type(exc).__name__,
                          exc_info=not isinstance(exc, GatewayError | OSError))
                ctx.metrics.pass_failures.labels(part="pass").inc()
                health.failed(str(exc))
            sleep_until_woken(wake, next_wait(ctx, period), seen, ctx.run.stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=5)
        log_signals(seen)
        ctx.audit.record("gateway.stopped")
        if hub is not None:
            hub.close()
        if alerting is not None:
            alerting.close()
        log.info("gateway.stopped")


def start_forwarding(ctx: Context) -> forward.Hub | None:
    """The audit log's forwarding threads (gateway/forward/), woken by every entry this
    process writes; None when no [[forward]] is configured."""
    if not ctx.cfg.forward:
        return None
    from gateway.forward import runner as forward

    link = forward.Link(ledger=ctx.ledger, audit=ctx.audit, node=ctx.node, leases=ctx.leases,
                        metrics=ctx.metrics)

    def listen(wake: Callable[[str], None]) -> None:
        before = ctx.audit.listener

        def both(event: str) -> None:
            if before is not None:
                before(event)
            wake(event)
        ctx.audit.listener = both

    return forward.start(ctx.cfg.forward, link, listen)


def start_alerts(ctx: Context) -> alerts.Alerting | None:
    """The alert engine (evaluated after each pass) and its delivery thread
    (gateway/alerts/); None when no [alerts] is configured."""
    if ctx.cfg.alerts is None:
        return None
    from gateway import alerts

    src = alerts.Sources(cfg=ctx.cfg, ledger=ctx.ledger, audit=ctx.audit, node=ctx.node,
                         metrics=ctx.metrics)
    return alerts.start(src, functools.partial(key_list, ctx))


def key_list(ctx: Context) -> alerts.KeyList:
    """Every key the gateway uses, with its expiry: the keyring this daemon loaded (its own
    secret key among them) and the configured key files read again (a key refused at start
    for having expired is there too)."""
    from gateway import queries

    out: alerts.KeyList = [(k.fingerprint, f"{use} key", k.expires)
                           for use, k in ctx.crypto.keyset.uses()]
    out += [(v.fingerprint, f"{v.owner} key {v.key_path}", v.expires)
            for v in queries.key_views(ctx.cfg) if v.fingerprint is not None]
    return out
