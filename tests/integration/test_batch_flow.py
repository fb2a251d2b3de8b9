"""The bank batch flow end to end: GnuPG plays the bank and every agency role."""

from __future__ import annotations

import json

import pytest

from gateway import audit, synth
from tests.flowsite import SITES, site_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=SITES)
def site(request, tmp_path, keybox):
    """The same flow tests with every zone local, and with every zone on a real SFTP server."""
    return site_for(request, tmp_path, keybox)


@pytest.fixture
def records():
    return list(synth.cases(40, ["AG001", "AG002"], seed=7))


def test_accepted_batch_delivers_masked_role_slices(site, records, keybox):
    site.drop_cases("B2026-001.csv.pgp", records)
    assert site.run() == {"accepted": 1}
    assert site.inbox("AG001") == ["B2026-001.AG001.collector.csv.pgp",
                                   "B2026-001.AG001.manifest.json.pgp",
                                   "B2026-001.AG001.supervisor.csv.pgp"]
    assert "B2026-001.AG002.analyst.csv.pgp" in site.inbox("AG002")
    assert list(site.zone("bank", "outgoing").iterdir()) == []
    gw = keybox["gateway"].fingerprint
    by_id = {r["case_id"]: r for r in records}
    for agency, roles in (("AG001", ("supervisor", "collector")),
                          ("AG002", ("supervisor", "collector", "analyst"))):
        own = {r["case_id"] for r in records if r["agency_code"] == agency}
        for role in roles:
            path = site.zone(agency, "inbox", f"B2026-001.{agency}.{role}.csv.pgp")
            opened = site.open_as(f"{agency.lower()}-{role}", path)
            assert opened.rc == 0 and opened.signer == gw
            header, *rows = opened.rows
            ids = {row[header.index("case_id")] for row in rows}
            assert ids == own  # only this agency's cases
            for other in ("supervisor", "collector", "analyst"):
                key = f"{agency.lower()}-{other}"
                if other != role and other in roles:
                    assert site.open_as(key, path).rc != 0  # not readable by another role
            other_agency = "ag002" if agency == "AG001" else "ag001"
            assert site.open_as(f"{other_agency}-supervisor", path).rc != 0
            for row in rows:
                got = dict(zip(header, row, strict=True))
                src = by_id[got["case_id"]]
                if role == "supervisor":
                    assert got["id_number"] == src["id_number"]
                    assert got["home_address"] == src["home_address"]
                elif role == "collector":
                    assert got["id_number"] == src["id_number"][:6] + "********" + src["id_number"][-4:]
                    assert got["account_number"] == "****" + src["account_number"][-4:]
                    assert got["mobile"] == src["mobile"]
                    assert got["home_address"].endswith("****")
                    assert got["contact1_name"] == src["contact1_name"][0] + "*" * (
                        len(src["contact1_name"]) - 1)
                    assert "employer" not in got and "principal" not in got
                else:  # analyst: pseudonymised name, no contact data
                    assert len(got["customer_name"]) == 16 and got["customer_name"] != src["customer_name"]
                    assert set(got) == {"case_id", "customer_name", "product", "currency", "principal",
                                        "interest", "fees", "total_due", "overdue_days", "assigned_on",
                                        "due_back_on", "home_address"}
    manifest = json.loads(site.open_as("ag001-collector",
                                       site.zone("AG001", "inbox", "B2026-001.AG001.manifest.json.pgp")).body)
    assert manifest["batch_id"] == "B2026-001" and manifest["agency"] == "AG001"
    assert {f["role"] for f in manifest["files"]} == {"supervisor", "collector"}
    assert all(f["records"] == 20 for f in manifest["files"])
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "accepted" and receipt["signer"] == keybox["bank"].fingerprint
    assert receipt["counts"] == {"records": 40, "accepted": 40, "rejected": 0, "neutralised": 0,
                                 "per_agency": {"AG001": 20, "AG002": 20}}
    assert site.plaintext_leaks(records) == []
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok


def test_token_is_stable_within_a_contract(site, records):
    site.drop_cases("B1.csv.pgp", records[:10])
    site.run()
    site.drop_cases("B2.csv.pgp", [dict(r, case_id=r["case_id"] + "X") for r in records[:10]])
    site.run()
    a = site.open_as("ag002-analyst", site.zone("AG002", "inbox", "B1.AG002.analyst.csv.pgp")).rows
    b = site.open_as("ag002-analyst", site.zone("AG002", "inbox", "B2.AG002.analyst.csv.pgp")).rows
    i = a[0].index("customer_name")
    assert [r[i] for r in a[1:]] == [r[i] for r in b[1:]]


def test_one_bad_row_rejects_the_batch_and_keeps_the_original(site, records):
    bad = [dict(r) for r in records]
    bad[5]["id_number"] = bad[5]["id_number"][:17] + ("0" if bad[5]["id_number"][17] != "0" else "1")
    path = site.drop_cases("B-bad.csv.pgp", bad)
    original = path.read_bytes()
    assert site.run() == {"rejected": 1}
    assert site.inbox("AG001") == [] and site.inbox("AG002") == []
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "rejected"
    assert receipt["errors"] == [{"row": 6, "case_id": bad[5]["case_id"], "field": "id_number",
                                  "code": "E_ID_CHECKSUM",
                                  "message": "resident ID check character does not match "
                                             "(GB 11643-1999)"}]
    assert bad[5]["id_number"] not in json.dumps(receipt, ensure_ascii=False)
    (quarantined,) = (site.state / "quarantine").iterdir()
    assert quarantined.read_bytes() == original
    assert site.plaintext_leaks(bad) == []


def test_skip_rows_delivers_the_valid_rows(site, records):
    site.edit('on_invalid = "reject_batch"', 'on_invalid = "skip_rows"')
    bad = [dict(r) for r in records]
    bad[0]["mobile"] = "12345"
    bad[1]["agency_code"] = "AG999"
    site.drop_cases("B-partial.csv.pgp", bad)
    assert site.run() == {"partial": 1}
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "partial"
    assert receipt["counts"]["accepted"] == 38 and receipt["counts"]["rejected"] == 2
    assert [e["code"] for e in receipt["errors"]] == ["E_PHONE", "E_AGENCY"]
    rows = site.open_as("ag001-supervisor",
                        site.zone("AG001", "inbox", "B-partial.AG001.supervisor.csv.pgp")).rows
    assert records[0]["case_id"] not in {r[0] for r in rows}


def test_same_content_twice_is_a_duplicate(site, records):
    sealed = site.drop_cases("B1.csv.pgp", records).read_bytes()
    site.run()
    before = site.inbox("AG001")
    site.zone("bank", "outgoing", "B1-again.csv.pgp").write_bytes(sealed)
    assert site.run() == {"duplicate": 1}
    assert site.inbox("AG001") == before
    receipts = site.receipts()
    assert receipts["B1-again.csv.pgp.receipt.json.pgp"]["status"] == "duplicate"
    assert receipts["B1-again.csv.pgp.receipt.json.pgp"]["batch_id"] == "B1"


def test_reused_batch_id_is_refused(site, records):
    site.drop_cases("B1.csv.pgp", records[:5])
    site.run()
    site.drop_cases("B1.csv.gpg", records[5:10])
    assert site.run() == {"rejected": 1}
    receipt = site.receipts()["B1.csv.gpg.receipt.json.pgp"]
    assert receipt["errors"][0]["code"] == "E_BATCH_EXISTS"


def test_receipt_name_is_never_overwritten(site, records):
    site.zone("bank", "incoming", "B1.csv.pgp.receipt.json.pgp").write_bytes(b"bank's own file")
    site.drop_cases("B1.csv.pgp", records[:3])
    site.run()
    assert site.zone("bank", "incoming", "B1.csv.pgp.receipt.json.pgp").read_bytes() == b"bank's own file"
    assert site.zone("bank", "incoming", "B1.csv.pgp.2.receipt.json.pgp").exists()


@pytest.mark.parametrize(("signer", "to", "code"), [
    (None, "gateway", "E_UNSIGNED"),
    ("other", "gateway", "E_UNKNOWN_SIGNER"),
    ("ag001", "gateway", "E_UNKNOWN_SIGNER"),
    ("bank", "other", "E_NOT_FOR_US"),
])
def test_unauthenticated_files_are_refused_with_a_receipt(site, records, signer, to, code):
    site.drop_cases("B1.csv.pgp", records[:3], signer=signer, to=to)
    assert site.run() == {"rejected": 1}
    (receipt,) = site.receipts().values()
    assert receipt["status"] == "rejected" and receipt["signer"] is None
    assert receipt["errors"][0]["code"] == code
    events = [e["event"] for e in audit.AuditLog(site.state / "audit").entries()]
    if code != "E_NOT_FOR_US":
        assert "security.bad_signature" in events


def test_bad_file_name(site, records):
    site.drop_cases("张三 的案件.csv.pgp", records[:2])
    site.drop_cases("B1.txt", records[:2])
    assert site.run() == {"rejected": 2}
    receipts = site.receipts()
    assert {r["errors"][0]["code"] for r in receipts.values()} == {"E_NAME"}
    assert "张三".encode() not in (site.state / "audit" / "audit.jsonl").read_bytes()


def test_temporary_names_are_not_picked_up(site, records):
    for name in ("B1.csv.pgp.part", ".B2.csv.pgp", "B3.csv.pgp.tmp", "B4.csv.pgp.filepart"):
        site.drop_cases(name, records[:2])
    assert site.run() == {}
    assert len(list(site.zone("bank", "outgoing").iterdir())) == 4


def test_gateway_batches_cli(site, records):
    from tests.conftest import run_cli

    site.drop_cases("B1.csv.pgp", records[:6])
    site.run()
    proc = run_cli("batches", "-c", str(site.config), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["batch_id"] == "B1" and row["status"] == "accepted" and row["accepted"] == 6
    proc = run_cli("batches", "B1", "-c", str(site.config), "--json")
    detail = json.loads(proc.stdout)
    assert len(detail["deliveries"]) == 2 + 3 + 2  # slices per role + one manifest per agency
    assert all(d["delivered_at"] for d in detail["deliveries"])


def test_run_once_cli(site, records):
    from tests.conftest import run_cli

    site.drop_cases("B1.csv.pgp", records[:4])
    proc = run_cli("run", "--once", "-c", str(site.config))
    assert proc.returncode == 0, proc.stderr
    assert "1 accepted" in proc.stderr


def test_a_files_reading_is_logged_stage_by_stage(site, records):
    """One ``file.stages`` line per reading says where its time went, thread by thread
    (docs/engineering/performance.md): numbers and stage names, nothing of the file."""
    import structlog

    site.drop_cases("B1.csv.pgp", records)
    with structlog.testing.capture_logs() as logged:
        assert site.run() == {"accepted": 1}
    (line,) = [e for e in logged if e["event"] == "file.stages"]
    assert line["kind"] == "case_file" and isinstance(line["file_id"], int)
    stages = line["stages"]
    assert list(stages) == ["read", "stage", "seal"]  # the reading thread, then as work flows
    assert stages["stage"]["items"] == stages["seal"]["items"] >= 1
    assert all(isinstance(v, int | float) for s in stages.values() for v in s.values())
    assert stages["read"]["cpu_s"] > 0 and line["wall_s"] >= stages["read"]["busy_s"]
    assert stages["read"]["gpg_s"] > 0  # the plaintext is gpg's, read from its pipe
