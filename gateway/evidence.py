"""The agency's own evidence, as every view shows it (docs/formats.md §7): the slices and
manifests an agency running the kit has not acknowledged in time, and its deletion
attestation — for `gateway status`, the console, the monthly report and the alerts. Part of
the read model: :mod:`gateway.queries` re-exports every name, and callers read it there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from gateway.config import Config
from gateway.ledger import DeliveryRow, Ledger
from gateway.names import display_name

ATTESTATION_DUE_DAYS = 30  # the deletion attestation is expected this long after the end

# The states of an agency's deletion attestation (:attr:`AgencyEvidence.state`):
#   attested      an attestation for the contract was accepted (whether or not one was expected)
#   not_expected  none accepted, and the agency does not run the kit (acknowledge_within_days unset)
#   pending       none accepted yet, none overdue: the contract runs, or it ended and today is
#                 on or before the due date (effective end + 30 days, a local date)
#   missing       none accepted, and the due date has passed (from the day after it)
ATTESTATION_STATES = ("not_expected", "pending", "attested", "missing")


@dataclass(frozen=True)
class Attested:
    """The contract's latest accepted deletion attestation, as the deletion certificate
    cites it (``agency_attestation``)."""

    document_id: str
    file: str  # the name it came in, as shown
    sha256: str  # of that file as received
    created_at: dt.datetime  # as the agency's kit wrote it
    accepted_at: dt.datetime
    files: int  # files it lists as destroyed
    not_listed: int  # files delivered to the agency that it does not list


@dataclass(frozen=True)
class AgencyEvidence:
    """What an agency's own signed documents show: the slices and manifests it has not
    acknowledged in time, and its deletion attestation. An agency without the kit
    (``expected`` false) has nothing overdue and nothing missing; an attestation it does
    send is shown all the same."""

    agency: str
    contract_id: str
    expected: bool  # agencies.acknowledge_within_days is set: the agency runs the kit
    acknowledge_within_days: int | None
    overdue: int  # slices and manifests not acknowledged that many days after delivery
    oldest_overdue: dt.datetime | None  # when the oldest of them was delivered
    overdue_batches: list[str]  # their batches, oldest first
    acknowledged: int  # slices and manifests acknowledged, ever
    effective_end: dt.date
    attestation_due: dt.date  # effective end + ATTESTATION_DUE_DAYS
    attestation: Attested | None
    state: str  # ATTESTATION_STATES

    @property
    def acknowledgements_text(self) -> str:
        """One line for a person (`gateway status`)."""
        if not self.overdue:
            return f"none overdue ({self.acknowledged} acknowledged)"
        assert self.oldest_overdue is not None  # noqa: S101 — invariant, not an input check
        shown = ", ".join(self.overdue_batches[:3]) + (", …" if len(self.overdue_batches) > 3 else "")
        files = "1 file" if self.overdue == 1 else f"{self.overdue} files"
        return (f"{files} overdue (not acknowledged after {self.acknowledge_within_days} days; "
                f"oldest delivered {self.oldest_overdue:%Y-%m-%d}, batch {shown})")

    @property
    def attestation_text(self) -> str:
        a = self.attestation
        if a is not None:
            return f"attested {a.accepted_at:%Y-%m-%d} ({a.files} files, {a.not_listed} not listed)"
        if self.state == "missing":
            return (f"missing since {self.attestation_due + dt.timedelta(days=1)} (due by "
                    f"{self.attestation_due})")
        if self.state == "pending":
            return f"pending: due by {self.attestation_due}"
        return "not expected"


def attestation_state(*, expected: bool, attested: bool, due: dt.date, today: dt.date) -> str:
    """The word for a contract's attestation (see :data:`ATTESTATION_STATES`)."""
    if attested:
        return "attested"
    if not expected:
        return "not_expected"
    return "missing" if today > due else "pending"


def agency_evidence(cfg: Config, ledger: Ledger, now: dt.datetime) -> list[AgencyEvidence]:
    """Per configured agency, in config order: its acknowledgements and its attestation at
    *now* (the due date compared with *now*'s local date in the gateway's zone)."""
    today = now.astimezone(cfg.gateway.tz).date()
    out = []
    for a in cfg.agencies:
        days = a.acknowledge_within_days
        late = ledger.unacknowledged(a.code, now - dt.timedelta(days=days)) if days else []
        batches: list[str] = []
        for d in late:
            if d.batch_id and d.batch_id not in batches:
                batches.append(d.batch_id)
        with ledger.session(write=False) as s:
            acked = s.scalar(select(func.count()).select_from(DeliveryRow).where(
                DeliveryRow.agency_code == a.code, DeliveryRow.kind.in_(("slice", "manifest")),
                DeliveryRow.acknowledged_at.is_not(None))) or 0
        found = ledger.attestation(a.code, a.contract.id)
        attested = None
        if found is not None:
            doc, file = found
            attested = Attested(doc.doc_id, display_name(file.name), file.sha256, doc.created_at,
                                doc.accepted_at, doc.listed, doc.not_listed)
        end = a.contract.effective_end
        due = end + dt.timedelta(days=ATTESTATION_DUE_DAYS)
        out.append(AgencyEvidence(
            a.code, a.contract.id, days is not None, days, len(late),
            min((d.delivered_at for d in late if d.delivered_at), default=None), batches,
            int(acked), end, due, attested,
            attestation_state(expected=days is not None, attested=attested is not None, due=due,
                              today=today)))
    return out


@dataclass(frozen=True)
class EvidenceHealth:
    """An agency that runs the kit as `gateway status` shows it. Like :class:`ForwardHealth`
    its first fields are a zone's (``zone`` is ``evidence.<agency>``, ``waiting`` the files
    overdue for acknowledgement, ``last_error`` what is wrong in words), so a script reading
    ``status --json`` as a list of zones reads these rows too; ``evidence`` has the rest."""

    zone: str
    location: str
    last_scan: dt.datetime | None  # the attestation's acceptance, once attested
    waiting: int
    last_error: str | None
    last_error_at: dt.datetime | None
    state: str  # failing: attestation missing | warning: acknowledgements overdue | ok
    refused: list[dict[str, str]]
    evidence: AgencyEvidence


def evidence_health(found: Iterable[AgencyEvidence]) -> list[EvidenceHealth]:
    """The rows of `gateway status` for the agencies that run the kit (and any other whose
    attestation arrived): a missing attestation fails, overdue acknowledgements warn."""
    out = []
    for e in found:
        if not e.expected and e.attestation is None:
            continue
        problems = ([f"acknowledgements: {e.acknowledgements_text}"] if e.overdue else []) + \
            ([f"deletion attestation: {e.attestation_text}"] if e.state == "missing" else [])
        out.append(EvidenceHealth(
            f"evidence.{e.agency}",
            f"agency kit (acknowledge within {e.acknowledge_within_days} days)" if e.expected
            else "agency documents",
            e.attestation.accepted_at if e.attestation else None, e.overdue,
            "; ".join(problems) or None, None,
            "failing" if e.state == "missing" else "warning" if e.overdue else "ok", [], e))
    return out


@dataclass(frozen=True)
class AcknowledgedInMonth:
    """Of the slices and manifests delivered to an agency in a period: how many were
    acknowledged within ``acknowledge_within_days``, how many were not (acknowledged later,
    or not by a deadline that has passed), and how many may still be (deadline to come)."""

    delivered: int
    in_time: int
    not_in_time: int
    open: int


def acknowledged_in(cfg: Config, ledger: Ledger, agency: str, start: dt.datetime,
                    end: dt.datetime, now: dt.datetime) -> AcknowledgedInMonth | None:
    """For the monthly report; None for an agency without the kit."""
    days = cfg.agency(agency).acknowledge_within_days
    if days is None:
        return None
    window = dt.timedelta(days=days)
    in_time = late = still = 0
    with ledger.session(write=False) as s:
        rows = list(s.execute(select(DeliveryRow.delivered_at, DeliveryRow.acknowledged_at).where(
            DeliveryRow.agency_code == agency, DeliveryRow.kind.in_(("slice", "manifest")),
            DeliveryRow.delivered_at >= start, DeliveryRow.delivered_at < end)))
    for delivered, acked in rows:
        assert delivered is not None  # noqa: S101 — the query's range excludes None
        deadline: dt.datetime = delivered + window
        if acked is not None and acked <= deadline:
            in_time += 1
        elif acked is not None or deadline < now:
            late += 1
        else:
            still += 1
    return AcknowledgedInMonth(len(rows), in_time, late, still)
