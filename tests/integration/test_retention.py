"""Retention end to end: contract ends, purge through the zones, a certificate GnuPG verifies."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo

import pytest

from gateway import audit, synth
from gateway.ledger import AttemptRow, CaseRow, DeliveryRow, FileRow, Ledger
from tests.conftest import run_cli
from tests.flowsite import SITES, Site, site_for
from tests.gpgparty import GpgParty

pytestmark = pytest.mark.integration
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def results_csv(case_ids: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["case_id", "action_at", "action_code", "contact_target", "collector_id"])
    yesterday = (dt.datetime.now(TZ) - dt.timedelta(days=1)).strftime("%Y-%m-%dT10:00:00")
    for c in case_ids:
        w.writerow([c, yesterday, "VISIT", "debtor", "c1"])
    return buf.getvalue().encode()


def end_contract(site: Site, code: str, days_ago: int = 1) -> None:
    ended = (dt.datetime.now(TZ).date() - dt.timedelta(days=days_ago)).isoformat()
    text = site.config.read_text()
    i = text.index(f'code = "{code}"')
    site.config.write_text(text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                                        f"terminated_on = {ended}", 1))


@pytest.fixture(params=SITES)
def site(request, tmp_path, keybox):
    """Purges go through the zone interface: the same tests on local and on SFTP zones."""
    s = site_for(request, tmp_path, keybox)
    s.records = list(synth.cases(8, ["AG001", "AG002"], seed=31))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    s.ag1 = [r["case_id"] for r in s.records if r["agency_code"] == "AG001"]
    s.ag2 = [r["case_id"] for r in s.records if r["agency_code"] == "AG002"]
    s.upload("AG001", "r1.csv.pgp", results_csv(s.ag1[:2]))
    s.upload("AG002", "r2.csv.pgp", results_csv(s.ag2[:2]))
    s.upload("AG002", "r-bad.csv.pgp", results_csv(s.ag1[:1]))  # rejected: quarantined
    assert s.run() == {"accepted": 2, "rejected": 1}
    s.edit("purge_after_days = 30", "purge_after_days = 0")
    return s


def retention(site, *args):
    proc = run_cli("retention", *args, "-c", str(site.config), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cases_of(site, code):
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        with ledger.session() as s:
            return [c.case_id for c in s.query(CaseRow).filter_by(agency_code=code)]
    finally:
        ledger.close()


def ledger_holdings(site, code):
    """What the ledger still says about an agency: live data vs the purged trail."""
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        with ledger.session() as s:
            return {
                "cases": s.query(CaseRow).filter_by(agency_code=code).count(),
                "attempts": s.query(AttemptRow).filter_by(agency_code=code).count(),
                "live deliveries": s.query(DeliveryRow).filter(
                    DeliveryRow.agency_code == code, DeliveryRow.kind != "certificate",
                    DeliveryRow.purged_at.is_(None)).count(),
                "live result files": s.query(FileRow).filter(
                    FileRow.agency_code == code, FileRow.purged_at.is_(None)).count(),
            }
    finally:
        ledger.close()


def test_purge_ends_with_a_verifiable_certificate(site, keybox):
    ag1_inbox_before = site.inbox("AG001")
    assert [r["state"] for r in retention(site, "status")] == ["active", "active"]
    end_contract(site, "AG002")
    status = {r["agency"]: r for r in retention(site, "status")}
    assert status["AG002"]["state"] == "purge_due" and status["AG002"]["cases"] == 4
    assert status["AG002"]["files"] >= 5
    dry = retention(site, "run", "--dry-run")
    (plan,) = dry
    planned = {(o["zone"], o["name"]) for o in plan["objects"]}
    assert site.inbox("AG002")  # the dry run deleted nothing
    assert len(cases_of(site, "AG002")) == 4

    (done,) = retention(site, "run")
    deleted = {(o["zone"], o["name"]) for o in done["objects"]}
    assert deleted == planned
    assert site.inbox("AG002") == [] and list(site.zone("AG002", "outbox").iterdir()) == []
    assert cases_of(site, "AG002") == [] and len(cases_of(site, "AG001")) == 4
    assert ledger_holdings(site, "AG002") == {"cases": 0, "attempts": 0, "live deliveries": 0,
                                              "live result files": 0}
    assert ledger_holdings(site, "AG001")["cases"] == 4
    assert site.inbox("AG001") == ag1_inbox_before  # the other agency is untouched
    names = {n for _, n in deleted}
    for role in ("supervisor", "collector", "analyst"):
        assert f"B1.AG002.{role}.csv.pgp" in names
    assert "B1.AG002.manifest.json.pgp" in names
    zones = {z for z, _ in deleted}
    assert {"AG002.inbox", "state:archive", "state:quarantine", "state:secrets"} <= zones
    assert not list((site.state / "secrets" / "tokens").glob("C-*-002.key"))

    cert_file = next(site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc"))
    assert (site.state / "certificates" / cert_file.name).read_bytes() == cert_file.read_bytes()
    party = GpgParty(keybox["gateway"].pub)  # anyone with the gateway's public key, no secret key
    try:
        verified = party.gpg("--verify", str(cert_file))
        body = party.gpg("--decrypt", str(cert_file)).stdout
    finally:
        party.close()
    assert verified.returncode == 0
    assert b"VALIDSIG " + keybox["gateway"].fingerprint.encode() in verified.stderr
    cert = json.loads(body)
    assert cert["agency"] == "AG002" and cert["late"] is False
    assert {o["name"] for o in cert["objects"]} == names
    assert cert["ledger"]["case_assignments_deleted"] == 4
    assert all(len(o["sha256"]) == 64 for o in cert["objects"])

    status = {r["agency"]: r for r in retention(site, "status")}
    assert status["AG002"]["state"] == "purged" and status["AG002"]["certificate"] == cert_file.name
    assert status["AG002"]["files"] == 0 and status["AG002"]["cases"] == 0
    events = [e["event"] for e in audit.AuditLog(site.state / "audit").entries()]
    assert "retention.purged" in events and "certificate.delivered" in events
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok
    # the bank file that fed both agencies stays until AG001 is purged too
    assert any(p.name.endswith(".pgp") for p in (site.state / "archive").iterdir())
    assert retention(site, "run") == []  # nothing more to do: one certificate


def test_after_the_purge_the_agency_can_report_nothing(site):
    end_contract(site, "AG002")
    retention(site, "run")
    site.upload("AG002", "r3.csv.pgp", results_csv(site.ag2[:1]))
    assert site.run() == {"rejected": 1}
    receipts = site.agency_receipts("AG002")
    assert any(e["code"] == "E_NOT_ASSIGNED" for r in receipts.values() for e in r["errors"])


def test_batch_archive_goes_when_every_agency_it_fed_is_purged(site):
    end_contract(site, "AG001")
    end_contract(site, "AG002")
    reports = retention(site, "run")
    assert {r["agency"] for r in reports} == {"AG001", "AG002"}
    assert [p for p in (site.state / "archive").iterdir() if not p.name.startswith(".")] == []
    assert list((site.state / "quarantine").iterdir()) == []


def test_purge_killed_half_way_completes_with_one_certificate(site):
    end_contract(site, "AG002")
    (plan,) = retention(site, "run", "--dry-run")
    crashed = run_cli("retention", "run", "-c", str(site.config), env={"GATEWAY_FAULT": "mid_purge"})
    assert crashed.returncode == 137
    (done,) = retention(site, "run")
    assert {(o["zone"], o["name"]) for o in done["objects"]} == {
        (o["zone"], o["name"]) for o in plan["objects"]}
    certs = list(site.zone("bank", "incoming").glob("deletion-certificate.*"))
    assert len(certs) == 1 and len(list((site.state / "certificates").glob("deletion-*"))) == 1


def test_crash_before_the_certificate_commit(site):
    end_contract(site, "AG002")
    crashed = run_cli("retention", "run", "-c", str(site.config),
                      env={"GATEWAY_FAULT": "before_certificate_commit"})
    assert crashed.returncode == 137
    retention(site, "run")
    assert len(list(site.zone("bank", "incoming").glob("deletion-certificate.*"))) == 1
    assert len(list((site.state / "certificates").glob("deletion-*"))) == 1


def test_missed_deadline_is_purged_at_start_up_and_marked_late(site):
    site.edit("purge_after_days = 0", "purge_after_days = 2")
    end_contract(site, "AG002", days_ago=5)  # deadline was 3 days ago; the gateway was "down"
    assert site.run() == {"purged": 1}  # `gateway run` purges at start-up
    cert_file = next(site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc"))
    assert '"late": true' in cert_file.read_text()
    (row,) = [r for r in retention(site, "status") if r["agency"] == "AG002"]
    assert row["state"] == "purged" and row["late"] is True


def test_a_purge_killed_half_way_is_not_taken_for_collection(site):
    """The slices a purge deleted before it was killed were not fetched by the agency: the
    next run must not audit them as slice.collected."""
    end_contract(site, "AG002")
    crashed = run_cli("retention", "run", "-c", str(site.config), env={"GATEWAY_FAULT": "mid_purge"})
    assert crashed.returncode == 137
    assert site.run()["purged"] == 1
    collected = [e for e in audit.AuditLog(site.state / "audit").entries()
                 if e["event"] == "slice.collected" and e.get("agency") == "AG002"]
    assert collected == []
