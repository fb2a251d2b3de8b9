"""``gateway run``: turn arrivals into flow runs, until asked to stop.

This version polls the zones (every ``interval`` seconds) and stops cleanly on
SIGTERM/SIGINT: the file in hand is finished or rolled back (its claim is
resumed by the next run), never half-delivered. Watching with inotify and
SFTP zones arrive with the zones/daemon issue.
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
from gateway.flows import Context, batches, results
from gateway.ledger import Ledger
from gateway.retention import purge
from gateway.state import State

log = structlog.get_logger("gateway.daemon")


@contextlib.contextmanager
def open_context(cfg: Config, *, actor: str | None = "daemon") -> Iterator[Context]:
    """Everything a flow needs, opened in order and closed in reverse; one runner per state dir."""
    state = State(cfg.gateway.state_dir)
    with state.lock():
        audit = AuditLog(state.root / "audit", actor=actor)
        crypto = Crypto.start(cfg)
        ledger = Ledger(cfg.gateway.db_url)
        try:
            audit.record("config.loaded", config_sha256=cfg.sha256, version=__version__,
                         fingerprint=crypto.fingerprint)
            for refused in crypto.keyset.refused:
                audit.record("key.refused", key=refused.key_path, fingerprint=refused.fingerprint)
                log.warning("key.refused", key=refused.key_path, problem=refused.problem)
            yield Context.build(cfg, crypto, ledger, audit, state)
        finally:
            ledger.close()
            crypto.close()


@contextlib.contextmanager
def read_context(cfg: Config) -> Iterator[Context]:
    """For read-only commands (status, dry runs): no lock, no keyring, nothing audited."""
    state = State(cfg.gateway.state_dir)
    ledger = Ledger(cfg.gateway.db_url)
    try:
        yield Context.build(cfg, None, ledger, AuditLog(state.root / "audit"), state)  # type: ignore[arg-type]
    finally:
        ledger.close()


def run_once(ctx: Context) -> collections.Counter[str]:
    """Process everything pending, then return how each file ended."""
    outcomes = batches.run(ctx)
    outcomes.update(results.run(ctx))
    for report in purge.run(ctx):  # at start-up and on every pass: a missed deadline is caught
        outcomes["purged"] += 1
        log.info("retention.purged", agency=report.decision.agency, files=len(report.objects))
    log.info("run.done", **{k: v for k, v in outcomes.items()})
    return outcomes


def run_forever(ctx: Context, *, interval: float = 2.0) -> None:
    """Poll until SIGTERM/SIGINT; the current file is finished or rolled back, then exit."""
    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop.requested", signal=signal.Signals(signum).name)
        ctx.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    ctx.audit.record("gateway.started", version=__version__)
    try:
        while not ctx.stop.is_set():
            try:
                run_once(ctx)
            except batches.Interrupted:
                break
            ctx.stop.wait(interval)
    finally:
        ctx.audit.record("gateway.stopped")
