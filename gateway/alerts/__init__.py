"""Alerts: telling a person when something needs one (docs/operations.md, "Alerts").

Once per pass the daemon's :class:`~.engine.Engine` finds the conditions that hold — from
the ledger and the read model (a purge due, a key expiring, a zone down, slices not
collected, a locked console account, a piece of the pass failing again and again, the
audit chain not verifying) and from new audit entries (every ``security.*`` event, each
rejected file, console account changes outside the change window) — and syncs them with
the ledger's alerts: one open alert per condition key, a reminder every
``reminder_hours`` while it stays open, ``cleared`` once it no longer holds. What is to
be said is queued in the ledger; :class:`~.delivery.Deliverer`, a thread of its own,
sends it by e-mail and webhook, retrying what fails.

- :mod:`.rules`: the rules, their text, and how each finds its conditions.
- :mod:`.engine`: one evaluation per pass, the audit-log cursor, the gauge.
- :mod:`.delivery`: the notices, the channels, the thread.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.alerts.delivery import Channels, Deliverer
from gateway.alerts.engine import Engine, KeyList, Sources
from gateway.config.alerts import file_problems
from gateway.errors import ConfigError

__all__ = ["Alerting", "KeyList", "Sources", "start"]


class Alerting:
    """The engine and its delivery thread, as the daemon holds them."""

    def __init__(self, engine: Engine, deliverer: Deliverer) -> None:
        self.engine, self.deliverer = engine, deliverer

    def close(self) -> None:
        self.deliverer.close()


def start(src: Sources, keys: Callable[[], KeyList]) -> Alerting:
    """The engine and a running delivery thread; missing files or secrets stop the start."""
    assert src.cfg.alerts is not None  # noqa: S101 — invariant, not an input check
    if problems := file_problems(src.cfg.alerts):
        raise ConfigError(problems)
    deliverer = Deliverer(src.ledger, src.audit, Channels(src.cfg.alerts, src.node), src.metrics)
    engine = Engine(src, keys, wake=deliverer.wake.set)
    engine.prime()
    deliverer.start()
    engine.measure()
    return Alerting(engine, deliverer)
