"""The whole exchange on PostgreSQL: batch, duplicate, results with a cross-agency row, a
crash after the commit, and a purge — the same flows the SQLite suites test in depth."""

from __future__ import annotations

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.integration.test_results_flow import results_csv, row
from tests.integration.test_retention import end_contract

pytestmark = pytest.mark.integration


def test_the_exchange_on_postgresql(tmp_path, keybox, postgres):
    site = Site(tmp_path / "site", keybox, database_url=postgres.create_database())
    records = list(synth.cases(40, ["AG001", "AG002"], seed=98))
    sealed = site.seal_as("bank", synth.to_csv(records))
    site.zone("bank", "outgoing", "B1.csv.pgp").write_bytes(sealed)
    crashed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": "after_commit"})
    assert crashed.returncode == 137
    assert site.run() == {}  # the crash is finished: deliveries and the receipt, once
    assert site.receipts()["B1.csv.pgp.receipt.json.pgp"]["status"] == "accepted"
    assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4
    site.zone("bank", "outgoing", "B1-again.csv.pgp").write_bytes(sealed)  # the same bytes
    assert site.run() == {"duplicate": 1}
    ag1 = [r["case_id"] for r in records if r["agency_code"] == "AG001"]
    ag2 = [r["case_id"] for r in records if r["agency_code"] == "AG002"]
    site.upload("AG001", "R1.csv.pgp", results_csv([row(ag1[0]), row(ag2[0])]))
    assert site.run() == {"partial": 1}
    assert [r["case_id"] for r in site.bank_results()] == [ag1[0]]
    end_contract(site, "AG002")
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    assert site.run() == {"purged": 1}
    assert site.inbox("AG002") == []
    events = [e["event"] for e in audit.AuditLog(site.state / "audit").entries()]
    assert "security.cross_agency" in events and "retention.purged" in events
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
    assert site.plaintext_leaks(records) == []
