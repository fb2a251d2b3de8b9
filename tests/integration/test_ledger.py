"""Ledger claims: one row per file content, leases across workers, duplicates recognised —
on SQLite and on a real PostgreSQL alike (one parametrised suite)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import inspect, select

from gateway.ledger import (
    BatchRow,
    CaseRow,
    ClaimOutcome,
    CommitConflict,
    FileRow,
    FileStatus,
    LeaseLost,
    LeaseRow,
    Ledger,
    ReceiptRow,
    StagedCaseRow,
)

pytestmark = pytest.mark.integration


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


def test_attempt_counts_answer_exactly_the_pairs_asked(ledger):
    """Committed counts (this agency's only) plus what this file staged, by the pair's
    place in the array asked, for those pairs and no others — on both databases."""
    from gateway.ledger import AttemptRow

    c = claim(ledger)
    with ledger.session() as s:
        s.add_all([AttemptRow(agency_code="AG001", case_id="C1", day="2026-12-01", count=3),
                   AttemptRow(agency_code="AG001", case_id="C1", day="2026-12-02", count=1),
                   AttemptRow(agency_code="AG002", case_id="C2", day="2026-12-01", count=9)])
    ledger.stage_attempts(c.file_id, json.dumps([["C1", "2026-12-01", 2], ["C2", "2026-12-01", 1]]))
    ledger.stage_attempts(c.file_id, json.dumps([["C1", "2026-12-01", 1]]))  # a later chunk adds
    ledger.stage_attempts(c.file_id, "[]")
    many = [[f"X{i}", "2026-12-01"] for i in range(6000)]
    asked = json.dumps([["C3", "2026-12-01"], ["C1", "2026-12-01"], ["C2", "2026-12-01"], *many,
                        ["C1", "2026-12-03"]])
    assert ledger.attempt_counts("AG001", c.file_id, asked) == {1: 3 + 2 + 1, 2: 1}
    assert ledger.attempt_counts("AG002", c.file_id, json.dumps([["C2", "2026-12-01"]])) == {
        0: 9 + 1}
    assert ledger.attempt_counts("AG001", c.file_id, "[]") == {}


def test_committed_results_add_their_counts_to_the_agencys(ledger):
    """A results file's staged counts join the agency's committed ones (adding to a day
    already counted, creating a new one), another agency's stay as they were, and
    nothing stays staged."""
    from gateway.ledger import AttemptRow, StagedAttemptRow

    c = claim(ledger, sha="c" * 64)
    with ledger.session() as s:
        s.add_all([AttemptRow(agency_code="AG001", case_id="C1", day="2026-12-01", count=3),
                   AttemptRow(agency_code="AG002", case_id="C1", day="2026-12-01", count=5)])
    ledger.stage_attempts(c.file_id, json.dumps([["C1", "2026-12-01", 2], ["C2", "2026-12-01", 1]]))
    ledger.commit_results(
        file_id=c.file_id, agency_code="AG001", delivery=None, status=FileStatus.ACCEPTED,
        receipt=ReceiptRow(file_id=c.file_id, file_sha256="c" * 64, input_zone="AG001.outbox",
                           input_name="r", zone="AG001.inbox", staged="s", status="accepted"),
        flags={"ATTEMPTS": 1}, records=3, accepted=3, rejected=0)
    with ledger.session(write=False) as s:
        counts = {(a.agency_code, a.case_id, a.day): a.count for a in s.scalars(select(AttemptRow))}
        assert s.scalars(select(StagedAttemptRow)).all() == []
    assert counts == {("AG001", "C1", "2026-12-01"): 5, ("AG001", "C2", "2026-12-01"): 1,
                      ("AG002", "C1", "2026-12-01"): 5}


def test_foreign_cases_are_those_not_live_for_the_agency(ledger):
    """Another agency's case, a purged one and an unknown id come back; the agency's own
    live cases do not."""
    c = claim(ledger)
    with ledger.session() as s:
        s.add(BatchRow(batch_id="b1", file_id=c.file_id, status="accepted", records=3,
                       accepted=3, rejected=0))
        s.add_all([CaseRow(case_id="C1", batch_id="b1", agency_code="AG001", contract_id="K1"),
                   CaseRow(case_id="C2", batch_id="b1", agency_code="AG002", contract_id="K2"),
                   CaseRow(case_id="C3", batch_id="b1", agency_code="AG001", contract_id="K1",
                           purged_at=dt.datetime.now(dt.UTC))])
    asked = json.dumps([["C1"], ["C2"], ["C3"], ["C4"]])
    assert ledger.foreign_cases("AG001", asked) == {"C2", "C3", "C4"}
    assert ledger.foreign_cases("AG002", asked) == {"C1", "C3", "C4"}
    assert ledger.foreign_cases("AG001", json.dumps([["C1"]])) == set()
    assert ledger.foreign_cases("AG001", "[]") == set()


def test_live_cases_come_in_pages_of_newline_joined_ids(ledger):
    """The ownership index reads an agency's live case ids a page at a time: every live
    one once, in any page size; another agency's and a purged one never."""
    c = claim(ledger)
    mine = sorted(["C1", "C10", "C2", "C-9", "c3", "C.x_y", "C" * 64])
    with ledger.session() as s:
        s.add(BatchRow(batch_id="b1", file_id=c.file_id, status="accepted", records=9,
                       accepted=9, rejected=0))
        s.add_all([CaseRow(case_id=i, batch_id="b1", agency_code="AG001", contract_id="K1")
                   for i in mine])
        s.add_all([CaseRow(case_id="C5", batch_id="b1", agency_code="AG002", contract_id="K2"),
                   CaseRow(case_id="C6", batch_id="b1", agency_code="AG001", contract_id="K1",
                           purged_at=dt.datetime.now(dt.UTC))])
    for page in (1, 2, 3, 7, 100):
        pages = list(ledger.live_case_pages("AG001", page))
        assert all(n == len(text.split("\n")) for n, text in pages)
        ids = [i for _, text in pages for i in text.split("\n")]
        assert sorted(ids) == mine and len(ids) == len(mine)
    assert list(ledger.live_case_pages("AG003", 10)) == []
    assert ledger.finished_purges("AG001") == 0


def _live_batch_of_l1_and_l2(ledger):
    """A committed batch whose cases L1 (AG001) and L2 (AG002) are live."""
    first = claim(ledger, sha="a" * 64)
    ledger.stage_cases(first.file_id, json.dumps([["L1", 2, "AG001"], ["L2", 3, "AG002"]]),
                       {"AG001": "K1", "AG002": "K2"})
    ledger.commit_batch(
        file_id=first.file_id, deliveries=[], status=FileStatus.ACCEPTED, signer="F" * 40,
        batch=BatchRow(batch_id="b1", file_id=first.file_id, status="accepted", records=2,
                       accepted=2, rejected=0),
        receipt=ReceiptRow(file_id=first.file_id, file_sha256="a" * 64, input_zone="bank.outgoing",
                           input_name="x", zone="bank.incoming", staged="s", status="accepted"))


def test_a_chunk_is_staged_and_checked_as_one_json_array(ledger):
    """The batch flow hands the ledger a chunk as ``[["case id", row, "agency"], …]``:
    what this file staged before and what another batch holds live come back; the
    staged rows carry their agency's contract."""
    _live_batch_of_l1_and_l2(ledger)
    c = claim(ledger, sha="b" * 64)
    contracts = {"AG001": "K1", "AG002": "K2", "AG003": "K3"}
    ledger.stage_cases(c.file_id, json.dumps([["S1", 2, "AG003"], ["S2", 3, "AG001"]]), contracts)
    many = [[f"X{i}", 10 + i, "AG002"] for i in range(6000)]  # more than any IN list held
    asked = json.dumps([["S1", 40, "AG001"], ["L2", 41, "AG001"], ["N1", 42, "AG001"], *many])
    assert ledger.stage_chunk(c.file_id, asked) == ({"S1"}, {"L2"})
    assert ledger.stage_chunk(c.file_id, "[]") == (set(), set())
    ledger.stage_cases(c.file_id, json.dumps(many), contracts)
    with ledger.session(write=False) as s:
        rows = s.execute(select(StagedCaseRow.case_id, StagedCaseRow.row, StagedCaseRow.agency_code,
                                StagedCaseRow.contract_id)
                         .where(StagedCaseRow.file_id == c.file_id)).all()
    assert len(rows) == 2 + 6000
    assert {tuple(r) for r in rows if r[0].startswith("S")} == {
        ("S1", 2, "AG003", "K3"), ("S2", 3, "AG001", "K1")}
    assert ("X5999", 6009, "AG002", "K2") in {tuple(r) for r in rows}


def test_only_new_cases_are_staged_by_one_statement(ledger):
    """The batch flow's usual chunk, ids it has not seen, is staged by one statement that
    leaves out an id live in another batch or staged by this file before; the count it
    returns says whether any was left out, and ``staged_rows`` says which (an id staged
    from another row came before; one not staged at all is live)."""
    _live_batch_of_l1_and_l2(ledger)
    c = claim(ledger, sha="b" * 64)
    contracts = {"AG001": "K1", "AG002": "K2", "AG003": "K3"}
    many = [[f"X{i}", 10 + i, "AG002"] for i in range(6000)]
    assert ledger.stage_new_cases(c.file_id, json.dumps([["S1", 2, "AG003"], *many]),
                                  contracts) == 6001
    chunk = json.dumps([["S1", 7000, "AG001"], ["L2", 7001, "AG001"], ["N1", 7002, "AG001"],
                        ["L1", 7003, "AG002"]])
    assert ledger.stage_new_cases(c.file_id, chunk, contracts) == 1
    assert ledger.staged_rows(c.file_id, chunk) == {"S1": 2, "N1": 7002}
    assert ledger.stage_new_cases(c.file_id, "[]", contracts) == 0
    with ledger.session(write=False) as s:
        rows = {tuple(r) for r in s.execute(
            select(StagedCaseRow.case_id, StagedCaseRow.row, StagedCaseRow.agency_code,
                   StagedCaseRow.contract_id).where(StagedCaseRow.file_id == c.file_id))}
    assert len(rows) == 6002
    assert {r for r in rows if not r[0].startswith("X")} == {
        ("S1", 2, "AG003", "K3"), ("N1", 7002, "AG001", "K1")}
    assert ("X5999", 6009, "AG002", "K2") in rows


def test_a_commit_drops_only_its_own_staged_cases(ledger):
    """SQLite empties the staging table whole when the committing file's rows are all it
    holds; another file's staged rows (before it, after it, or both) stay."""
    def staged():
        with ledger.session(write=False) as s:
            return sorted(tuple(r) for r in s.execute(
                select(StagedCaseRow.file_id, StagedCaseRow.case_id)))

    def commit(c, batch_id):
        ledger.commit_batch(
            file_id=c.file_id, deliveries=[], status=FileStatus.ACCEPTED, signer="F" * 40,
            batch=BatchRow(batch_id=batch_id, file_id=c.file_id, status="accepted", records=1,
                           accepted=1, rejected=0),
            receipt=ReceiptRow(file_id=c.file_id, file_sha256="a" * 64,
                               input_zone="bank.outgoing", input_name=batch_id,
                               zone="bank.incoming", staged=batch_id, status="accepted"))

    files = [claim(ledger, sha=x * 64) for x in "abcd"]
    for n, c in enumerate(files):
        ledger.stage_cases(c.file_id, json.dumps([[f"K{n}", 2, "AG001"], [f"M{n}", 3, "AG001"]]),
                           {"AG001": "K1"})
    commit(files[1], "b1")  # between two others
    commit(files[3], "b3")  # the last
    commit(files[0], "b0")  # the first
    assert staged() == [(files[2].file_id, "K2"), (files[2].file_id, "M2")]
    commit(files[2], "b2")  # alone
    assert staged() == []
    with ledger.session(write=False) as s:
        assert sorted(s.scalars(select(CaseRow.case_id))) == sorted(
            f"{p}{n}" for p in "KM" for n in range(4))


def test_lookups_of_any_length_use_a_few_statement_texts(ledger):
    """sqlite3 keeps each distinct statement text prepared (128 a connection, ~0.85 MB
    for 4,000 parameters): lookups whose text followed the input's length made the
    process grow by tens of megabytes. Whatever the lengths, one text per lookup."""
    from sqlalchemy import event

    c = claim(ledger)
    texts: set[str] = set()
    event.listen(ledger.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: texts.add(sql) if sql.startswith("SELECT") else None)
    for n in range(1, 3000, 97):  # 31 lengths
        ids = [f"C{i}" for i in range(n)]
        ledger.stage_chunk(c.file_id, json.dumps([[i, 1, "AG001"] for i in ids]))
        ledger.foreign_cases("AG001", json.dumps([[i] for i in ids]))
        ledger.attempt_counts("AG001", c.file_id, json.dumps([[i, "2026-12-01"] for i in ids]))
    assert len(texts) == 2 + 1 + 2  # staged and live, foreign, counts from two tables


def test_a_large_commit_leaves_its_checkpoint_to_a_thread(tmp_path):
    """SQLite: a transaction opened with ``checkpoint_behind`` commits without the automatic
    checkpoint, which a thread then runs; the connection's next transaction has it back,
    and closing the ledger waits for the thread."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'g.db'}")
    pages = "PRAGMA wal_autocheckpoint"
    with ledger.session(checkpoint_behind=True) as s:
        assert s.connection().exec_driver_sql(pages).scalar() == 0
        s.add(LeaseRow(item="x", owner="w1", until=dt.datetime.now(dt.UTC),
                       taken_at=dt.datetime.now(dt.UTC)))
    thread = ledger._checkpoint
    assert thread is not None
    with ledger.session() as s:
        assert s.connection().exec_driver_sql(pages).scalar() == 1000
        assert s.scalar(select(LeaseRow.item)) == "x"
    ledger.close()
    assert not thread.is_alive() and ledger._checkpoint is None


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


def test_a_lease_is_one_nodes_until_it_runs_out(ledger):
    assert ledger.take_lease("delivery:1", "n1", 60)
    assert not ledger.take_lease("delivery:1", "n2", 60)  # live: n1 delivers it
    assert ledger.take_lease("delivery:1", "n1", 60)  # n1 again (restarted): its own
    assert ledger.leases_held("n1") == 1 and ledger.leases_held("n2") == 0
    ledger.release_lease("delivery:1", "n2")  # not n2's to release
    assert not ledger.take_lease("delivery:1", "n2", 60)
    ledger.release_lease("delivery:1", "n1")
    assert ledger.take_lease("delivery:1", "n2", -1)  # free; n2 takes it, then dies
    assert ledger.take_lease("delivery:1", "n1", 60)  # ran out: taken over


def test_renewal_keeps_leases_and_reports_the_lost(ledger):
    f = claim(ledger, "n1", lease_seconds=60)
    assert ledger.take_lease("purge:K1", "n1", -1)
    assert ledger.renew_leases("n1", ["purge:K1"], [f.file_id], 60) == set()
    assert not ledger.take_lease("purge:K1", "n2", 60)  # renewed: live again
    ledger.finish_file(f.file_id, FileStatus.ACCEPTED)
    assert ledger.renew_leases("n1", [], [f.file_id], 60) == set()  # finished is not lost
    with ledger.session() as s:  # n1 stalled past its lease; n2 took the purge over
        s.get_one(LeaseRow, "purge:K1").owner = "n2"
    assert ledger.renew_leases("n1", ["purge:K1"], [], 60) == {"purge:K1"}


def test_only_one_node_takes_a_dead_nodes_file_and_only_the_holder_commits(db_url):
    n1, n2, n3 = (Ledger(db_url, owner=n) for n in ("n1", "n2", "n3"))
    try:
        f = claim(n1, "n1", lease_seconds=-1)  # n1 died holding it
        assert [r.id for r in n2.resumable("n2", ["case_file"], "bank.outgoing")] == [f.file_id]
        assert n2.take_file(f.file_id, "n2", 60)
        assert not n3.take_file(f.file_id, "n3", 60)  # n2 has it now
        assert n3.next_expiry("n3", ["case_file"], "bank.outgoing") is not None  # look again then
        assert n2.next_expiry("n2", ["case_file"], "bank.outgoing") is None  # its own
        with pytest.raises(LeaseLost):  # n1 comes back to life: its result is dropped
            n1.finish_file(f.file_id, FileStatus.ACCEPTED)
        n2.finish_file(f.file_id, FileStatus.ACCEPTED)
        assert n2.file(f.file_id).status == "accepted"
        assert not n3.take_file(f.file_id, "n3", 60)  # finished: nothing to take
    finally:
        for led in (n1, n2, n3):
            led.close()


def test_a_contradicting_commit_is_a_conflict_and_keeps_nothing(ledger):
    def commit(sha, batch_id):
        c = claim(ledger, "n1", sha=sha)
        ledger.stage_cases(c.file_id, json.dumps([["C1", 2, "AG001"]]), {"AG001": "K1"})
        ledger.commit_batch(
            file_id=c.file_id, deliveries=[], status=FileStatus.ACCEPTED, signer="F" * 40,
            batch=BatchRow(batch_id=batch_id, file_id=c.file_id, status="accepted", records=1,
                           accepted=1, rejected=0),
            receipt=ReceiptRow(file_id=c.file_id, file_sha256=sha, input_zone="bank.outgoing",
                               input_name="x", zone="bank.incoming", staged="s", status="accepted"))
        return c

    commit("a" * 64, "b1")  # another node's batch committed first with case C1
    with pytest.raises(CommitConflict, match="another node committed first"):
        commit("b" * 64, "b2")
    assert ledger.batch("b2") is None and ledger.live_case_count("AG001") == 1
    (row,) = [f for f in ledger.files() if f.sha256 == "b" * 64]
    assert row.status == "claimed"  # still its node's to process again


def test_on_postgresql_leases_run_by_the_servers_clock(postgres, monkeypatch):
    """A host whose clock runs an hour ahead must not take a live node's work."""
    import gateway.ledger as ledger_mod
    from gateway.ledger import claims, core

    url = postgres.create_database()
    n1, n2 = Ledger(url), Ledger(url)
    try:
        assert n1.take_lease("delivery:9", "n1", 60)
        f = claim(n1, "n1", lease_seconds=60)
        ahead = ledger_mod.utcnow() + dt.timedelta(hours=1)
        for where in (ledger_mod, core, claims):  # each store calls the name it imported
            monkeypatch.setattr(where, "utcnow", lambda: ahead)
        assert not n2.take_lease("delivery:9", "n2", 60)
        assert not n2.take_file(f.file_id, "n2", 60)
        assert n2.resumable("n2", ["case_file"], "bank.outgoing") == []
    finally:
        n1.close()
        n2.close()


def test_a_purged_inbox_delivery_is_never_placed_but_the_banks_still_is(ledger):
    """A contract's purge (or a release's expiry) marks its deliveries purged. One for the
    agency's inbox that was never placed must not be placed afterwards — and its file's
    staging waits for it no longer; one for the bank (forwarded results, a report) still
    goes out when bank.incoming answers again."""
    from gateway.ledger import DeliveryRow

    fid = claim(ledger).file_id
    ledger.finish_file(fid, FileStatus.ACCEPTED)
    now = dt.datetime.now(dt.UTC)
    for kind, zone, name in (("slice", "AG001.inbox", "B1.AG001.collector.csv.pgp"),
                             ("notice", "AG001.inbox", "unmask-1.AG001.decision.json.pgp"),
                             ("results", "bank.incoming", "results.AG001.x.csv.pgp")):
        ledger.add_delivery(DeliveryRow(file_id=fid, kind=kind, agency_code="AG001", zone=zone,
                                        name=name, sha256="0" * 64, size=1, purged_at=now))
    assert [d.kind for d in ledger.pending_deliveries()] == ["results"]
    assert not ledger.staging_abandoned(fid)  # the bank's delivery still needs its file
    with ledger.session() as s:
        s.query(DeliveryRow).filter(DeliveryRow.kind == "results").delete()
    assert ledger.staging_abandoned(fid)


def test_on_postgresql_an_agencys_commits_take_its_lock_one_after_the_other(postgres):
    """Two nodes' results commits of one agency add attempt counts to the same rows: in
    different orders they deadlocked. Each takes the agency's advisory lock first (a purge
    too), so the second waits for the first; another agency's does not wait."""
    from sqlalchemy.exc import OperationalError

    url = postgres.create_database()
    n1, n2 = Ledger(url), Ledger(url)
    try:
        with n1.session() as held:
            n1.dialect.lock_agency(held.connection(), "AG001")
            with n2.session() as other:
                n2.dialect.lock_agency(other.connection(), "AG002")  # not waiting
            with pytest.raises(OperationalError, match="lock timeout"), \
                    n2.engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '300ms'")
                n2.dialect.lock_agency(conn, "AG001")
        with n2.session() as s:  # released with the first transaction
            n2.dialect.lock_agency(s.connection(), "AG001")
    finally:
        n1.close()
        n2.close()
