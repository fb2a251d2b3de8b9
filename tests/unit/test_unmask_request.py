"""The unmask request's form (docs/formats.md §8.1), the [unmask] section's checks, and the
two alert rules — pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import rules
from gateway.config.unmask import UnmaskSection, problems
from gateway.documents import DocumentError
from gateway.masking import DEFAULT_ROLES, Rule
from gateway.unmask import request as req_mod
from gateway.unmask.decide import check_reason
from gateway.unmask.request import UnmaskRequest, file_name, is_request, parse
from gateway.validation.schema import CASE_FIELDS

NOW = dt.datetime(2026, 11, 20, 8, 15, tzinfo=dt.UTC)
case_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
field_names = st.sampled_from(sorted(CASE_FIELDS))
notes = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Nd")),
                max_size=200)


def good(**over: object) -> dict:
    body = {"type": "unmask-request", "version": 1, "id": secrets.token_hex(16), "agency": "AG001",
            "role": "collector", "purpose": "field_visit", "created_at": "2026-11-20T08:15:00Z",
            "cases": ["C1", "C2"], "fields": ["home_address"], "note": "visits next week"}
    return body | over


def refused(body: object) -> DocumentError:
    with pytest.raises(DocumentError) as exc:
        parse(json.dumps(body).encode() if not isinstance(body, bytes) else body)
    assert exc.value.code == "E_REQUEST"
    return exc.value


@settings(max_examples=60, deadline=None)
@given(cases=st.lists(case_ids, min_size=1, max_size=20, unique=True),
       fields=st.lists(field_names, min_size=1, max_size=5, unique=True), note=notes)
def test_what_the_kit_writes_the_gateway_reads_back(cases, fields, note):
    req = UnmaskRequest(secrets.token_hex(16), "AG001", "collector", "field_visit", NOW,
                        tuple(cases), tuple(fields), note.strip())
    assert parse(req.to_json()) == req


@pytest.mark.parametrize(("body", "field"), [
    (good(type="deletion-attestation"), "type"),
    (good(version=True), "version"),
    (good(version=2), "version"),
    (good(id="ABC"), "id"),
    (good(agency="AG.001"), "agency"),
    (good(role="Collector"), "role"),
    (good(purpose=""), "purpose"),
    (good(created_at="2026-11-20"), "created_at"),
    (good(cases=[]), "cases"),
    (good(cases=["C1", "C1"]), "cases"),
    (good(cases=["C 1"]), "cases"),
    (good(cases="C1"), "cases"),
    (good(fields=["home_address", "home_address"]), "fields"),
    (good(fields=["Home"]), "fields"),
    (good(note=None), "note"),
    (good(note="x" * 501), "note"),
    (good(note="call 13800000001"), "note"),  # a phone number
    (good(note="id 110105199003071234"), "note"),  # an ID number
    (good(note="line\u202eevil"), "note"),  # a direction override
])
def test_a_malformed_request_names_its_field(body, field):
    assert refused(body).field == field


def test_unknown_missing_and_duplicate_keys_and_non_json_are_refused():
    refused(good(extra=1))
    body = good()
    del body["note"]
    refused(body)
    refused(b'{"type": "unmask-request", "type": "unmask-request"}')
    refused(b"\xff\xfe not utf-8")
    refused(b"[1, 2]")
    refused(b"[" * 100_000)
    refused(b"{" + b" " * req_mod.MAX_BYTES + b"}")


@given(st.text(max_size=60))
def test_only_request_names_are_requests(stem):
    try:
        name = file_name(stem)
    except ValueError:
        return
    assert is_request(name) and name.endswith(".unmask.json.pgp")
    assert not is_request(f"{stem}.csv.pgp")


def test_the_unmask_section_names_each_problem_by_its_key():
    roles = {name: {f: Rule(r) for f, r in rules_.items()} for name, rules_ in DEFAULT_ROLES.items()}
    section = UnmaskSection.model_validate({
        "purposes": {"field_visit": {"description": "a visit"}, "Bad-Name": {"description": "x"}},
        "requestable": {"collector": ["home_address", "case_id", "nonsense", "home_address"],
                        "nobody": ["home_address"], "supervisor": ["id_number"]}})
    found = problems(section, roles, CASE_FIELDS)
    assert found == [
        "unmask.purposes.Bad-Name: purpose names must match [a-z][a-z0-9_]{0,31}",
        "unmask.requestable.collector[1]: case_id is never masked; nothing to ask for",
        'unmask.requestable.collector[2]: "nonsense" is not a canonical case field',
        'unmask.requestable.collector[3]: "home_address" is listed twice',
        'unmask.requestable.nobody: role "nobody" is not defined under [roles]',
        'unmask.requestable.supervisor[0]: role supervisor already sees "id_number" in full',
    ]


@pytest.mark.parametrize("reason", ["", "  "])
def test_a_denial_needs_a_reason_and_an_approval_does_not(reason):
    assert check_reason(reason, required=False) == ""
    with pytest.raises(Exception, match="needs a reason"):
        check_reason(reason, required=True)


def test_a_reason_holds_no_long_number():
    with pytest.raises(Exception, match="seven or more digits"):
        check_reason("customer 13800000001 asked", required=True)


def test_one_waiting_alert_for_all_requests_and_a_limit_at_four_fifths():
    t1, t2 = NOW + dt.timedelta(hours=5), NOW + dt.timedelta(hours=2)
    (waiting,) = rules.unmask_waiting([("AG002", "field_visit", t1), ("AG001", "legal", t2)])
    assert waiting.key == "unmask_waiting:all" and waiting.subject == "AG001, AG002"
    assert "2 unmask request(s)" in waiting.detail and "2026-11-20 10:15" in waiting.detail
    assert rules.unmask_waiting([]) == []
    found = rules.unmask_limits([("AG001", 4, 5, 10, None), ("AG002", 3, 5, 79, 100),
                                 ("AG003", 0, None, 80, 100)])
    assert [(f.key, f.detail) for f in found] == [
        ("unmask_limit:AG001", "AG001: 4 of 5 requests this month"),
        ("unmask_limit:AG003", "AG003: 80 of 100 cases this month")]


@pytest.mark.parametrize("note", [
    "call 138 0013 8000", "id 110105-19491231-002X", "acct 6222.0212.3456", "ph 138/0013/8000",
    "zero\u200bwidth", "mark\u200fhere", "bom\ufeff", "arabic\u061cmark"])
def test_numbers_split_by_separators_and_invisible_characters_are_refused(note):
    assert refused(good(note=note)).field == "note"


@pytest.mark.parametrize("note", ["visit planned 2026-12-10", "two visits, case 12 and 13",
                                  "court date 2027-01-15, hearing 3"])
def test_dates_and_short_numbers_are_fine(note):
    assert parse(json.dumps(good(note=note)).encode()).note == note
