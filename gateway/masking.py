"""Masking rules by role (docs/formats.md §3): pure functions, no I/O.

The rule catalogue also says which rule fits which kind of field, so the
config refuses an impossible rule (``mask`` on an amount) before any data
flows. ``token`` needs the contract's secret key, which the caller loads from
the state directory (never from the ledger).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from gateway.validation.schema import CASE_FIELDS, Kind


class Rule(Enum):
    FULL = "full"
    DROP = "drop"
    MASK = "mask"
    LAST4 = "last4"
    REGION = "region"
    TOKEN = "token"  # noqa: S105 - a rule name, not a password


_ANY = {Rule.FULL, Rule.DROP}
_PSEUDONYMISABLE = {Kind.IDENT, Kind.NAME, Kind.ID_NUMBER, Kind.ACCOUNT, Kind.PHONE,
                    Kind.ADDRESS, Kind.EMPLOYER, Kind.TEXT}
ALLOWED: dict[Kind, set[Rule]] = {kind: set(_ANY) for kind in Kind}
for _kind in _PSEUDONYMISABLE:
    ALLOWED[_kind].add(Rule.TOKEN)
for _kind in (Kind.NAME, Kind.ID_NUMBER, Kind.ACCOUNT, Kind.PHONE, Kind.ADDRESS, Kind.EMPLOYER):
    ALLOWED[_kind].add(Rule.MASK)
for _kind in (Kind.ID_NUMBER, Kind.ACCOUNT, Kind.PHONE):
    ALLOWED[_kind].add(Rule.LAST4)
ALLOWED[Kind.ADDRESS].add(Rule.REGION)


def rule_problem(field: str, rule: Rule) -> str | None:
    """Why *rule* cannot apply to *field*, or None."""
    spec = CASE_FIELDS[field]
    if rule in ALLOWED[spec.kind]:
        return None
    fits = ", ".join(sorted(r.value for r in ALLOWED[spec.kind]))
    return f'rule "{rule.value}" cannot apply to {spec.kind.value} field {field} (use one of: {fits})'


def _contacts(name_rule: str, phone_rule: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in (1, 2, 3):
        out |= {f"contact{n}_name": name_rule, f"contact{n}_relation": "full",
                f"contact{n}_phone": phone_rule}
    return out


_COLLECTOR = {
    "case_id": "full", "product": "full", "customer_name": "full", "id_number": "mask",
    "account_number": "last4", "mobile": "full", "home_address": "region",
    "currency": "full", "total_due": "full", "overdue_days": "full",
    "assigned_on": "full", "due_back_on": "full",
} | _contacts("mask", "full")

# Written into gateway.toml by `gateway init` (docs/formats.md §3).
DEFAULT_ROLES: dict[str, dict[str, str]] = {
    "supervisor": {name: "full" for name in CASE_FIELDS},
    "collector": _COLLECTOR,
    "field_visitor": _COLLECTOR | {"home_address": "full", "work_address": "full"},
    "analyst": {
        "case_id": "full", "customer_name": "token", "product": "full", "currency": "full",
        "principal": "full", "interest": "full", "fees": "full", "total_due": "full",
        "overdue_days": "full", "assigned_on": "full", "due_back_on": "full",
        "home_address": "region",
    },
}


# --- rule functions ------------------------------------------------------------

def _stars(n: int) -> str:
    return "*" * max(n, 0)


def mask_name(v: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the first character only."""
    return v[:1] + _stars(len(v) - 1) if len(v) > 1 else "*"


def mask_resident_id(v: str) -> str:
    """110105199003071234 -> 110105********1234 (first 6, last 4)."""
    return v[:6] + _stars(len(v) - 10) + v[-4:] if len(v) > 10 else last4(v)


def mask_account(v: str) -> str:
    """6222021234567890 -> 622202******7890 (first 6, last 4)."""
    return v[:6] + _stars(len(v) - 10) + v[-4:] if len(v) > 10 else last4(v)


def mask_phone(v: str) -> str:
    """13812345678 -> 138****5678; +8613812345678 -> +86138****5678; E.164: first 3, last 4."""
    prefix = ""
    if v.startswith("+86") and len(v) == 14:
        prefix, v = "+86", v[3:]
    elif v.startswith("+"):
        prefix, v = "+", v[1:]
    keep_head = 3 if len(v) >= 11 else max(len(v) - 8, 0)
    return prefix + v[:keep_head] + _stars(len(v) - keep_head - 4) + v[-4:]


def last4(v: str) -> str:
    return "****" + v[-4:] if len(v) > 4 else "****"


_CJK = "[\u4e00-\u9fff]"
_REGION = re.compile(
    rf"^(?P<prov>{_CJK}{{1,7}}?(?:省|自治区|特别行政区)|北京市|天津市|上海市|重庆市)?"
    rf"(?P<city>{_CJK}{{1,7}}?(?:自治州|地区|盟|市))?"
    rf"(?P<dist>{_CJK}{{1,7}}?(?:区|县|旗|市))?")


def region(v: str) -> str:
    """广东省深圳市南山区科技园路1号 -> 广东省深圳市南山区****.

    Kept: province + city + district/county, recognised by their suffixes, and
    only when a province or city leads; anything else becomes ``****``. (A full
    GB/T 2260 division table would recognise more; suffixes never keep a street.)
    """
    m = _REGION.match(v)
    if not m or not (m.group("prov") or m.group("city")):
        return "****"
    return "".join(g for g in (m.group("prov"), m.group("city"), m.group("dist")) if g) + "****"


def mask_employer(v: str) -> str:
    return v[:2] + "****"


def token(secret: bytes, value: str) -> str:
    """Keyed pseudonym: stable within a contract, unlinkable across contracts."""
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def mask(field: str, value: str, id_type: str = "resident_id") -> str:
    """The standard display mask of *field*'s kind (JR/T 0171-2020 practice)."""
    kind = CASE_FIELDS[field].kind
    if kind is Kind.NAME:
        return mask_name(value)
    if kind is Kind.ID_NUMBER:
        return mask_resident_id(value) if id_type in ("", "resident_id") else last4(value)
    if kind is Kind.ACCOUNT:
        return mask_account(value)
    if kind is Kind.PHONE:
        return mask_phone(value)
    if kind is Kind.ADDRESS:
        return region(value)
    if kind is Kind.EMPLOYER:
        return mask_employer(value)
    raise ValueError(f"{field} has no standard mask")  # config validation prevents this


def apply(rule: Rule, field: str, value: str, *, id_type: str = "resident_id",
          secret: bytes | None = None) -> str:
    if not value or rule is Rule.FULL:
        return value
    if rule is Rule.MASK:
        return mask(field, value, id_type)
    if rule is Rule.LAST4:
        return last4(value)
    if rule is Rule.REGION:
        return region(value)
    if rule is Rule.TOKEN:
        if secret is None:
            raise ValueError("token needs the contract's secret")
        return token(secret, value)
    raise ValueError(f"rule {rule.value} keeps no column")


@dataclass(frozen=True)
class RolePolicy:
    """One role's view of a batch: which canonical columns it keeps, and how."""

    role: str
    rules: Mapping[str, Rule]

    def columns(self, present: Iterable[str]) -> list[str]:
        """Canonical order, only fields present in the batch and not dropped."""
        have = set(present)
        return [name for name in CASE_FIELDS
                if name in have and self.rules.get(name, Rule.DROP) is not Rule.DROP]

    def row(self, columns: list[str], rec: Mapping[str, str], secret: bytes | None) -> list[str]:
        id_type = rec.get("id_type") or "resident_id"
        return [apply(self.rules[c], c, rec.get(c, ""), id_type=id_type, secret=secret)
                for c in columns]
