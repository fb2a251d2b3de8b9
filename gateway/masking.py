"""Masking rules by role (SPEC §5).

This module starts with the rule catalogue and which rule fits which kind of
field, because the config must refuse an impossible rule (``mask`` on an
amount) before any data flows. The rule functions themselves arrive with the
batch flow.
"""

from __future__ import annotations

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

# Written into gateway.toml by `gateway init` (SPEC §5).
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
