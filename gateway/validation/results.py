"""Result records (docs/formats.md §4): field rules, per-action requirements, compliance flags.

Ownership (a row must be about a case delivered to the sending agency) needs
the ledger and is applied by the flow in chunks; everything here is pure.
Flags never reject a row: they tell the bank's compliance team what to review.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from gateway.validation import fields as f
from gateway.validation.cases import RowError, map_columns

ACTION_CODES = frozenset({
    "CALL", "SMS", "LETTER", "VISIT", "EMAIL", "LEGAL", "PROMISE_TO_PAY", "PAYMENT_REPORTED",
    "CONTACT_UPDATE", "DISPUTE", "FRAUD_SUSPECTED", "HARDSHIP", "DECEASED", "UNREACHABLE",
    "RETURN_CASE",
})
CONTACT_TARGETS = frozenset({"debtor", "contact", "third_party", "none"})
# (field, required)
RESULT_FIELDS: dict[str, bool] = {
    "case_id": True, "action_at": True, "action_code": True, "contact_target": True,
    "outcome": False, "amount": False, "promise_date": False, "new_mobile": False,
    "new_address": False, "note": False, "collector_id": True,
}
FREE_TEXT_RESULT_FIELDS = frozenset({"outcome", "note", "new_address"})
# Actions that reach a person in real time: the contact-hours rule applies to them.
TIMED_CONTACT = frozenset({"CALL", "SMS", "VISIT", "EMAIL"})
# Counted against max_daily_attempts ("calls or messages").
ATTEMPT_ACTIONS = frozenset({"CALL", "SMS"})
# What may be asked of a third party: contact details only.
THIRD_PARTY_ALLOWED = frozenset({"CONTACT_UPDATE", "UNREACHABLE"})
_COLLECTOR_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")


def map_results_header(header: list[str]) -> tuple[tuple[str, ...] | None, list[RowError]]:
    """Result files use the canonical field names as headers."""
    return map_columns(header, {name: name for name in RESULT_FIELDS},
                       {name: name for name, required in RESULT_FIELDS.items() if required},
                       "result field")


def parse_action_at(value: str, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """ISO 8601 date-time; without an offset it is local time in the gateway's zone.

    None also for an instant whose local time in *tz* falls outside years 1-9999
    (``0001-01-01T00:00:00+14:00`` is still year 0 in Shanghai): the flags and the local
    day need that time, and ``astimezone`` raises OverflowError for it."""
    if not _DT_RE.match(value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=tz)
    try:
        parsed.astimezone(tz)
    except OverflowError:
        return None
    return parsed


@dataclass(frozen=True)
class Result:
    row: int
    values: dict[str, str]
    at: dt.datetime  # aware

    @property
    def case_id(self) -> str:
        return self.values["case_id"]

    @property
    def action(self) -> str:
        return self.values["action_code"]


class ResultValidator:
    def __init__(self, columns: tuple[str, ...], tz: zoneinfo.ZoneInfo, now: dt.datetime) -> None:
        self.columns = columns
        self.tz = tz
        self.now = now

    def validate(self, row: int, values: list[str]) -> tuple[Result | None, list[RowError]]:
        if len(values) != len(self.columns):
            return None, [RowError(row, None, None, "E_ROW_SHAPE",
                                   f"row has {len(values)} fields, the header has {len(self.columns)}")]
        rec = {name: v.strip() for name, v in zip(self.columns, values, strict=True)}
        cid = rec.get("case_id", "")
        shown = cid if f.case_id(cid) is None else None
        errors: list[RowError] = []

        def bad(field: str, code: str, message: str) -> None:
            errors.append(RowError(row, shown, field, code, message))

        for name, required in RESULT_FIELDS.items():
            if required and not rec.get(name):
                bad(name, "E_REQUIRED", f"{name} is required")
        at = None
        if rec.get("case_id") and (p := f.case_id(cid)):
            bad("case_id", *p)
        if rec.get("action_at"):
            at = parse_action_at(rec["action_at"], self.tz)
            if at is None:
                bad("action_at", "E_DATETIME", "action_at must be an ISO 8601 date-time")
            elif at > self.now + dt.timedelta(minutes=5):  # allow a little clock skew
                bad("action_at", "E_FUTURE", "action_at is in the future")
        action = rec.get("action_code", "")
        if action and action not in ACTION_CODES:
            bad("action_code", "E_ACTION_CODE", "action_code is not one of the defined codes")
        target = rec.get("contact_target", "")
        if target and target not in CONTACT_TARGETS:
            bad("contact_target", "E_CONTACT_TARGET",
                "contact_target must be debtor, contact, third_party or none")
        if rec.get("collector_id") and not _COLLECTOR_RE.match(rec["collector_id"]):
            bad("collector_id", "E_COLLECTOR_ID", "collector_id must be 1-32 of A-Z a-z 0-9 . _ -")
        for name, limit in (("outcome", 64), ("note", 500), ("new_address", 200)):
            if rec.get(name) and (p := f.text(rec[name], limit)):
                bad(name, p[0], f"{name} {p[1]}")
        if rec.get("new_mobile") and (p := f.phone(rec["new_mobile"])):
            bad("new_mobile", *p)
        if rec.get("amount") and (p := f.money(rec["amount"])[1]):
            bad("amount", *p)
        if rec.get("promise_date") and (p := f.iso_date(rec["promise_date"])[1]):
            bad("promise_date", *p)
        if action == "PROMISE_TO_PAY":
            for name in ("amount", "promise_date"):
                if not rec.get(name):
                    bad(name, "E_REQUIRED", f"{name} is required for PROMISE_TO_PAY")
        if action == "PAYMENT_REPORTED" and not rec.get("amount"):
            bad("amount", "E_REQUIRED", "amount is required for PAYMENT_REPORTED")
        if action == "CONTACT_UPDATE" and not (rec.get("new_mobile") or rec.get("new_address")):
            bad("new_mobile", "E_REQUIRED", "CONTACT_UPDATE needs new_mobile or new_address")
        if errors or at is None:
            return None, errors
        return Result(row, rec, at), []


def flags(result: Result, *, tz: zoneinfo.ZoneInfo, window: tuple[dt.time, dt.time],
          contract_end: dt.date, attempts_today: int, max_attempts: int) -> list[str]:
    """Compliance flags for one accepted row; *attempts_today* includes this row."""
    local = result.at.astimezone(tz)
    target = result.values.get("contact_target")
    out: list[str] = []
    start, end = window
    if (result.action in TIMED_CONTACT and target in ("debtor", "contact")
            and not start <= local.time().replace(tzinfo=None) < end):
        out.append("HOURS")
    if result.action in ATTEMPT_ACTIONS and attempts_today > max_attempts:
        out.append("ATTEMPTS")
    if target == "third_party" and result.action not in THIRD_PARTY_ALLOWED:
        out.append("THIRD_PARTY")
    if result.action == "DISPUTE":
        out.append("DISPUTE")
    if result.action == "FRAUD_SUSPECTED":
        out.append("FRAUD")
    if local.date() > contract_end:
        out.append("LATE")
    return out
