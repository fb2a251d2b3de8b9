"""The ``[unmask]`` section: unmasking by approval (docs/operations.md, "Unmasking by
approval").

An agency's member may ask, for named cases and a configured purpose, to see fields
their role sees masked; bank approvers decide in the console (or with ``gateway unmask``),
and an approved request is released as a one-off slice sealed to the requester's key,
deleted from the inbox at its expiry. What may be asked for is decided here, per role —
the business need PCI DSS 3.4.1 asks to be documented — and so is how many distinct
approvers each purpose needs. Unset: requests are refused (``E_REQUEST``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import Field

from gateway.config.base import _Model
from gateway.masking import Rule

PURPOSE_RE = r"^[a-z][a-z0-9_]{0,31}$"


class Purpose(_Model):
    description: str = Field(
        min_length=1, max_length=200,
        description="What the purpose is, as approvers read it in the console "
                    '(e.g. "a field visit to the customer\'s address").')
    approvals: int = Field(
        default=2, ge=1, le=5,
        description="How many distinct approver accounts must approve a request for this "
                    "purpose before anything is released (2: the two-person rule). One "
                    "denial ends the request.")


class UnmaskSection(_Model):
    purposes: dict[str, Purpose] = Field(
        min_length=1,
        description="The purposes an agency may give, by name (a lowercase letter, then up to "
                    "31 lowercase letters, digits or \"_\"), e.g. [unmask.purposes.field_visit].")
    requestable: dict[str, list[str]] = Field(
        description="Per role, the canonical case fields a member of that role may ask to see "
                    "unmasked, e.g. collector = [\"home_address\", \"id_number\"]. A role not "
                    "listed may ask for nothing; case_id is never asked for (every role "
                    "sees it).")
    decide_within_hours: int = Field(
        default=72, ge=1, le=720,
        description="A request not decided this many hours after it arrived expires, and the "
                    "agency is told so.")
    release_days: int = Field(
        default=7, ge=1, le=90,
        description="A released one-off slice is deleted from the agency's inbox this many days "
                    "after its release (its manifest names the date, and the agency kit "
                    "destroys its copies then).")
    max_cases: int = Field(
        default=200, ge=1, le=10_000,
        description="At most this many cases in one request.")
    monthly_cases: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="At most this many cases in one agency's requests of a calendar month (the "
                    "gateway's time zone; denied and expired requests do not count); a request "
                    "that would pass it is refused (E_UNMASK_LIMIT). Unset: no limit.")
    monthly_releases: int | None = Field(
        default=None, ge=1, le=100_000,
        description="At most this many requests of one agency in a calendar month (denied and "
                    "expired ones do not count); a request that would pass it is refused "
                    "(E_UNMASK_LIMIT). Unset: no limit.")


def problems(section: UnmaskSection, roles: Mapping[str, Mapping[str, Rule]],
             case_fields: Mapping[str, object]) -> list[str]:
    """What the models alone cannot check: names, roles and fields that exist, and that a
    requestable field is one the role does not already see in full."""
    out: list[str] = []
    for name in section.purposes:
        if not re.match(PURPOSE_RE, name):
            out.append(f"unmask.purposes.{name}: purpose names must match [a-z][a-z0-9_]{{0,31}}")
    for role, fields in section.requestable.items():
        if role not in roles:
            out.append(f'unmask.requestable.{role}: role "{role}" is not defined under [roles]')
            continue
        for i, name in enumerate(fields):
            where = f"unmask.requestable.{role}[{i}]"
            if name not in case_fields:
                out.append(f'{where}: "{name}" is not a canonical case field')
            elif name == "case_id":
                out.append(f"{where}: case_id is never masked; nothing to ask for")
            elif name in fields[:i]:
                out.append(f'{where}: "{name}" is listed twice')
            elif roles[role].get(name) is Rule.FULL:
                out.append(f'{where}: role {role} already sees "{name}" in full')
    return out
