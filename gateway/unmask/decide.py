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
import re

from gateway.audit import AuditLog
from gateway.errors import UsageError
from gateway.ledger import AccountRow, Decided, Ledger

APPROVER = "approver"
MAX_REASON = 500
_DIGITS = re.compile(r"\d{7,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def check_reason(reason: str, *, required: bool) -> str:
    """A decision's reason: free text, short, and — as the requester's note — no long
    number (names cases by id; no personal data)."""
    reason = reason.strip()
    if required and not reason:
        raise UsageError("a denial needs a reason (the agency is told it)")
    if len(reason) > MAX_REASON:
        raise UsageError(f"the reason is longer than {MAX_REASON} characters")
    if _CONTROL.search(reason):
        raise UsageError("the reason must not hold control or direction characters")
    if _DIGITS.search(reason):
        raise UsageError("the reason must not hold a number of seven or more digits: name "
                         "cases by id, and keep personal data out of it")
    return reason


def decide(ledger: Ledger, audit: AuditLog, account: AccountRow, key: int | str,
           decision: str, reason: str, now: dt.datetime) -> Decided:
    """Record *account*'s *decision* (``approve`` or ``deny``) on the request *key* (its
    number, or its id or the beginning of it)."""
    if account.role != APPROVER:
        raise UsageError(f"account {account.name} is an {account.role} account; only approver "
                         "accounts decide unmask requests")
    reason = check_reason(reason, required=decision == "deny")
    row = ledger.unmask_request(key)
    if row is None:
        raise UsageError(f"no unmask request {key!s:.40} (see gateway unmask list)")
    decided = ledger.decide_unmask(row.id, account=account.name, decision=decision,
                                   reason=reason, now=now)
    audit.record("unmask.approved" if decision == "approve" else "unmask.denied",
                 account=account.name, agency=row.agency_code, request_id=row.request_id,
                 purpose=row.purpose, approvals=decided.approvals, needed=decided.needed,
                 status=decided.status)
    return decided
