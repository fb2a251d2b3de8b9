"""When must an agency's data be gone? Pure date logic, tested against golden cases.

Definitions (docs/formats.md §5.3, with the choices where it is silent):

* ``effective_end`` = ``terminated_on`` if set, else ``end`` — the contract's last day.
* From ``effective_end + 1`` no new case is delivered (``E_CONTRACT_ENDED``).
* ``deadline`` = ``effective_end + purge_after_days``, but never before
  ``effective_end + 1``: the agency may use its data on the contract's last day,
  so ``purge_after_days = 0`` means "on the first day after the end". The
  deadline is therefore never later than ``effective_end + 30``.
* The purge is due from the deadline (at the latest on that day); the daemon
  runs retention at start-up and on every pass, so a deadline that passed while
  it was down is purged at start-up — and the certificate says ``late``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict, Unpack

from gateway import keywords

if TYPE_CHECKING:
    from gateway.config import Agency, Config
    from gateway.ledger import Ledger, PurgeRow

MAX_PURGE_AFTER_DAYS = 30


class State(StrEnum):
    ACTIVE = "active"  # cases are delivered
    ENDED = "ended"  # no new cases; results still accepted; purge not yet due
    PURGE_DUE = "purge_due"  # the deadline has come: purge now
    PURGED = "purged"  # a deletion certificate exists


@dataclass(frozen=True)
class Decision:
    contract_id: str
    agency: str
    state: State
    effective_end: dt.date
    deadline: dt.date
    days_left: int  # until the deadline; negative when overdue
    late: bool  # the purge happened (or would happen today) after the deadline

    @property
    def reason(self) -> str:
        if self.state is State.ACTIVE:
            return f"active until {self.effective_end}"
        if self.state is State.ENDED:
            return f"ended {self.effective_end}; purge due {self.deadline} ({self.days_left} days)"
        if self.state is State.PURGE_DUE:
            overdue = f", {-self.days_left} days overdue" if self.days_left < 0 else ""
            return f"purge due since {self.deadline}{overdue}"
        return "purged"


def deadline(effective_end: dt.date, purge_after_days: int) -> dt.date:
    if not 0 <= purge_after_days <= MAX_PURGE_AFTER_DAYS:
        raise ValueError(f"purge_after_days must be 0..{MAX_PURGE_AFTER_DAYS}")
    return effective_end + dt.timedelta(days=max(purge_after_days, 1))


class Terms(TypedDict):
    """What the configuration says of a contract: whose it is and when it ends."""

    contract_id: str
    agency: str
    end: dt.date
    terminated_on: dt.date | None


def decide(*, purge_after_days: int, today: dt.date, purged_on: dt.date | None = None,
           **terms: Unpack[Terms]) -> Decision:
    """The state of one contract on *today* (a local date in the gateway's time zone)."""
    keywords.check(terms, Terms)
    effective_end = terms["terminated_on"] or terms["end"]
    due = deadline(effective_end, purge_after_days)
    days_left = (due - today).days
    if purged_on is not None:
        state, late = State.PURGED, purged_on > due
    elif today <= effective_end:
        state, late = State.ACTIVE, False
    elif today < due:
        state, late = State.ENDED, False
    else:
        state, late = State.PURGE_DUE, today > due
    return Decision(terms["contract_id"], terms["agency"], state, effective_end, due, days_left,
                    late)


def contracts(cfg: Config, ledger: Ledger, today: dt.date) -> list[Decision]:
    """Every contract's retention state on *today* (a local date in the gateway's zone):
    each pass asks it (the daemon's gauges, the purge), so it lives here and not with the
    console's read model."""
    purges = ledger.purges([a.contract.id for a in cfg.agencies])
    return [decision_of(cfg, a, purges.get(a.contract.id), today) for a in cfg.agencies]


def decision_of(cfg: Config, a: Agency, purge: PurgeRow | None, today: dt.date) -> Decision:
    finished = purge.finished_at if purge else None
    if finished is not None and finished.tzinfo is None:
        finished = finished.replace(tzinfo=dt.UTC)
    return decide(contract_id=a.contract.id, agency=a.code, end=a.contract.end,
                  terminated_on=a.contract.terminated_on,
                  purge_after_days=cfg.gateway.purge_after_days, today=today,
                  purged_on=finished.astimezone(cfg.gateway.tz).date() if finished else None)
