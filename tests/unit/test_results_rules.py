"""Result rows (docs/formats.md §4): every field code, and every flag raised and not raised."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from gateway.validation.results import (
    RESULT_FIELDS,
    Result,
    ResultValidator,
    flags,
    map_results_header,
    parse_action_at,
)

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=TZ)
COLS = tuple(RESULT_FIELDS)
GOOD = {"case_id": "C1", "action_at": "2026-11-20T10:00:00", "action_code": "CALL",
        "contact_target": "debtor", "outcome": "reached", "amount": "", "promise_date": "",
        "new_mobile": "", "new_address": "", "note": "", "collector_id": "u.01"}


def validate(**changes):
    rec = dict(GOOD, **changes)
    return ResultValidator(COLS, TZ, NOW).validate(4, [rec[c] for c in COLS])


def test_good_row_and_local_time():
    result, errors = validate()
    assert errors == []
    assert result.at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
    assert parse_action_at("2026-11-20T02:00:00Z", TZ).astimezone(TZ).hour == 10
    assert parse_action_at("2026-11-20 10:00+08:00", TZ).hour == 10


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"case_id": ""}, "case_id", "E_REQUIRED"),
    ({"case_id": "C 1"}, "case_id", "E_CASE_ID"),
    ({"action_at": "20/11/2026"}, "action_at", "E_DATETIME"),
    ({"action_at": "2026-11-23T10:00:00"}, "action_at", "E_FUTURE"),
    ({"action_code": "THREATEN"}, "action_code", "E_ACTION_CODE"),
    ({"contact_target": "neighbour"}, "contact_target", "E_CONTACT_TARGET"),
    ({"outcome": "x" * 65}, "outcome", "E_TEXT"),
    ({"note": "y" * 501}, "note", "E_TEXT"),
    ({"collector_id": "bad id!"}, "collector_id", "E_COLLECTOR_ID"),
    ({"action_code": "PROMISE_TO_PAY", "promise_date": "2026-12-01"}, "amount", "E_REQUIRED"),
    ({"action_code": "PROMISE_TO_PAY", "amount": "100"}, "promise_date", "E_REQUIRED"),
    ({"action_code": "PAYMENT_REPORTED"}, "amount", "E_REQUIRED"),
    ({"action_code": "PAYMENT_REPORTED", "amount": "1.001"}, "amount", "E_AMOUNT"),
    ({"action_code": "PROMISE_TO_PAY", "amount": "5", "promise_date": "2026-02-30"},
     "promise_date", "E_DATE"),
    ({"action_code": "CONTACT_UPDATE"}, "new_mobile", "E_REQUIRED"),
    ({"new_mobile": "12345"}, "new_mobile", "E_PHONE"),
    ({"new_address": "z" * 201}, "new_address", "E_TEXT"),
])
def test_field_codes(changes, field, code):
    result, errors = validate(**changes)
    assert result is None
    assert (field, code) in {(e.field, e.code) for e in errors}
    free_text = ("outcome", "note", "new_mobile", "new_address", "amount", "collector_id", "action_at")
    for e in errors:  # rule messages may name codes, never the submitted free-text values
        for k, v in changes.items():
            if k in free_text and len(v) > 3:
                assert v not in e.message


def test_contact_update_with_address_is_fine():
    assert validate(action_code="CONTACT_UPDATE", new_address="北京市朝阳区某路1号")[1] == []


def test_header():
    assert map_results_header(list(COLS))[1] == []
    _, errors = map_results_header([*COLS, "pin"])
    assert [e.code for e in errors] == ["E_FORBIDDEN_COLUMN"]
    _, errors = map_results_header([c for c in COLS if c != "collector_id"] + ["remark"])
    assert {e.code for e in errors} == {"E_UNKNOWN_COLUMN", "E_MISSING_COLUMN"}


def result(action="CALL", target="debtor", at="2026-11-20T10:00:00"):
    r, errors = validate(action_code=action, contact_target=target, action_at=at,
                         amount="10" if action in ("PROMISE_TO_PAY", "PAYMENT_REPORTED") else "",
                         promise_date="2026-12-01" if action == "PROMISE_TO_PAY" else "",
                         new_mobile="13812345678" if action == "CONTACT_UPDATE" else "")
    assert errors == [], errors
    return r


def flag(r: Result, *, attempts=1, end=dt.date(2026, 12, 31)):
    return flags(r, tz=TZ, window=(dt.time(8), dt.time(21)), contract_end=end,
                 attempts_today=attempts, max_attempts=6)


def test_hours():
    assert flag(result(at="2026-11-20T21:30:00")) == ["HOURS"]
    assert flag(result(at="2026-11-20T07:59:00")) == ["HOURS"]
    assert flag(result(at="2026-11-20T13:00:00Z")) == ["HOURS"]  # 21:00 in Shanghai
    assert flag(result(at="2026-11-20T08:00:00")) == []
    assert flag(result(at="2026-11-20T20:59:59")) == []
    assert flag(result(action="LETTER", at="2026-11-20T23:00:00")) == []  # not a live contact
    assert flag(result(target="none", at="2026-11-20T23:00:00")) == []


def test_attempts():
    assert flag(result(), attempts=7) == ["ATTEMPTS"]
    assert flag(result(), attempts=6) == []
    assert flag(result(action="VISIT"), attempts=9) == []  # only calls and messages count


def test_third_party():
    assert flag(result(action="CALL", target="third_party")) == ["THIRD_PARTY"]
    assert flag(result(action="CONTACT_UPDATE", target="third_party")) == []
    assert flag(result(action="CALL", target="contact")) == []


def test_dispute_fraud_late():
    assert flag(result(action="DISPUTE")) == ["DISPUTE"]
    assert flag(result(action="FRAUD_SUSPECTED")) == ["FRAUD"]
    assert flag(result(action="PROMISE_TO_PAY")) == []
    assert flag(result(), end=dt.date(2026, 11, 19)) == ["LATE"]
    assert flag(result(), end=dt.date(2026, 11, 20)) == []  # on the last day is in time
