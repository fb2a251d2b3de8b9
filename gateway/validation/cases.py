"""Case records (docs/formats.md §2): header mapping, per-row field rules, agency and contract.

Rows are validated into plain ``dict[str, str]`` keyed by canonical field name
(not one pydantic model per row: a million-row batch is validated in seconds
this way, and every rule is a pure function in :mod:`fields` with its own
property tests). Batch-level rules that need the ledger — ``case_id`` unique in
the batch and across live batches — are applied by the flow in chunks.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from gateway.config import Config
from gateway.validation import fields as f
from gateway.validation.schema import CASE_FIELDS, Kind

# Authentication data (JR/T 0171-2020 class C3): must never be shared, so a
# column that looks like it is named as such rather than as merely unknown.
_FORBIDDEN = re.compile(
    r"^(cvv2?|cvc2?|cvn2?|cid|csc|pin|pinblock|pincode|password|passwd|pwd|passcode|"
    r"exp|expiry|expirydate|expiration|expirationdate|expdate|validthru|validuntil|cardexpiry|"
    r"track|track1|track2|track3|trackdata|magstripe|magneticstripe|securitycode|otp)$"
    r"|密码|口令|有效期|磁道|安全码|验证码|校验码|cvv|cvn")


def is_forbidden_column(header: str) -> bool:
    norm = re.sub(r"[^0-9a-z\u4e00-\u9fff]", "", unicodedata.normalize("NFKC", header).lower())
    return bool(_FORBIDDEN.search(norm))


@dataclass(frozen=True)
class RowError:
    """One problem, as a receipt lists it: never the offending value."""

    row: int  # 1-based data row; 0 for the header or the file as a whole
    case_id: str | None
    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def printable_label(header: str) -> str:
    """A header as it may appear in a receipt: printable and short."""
    clean = "".join(c for c in header if c.isprintable())[:64]
    return clean or "(empty)"


_VALUE_LIKE = re.compile(r"\d|@")


def column_label(header: str, position: int) -> str:
    """How a receipt names an unexpected column: by its header when that is plainly a
    name, by position when the header holds a digit or an ``@`` — it may be a value
    (a card number, a phone, an e-mail address), and receipts never echo values."""
    if _VALUE_LIKE.search(header) or len(header) > 40:
        return f"column {position}"
    return f'column "{printable_label(header)}"'


@dataclass(frozen=True)
class HeaderMap:
    fields: tuple[str, ...]  # canonical field per column position

    @property
    def present(self) -> frozenset[str]:
        return frozenset(self.fields)


def map_columns(header: list[str], by_header: Mapping[str, str], required: Mapping[str, str],
                what: str) -> tuple[tuple[str, ...] | None, list[RowError]]:
    """Field for each column (*by_header*: header -> field), or why the header is refused.

    *required* maps each required field to the header the sender must use; *what*
    names the kind of file in messages ("case field", "result field").
    """
    errors: list[RowError] = []
    mapped: list[str] = []
    recognised = sum(1 for raw in header if raw.strip() in by_header)
    if recognised * 2 < len(header):  # mostly unknown: a data row, not a header
        return None, [RowError(0, None, None, "E_NO_HEADER",
                               f"{len(header) - recognised} of the {len(header)} columns of the "
                               f"first row are not a {what}: is the header row missing, or the "
                               "header mapping not set up? (the row is not shown: it may be data)")]
    for position, raw in enumerate(header, start=1):
        h = raw.strip()
        if h in by_header:
            name = by_header[h]
            if name in mapped:
                errors.append(RowError(0, None, name, "E_DUPLICATE_COLUMN",
                                       f'column "{printable_label(h)}" appears more than once'))
            mapped.append(name)
        elif is_forbidden_column(h):
            errors.append(RowError(0, None, None, "E_FORBIDDEN_COLUMN",
                                   f"{column_label(h, position)} looks like authentication data "
                                   "(CVV, PIN, expiry, track data, password), which must never be "
                                   "shared"))
        else:
            errors.append(RowError(0, None, None, "E_UNKNOWN_COLUMN",
                                   f"{column_label(h, position)} is not a {what}; "
                                   "unknown columns are never forwarded"))
    for name, shown in required.items():
        if name not in mapped:
            label = printable_label(shown) + (f"\" ({name})" if shown != name else "\"")
            errors.append(RowError(0, None, name, "E_MISSING_COLUMN",
                                   f'required column "{label} is missing'))
    return (None, errors) if errors else (tuple(mapped), [])


def map_header(header: list[str], cfg: Config) -> tuple[HeaderMap | None, list[RowError]]:
    """Canonical case field for each column, through the bank's ``[schema.columns]``."""
    by_header = {cfg.schema_.header_for(name).strip(): name for name in CASE_FIELDS}
    required = {name: cfg.schema_.header_for(name) for name, spec in CASE_FIELDS.items()
                if spec.required}
    fields, errors = map_columns(header, by_header, required, "mapped case field")
    return (HeaderMap(fields), []) if fields is not None else (None, errors)


_TEXT_LIMITS = {Kind.NAME: 64, Kind.ADDRESS: 200, Kind.EMPLOYER: 200, Kind.TEXT: 64}


class CaseValidator:
    """Field rules for one batch, evaluated against the day the batch is processed."""

    def __init__(self, cfg: Config, header: HeaderMap, today: dt.date) -> None:
        self.cfg = cfg
        self.header = header
        self.today = today
        self.agencies = {a.code: a for a in cfg.agencies}

    def validate(self, row: int, values: list[str]) -> tuple[dict[str, str] | None, list[RowError]]:
        if len(values) != len(self.header.fields):
            return None, [RowError(row, None, None, "E_ROW_SHAPE",
                                   f"row has {len(values)} fields, the header has "
                                   f"{len(self.header.fields)}")]
        rec = {name: v.strip() for name, v in zip(self.header.fields, values, strict=True)}
        cid = rec.get("case_id", "")
        shown = cid if f.case_id(cid) is None else None
        errors: list[RowError] = []

        def bad(field: str, problem: tuple[str, str] | None) -> None:
            if problem is not None:
                errors.append(RowError(row, shown, field, problem[0], problem[1]))

        for name, value in rec.items():
            if not value:
                if CASE_FIELDS[name].required:
                    bad(name, ("E_REQUIRED", f"{name} is required"))
                continue
            bad(name, self._field(name, value, rec))
        if all(rec.get(k) for k in ("principal", "interest", "fees", "total_due")):
            amounts = [f.money(rec[k])[0] for k in ("principal", "interest", "fees", "total_due")]
            if all(a is not None for a in amounts):
                p, i, fee, total = (a or Decimal(0) for a in amounts)
                if p + i + fee != total:
                    bad("total_due", ("E_TOTAL", "total_due must equal principal + interest + fees"))
        if rec.get("assigned_on") and rec.get("due_back_on"):
            a, _ = f.iso_date(rec["assigned_on"])
            d, _ = f.iso_date(rec["due_back_on"])
            if a and d and a > d:
                bad("due_back_on", ("E_DATE_ORDER", "assigned_on must not be after due_back_on"))
        if errors:
            return None, errors
        if "id_number" in rec and rec.get("id_type", "resident_id") in ("", "resident_id"):
            rec["id_number"] = rec["id_number"].upper()
        return rec, []

    def _field(self, name: str, value: str, rec: dict[str, str]) -> tuple[str, str] | None:
        kind = CASE_FIELDS[name].kind
        if name == "case_id":
            return f.case_id(value)
        if name == "agency_code":
            return self._agency(value)
        if name == "product":
            return None if value in f.PRODUCTS else ("E_PRODUCT", "product must be one of "
                                                     + ", ".join(sorted(f.PRODUCTS)))
        if name == "id_type":
            return None if value in f.ID_TYPES else ("E_ID_TYPE", "id_type must be resident_id, "
                                                     "passport or other")
        if name == "id_number":
            id_type = rec.get("id_type") or "resident_id"
            if id_type == "resident_id":
                return f.resident_id(value, self.today)
            return f.other_id(value) if id_type in f.ID_TYPES else None
        if name == "currency":
            return f.currency(value)
        if name == "overdue_days":
            return f.overdue_days(value)
        if kind is Kind.ACCOUNT:
            return f.account_number(value, rec.get("product"))
        if kind is Kind.PHONE:
            return f.phone(value)
        if kind is Kind.AMOUNT:
            return f.money(value)[1]
        if kind is Kind.DATE:
            return f.iso_date(value)[1]
        if kind in _TEXT_LIMITS:
            problem = f.text(value, _TEXT_LIMITS[kind])
            return (problem[0], f"{name} {problem[1]}") if problem else None
        return None  # pragma: no cover - every canonical field has a rule above

    def _agency(self, code: str) -> tuple[str, str] | None:
        agency = self.agencies.get(code)
        if agency is None:
            return "E_AGENCY", "agency_code is not a configured agency"
        if self.today > agency.contract.effective_end:
            return "E_CONTRACT_ENDED", "the agency's contract has ended; it receives no new cases"
        if self.today < agency.contract.start:
            return "E_CONTRACT_NOT_STARTED", "the agency's contract has not started yet"
        return None
