"""An approver's decision on an unmask request — the one path for the console and for
``gateway unmask approve|deny``.

Only an account of the ``approver`` role decides (an operator or auditor account never
does: PCI DSS 3.4.1's "documented roles with a business need"); the account must be
logged in, with its password and a TOTP code, by the caller. The ledger keeps the
two-person rule (an account decides a request once; the purpose's number of distinct
approvals releases it; one denial ends it), and every decision is audited with the
account's name — the reason a denial gives goes to the agency and stays in the ledger,
not in the audit log (it is free text).
"""

from __future__ import annotations

import datetime as dt

from gateway.audit import AuditLog
from gateway.config import Config
from gateway.errors import UsageError
from gateway.ledger import AccountRow, Decided, Ledger
from gateway.unmask.request import free_text_problem

APPROVER = "approver"
MAX_REASON = 500


def check_reason(reason: str, *, required: bool) -> str:
    """A decision's reason: free text, short, and — as the requester's note — no long
    number (names cases by id; no personal data)."""
    reason = reason.strip()
    if required and not reason:
        raise UsageError("a denial needs a reason (the agency is told it)")
    if len(reason) > MAX_REASON:
        raise UsageError(f"the reason is longer than {MAX_REASON} characters")
    if (problem := free_text_problem(reason)) is not None:
        raise UsageError(f"the reason {problem}")
    return reason


def decide(ledger: Ledger, audit: AuditLog, account: AccountRow, key: int | str,
           decision: str, reason: str, now: dt.datetime, *, cfg: Config | None = None
           ) -> Decided:
    """Record *account*'s *decision* (``approve`` or ``deny``) on the request *key* (its
    number, or its id or the beginning of it). With *cfg*, the purpose's number of
    approvals as configured now counts if it is higher than at the request's arrival, and
    a purpose no longer configured is refused."""
    if account.role != APPROVER:
        raise UsageError(f"account {account.name} is an {account.role} account; only approver "
                         "accounts decide unmask requests")
    reason = check_reason(reason, required=decision == "deny")
    row = ledger.unmask_request(key)
    if row is None:
        raise UsageError(f"no unmask request {key!s:.40} (see gateway unmask list)")
    needed = None
    if cfg is not None and decision == "approve":
        purpose = cfg.unmask.purposes.get(row.purpose) if cfg.unmask else None
        if purpose is None:
            raise UsageError(f"purpose {row.purpose} is no longer configured for unmasking; "
                             "deny the request")
        needed = purpose.approvals
    decided = ledger.decide_unmask(row.id, account=account.name, decision=decision,
                                   reason=reason, now=now, needed=needed)
    audit.record("unmask.approved" if decision == "approve" else "unmask.denied",
                 account=account.name, agency=row.agency_code, request_id=row.request_id,
                 purpose=row.purpose, approvals=decided.approvals, needed=decided.needed,
                 status=decided.status)
    return decided
