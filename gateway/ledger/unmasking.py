"""Unmasking by approval (docs/operations.md): requests, their cases, the approvers'
decisions, the one-off releases — each change one transaction, and the two-person rule
kept by the database (an account decides a request once: the decisions' primary key).

The register is read from these rows; nothing here is personal but the requester's note,
which the request flow refuses if it holds a long number."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.ledger.commits import CommitStore
from gateway.ledger.schema import (
    AccountRow,
    CaseRow,
    DeliveryRow,
    FileEnd,
    FileStatus,
    LeaseLost,
    LeaseRow,
    LedgerError,
    ReceiptRow,
    UnmaskCaseRow,
    UnmaskDecisionRow,
    UnmaskRequestRow,
    UnmaskStatus,
)

OPEN = (UnmaskStatus.PENDING.value, UnmaskStatus.APPROVED.value, UnmaskStatus.RELEASED.value,
        UnmaskStatus.PURGED.value)  # what counts against an agency's monthly limits


class DecisionRefused(LedgerError):
    """A decision the request's state or the two-person rule does not allow."""


@dataclass(frozen=True)
class Decided:
    """What a decision did: the request's status after it, approvals so far and needed."""

    status: str
    approvals: int
    needed: int


def _active_approver(account: AccountRow | None) -> bool:
    """An account that may decide, and whose approval counts: an approver, not disabled (a
    lockout, which anyone guessing can cause, does not undo an approval)."""
    return account is not None and account.role == "approver" and not account.disabled


def _approvals(s: Session, request: int) -> int:
    """Approvals of *request* by accounts that are still active approvers: one disabled,
    or moved to another role, after approving no longer counts."""
    return sum(_active_approver(a) for a in s.scalars(
        select(AccountRow).join(UnmaskDecisionRow, UnmaskDecisionRow.account == AccountRow.name)
        .where(UnmaskDecisionRow.request == request, UnmaskDecisionRow.decision == "approve")))


class UnmaskStore(CommitStore):
    def unmask_seen(self, request_id: str) -> UnmaskRequestRow | None:
        with self.session(write=False) as s:
            return s.scalar(select(UnmaskRequestRow).where(
                UnmaskRequestRow.request_id == request_id))

    def live_cases_of(self, agency_code: str, case_ids: Collection[str]) -> dict[str, str]:
        """Of *case_ids*, the live cases of *agency_code*, each with its batch."""
        out: dict[str, str] = {}
        wanted = sorted(set(case_ids))
        with self.session(write=False) as s:
            for start in range(0, len(wanted), 500):  # bound the IN list
                for case_id, batch_id in s.execute(select(CaseRow.case_id, CaseRow.batch_id).where(
                        CaseRow.agency_code == agency_code, CaseRow.purged_at.is_(None),
                        CaseRow.case_id.in_(wanted[start:start + 500]))):
                    out[case_id] = batch_id
        return out

    def unmask_usage(self, agency_code: str, since: dt.datetime, until: dt.datetime
                     ) -> tuple[int, int]:
        """(requests, cases) of *agency_code* received in [since, until) and not denied or
        expired: what counts against its monthly limits."""
        with self.session(write=False) as s:
            n, cases = s.execute(select(func.count(), func.coalesce(func.sum(
                UnmaskRequestRow.cases), 0)).where(
                UnmaskRequestRow.agency_code == agency_code,
                UnmaskRequestRow.status.in_(OPEN),
                UnmaskRequestRow.received_at >= since,
                UnmaskRequestRow.received_at < until)).one()
            return int(n), int(cases)

    def commit_unmask_request(self, *, file_id: int, request: UnmaskRequestRow,
                              cases: dict[str, str], receipt: ReceiptRow, end: FileEnd) -> None:
        """One transaction: the request, its cases, the receipt and the file's end. A
        request id another node accepted first is a :class:`CommitConflict` (a replay)."""
        with self._conflicts(), self.session() as s:
            s.add(request)
            s.flush()
            s.add_all(UnmaskCaseRow(request=request.id, case_id=c, batch_id=b)
                      for c, b in sorted(cases.items()))
            s.add(receipt)
            s.flush()
            self._finish(s, file_id, FileStatus.ACCEPTED, end)

    def unmask_request(self, key: int | str) -> UnmaskRequestRow | None:
        """A request by its number, or by its id (or an unambiguous beginning of it, at
        least 6 hex digits: what a person types)."""
        with self.session(write=False) as s:
            if isinstance(key, int):
                return s.get(UnmaskRequestRow, key)
            rows = list(s.scalars(select(UnmaskRequestRow).where(
                UnmaskRequestRow.request_id.startswith(key, autoescape=True)).limit(2)))
            return rows[0] if len(rows) == 1 and len(key) >= 6 else None

    def unmask_requests(self, *, status: Sequence[str] | None = None,
                        agency_code: str | None = None, since: dt.datetime | None = None,
                        until: dt.datetime | None = None) -> list[UnmaskRequestRow]:
        """Requests, oldest first; filtered by status, agency and when they arrived."""
        q = select(UnmaskRequestRow)
        if status is not None:
            q = q.where(UnmaskRequestRow.status.in_(list(status)))
        if agency_code is not None:
            q = q.where(UnmaskRequestRow.agency_code == agency_code)
        if since is not None:
            q = q.where(UnmaskRequestRow.received_at >= since)
        if until is not None:
            q = q.where(UnmaskRequestRow.received_at < until)
        with self.session(write=False) as s:
            return list(s.scalars(q.order_by(UnmaskRequestRow.id)))

    def released_between(self, since: dt.datetime, until: dt.datetime) -> list[UnmaskRequestRow]:
        """Releases made in [since, until), in order: the register's rows."""
        with self.session(write=False) as s:
            return list(s.scalars(select(UnmaskRequestRow).where(
                UnmaskRequestRow.released_at >= since, UnmaskRequestRow.released_at < until)
                .order_by(UnmaskRequestRow.released_at, UnmaskRequestRow.id)))

    def unmask_cases(self, request: int) -> list[UnmaskCaseRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(UnmaskCaseRow).where(UnmaskCaseRow.request == request)
                                  .order_by(UnmaskCaseRow.batch_id, UnmaskCaseRow.case_id)))

    def unmask_decisions(self, requests: Collection[int]) -> dict[int, list[UnmaskDecisionRow]]:
        out: dict[int, list[UnmaskDecisionRow]] = {r: [] for r in requests}
        with self.session(write=False) as s:
            for d in s.scalars(select(UnmaskDecisionRow).where(
                    UnmaskDecisionRow.request.in_(list(requests)))
                    .order_by(UnmaskDecisionRow.decided_at)):
                out[d.request].append(d)
        return out

    def decide_unmask(self, request: int, *, account: str, decision: str, reason: str,
                      now: dt.datetime, needed: int | None = None) -> Decided:
        """Record *account*'s decision on a pending request, in one transaction with the
        status it leads to: one denial denies, the needed number of distinct approvals
        approves — the number stored at arrival or *needed* (the configuration's now),
        whichever is higher, counting only accounts that are still active approvers.
        Refused (:class:`DecisionRefused`) when the request is not pending, its time to
        decide has passed, the account is not an active approver, or it decided before."""
        if decision not in ("approve", "deny"):
            raise ValueError(decision)
        try:
            with self.session() as s:
                row = s.get(UnmaskRequestRow, request, with_for_update=True)
                if row is None:
                    raise DecisionRefused(f"no unmask request {request}")
                if not _active_approver(s.get(AccountRow, account)):
                    raise DecisionRefused(f"account {account} is not an active approver "
                                          "account")
                if row.status != UnmaskStatus.PENDING.value:
                    raise DecisionRefused(f"request {row.request_id[:8]} is {row.status}, not "
                                          "pending")
                if now >= row.decide_by:
                    raise DecisionRefused(f"request {row.request_id[:8]} expired undecided at "
                                          f"{row.decide_by:%Y-%m-%d %H:%M} UTC")
                if s.get(UnmaskDecisionRow, (request, account)) is not None:
                    raise DecisionRefused(f"account {account} has decided request "
                                          f"{row.request_id[:8]} already; another approver must")
                s.add(UnmaskDecisionRow(request=request, account=account, decision=decision,
                                        reason=reason, decided_at=now))
                s.flush()
                approvals = _approvals(s, request)
                needed = max(row.approvals_needed, needed or 0)
                if decision == "deny":
                    row.status, row.decided_at = UnmaskStatus.DENIED.value, now
                elif approvals >= needed:
                    row.status, row.decided_at = UnmaskStatus.APPROVED.value, now
                return Decided(row.status, approvals, needed)
        except IntegrityError:  # the same account on another console, at the same moment
            raise DecisionRefused(f"account {account} has decided this request already; "
                                  "another approver must") from None

    def _held(self, s: Session, request: int) -> UnmaskRequestRow:
        """The request's row, locked, for a change the daemon makes under the request's
        lease (``unmask:<n>``): a node whose lease ran out (it stalled) must not commit what
        another node, which took the request over, is doing again under the same file
        names."""
        row = s.get_one(UnmaskRequestRow, request, with_for_update=True)
        if self.owner is not None:
            lease = s.get(LeaseRow, f"unmask:{request}")
            if lease is None or lease.owner != self.owner:
                raise LeaseLost(f"unmask request {request} was taken over by another node")
        return row

    def expire_unmask(self, request: int, now: dt.datetime, *, delivery: DeliveryRow | None,
                      purged: bool = False) -> bool:
        """A pending request past its time to decide: expired, the agency's notice queued.
        False if it was decided meanwhile. *purged*: the agency's data is gone (its
        contract's purge), so a pending or approved request can never be released."""
        with self.session() as s:
            row = self._held(s, request)
            open_ = (UnmaskStatus.PENDING.value, UnmaskStatus.APPROVED.value) if purged else (
                UnmaskStatus.PENDING.value,)
            if row.status not in open_ or (not purged and now < row.decide_by):
                return False
            row.status, row.decided_at, row.notified_at = UnmaskStatus.EXPIRED.value, now, now
            if delivery is not None:
                s.add(delivery)
            return True

    def notify_unmask(self, request: int, now: dt.datetime, delivery: DeliveryRow) -> None:
        """A denial told to the agency: its notice queued, once."""
        with self.session() as s:
            row = self._held(s, request)
            if row.notified_at is None:
                row.notified_at = now
                s.add(delivery)

    def release_unmask(self, request: int, *, deliveries: Sequence[DeliveryRow],
                       released_at: dt.datetime, expires_at: dt.datetime) -> bool:
        """An approved request released: its one-off slice and manifest queued for delivery
        in the same transaction. False if another node released it first."""
        with self._conflicts(), self.session() as s:
            row = self._held(s, request)
            if row.status != UnmaskStatus.APPROVED.value:
                return False
            row.status = UnmaskStatus.RELEASED.value
            row.released_at, row.expires_at = released_at, expires_at
            s.add_all(deliveries)
            return True

    def release_deliveries(self, request: UnmaskRequestRow) -> list[DeliveryRow]:
        """The one-off slice and manifest of a release."""
        with self.session(write=False) as s:
            return list(s.scalars(select(DeliveryRow).where(
                DeliveryRow.agency_code == request.agency_code,
                DeliveryRow.batch_id == request.batch_id).order_by(DeliveryRow.id)))

    def plan_unmask_purge(self, request: int, plan: str, now: dt.datetime) -> str:
        """Before a release's expiry deletes anything: its plan recorded (once: a resumed
        purge gets the first plan back) and its deliveries marked purged, so that neither
        the outbox places them nor collection tracking takes the deletion for the agency's
        fetch."""
        with self.session() as s:
            row = self._held(s, request)
            if row.purge_plan is None:
                row.purge_plan = plan
                s.execute(update(DeliveryRow).where(
                    DeliveryRow.agency_code == row.agency_code,
                    DeliveryRow.batch_id == row.batch_id, DeliveryRow.purged_at.is_(None))
                    .values(purged_at=now).execution_options(synchronize_session=False))
            return row.purge_plan

    def finish_unmask_purge(self, request: int, now: dt.datetime, certificate: DeliveryRow
                            ) -> bool:
        """A release past its expiry, deleted as planned: the request purged and the
        certificate queued — one transaction. False if another node finished it first."""
        with self.session() as s:
            row = self._held(s, request)
            if row.status != UnmaskStatus.RELEASED.value:
                return False
            row.status, row.purged_at = UnmaskStatus.PURGED.value, now
            s.add(certificate)
            return True

    def approvals_now(self, request: int) -> int:
        """Approvals that still count (:func:`_approvals`)."""
        with self.session(write=False) as s:
            return _approvals(s, request)

    def reopen_unmask(self, request: int) -> bool:
        """An approved request whose approvals no longer suffice (an approver disabled, the
        purpose now needing more): pending again, for the approvers still to come."""
        with self.session() as s:
            row = self._held(s, request)
            if row.status != UnmaskStatus.APPROVED.value:
                return False
            row.status, row.decided_at = UnmaskStatus.PENDING.value, None
            return True

    def fail_unmask(self, request: int, now: dt.datetime, delivery: DeliveryRow | None) -> bool:
        """An approved request that can no longer be released as approved: failed, the
        agency's notice queued, in one transaction."""
        with self.session() as s:
            row = self._held(s, request)
            if row.status != UnmaskStatus.APPROVED.value:
                return False
            row.status, row.decided_at, row.notified_at = UnmaskStatus.FAILED.value, now, now
            if delivery is not None:
                s.add(delivery)
            return True

    def unaudited_unmask(self) -> list[UnmaskRequestRow]:
        """Releases and deletions committed whose audit entry was not marked written."""
        with self.session(write=False) as s:
            return list(s.scalars(select(UnmaskRequestRow).where(
                (UnmaskRequestRow.released_at.is_not(None)
                 & UnmaskRequestRow.release_audited_at.is_(None))
                | (UnmaskRequestRow.purged_at.is_not(None)
                   & UnmaskRequestRow.purge_audited_at.is_(None)))
                .order_by(UnmaskRequestRow.id)))

    def mark_unmask_audited(self, request: int, which: str, now: dt.datetime) -> None:
        """*which*: ``released`` or ``purged``."""
        column = {"released": "release_audited_at", "purged": "purge_audited_at"}[which]
        with self.session() as s:
            row = s.get_one(UnmaskRequestRow, request)
            setattr(row, column, now)
