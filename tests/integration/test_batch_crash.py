"""kill -9 at every step of the batch flow, then run again: nothing lost, nothing doubled."""

from __future__ import annotations

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.gpgparty import live_gpg_processes

pytestmark = pytest.mark.integration

POINTS = ["after_copy", "after_claim", "mid_batch", "after_commit", "after_first_delivery",
          "after_receipt_written"]


@pytest.fixture(scope="module")
def records():
    return list(synth.cases(2500, ["AG001", "AG002"], seed=5))  # > 2 chunks: mid_batch is reachable


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_rerun_delivers_exactly_once(tmp_path, keybox, records, point):
    site = Site(tmp_path / "site", keybox)
    site.drop_cases("B-crash.csv.pgp", records)
    crashed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": point})
    assert crashed.returncode == 137, crashed.stderr
    assert site.plaintext_leaks(records[:200]) == []  # after the crash, before any cleanup
    again = run_cli("run", "--once", "-c", str(site.config))
    assert again.returncode == 0, again.stderr
    assert site.inbox("AG001") == ["B-crash.AG001.collector.csv.pgp", "B-crash.AG001.manifest.json.pgp",
                                   "B-crash.AG001.supervisor.csv.pgp"]
    assert len(site.inbox("AG002")) == 4
    receipts = site.receipts()
    assert list(receipts) == ["B-crash.csv.pgp.receipt.json.pgp"]
    assert receipts["B-crash.csv.pgp.receipt.json.pgp"]["counts"]["accepted"] == 2500
    rows = site.open_as("ag001-supervisor",
                        site.zone("AG001", "inbox", "B-crash.AG001.supervisor.csv.pgp")).rows
    assert len(rows) - 1 == 1250 and len({r[0] for r in rows[1:]}) == 1250
    assert list(site.zone("bank", "outgoing").iterdir()) == []
    assert not [p for p in (site.state / "staging").rglob("*") if p.is_file()]
    assert not list((site.state / "archive").glob(".*"))  # no half-written copy left
    assert site.plaintext_leaks(records[:200]) == []
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok
    assert live_gpg_processes(str(site.root)) == []
    # and a third run has nothing left to do
    assert run_cli("run", "--once", "-c", str(site.config)).stderr.strip().endswith("nothing pending")
