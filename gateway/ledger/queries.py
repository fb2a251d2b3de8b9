"""The read side: every figure a person sees, computed once (DESIGN: "one read model").

`gateway status` and the console's Overview show the same zone health from
:func:`zone_health`; whatever the CLI prints and a console page shows comes from
here (or, for the audit log, from :mod:`gateway.audit`). Nothing here opens a key
or a zone: the console, which holds neither, uses it as the CLI does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.config import Config
from gateway.ledger import Ledger
from gateway.retention.policy import Decision, decide
from gateway.transfer.base import display_name


@dataclass(frozen=True)
class ZoneHealth:
    zone: str  # its config key path
    location: str
    state: str  # ok | failing | unknown (never scanned)
    last_scan: dt.datetime | None
    waiting: int
    last_error: str | None
    last_error_at: dt.datetime | None
    refused: list[dict[str, str]] = field(default_factory=list)  # name, reason


@dataclass(frozen=True)
class InHand:
    item: str
    node: str
    until: dt.datetime
    ran_out: bool


def zone_health(cfg: Config, ledger: Ledger) -> tuple[list[ZoneHealth], list[InHand]]:
    """Each configured zone as the daemon last saw it, and the work nodes hold leases on."""
    seen = {z.zone: z for z in ledger.zone_statuses()}
    refused: dict[str, list[dict[str, str]]] = {}
    for r in ledger.refused_files():
        refused.setdefault(r.zone, []).append({"name": display_name(r.name), "reason": r.reason})
    zones = []
    for key, spec in cfg.zones():
        z = seen.get(key)
        failing = bool(z and z.last_error_at and (z.last_scan_at is None
                                                  or z.last_error_at >= z.last_scan_at))
        zones.append(ZoneHealth(
            zone=key, location=spec.describe(),
            state="failing" if failing else "ok" if z and z.last_scan_at else "unknown",
            last_scan=z.last_scan_at if z else None, waiting=z.waiting if z else 0,
            last_error=z.last_error if z else None, last_error_at=z.last_error_at if z else None,
            refused=refused.get(key, [])))
    in_hand = [InHand(item, node, until, ran_out) for item, node, until, ran_out in ledger.work_in_hand()]
    return zones, in_hand


def contracts(cfg: Config, ledger: Ledger, today: dt.date) -> list[Decision]:
    """Every contract's retention state on *today* (a local date in the gateway's zone)."""
    out = []
    for a in cfg.agencies:
        purge = ledger.purge(a.contract.id)
        finished = purge.finished_at if purge else None
        if finished is not None and finished.tzinfo is None:
            finished = finished.replace(tzinfo=dt.UTC)
        out.append(decide(contract_id=a.contract.id, agency=a.code, end=a.contract.end,
                          terminated_on=a.contract.terminated_on,
                          purge_after_days=cfg.gateway.purge_after_days, today=today,
                          purged_on=finished.astimezone(cfg.gateway.tz).date() if finished else None))
    return out
