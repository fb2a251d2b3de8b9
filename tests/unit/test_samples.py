"""`gateway sample`: every row it writes passes the gateway's own validators, in the bank's
layout; the committed partner templates are what the code defines."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config, samples, scaffold
from gateway.errors import UsageError
from gateway.validation.cases import CaseValidator, map_header
from gateway.validation.csvio import read_records
from gateway.validation.fields import PRODUCTS
from gateway.validation.results import ResultValidator, map_results_header

TODAY = dt.date(2026, 11, 22)
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
TEMPLATES = Path(__file__).resolve().parents[2] / "docs" / "partners" / "templates"


def read_back(data: bytes, encoding: str = "utf-8", delimiter: str = ",") -> list[list[str]]:
    """The rows as the gateway's own reader sees them."""
    return [fields for _, fields in read_records(io.BytesIO(data), encoding=encoding,
                                                 delimiter=delimiter)]


def validate_cases(cfg: config.Config, data: bytes, day: dt.date = TODAY) -> list[dict[str, str]]:
    rows = read_back(data, cfg.schema_.encoding, cfg.schema_.delimiter)
    header, errors = map_header(rows[0], cfg)
    assert header is not None, errors
    validator = CaseValidator(cfg, header, day)
    accepted = []
    for n, values in enumerate(rows[1:], start=1):
        rec, errors = validator.validate(n, values)
        assert errors == [], (n, [e.code for e in errors])
        assert rec is not None
        accepted.append(rec)
    return accepted


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60),
       day=st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)))
def test_every_case_row_passes_the_validators(cfg, seed, n, day):
    data = samples.cases_csv(samples.case_records(n, ["AG001"], seed=seed, today=day))
    recs = validate_cases(cfg, data, day)
    assert len(recs) == n and all(r["case_id"].startswith("SAMPLE-") for r in recs)
    assert len({r["case_id"] for r in recs}) == n


def test_a_large_sample_is_varied_and_valid(cfg):
    recs = validate_cases(cfg, samples.cases_csv(samples.case_records(2000, ["AG001"], seed=1,
                                                                      today=TODAY)))
    assert {r["product"] for r in recs} == PRODUCTS
    assert {r["id_type"] for r in recs} == {"resident_id", "passport", "other"}
    assert any(r["mobile"].startswith("+86") for r in recs)
    assert any(r["contact3_name"] for r in recs) and any(not r["employer"] for r in recs)


def test_cases_follow_the_banks_layout(tmp_path):
    path = scaffold.init_project(tmp_path / "gw", today=dt.date(2026, 1, 1))
    text = path.read_text().replace('encoding = "utf-8"', 'encoding = "gb18030"').replace(
        'delimiter = ","', 'delimiter = ";"').replace(
        '# customer_name = "客户姓名"', 'customer_name = "客户姓名"\nid_number = "证件号码"')
    path.write_text(text)
    cfg = config.load(path)
    data = samples.cases_csv(samples.case_records(50, ["AG001"], seed=5, today=TODAY),
                             samples.Layout.of(cfg))
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert data.decode("gb18030").startswith("case_id;agency_code;product;account_number;客户姓名;")
    assert len(validate_cases(cfg, data)) == 50


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 200))
def test_every_result_row_passes_the_validators(seed, n):
    ids = samples.synthetic_case_ids(7, seed)
    rows = read_back(samples.results_csv(samples.result_records(ids, n, seed=seed, today=TODAY)))
    columns, errors = map_results_header(rows[0])
    assert columns is not None, errors
    now = dt.datetime.combine(TODAY, dt.time(0, 0), TZ)  # the earliest the sample is processed
    validator = ResultValidator(columns, TZ, now)
    for i, values in enumerate(rows[1:], start=1):
        result, errors = validator.validate(i, values)
        assert errors == [] and result is not None, [e.code for e in errors]
        assert result.case_id in ids
    assert len(rows) == n + 1


def test_same_seed_same_file_other_seed_other_ids():
    def make(seed: int) -> bytes:
        return samples.cases_csv(samples.case_records(20, ["AG001", "AG002"], seed=seed,
                                                      today=TODAY))
    assert make(4) == make(4)
    assert make(4) != make(5)
    assert b"SAMPLE-4-0000001,AG001," in make(4) and b"SAMPLE-4-0000002,AG002," in make(4)


def test_case_ids_of_one_agency(tmp_path):
    f = tmp_path / "c.csv"
    f.write_bytes(samples.cases_csv(samples.case_records(6, ["AG001", "AG002"], seed=2,
                                                         today=TODAY)))
    assert samples.case_ids_from(f, samples.Layout(), ["AG002"]) == [
        "SAMPLE-2-0000002", "SAMPLE-2-0000004", "SAMPLE-2-0000006"]
    with pytest.raises(UsageError, match="2 agencies"):
        samples.case_ids_from(f, samples.Layout(), [])
    with pytest.raises(UsageError, match="no cases of AG003"):
        samples.case_ids_from(f, samples.Layout(), ["AG003"])


def test_case_ids_of_a_slice_without_agency_code(tmp_path):
    f = tmp_path / "B1.AG001.collector.csv"
    f.write_text("case_id,product,total_due\r\nC-1,credit_card,10.00\r\nC-2,other,5\r\n")
    assert samples.case_ids_from(f, samples.Layout(), []) == ["C-1", "C-2"]
    assert samples.case_ids_from(f, samples.Layout(), ["AG001"]) == ["C-1", "C-2"]


def test_write_new_never_overwrites_without_force(tmp_path):
    f = tmp_path / "s.csv"
    samples.write_new(f, b"a")
    assert f.stat().st_mode & 0o777 == 0o600
    with pytest.raises(UsageError, match="already exists"):
        samples.write_new(f, b"b")
    samples.write_new(f, b"b", force=True)
    assert f.read_bytes() == b"b" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


@pytest.mark.parametrize(("name", "data"), [
    ("cases.csv", samples.cases_csv([])),
    ("results.csv", samples.results_csv([])),
])
def test_committed_templates_are_the_code_s_columns(name, data):
    """docs/partners/templates/*.csv are `gateway sample cases|results --rows 0`; regenerate
    them that way when a column is added."""
    assert (TEMPLATES / name).read_bytes() == data
    assert data.count(b"\r\n") == 1
