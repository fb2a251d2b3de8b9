"""The canonical case fields (docs/formats.md §2) and what kind of value each holds.

The kind decides which masking rules make sense (docs/formats.md §3) and is the one place
the config, the validators and the masking agree on what a field is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    IDENT = "identifier"  # case_id
    CODE = "code"  # agency_code, product, id_type, currency
    NAME = "name"  # customer/contact names
    ID_NUMBER = "id_number"
    ACCOUNT = "account"
    PHONE = "phone"
    ADDRESS = "address"
    EMPLOYER = "employer"
    TEXT = "text"  # contact relation
    AMOUNT = "amount"
    INTEGER = "integer"
    DATE = "date"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool
    personal: bool  # carries personal data: never logged, scanned for in tests


def _f(name: str, kind: Kind, required: bool = True, personal: bool = False) -> FieldSpec:
    return FieldSpec(name, kind, required, personal)


_FIELDS: list[FieldSpec] = [
    _f("case_id", Kind.IDENT),
    _f("agency_code", Kind.CODE),
    _f("product", Kind.CODE),
    _f("account_number", Kind.ACCOUNT, personal=True),
    _f("customer_name", Kind.NAME, personal=True),
    _f("id_type", Kind.CODE, required=False),
    _f("id_number", Kind.ID_NUMBER, personal=True),
    _f("mobile", Kind.PHONE, personal=True),
    _f("home_address", Kind.ADDRESS, personal=True),
    _f("employer", Kind.EMPLOYER, required=False, personal=True),
    _f("work_address", Kind.ADDRESS, required=False, personal=True),
]
for _n in (1, 2, 3):
    _FIELDS += [
        _f(f"contact{_n}_name", Kind.NAME, required=False, personal=True),
        _f(f"contact{_n}_relation", Kind.TEXT, required=False),
        _f(f"contact{_n}_phone", Kind.PHONE, required=False, personal=True),
    ]
_FIELDS += [
    _f("currency", Kind.CODE, required=False),
    _f("principal", Kind.AMOUNT),
    _f("interest", Kind.AMOUNT),
    _f("fees", Kind.AMOUNT),
    _f("total_due", Kind.AMOUNT),
    _f("overdue_days", Kind.INTEGER),
    _f("assigned_on", Kind.DATE),
    _f("due_back_on", Kind.DATE),
]

CASE_FIELDS: dict[str, FieldSpec] = {f.name: f for f in _FIELDS}

# Free text a person typed: formula-neutralised in every CSV the gateway writes.
# Structured kinds (ids, phones, amounts, dates, codes) are constrained by their rules.
FREE_TEXT_KINDS = frozenset({Kind.NAME, Kind.ADDRESS, Kind.EMPLOYER, Kind.TEXT})
FREE_TEXT_CASE_FIELDS = frozenset(n for n, spec in CASE_FIELDS.items() if spec.kind in FREE_TEXT_KINDS)
