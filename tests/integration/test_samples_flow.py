"""`gateway sample` files, sealed with plain GnuPG, go through a real gateway whole."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.flowsite import Site

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


def test_a_cases_sample_and_a_results_sample_are_accepted_whole(site, tmp_path):
    cases = tmp_path / "cases.csv"
    proc = run_cli("sample", "cases", "--rows", "1000", "--agencies", "AG001,AG002",
                   "--out", str(cases), "--seed", "11")
    assert proc.returncode == 0, proc.stderr
    assert "1000 cases, synthetic (seed 11" in proc.stderr
    site.drop("SAMPLE-11.csv.pgp", cases.read_bytes())
    assert site.run() == {"accepted": 1}
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "accepted" and receipt["errors"] == []
    assert receipt["counts"]["accepted"] == 1000
    assert receipt["counts"]["per_agency"] == {"AG001": 500, "AG002": 500}

    results = tmp_path / "results.csv"
    proc = run_cli("sample", "results", "--cases", str(cases), "--agencies", "AG002",
                   "--rows", "300", "--out", str(results), "--seed", "11")
    assert proc.returncode == 0, proc.stderr
    site.upload("AG002", "results-sample.csv.pgp", results.read_bytes())
    assert site.run() == {"accepted": 1}
    (receipt,) = site.agency_receipts("AG002").values()
    assert receipt["status"] == "accepted" and receipt["errors"] == []
    assert receipt["counts"]["accepted"] == 300
    assert len(site.bank_results()) == 300


def test_a_sample_made_from_the_config_is_accepted(site, tmp_path):
    """-c: the site's agencies (both contracts active) and its schema."""
    cases = tmp_path / "cases.csv"
    proc = run_cli("sample", "cases", "-c", str(site.config), "--rows", "40", "--out", str(cases))
    assert proc.returncode == 0, proc.stderr
    site.drop("S2.csv.pgp", cases.read_bytes())
    assert site.run() == {"accepted": 1}
    (receipt,) = site.receipts().values()
    assert receipt["counts"]["per_agency"] == {"AG001": 20, "AG002": 20}
