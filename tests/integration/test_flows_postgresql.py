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


OUTAGE = 30.0  # seconds PostgreSQL stays down (issue 10's acceptance)


def test_postgresql_down_for_a_while(tmp_path, keybox):
    """The database stops under a running daemon: health says so (503, the reason), the log
    has one line per failed pass and no traceback, nothing is delivered twice, and the
    daemon resumes by itself when the database is back."""
    import time

    from tests.integration.test_daemon import start_daemon, stop_daemon, wait_for
    from tests.integration.test_metrics import free_port, get
    from tests.pg import Postgres

    server = Postgres()  # its own server: this test stops it
    server.start()
    try:
        site = Site(tmp_path / "site", keybox, database_url=server.create_database())
        port = free_port()
        site.edit('metrics_listen = "127.0.0.1:0"', f'metrics_listen = "127.0.0.1:{port}"')
        proc = start_daemon(site, "--rescan", "0.5")
        try:
            wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=10)
            server.pause()
            stopped = time.monotonic()
            wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=20)
            _status, body = get(port, "/healthz")
            assert "pass_failed" in body and "ledger" in body, body
            records = list(synth.cases(20, ["AG001", "AG002"], seed=99))
            site.drop_cases("B1.csv.pgp", records)  # arrives during the outage
            time.sleep(max(3.0, OUTAGE - (time.monotonic() - stopped)))  # 30 s in all
            assert site.receipts() == {}
            assert get(port, "/healthz")[0] == 503
            server.resume()
            wait_for(site.zone("bank", "incoming", "B1.csv.pgp.receipt.json.pgp").exists,
                     timeout=60)
            wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=20)
        finally:
            assert stop_daemon(proc) == 0
            out, err = proc.communicate()
        assert "pass.failed" in out and "Traceback" not in out + err
        assert [r["status"] for r in site.receipts().values()] == ["accepted"]
        assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4
    finally:
        server.stop()
