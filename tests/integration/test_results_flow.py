"""Results flow end to end: GnuPG on both ends, ownership, flags, exactly-once forwarding."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import SITES, site_for

pytestmark = pytest.mark.integration

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
COLUMNS = ["case_id", "action_at", "action_code", "contact_target", "outcome", "amount",
           "promise_date", "new_mobile", "new_address", "note", "collector_id"]


def results_csv(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in COLUMNS})
    return buf.getvalue().encode()


def at(days_ago: int = 1, hour: int = 10, minute: int = 0) -> str:
    day = dt.datetime.now(TZ).date() - dt.timedelta(days=days_ago)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00"


def row(case_id: str, action: str = "CALL", when: str | None = None, target: str = "debtor",
        **extra: str) -> dict[str, str]:
    return {"case_id": case_id, "action_at": when or at(), "action_code": action,
            "contact_target": target, "collector_id": "col-7", **extra}


@pytest.fixture(params=SITES)
def site(request, tmp_path, keybox):
    """The same flow tests with every zone local, and with every zone on a real SFTP server."""
    s = site_for(request, tmp_path, keybox)
    s.records = list(synth.cases(10, ["AG001", "AG002"], seed=21))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    s.ag1 = [r["case_id"] for r in s.records if r["agency_code"] == "AG001"]
    s.ag2 = [r["case_id"] for r in s.records if r["agency_code"] == "AG002"]
    return s


def test_results_reach_the_bank_and_cross_agency_rows_do_not(site, keybox):
    rows = [row(site.ag1[0], outcome="已接通", note="客户承诺下周还款"),
            row(site.ag1[1], "PROMISE_TO_PAY", amount="500.00", promise_date="2026-12-30"),
            row(site.ag2[0]),  # AG002's case
            row("NO-SUCH-CASE")]
    site.upload("AG001", "r-001.csv.pgp", results_csv(rows))
    assert site.run() == {"partial": 1}
    forwarded = site.bank_results()
    assert [r["case_id"] for r in forwarded] == site.ag1[:2]
    assert all(r["agency_code"] == "AG001" for r in forwarded)
    assert forwarded[0]["note"] == "客户承诺下周还款" and forwarded[0]["flags"] == ""
    names = [p.name for p in site.zone("bank", "incoming").glob("results.*")]
    assert len(names) == 1 and names[0].startswith("results.AG001.") and names[0].endswith("Z.csv.pgp")
    (receipt,) = site.agency_receipts("AG001").values()
    assert receipt["status"] == "partial" and receipt["signer"] == keybox["ag001"].fingerprint
    assert receipt["forwarded_as"] == names[0]
    assert [(e["row"], e["code"]) for e in receipt["errors"]] == [(3, "E_NOT_ASSIGNED"),
                                                                 (4, "E_NOT_ASSIGNED")]
    # the receipt is for the agency's supervisor role only
    receipt_file = next(site.zone("AG001", "inbox").glob("*.receipt.json.pgp"))
    assert site.open_as("ag001-collector", receipt_file).rc != 0
    proc = run_cli("audit", "show", "-c", str(site.config), "--event", "security.cross_agency",
                   "--json")
    (event,) = json.loads(proc.stdout)
    assert event["agency"] == "AG001" and event["count"] == 2 and event["file"] == "r-001.csv.pgp"
    assert site.ag2[0] not in proc.stdout
    assert list(site.zone("AG001", "outbox").iterdir()) == []
    leaks = [leak for leak in site.plaintext_leaks(site.records)]
    assert leaks == []
    written = b"".join(p.read_bytes() for p in site.written_files() if p.exists())
    assert "客户承诺下周还款".encode() not in written


def test_signed_by_another_agencys_key_is_rejected_whole(site):
    site.upload("AG001", "r-002.csv.pgp", results_csv([row(site.ag1[0])]), signer="ag002")
    assert site.run() == {"rejected": 1}
    (receipt,) = site.agency_receipts("AG001").values()
    assert receipt["status"] == "rejected" and receipt["errors"][0]["code"] == "E_UNKNOWN_SIGNER"
    assert site.bank_results() == []
    events = [e for e in audit.AuditLog(site.state / "audit").entries()
              if e["event"] == "security.bad_signature"]
    assert events and events[0]["agency"] == "AG001" and events[0]["code"] == "E_UNKNOWN_SIGNER"


def test_all_rows_foreign_is_rejected(site):
    site.upload("AG002", "r.csv.pgp", results_csv([row(site.ag1[0]), row(site.ag1[1])]))
    assert site.run() == {"rejected": 1}
    assert site.bank_results() == []
    (receipt,) = site.agency_receipts("AG002").values()
    assert {e["code"] for e in receipt["errors"]} == {"E_NOT_ASSIGNED"}


def test_flags_reach_the_bank(site):
    rows = [row(site.ag1[0], when=at(hour=22)),                       # HOURS
            row(site.ag1[1], target="third_party"),                   # THIRD_PARTY
            row(site.ag1[2], "DISPUTE"),                              # DISPUTE
            row(site.ag1[3], "FRAUD_SUSPECTED"),                      # FRAUD
            row(site.ag1[4], "VISIT", when=at(hour=11))]              # nothing
    site.upload("AG001", "r.csv.pgp", results_csv(rows))
    assert site.run() == {"accepted": 1}
    got = {r["case_id"]: r["flags"] for r in site.bank_results()}
    assert got == {site.ag1[0]: "HOURS", site.ag1[1]: "THIRD_PARTY", site.ag1[2]: "DISPUTE",
                   site.ag1[3]: "FRAUD", site.ag1[4]: ""}


def test_attempts_are_counted_across_files(site):
    case = site.ag1[0]
    first = [row(case, "CALL", when=at(hour=9, minute=m)) for m in range(4)]
    site.upload("AG001", "r-a.csv.pgp", results_csv(first))
    site.run()
    second = [row(case, "SMS", when=at(hour=15, minute=m)) for m in range(4)]
    second.append(row(case, "CALL", when=at(days_ago=2, hour=10)))  # another day: not counted
    site.upload("AG001", "r-b.csv.pgp", results_csv(second))
    site.run()
    flags = [r["flags"] for r in sorted(site.bank_results(), key=lambda r: r["action_at"])]
    # the call two days ago, then 4 calls + 4 messages today: the 7th and 8th exceed 6
    assert flags == ["", "", "", "", "", "", "", "ATTEMPTS", "ATTEMPTS"]


def test_attempts_are_counted_across_chunks_of_one_file_and_earlier_files(site):
    """The count of a case's day goes on across the 1,000-row chunks a large file is read
    in, on top of what earlier files counted (it used to restart at the chunk boundary)."""
    case, other = site.ag1[0], site.ag1[1]
    site.upload("AG001", "r-a.csv.pgp", results_csv(
        [row(case, "CALL", when=at(hour=9, minute=m)) for m in range(4)]))  # 4 today
    site.run()
    rows = [row(case, "SMS", when=at(hour=11))]  # the 5th, in the first chunk
    rows += [row(other, "VISIT", when=at(hour=12, minute=m % 60)) for m in range(999)]
    rows += [row(case, "SMS", when=at(hour=13, minute=m)) for m in range(2)]  # 6th, 7th: next chunk
    site.upload("AG001", "r-b.csv.pgp", results_csv(rows))
    assert site.run() == {"accepted": 1}
    mine = [r for r in site.bank_results() if r["case_id"] == case]
    assert [r["flags"] for r in sorted(mine, key=lambda r: r["action_at"])] == \
        ["", "", "", "", "", "", "ATTEMPTS"]


def test_late_after_contract_end_is_still_accepted(site):
    ended = (dt.datetime.now(TZ).date() - dt.timedelta(days=3)).isoformat()
    text = site.config.read_text()
    i = text.index('code = "AG001"')
    site.config.write_text(text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                                        f"terminated_on = {ended}", 1))
    site.upload("AG001", "r.csv.pgp", results_csv([row(site.ag1[0], "VISIT", when=at(days_ago=1)),
                                                   row(site.ag1[1], "VISIT", when=at(days_ago=5))]))
    assert site.run() == {"accepted": 1}
    assert [r["flags"] for r in site.bank_results()] == ["LATE", ""]


@pytest.mark.parametrize("point", ["after_results_commit", "after_first_delivery",
                                   "after_receipt_written"])
def test_crash_between_forwarding_and_committing(site, point):
    rows = [row(c, "VISIT") for c in site.ag1]
    site.upload("AG001", "r-crash.csv.pgp", results_csv(rows))
    crashed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": point})
    assert crashed.returncode == 137
    again = run_cli("run", "--once", "-c", str(site.config))
    assert again.returncode == 0, again.stderr
    forwarded = site.bank_results()
    assert sorted(r["case_id"] for r in forwarded) == sorted(site.ag1)  # every row exactly once
    assert len(list(site.zone("bank", "incoming").glob("results.*"))) == 1
    assert len(site.agency_receipts("AG001")) == 1
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok


def test_gateway_seal_is_what_agency_staff_use(site, tmp_path, keybox):
    plain = tmp_path / "results.csv"
    plain.write_bytes(results_csv([row(site.ag1[0], "VISIT")]))
    out = site.zone("AG001", "outbox", "r-sealed.csv.pgp")
    proc = run_cli("seal", str(plain), "--key", str(keybox["ag001"].sec), "--to",
                   str(keybox["gateway"].pub), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert site.run() == {"accepted": 1}
    assert [r["case_id"] for r in site.bank_results()] == [site.ag1[0]]


def test_a_stop_mid_file_commits_nothing_and_the_rerun_counts_each_attempt_once(
        site, monkeypatch):
    """A stop requested while a results file is read (the chunks' second stage busy with
    the ledger) ends the pass with nothing forwarded, counted or left in staging; the next
    pass takes the file from the start, and what the first attempt staged is not counted
    twice."""
    from sqlalchemy import func, select

    from gateway import daemon
    from gateway.flows import Interrupted
    from gateway.ledger import AttemptRow, StagedAttemptRow
    from gateway.validation.columnar_results import ColumnarResults

    case, other = site.ag1[0], site.ag1[1]
    rows = [row(case, "CALL", when=at(hour=9, minute=m)) for m in range(4)]
    rows += [row(other, "VISIT", when=at(hour=12, minute=m % 60)) for m in range(2500)]
    rows += [row(case, "SMS", when=at(hour=13, minute=m)) for m in range(4)]  # 7th, 8th flagged
    site.upload("AG001", "r.csv.pgp", results_csv(rows))
    check, checked = ColumnarResults.check, []

    def check_then_stop(self, chunk):
        checked.append(chunk.records)
        if len(checked) == 2:  # chunk one has gone to the ledger's stage
            ctx.run.stop.set()
        return check(self, chunk)

    monkeypatch.setattr(ColumnarResults, "check", check_then_stop)
    with daemon.open_context(site.cfg()) as ctx:
        with pytest.raises(Interrupted):
            daemon.run_once(ctx)
        with ctx.ledger.session(write=False) as s:
            assert s.scalar(select(func.count()).select_from(AttemptRow)) == 0
    assert site.bank_results() == []
    assert len(checked) == 2
    monkeypatch.setattr(ColumnarResults, "check", check)
    assert site.run() == {"accepted": 1}
    forwarded = sorted(site.bank_results(), key=lambda r: r["action_at"])
    assert len(forwarded) == len(rows)
    mine = [r["flags"] for r in forwarded if r["case_id"] == case]
    assert mine == ["", "", "", "", "", "", "ATTEMPTS", "ATTEMPTS"]
    with daemon.open_context(site.cfg()) as ctx, ctx.ledger.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(StagedAttemptRow)) == 0
        counts = dict(s.execute(select(AttemptRow.case_id, AttemptRow.count)).all())
    assert counts == {case: 8}


def test_a_purge_of_the_agency_while_its_file_is_read_has_the_file_read_again(
        site, monkeypatch):
    """The ownership index is the agency's cases when the reading began; a purge finishing
    meanwhile (another node's, on a shared ledger) makes the commit give way, and the file
    is read again against the cases that are left: no row about a purged case forwarded,
    no attempt counted for it."""
    from sqlalchemy import delete, func, select

    from gateway import daemon
    from gateway.clock import now as utcnow
    from gateway.ledger import AttemptRow, CaseRow, PurgeRow
    from gateway.validation.columnar_results import ColumnarResults

    rows = [row(site.ag1[0], "CALL", when=at(hour=9, minute=m)) for m in range(3)]
    site.upload("AG001", "r.csv.pgp", results_csv(rows))
    check, purged, readings = ColumnarResults.check, [], []

    def check_then_purge(self, chunk):
        readings.append(chunk.records)
        if not purged:  # the other node's purge: every case of the agency, at once
            with ctx.ledger.session() as s:
                s.execute(delete(CaseRow).where(CaseRow.agency_code == "AG001"))
                s.add(PurgeRow(contract_id="C-OLD", agency_code="AG001", effective_end="2020-01-01",
                               deadline="2020-01-31", finished_at=utcnow()))
            purged.append(True)
        return check(self, chunk)

    monkeypatch.setattr(ColumnarResults, "check", check_then_purge)
    with daemon.open_context(site.cfg()) as ctx:
        assert daemon.run_once(ctx) == {"rejected": 1}
        with ctx.ledger.session(write=False) as s:
            assert s.scalar(select(func.count()).select_from(AttemptRow)) == 0
    assert readings == [3, 3]  # read twice in the one pass
    assert site.bank_results() == []
    (receipt,) = site.agency_receipts("AG001").values()
    assert {e["code"] for e in receipt["errors"]} == {"E_NOT_ASSIGNED"}


def test_counts_past_the_memory_bound_go_on_in_the_ledgers_staging(site, monkeypatch):
    """A file's counts are held in memory up to ``file_counts.MAX_BYTES``; past it (here at
    once) what is held, and every later chunk's, is staged in the ledger: the same flags,
    the same counts committed, nothing left staged."""
    from sqlalchemy import func, select

    from gateway import daemon
    from gateway.ledger import AttemptRow, StagedAttemptRow
    from gateway.validation import file_counts

    monkeypatch.setattr(file_counts, "MAX_BYTES", 0)
    case, other = site.ag1[0], site.ag1[1]
    site.upload("AG001", "r-a.csv.pgp", results_csv(
        [row(case, "CALL", when=at(hour=9, minute=m)) for m in range(4)]))
    rows = [row(case, "SMS", when=at(hour=11)), row(other, "CALL", when=at(hour=11))]
    rows += [row(other, "VISIT", when=at(hour=12, minute=m % 60)) for m in range(999)]
    rows += [row(case, "SMS", when=at(hour=13, minute=m)) for m in range(2)]
    assert site.run() == {"accepted": 1}
    site.upload("AG001", "r-b.csv.pgp", results_csv(rows))
    assert site.run() == {"accepted": 1}
    with daemon.open_context(site.cfg()) as ctx, ctx.ledger.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(StagedAttemptRow)) == 0
        counts = dict(s.execute(select(AttemptRow.case_id, AttemptRow.count)).all())
    assert counts == {case: 7, other: 1}
    mine = [r for r in site.bank_results() if r["case_id"] == case]
    assert [r["flags"] for r in sorted(mine, key=lambda r: r["action_at"])] == \
        ["", "", "", "", "", "", "ATTEMPTS"]
