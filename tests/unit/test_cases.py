"""One test per row-level and header-level error code of docs/formats.md §2; messages never echo values."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import config, scaffold, synth
from gateway.validation.cases import CaseValidator, is_forbidden_column, map_header

TODAY = dt.date(2026, 11, 22)


@pytest.fixture
def good():
    rec = next(synth.cases(1, ["AG001"], seed=3, today=TODAY))
    return dict(rec, product="credit_card", account_number="6222020000000007")  # Luhn-valid


def check(cfg, rec, columns=synth.CASE_COLUMNS):
    header, errors = map_header(list(columns), cfg)
    assert header is not None, errors
    return CaseValidator(cfg, header, TODAY).validate(7, [rec.get(c, "") for c in columns])


def test_valid_row(cfg, good):
    rec, errors = check(cfg, good)
    assert errors == [] and rec["case_id"] == good["case_id"]


@pytest.mark.parametrize(("field", "value", "code"), [
    ("case_id", "C 1", "E_CASE_ID"),
    ("case_id", "", "E_REQUIRED"),
    ("agency_code", "AG999", "E_AGENCY"),
    ("agency_code", "AG002", "E_CONTRACT_ENDED"),
    ("product", "crypto", "E_PRODUCT"),
    ("account_number", "12345", "E_ACCOUNT"),
    ("account_number", "6222020000000001", "E_LUHN"),
    ("customer_name", "x" * 65, "E_TEXT"),
    ("customer_name", "张\x07三", "E_TEXT"),
    ("id_type", "driver", "E_ID_TYPE"),
    ("id_number", "11010519900307123", "E_ID_NUMBER"),
    ("id_number", "110105199002301234", "E_BIRTH_DATE"),
    ("mobile", "010-12345678", "E_PHONE"),
    ("contact1_phone", "12345", "E_PHONE"),
    ("home_address", "a" * 201, "E_TEXT"),
    ("currency", "RMB", "E_CURRENCY"),
    ("principal", "1.234", "E_AMOUNT"),
    ("total_due", "0.01", "E_TOTAL"),
    ("overdue_days", "0", "E_OVERDUE_DAYS"),
    ("assigned_on", "2026-13-01", "E_DATE"),
    ("due_back_on", "2020-01-01", "E_DATE_ORDER"),
])
def test_each_field_code(cfg, good, field, value, code):
    rec = dict(good, **{field: value})
    out, errors = check(cfg, rec)
    assert out is None
    assert code in {e.code for e in errors}
    err = next(e for e in errors if e.code == code)
    assert err.row == 7
    if value:
        assert value not in err.message  # never echo the value
    expected_id = good["case_id"] if field != "case_id" else None
    assert err.case_id == expected_id


def test_checksum_code(cfg, good):
    rid = good["id_number"]
    rec = dict(good, id_number=rid[:17] + ("0" if rid[17] != "0" else "1"))
    assert check(cfg, rec)[1][0].code == "E_ID_CHECKSUM"


def test_contract_not_started(cfg, good):
    v = CaseValidator(cfg, map_header(synth.CASE_COLUMNS, cfg)[0], dt.date(2025, 12, 31))
    _, errors = v.validate(1, [good[c] for c in synth.CASE_COLUMNS])
    assert "E_CONTRACT_NOT_STARTED" in {e.code for e in errors}


def test_row_shape(cfg, good):
    header, _ = map_header(synth.CASE_COLUMNS, cfg)
    _, errors = CaseValidator(cfg, header, TODAY).validate(3, ["x"])
    assert errors[0].code == "E_ROW_SHAPE"


def test_optional_fields_may_be_absent(cfg, good):
    cols = [c for c in synth.CASE_COLUMNS if c not in ("employer", "work_address", "contact1_name",
                                                       "contact1_relation", "contact1_phone",
                                                       "id_type", "currency")]
    _, errors = check(cfg, good, cols)
    assert errors == []


@pytest.mark.parametrize(("extra", "code"), [
    ("cvv2", "E_FORBIDDEN_COLUMN"),
    ("CVN", "E_FORBIDDEN_COLUMN"),
    ("card_expiry", "E_FORBIDDEN_COLUMN"),
    ("交易密码", "E_FORBIDDEN_COLUMN"),
    ("Track2", "E_FORBIDDEN_COLUMN"),
    ("nickname", "E_UNKNOWN_COLUMN"),
    ("case_id", "E_DUPLICATE_COLUMN"),
])
def test_header_codes(cfg, extra, code):
    header, errors = map_header([*synth.CASE_COLUMNS, extra], cfg)
    assert header is None and [e.code for e in errors] == [code]


def test_missing_required_column(cfg):
    header, errors = map_header([c for c in synth.CASE_COLUMNS if c != "mobile"], cfg)
    assert header is None and errors[0].code == "E_MISSING_COLUMN" and errors[0].field == "mobile"


def test_mapped_chinese_headers(tmp_path):
    path = scaffold.init_project(tmp_path / "gw")
    text = path.read_text().replace('# customer_name = "客户姓名"',
                                    'customer_name = "客户姓名"\nid_number = "证件号码"')
    path.write_text(text)
    cfg = config.load(path)
    cols = ["客户姓名" if c == "customer_name" else "证件号码" if c == "id_number" else c
            for c in synth.CASE_COLUMNS]
    header, errors = map_header(cols, cfg)
    assert errors == [] and "customer_name" in header.present
    _, errors = map_header(synth.CASE_COLUMNS, cfg)  # the canonical name is no longer the header
    assert {e.code for e in errors} == {"E_UNKNOWN_COLUMN", "E_MISSING_COLUMN"}


def test_forbidden_detection_is_not_too_eager():
    for ok in ("case_id", "principal", "overdue_days", "contact1_phone", "employer", "pinyin_name"):
        assert not is_forbidden_column(ok)
