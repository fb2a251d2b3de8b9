"""Ledger claims: one row per file content, leases across workers, duplicates recognised —
on SQLite and on a real PostgreSQL alike (one parametrised suite)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select

from gateway.ledger import BatchRow, CaseRow, ClaimOutcome, FileRow, FileStatus, Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(db_url):
    led = Ledger(db_url)
    yield led
    led.close()


def claim(ledger, owner="w1", sha="a" * 64, **kw):
    return ledger.claim_file(sha256=sha, kind="case_file", zone="bank.outgoing",
                             name="b1.csv.pgp", size=10, owner=owner, **kw)


def test_tables_hold_identifiers_only(ledger):
    cols = {t: {c["name"] for c in inspect(ledger.engine).get_columns(t)}
            for t in ("files", "batches", "cases", "deliveries", "receipts")}
    personal = {"customer_name", "id_number", "mobile", "home_address", "account_number"}
    assert all(not (c & personal) for c in cols.values())
    assert {"case_id", "agency_code", "contract_id"} <= cols["cases"]


def test_sqlite_runs_in_wal_mode(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'gateway.db'}")
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_claim_is_exclusive_until_finished(ledger):
    first = claim(ledger, "w1")
    assert first.outcome is ClaimOutcome.NEW
    assert claim(ledger, "w2").outcome is ClaimOutcome.BUSY
    assert claim(ledger, "w1").outcome is ClaimOutcome.RESUMED
    ledger.finish_file(first.file_id, FileStatus.ACCEPTED, batch_id="b1", records=3)
    dup = claim(ledger, "w2")
    assert dup.outcome is ClaimOutcome.DUPLICATE and dup.status == "accepted"


def test_expired_lease_is_taken_over(ledger):
    claim(ledger, "w1", lease_seconds=-1)  # the worker died; its lease ran out
    assert claim(ledger, "w2").outcome is ClaimOutcome.RESUMED


def test_case_id_unique_among_live_cases(ledger):
    from sqlalchemy.exc import IntegrityError

    c = claim(ledger)
    with ledger.session() as s:
        s.add(BatchRow(batch_id="b1", file_id=c.file_id, status="accepted", records=1,
                       accepted=1, rejected=0))
        s.add(CaseRow(case_id="C1", batch_id="b1", agency_code="AG001", contract_id="K1"))
    with pytest.raises(IntegrityError), ledger.session() as s:
        s.add(CaseRow(case_id="C1", batch_id="b1", agency_code="AG002", contract_id="K2"))
    with ledger.session() as s:
        s.execute(select(CaseRow)).scalar_one().purged_at = dt.datetime.now(dt.UTC)
    with ledger.session() as s:  # a purged case's id may come back in a later batch
        s.add(CaseRow(case_id="C1", batch_id="b1", agency_code="AG002", contract_id="K2"))
    assert ledger.live_case_count("AG002") == 1 and ledger.live_case_count("AG001") == 0


def test_survives_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    a = Ledger(url)
    claim(a)
    a.close()
    b = Ledger(url)
    with b.session() as s:
        assert s.execute(select(FileRow)).scalar_one().name == "b1.csv.pgp"
    b.close()


def test_unreachable_database_is_a_clear_error(tmp_path):
    from gateway.errors import GatewayError

    bad = tmp_path / "file"
    bad.write_text("x")
    with pytest.raises(GatewayError, match="cannot open the ledger database"):
        Ledger(f"sqlite:///{bad}/sub/g.db")


def test_times_keep_their_instant_whatever_their_zone(ledger):
    """SQLite keeps no offset: a local time must not come back as another instant."""
    import zoneinfo

    from gateway.ledger import PurgeRow

    local = dt.datetime(2026, 12, 23, 9, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    ledger.plan_purge(PurgeRow(contract_id="C1", agency_code="AG1", effective_end="2026-11-23",
                               deadline="2026-12-23", started_at=local), "C1", [])
    back = ledger.purge("C1").started_at
    assert back == local and back.tzinfo is not None
