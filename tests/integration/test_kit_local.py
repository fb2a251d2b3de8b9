"""The agency kit against a real gateway on local zones, with real gpg on every end:
fetch and acknowledge, tampering, crash and re-run, results, destroy, leaks."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from gateway import documents, synth
from gateway.kit import ledger as kit_ledger
from tests.flowsite import Site
from tests.kitsite import KitSite
from tests.leaks import LeakScanner

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path, keybox):
    s = Site(tmp_path / "site", keybox)
    s.records = list(synth.cases(8, ["AG001", "AG002"], seed=26))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    s.ag1 = [r["case_id"] for r in s.records if r["agency_code"] == "AG001"]
    return s


def test_fetch_acknowledges_the_batch_and_empties_the_inbox(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    before = site.inbox("AG001")
    assert sorted(before) == ["B1.AG001.collector.csv.pgp", "B1.AG001.manifest.json.pgp",
                              "B1.AG001.supervisor.csv.pgp"]
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "batch B1: manifest received, 2 slice(s) listed" in out
    assert "acknowledged 2 slice(s) and 1 manifest(s) in B1.AG001.ack.json.pgp" in out
    assert site.inbox("AG001") == []
    (ack_file,) = kit.outbox()
    assert ack_file.name == "B1.AG001.ack.json.pgp"
    ack = kit.open_document(ack_file)
    assert isinstance(ack, documents.Acknowledgement)
    assert ack.agency == "AG001" and ack.batch_id == "B1"
    assert sorted(f.name for f in ack.files) == sorted(before)
    held = {p.name for p in (kit.state / "files").iterdir()}
    assert held == set(before)
    # the slice of the supervisor role (no key here) is held, hashed and acknowledged all the same
    assert kit.ledger_rows("SELECT COUNT(*) FROM cases") == [(len(site.ag1),)]
    assert kit.ledger_rows("SELECT ack_id, acknowledged_at IS NOT NULL FROM batches") == [(ack.id, 1)]
    code, out, _ = kit.run("fetch", capsys=capsys)
    assert code == 0 and "nothing new" in out and len(kit.outbox()) == 1


def test_a_tampered_slice_is_not_acknowledged_and_stays(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    bad = site.zone("AG001", "inbox", "B1.AG001.supervisor.csv.pgp")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 1
    assert "B1.AG001.supervisor.csv.pgp: its SHA-256 does not match the manifest's" in err
    assert site.inbox("AG001") == ["B1.AG001.supervisor.csv.pgp"]
    ack = kit.open_document(kit.outbox()[0])
    assert sorted(f.name for f in ack.files) == ["B1.AG001.collector.csv.pgp",
                                                 "B1.AG001.manifest.json.pgp"]
    code, _, err = kit.run("fetch", capsys=capsys)  # still reported, still not acknowledged
    assert code == 1 and "does not match" in err and len(kit.outbox()) == 1


def test_a_crash_between_upload_and_record_sends_the_same_ack_once(site, keybox, tmp_path, capsys,
                                                                   monkeypatch):
    kit = KitSite(tmp_path / "kit", site, keybox)

    def crash(self, doc_id, at):
        raise KeyboardInterrupt  # as a kill would: nothing after the upload is recorded

    monkeypatch.setattr(kit_ledger.KitLedger, "mark_uploaded", crash)
    assert kit.run("fetch", capsys=capsys)[0] == 130
    (first,) = kit.outbox()
    first_id = kit.open_document(first).id
    assert len(site.inbox("AG001")) == 3  # nothing removed before the ack is recorded as sent
    monkeypatch.undo()
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    (again,) = kit.outbox()
    assert again.name == first.name and kit.open_document(again).id == first_id
    assert site.inbox("AG001") == []
    assert kit.ledger_rows("SELECT COUNT(*), MIN(uploaded_at IS NOT NULL) FROM documents") == [(1, 1)]


def test_destroy_is_refused_while_the_contract_runs(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 1 and f"contract {kit.contract} has not ended: it runs until" in err
    assert len(list((kit.state / "files").iterdir())) == 3
    code, out, _ = kit.run("destroy", "--dry-run", capsys=capsys)
    assert code == 0 and "to destroy: 3 file(s)" in out and "would be refused" in out


def test_destroy_after_the_end_deletes_everything_and_attests_it(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    assert [p.name for p in kit.store.iterdir()] == ["B1.AG001.collector.csv"]
    kit.end_contract()
    received = kit.open_document(kit.outbox()[0]).files
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 0, err
    assert f"sent the deletion attestation {kit.contract}.AG001.attestation.json.pgp" in out
    assert list((kit.state / "files").iterdir()) == [] and list(kit.store.iterdir()) == []
    assert kit.ledger_rows("SELECT COUNT(*) FROM cases") == [(0,)]
    sent = kit.site.zone("AG001", "outbox", f"{kit.contract}.AG001.attestation.json.pgp")
    attestation = kit.open_document(sent)
    assert isinstance(attestation, documents.Attestation)
    assert attestation.contract_id == kit.contract and attestation.agency == "AG001"
    by_name = {o.name: o for o in attestation.objects}
    assert {(f.name, f.sha256) for f in received} == {(o.name, o.sha256) for o in attestation.objects}
    assert by_name["B1.AG001.collector.csv.pgp"].decrypted == "destroyed"
    assert by_name["B1.AG001.supervisor.csv.pgp"].decrypted == "none"
    kept = sorted(p.name for p in (kit.state / "attestations").iterdir())
    assert kept == [f"{kit.contract}.AG001.attestation.json", f"{kit.contract}.AG001.attestation.json.pgp"]
    assert kit.open_for_gateway(kit.state / "attestations" / kept[1]) == \
        (kit.state / "attestations" / kept[0]).read_bytes()
    code, out, _ = kit.run("destroy", "--yes", capsys=capsys)  # again: nothing new is signed
    assert code == 0 and "was sent at" in out
    assert kit.ledger_rows("SELECT COUNT(*) FROM documents WHERE kind = 'attestation'") == [(1,)]
    code, out, _ = kit.run("status", "--json", capsys=capsys)
    (contract,) = json.loads(out)["contracts"]
    assert contract["destroyed"] and contract["attested"] and contract["files_held"] == 0


def test_open_export_and_status(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    proc = kit.run_process("open", "B1.AG001.collector.csv.pgp")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout.decode())))
    assert rows[0][0] == "case_id" and sorted(r[0] for r in rows[1:]) == sorted(site.ag1)
    assert b"the collector role's view" in proc.stderr and b"account_number" in proc.stderr
    code, _, err = kit.run("open", "B1.AG001.supervisor.csv.pgp", capsys=capsys)
    assert code == 2 and "whose key this installation does not hold" in err
    out_csv = tmp_path / "mine" / "b1.csv"
    out_csv.parent.mkdir()
    code, _, err = kit.run("export", "B1", "--format", "csv", "--out", str(out_csv), capsys=capsys)
    assert code == 0, err
    assert out_csv.read_bytes().decode().splitlines() == proc.stdout.decode().splitlines()
    assert out_csv.stat().st_mode & 0o777 == 0o600
    code, _, err = kit.run("export", "B1", "--format", "csv", "--out", str(out_csv), capsys=capsys)
    assert code == 2 and "already exists" in err
    book = tmp_path / "mine" / "b1.xlsx"
    code, _, err = kit.run("export", "B1.AG001.collector.csv.pgp", "--format", "xlsx", "--out",
                           str(book), capsys=capsys)
    assert code == 0, err
    with zipfile.ZipFile(book) as zf:
        assert "[Content_Types].xml" in zf.namelist()
        sheet = ElementTree.fromstring(zf.read("xl/worksheets/sheet1.xml"))
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    cells = [[t.text or "" for t in r.iter(f"{ns}t")] for r in sheet.iter(f"{ns}row")]
    assert cells == rows
    code, out, _ = kit.run("status", capsys=capsys)
    assert code == 0
    assert "1 batch(es), 3 file(s) held (0 decrypted in the store)" in out
    assert f"{len(site.ag1)} case(s)" in out


def scanned(kit: KitSite, site: Site) -> list[Path]:
    here = [p for base in (kit.root, site.root / "zones") for p in base.rglob("*") if p.is_file()]
    return here + [p for d in Path("/tmp").glob("gwa*") for p in d.rglob("*") if p.is_file()]


def test_no_plaintext_is_written_outside_the_store(site, keybox, tmp_path, capsys):
    ended = dt.date.today() - dt.timedelta(days=1)
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"),
                  contract_end=ended)
    scanner = LeakScanner(site.records)
    homes = set(Path("/tmp").glob("gwa*"))  # the kit's keyrings: none must outlive a command
    assert kit.run("fetch", capsys=capsys)[0] == 0
    assert kit.run_process("open", "B1.AG001.supervisor.csv.pgp").returncode == 0
    results = tmp_path / "user" / "r-1.csv"
    results.parent.mkdir()
    results.write_text("case_id,action_at,action_code,contact_target,note,collector_id\r\n"
                       f"{site.ag1[0]},2026-11-19T10:00:00,CALL,debtor,\u5ba2\u6237{site.records[0]['customer_name']},c1\r\n")
    assert kit.run("results", str(results), capsys=capsys)[0] == 0
    assert scanner.scan_files(scanned(kit, site)) == []
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    assert scanner.scan_files(scanned(kit, site)) == []
    assert set(Path("/tmp").glob("gwa*")) <= homes


def test_with_a_store_plaintext_is_only_there(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"), store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    scanner = LeakScanner(site.records)
    leaks = scanner.scan_files(scanned(kit, site))
    assert leaks and {Path(f).parent for f, _ in leaks} == {kit.store}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kit.store.iterdir())


def test_fetch_and_results_over_sftp(site, keybox, tmp_path, capsys, sshd):
    """The inbox and outbox as an agency usually has them: on the gateway's SFTP server."""
    kit = KitSite(tmp_path / "kit", site, keybox, sshd=sshd)
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "acknowledged 2 slice(s)" in out and site.inbox("AG001") == []
    assert isinstance(kit.open_document(kit.outbox()[0]), documents.Acknowledgement)
    kit.outbox()[0].unlink()  # the gateway does not take acknowledgements yet
    results = tmp_path / "r-sftp.csv"
    results.write_text("case_id,action_at,action_code,contact_target,collector_id\r\n"
                       f"{site.ag1[0]},2026-11-19T10:00:00,CALL,debtor,c1\r\n")
    code, out, err = kit.run("results", str(results), capsys=capsys)
    assert code == 0, err
    assert site.run() == {"accepted": 1}


@pytest.mark.parametrize("point", ["record_manifest", "mark_received", "add_document",
                                   "seal_body", "mark_removed", "record_cases"])
def test_fetch_interrupted_anywhere_finishes_on_the_next_run(site, keybox, tmp_path, capsys,
                                                             monkeypatch, point):
    """A kill at each step that records something: the next fetch neither loses nor doubles."""
    from gateway.kit import send

    kit = KitSite(tmp_path / "kit", site, keybox)
    owner = send if point == "seal_body" else kit_ledger.KitLedger
    real = getattr(owner, point)
    calls = []

    def once(*args, **kwargs):
        calls.append(point)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, point, once)
    assert kit.run("fetch", capsys=capsys)[0] == 130
    monkeypatch.undo()
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert site.inbox("AG001") == []
    (ack_file,) = kit.outbox()
    ack = kit.open_document(ack_file)
    assert len(ack.files) == 3
    assert kit.ledger_rows("SELECT COUNT(*) FROM documents") == [(1,)]
    assert kit.ledger_rows("SELECT COUNT(*) FROM files WHERE received_at IS NOT NULL "
                           "AND ack_id IS NOT NULL AND removed_at IS NOT NULL") == [(3,)]
    assert kit.ledger_rows("SELECT COUNT(*) FROM cases") == [(len(site.ag1),)]
    assert sorted(p.name for p in (kit.state / "files").iterdir()) == sorted(f.name for f in ack.files)
    assert list((kit.state / "tmp").iterdir()) == [] and list((kit.state / "outgoing").iterdir()) == []


def test_a_manifest_not_signed_by_the_gateway_is_refused(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    forged = json.dumps({"batch_id": "B9", "agency": "AG001", "contract_id": "C-2026-001",
                         "created_at": "2026-11-02T01:30:09Z", "files": []}).encode()
    site.zone("AG001", "inbox", "B9.AG001.manifest.json.pgp").write_bytes(
        site.seal_as("ag002", forged, to="ag001-collector"))
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 1
    assert "B9.AG001.manifest.json.pgp: not acknowledged, left in the inbox: E_UNKNOWN_SIGNER" in err
    assert site.inbox("AG001") == ["B9.AG001.manifest.json.pgp"]
    assert "B9" not in {p.name.split(".")[0] for p in kit.outbox()}
    assert kit.ledger_rows("SELECT batch_id FROM batches") == [("B1",)]


def test_destroy_interrupted_finishes_and_attests_once(site, keybox, tmp_path, capsys, monkeypatch):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract(40)
    real, calls = kit_ledger.KitLedger.mark_destroyed, []

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(kit_ledger.KitLedger, "mark_destroyed", second_fails)
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 130
    monkeypatch.undo()
    code, _, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 0, err
    (sent,) = [p for p in kit.outbox() if p.name.endswith(".attestation.json.pgp")]
    objects = {o.name: o.decrypted for o in kit.open_document(sent).objects}
    assert objects == {"B1.AG001.collector.csv.pgp": "destroyed", "B1.AG001.manifest.json.pgp": "none",
                       "B1.AG001.supervisor.csv.pgp": "none"}
    assert list(kit.store.iterdir()) == [] and list((kit.state / "files").iterdir()) == []


# --- review findings: each a regression test of the fixed behaviour -------------------------

def attested(kit: KitSite, name: str | None = None) -> dict[str, str]:
    """The decrypted words of the attestation sent (the latest, or *name*)."""
    sent = sorted(p for p in kit.outbox() if p.name.endswith(".attestation.json.pgp"))
    doc = kit.open_document(next(p for p in sent if p.name == name) if name else sent[-1])
    assert isinstance(doc, documents.Attestation)
    return {o.name: o.decrypted for o in doc.objects}


def test_a_kill_after_decrypting_into_the_store_leaves_nothing_destroy_misses(
        site, keybox, tmp_path, capsys, monkeypatch):
    """The store path is recorded before decrypting: a kill after the rename, before the
    copy is recorded, still has destroy find it and attest it."""
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)

    def killed(self, name, at):
        raise KeyboardInterrupt

    monkeypatch.setattr(kit_ledger.KitLedger, "mark_stored", killed)
    assert kit.run("fetch", capsys=capsys)[0] == 130
    monkeypatch.undo()
    assert [p.name for p in kit.store.iterdir()] == ["B1.AG001.collector.csv"]
    kit.end_contract()
    code, _out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 0, err
    assert list(kit.store.iterdir()) == []
    assert attested(kit)["B1.AG001.collector.csv.pgp"] == "destroyed"


def test_a_store_copy_the_ledger_does_not_know_is_destroyed_all_the_same(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    db = sqlite3.connect(kit.state / "kit.db")  # as a kit before the store path was recorded
    with db:
        db.execute("UPDATE files SET stored_path = NULL, stored_at = NULL")
    db.close()
    kit.end_contract()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    assert list(kit.store.iterdir()) == []
    assert attested(kit)["B1.AG001.collector.csv.pgp"] == "destroyed"


def test_a_moved_store_copy_is_not_attested_destroyed_until_the_person_says_so(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract()
    desk = tmp_path / "desk"
    desk.mkdir()
    (kit.store / "B1.AG001.collector.csv").rename(desk / "B1.AG001.collector.csv")
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 1 and "nothing destroyed" in err and "B1.AG001.collector.csv" in err
    assert "--accept-missing" in err
    assert len(list((kit.state / "files").iterdir())) == 3 and not any(
        p.name.endswith(".attestation.json.pgp") for p in kit.outbox())
    code, out, _ = kit.run("destroy", "--dry-run", capsys=capsys)
    assert code == 0 and "not found" in out
    code, out, err = kit.run("destroy", "--yes", "--accept-missing", capsys=capsys)
    assert code == 0, err
    assert "confirmed gone by you" in out
    assert attested(kit)["B1.AG001.collector.csv.pgp"] == "destroyed"
    assert kit.ledger_rows("SELECT copy_missing FROM files WHERE name = "
                           "'B1.AG001.collector.csv.pgp'") == [(str(kit.store / "B1.AG001.collector.csv"),)]


def test_data_fetched_after_the_attestation_is_kept_sealed_and_attested_anew(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    first = f"{kit.contract}.AG001.attestation.json.pgp"
    assert set(attested(kit, first)) == {"B1.AG001.collector.csv.pgp", "B1.AG001.manifest.json.pgp",
                                         "B1.AG001.supervisor.csv.pgp"}
    more = list(synth.cases(4, ["AG001"], seed=99, prefix="D"))
    site.drop_cases("B2.csv.pgp", more)
    site.run()
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "batch B2: kept encrypted, not decrypted into the store" in out
    assert list(kit.store.iterdir()) == []
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 0, err
    second = f"{kit.contract}.AG001.2.attestation.json.pgp"
    assert f"sent the deletion attestation {second}" in out
    assert {n.split(".")[0] for n in attested(kit, second)} == {"B1", "B2"}
    assert kit.ledger_rows("SELECT COUNT(DISTINCT id) FROM documents WHERE kind = 'attestation'") == [(2,)]
    code, out, _ = kit.run("destroy", "--yes", capsys=capsys)  # nothing new: no third one
    assert code == 0 and f"{second} was sent at" in out


def test_exports_are_recorded_and_destroyed_with_the_contract(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    desk = tmp_path / "desk"
    desk.mkdir()
    book, sheet, lost = desk / "b1.xlsx", desk / "b1.csv", desk / "lost.csv"
    assert kit.run("export", "B1", "--format", "xlsx", "--out", str(book), capsys=capsys)[0] == 0
    assert kit.run("open", "B1.AG001.collector.csv.pgp", "--out", str(sheet), capsys=capsys)[0] == 0
    assert kit.run("open", "B1.AG001.collector.csv.pgp", "--out", str(lost), capsys=capsys)[0] == 0
    lost.unlink()  # deleted by hand: the kit cannot know where it went
    kit.end_contract()
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 1 and str(lost) in err and book.exists() and sheet.exists()
    code, out, err = kit.run("destroy", "--yes", "--accept-missing", capsys=capsys)
    assert code == 0, err
    assert not book.exists() and not sheet.exists()
    assert f"destroyed the exported file {book}" in out and f"destroyed the exported file {sheet}" in out
    assert attested(kit) == {"B1.AG001.collector.csv.pgp": "destroyed",
                             "B1.AG001.manifest.json.pgp": "none",
                             "B1.AG001.supervisor.csv.pgp": "none"}
    assert kit.ledger_rows("SELECT outcome FROM exports ORDER BY id") == [
        ("destroyed",), ("destroyed",), ("missing",)]


def test_destroy_waits_for_an_export_being_written(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract()
    writer = subprocess.Popen(["sleep", "30"])  # stands for a live open --out
    try:
        db = sqlite3.connect(kit.state / "kit.db")
        with db:
            db.execute("INSERT INTO exports (path, part, names, pid, created_at) VALUES "
                       "(?, ?, 'B1.AG001.collector.csv.pgp', ?, '2026-01-01T00:00:00Z')",
                       (str(tmp_path / "b1.csv"), str(tmp_path / ".b1.csv.x.part"), writer.pid))
        db.close()
        code, _, err = kit.run("destroy", "--yes", capsys=capsys)
        assert code == 1 and "is writing" in err and str(tmp_path / "b1.csv") in err
        assert len(list((kit.state / "files").iterdir())) == 3
    finally:
        writer.kill()
        writer.wait()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0  # its writer gone: swept


def test_a_rejected_attestation_is_shown_and_replaced(site, keybox, tmp_path, capsys):
    """agency.toml's contract_end earlier than the bank's: the gateway rejects the
    attestation (E_CONTRACT_ACTIVE); status says so and destroy sends a new one. (The
    receipt is for the receipts role, supervisor: this installation holds its key.)"""
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    site.run()
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    first = f"{kit.contract}.AG001.attestation.json.pgp"
    assert f"the gateway rejected {first}: E_CONTRACT_ACTIVE" in out
    code, out, _ = kit.run("status", capsys=capsys)
    assert "rejected: E_CONTRACT_ACTIVE" in out and "run destroy again" in out
    code, out, _ = kit.run("status", "--json", capsys=capsys)
    (contract,) = json.loads(out)["contracts"]
    assert not contract["attested"] and contract["attestation"]["outcome"] == "rejected"
    code, out, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 0, err
    assert f"sent the deletion attestation {kit.contract}.AG001.2.attestation.json.pgp" in out
    ids = kit.ledger_rows("SELECT id FROM documents WHERE kind = 'attestation'")
    assert len(set(ids)) == 2


def test_a_receipt_this_installation_cannot_read_leaves_the_outcome_unknown(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    results = tmp_path / "r-1.csv"
    results.write_text("case_id,action_at,action_code,contact_target,collector_id\r\n"
                       f"{site.ag1[0]},2026-11-19T10:00:00,CALL,debtor,c1\r\n")
    assert kit.run("results", str(results), capsys=capsys)[0] == 0
    site.run()
    assert kit.run("fetch", capsys=capsys)[0] == 0
    outcomes = dict(kit.ledger_rows("SELECT name, outcome FROM documents"))
    assert outcomes == {"r-1.csv.pgp": "unknown", "B1.AG001.ack.json.pgp": "unknown"}
    assert kit.ledger_rows("SELECT COUNT(*) FROM receipts WHERE answers IS NULL") == [(0,)]
    kit.end_contract()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    site.run()
    assert kit.run("fetch", capsys=capsys)[0] == 0
    _code, out, _ = kit.run("status", capsys=capsys)
    assert "the gateway's answer is unknown: its receipt is encrypted to the agency's " \
           "receipts role, whose key this installation does not hold" in out


def test_a_changed_inbox_file_is_never_removed_unseen(site, keybox, tmp_path, capsys, monkeypatch):
    """A kill between the acknowledgement's upload and its record; then the slice and the
    manifest in the inbox are replaced: neither is removed, both are reported."""
    kit = KitSite(tmp_path / "kit", site, keybox)

    def killed(self, doc_id, at):
        raise KeyboardInterrupt

    monkeypatch.setattr(kit_ledger.KitLedger, "mark_uploaded", killed)
    assert kit.run("fetch", capsys=capsys)[0] == 130
    monkeypatch.undo()
    site.zone("AG001", "inbox", "B1.AG001.collector.csv.pgp").write_bytes(b"another delivery")
    site.zone("AG001", "inbox", "B1.AG001.manifest.json.pgp").write_bytes(b"another manifest")
    code, _out, err = kit.run("fetch", capsys=capsys)
    assert code == 1
    assert "B1.AG001.collector.csv.pgp: changed in the inbox since the kit verified" in err
    assert "B1.AG001.manifest.json.pgp: a different manifest of this name" in err
    assert site.inbox("AG001") == ["B1.AG001.collector.csv.pgp", "B1.AG001.manifest.json.pgp"]


def test_a_killed_open_out_leaves_no_plaintext_or_keys_after_the_next_command(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    before = set(Path("/tmp").glob("gwa*"))
    desk = tmp_path / "desk"
    desk.mkdir()
    driver = (
        "import os, signal, sys\n"
        "from gateway.kit import export, cli\n"
        "def feed(self, chunk):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "real = export._decrypt\n"
        "def _decrypt(state, crypto, row, sink, scan, *, streaming):\n"
        "    sink.write(b'case_id,secret\\n'); sink.flush(); os.fsync(sink.fileno())\n"
        "    export.MaskScan.feed = feed\n"
        "    return real(state, crypto, row, sink, scan, streaming=streaming)\n"
        "export._decrypt = _decrypt\n"
        f"sys.exit(cli.main(['open', 'B1.AG001.collector.csv.pgp', '--out', '{desk}/b1.csv',"
        f" '--config', '{kit.config}']))\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", driver], cwd=root, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    assert proc.returncode == -9, proc.stderr
    (part,) = desk.iterdir()
    assert part.name.endswith(".part")
    homes = set(Path("/tmp").glob("gwa*")) - before
    assert homes  # the killed command's keyring, with the agency's secret keys
    code, _out, err = kit.run("status", capsys=capsys)
    assert code == 0
    assert list(desk.iterdir()) == [] and "partial plaintext of an interrupted export" in err
    assert not any(h.exists() for h in homes)
    assert kit.ledger_rows("SELECT outcome FROM exports") == [("unwritten",)]


def test_destroy_never_writes_through_a_symlink(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.end_contract()
    victim = tmp_path / "precious.txt"
    victim.write_text("important\n")
    stored = kit.store / "B1.AG001.collector.csv"
    stored.unlink()
    stored.symlink_to(victim)
    (kit.store / ".x.part").symlink_to(victim)
    code, _, err = kit.run("destroy", "--yes", capsys=capsys)
    assert code == 1 and "no longer where it wrote them" in err  # the copy is not there
    assert kit.run("destroy", "--yes", "--accept-missing", capsys=capsys)[0] == 0
    assert victim.read_text() == "important\n" and list(kit.store.iterdir()) == []


def test_state_dir_and_store_writable_by_others_are_refused(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    kit.store.chmod(0o777)
    code, _, err = kit.run("status", capsys=capsys)
    assert code == 2 and "store:" in err and "group or others" in err
    kit.store.chmod(0o700)
    kit.state.chmod(0o770)
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 2 and "state_dir:" in err


def test_a_foreign_file_on_a_document_name_in_the_outbox_does_not_block_the_kit(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    site.zone("AG001", "outbox", "B1.AG001.ack.json.pgp").write_bytes(b"not ours")
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 0, err
    assert "acknowledged 2 slice(s) and 1 manifest(s) in B1.AG001.ack.json.pgp" in out
    assert site.inbox("AG001") == []
    assert [p.name for p in kit.outbox()] == ["B1.AG001.2.ack.json.pgp", "B1.AG001.ack.json.pgp"]
    assert kit.ledger_rows("SELECT name, uploaded_at IS NOT NULL FROM documents") == [
        ("B1.AG001.2.ack.json.pgp", 1)]
    assert kit.run("fetch", capsys=capsys)[0] == 0


def test_an_earlier_contract_is_destroyed_with_its_end_given(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    old = kit.contract
    kit.config.write_text(kit.config.read_text().replace(f'contract_id = "{old}"',
                                                         'contract_id = "C-2099-001"'))
    code, _, err = kit.run("destroy", "--contract", old, "--yes", capsys=capsys)
    assert code == 2 and "--ended YYYY-MM-DD" in err
    future = (dt.date.today() + dt.timedelta(days=5)).isoformat()
    code, _, err = kit.run("destroy", "--contract", old, "--ended", future, "--yes", capsys=capsys)
    assert code == 1 and "has not ended" in err
    past = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    code, _out, err = kit.run("destroy", "--contract", old, "--ended", past, "--yes", capsys=capsys)
    assert code == 0, err
    assert list((kit.state / "files").iterdir()) == []
    sent = kit.site.zone("AG001", "outbox", f"{old}.AG001.attestation.json.pgp")
    assert kit.open_document(sent).contract_id == old
    code, _, err = kit.run("destroy", "--contract", "C-2001-001", "--ended", past, capsys=capsys)
    assert code == 2 and "never received a batch" in err


def test_hostile_receipt_names_neither_break_fetch_nor_reach_the_terminal(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    long_name = "A" * 235 + ".receipt.json.pgp"  # a legal name, too long with a prefix
    site.zone("AG001", "inbox", long_name).write_bytes(
        site.seal_as(None, b"{}", to="ag002-collector"))
    escaping = "x\x1b]0;pwned\x07\x1b[2K.receipt.json.pgp"
    site.zone("AG001", "inbox", escaping).write_bytes(
        site.seal_as("ag002", b"{}", to="ag001-collector"))
    code, out, err = kit.run("fetch", capsys=capsys)
    assert code == 1 and "File name too long" not in err
    assert "\x1b" not in out + err and "x\\u001b]0;pwned\\u0007" in err
    assert long_name not in site.inbox("AG001") and escaping in site.inbox("AG001")
    stored = [p.name for p in (kit.state / "receipts").iterdir()]
    assert len(stored) == 1 and len(stored[0]) == 64 + len(".receipt.json.pgp")


def test_destroy_clears_tmp_and_the_receipts_case_ids(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox)
    assert kit.run("fetch", capsys=capsys)[0] == 0
    site.run()
    assert kit.run("fetch", capsys=capsys)[0] == 0  # the acknowledgement's receipt
    part = kit.state / "tmp" / "0123456789abcdef.part"  # a killed download's remains
    part.write_bytes((kit.state / "files" / "B1.AG001.collector.csv.pgp").read_bytes()[:4000])
    kit.end_contract()
    assert kit.run("destroy", "--yes", capsys=capsys)[0] == 0
    assert list((kit.state / "tmp").iterdir()) == []
    assert list((kit.state / "receipts").iterdir()) == []
    assert kit.ledger_rows("SELECT COUNT(*) FROM receipts WHERE body IS NOT NULL") == [(0,)]


@pytest.mark.parametrize("change", ["foreign-agency", "twice", "records-bool"])
def test_a_signed_manifest_that_lists_badly_is_refused(site, keybox, tmp_path, capsys, change):
    kit = KitSite(tmp_path / "kit", site, keybox)
    item = {"name": "B9.AG001.collector.csv.pgp", "role": "collector", "records": 1,
            "sha256": "0" * 64}
    files = {"foreign-agency": [{**item, "name": "B9.AG002.collector.csv.pgp"}],
             "twice": [item, item], "records-bool": [{**item, "records": True}]}[change]
    body = json.dumps({"batch_id": "B9", "agency": "AG001", "contract_id": kit.contract,
                       "created_at": "2026-11-02T01:30:09Z", "files": files}).encode()
    site.zone("AG001", "inbox", "B9.AG001.manifest.json.pgp").write_bytes(
        site.seal_as("gateway", body, to="ag001-collector"))
    code, _, err = kit.run("fetch", capsys=capsys)
    assert code == 1 and "internal error" not in err
    assert "B9.AG001.manifest.json.pgp: not a manifest the kit can read" in err
    assert "B9.AG001.manifest.json.pgp" in site.inbox("AG001")


def test_out_inside_a_zone_an_inbox_symlink_and_a_foreign_store_file(site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, store=True)
    kit.store.mkdir()
    (kit.store / "B1.AG001.collector.csv").write_text("the agency's own file\n")
    link = site.zone("AG001", "inbox", "B1.AG001.supervisor.csv.pgp")
    real = tmp_path / "elsewhere.pgp"
    link.rename(real)
    link.symlink_to(real)
    code, _out, err = kit.run("fetch", capsys=capsys)
    assert code == 1
    assert "B1.AG001.supervisor.csv.pgp: refused (symlink" in err
    assert "listed by batch B1's manifest but refused in the inbox" in err
    assert "B1.AG001.collector.csv.pgp: not decrypted into the store" in err
    assert (kit.store / "B1.AG001.collector.csv").read_text() == "the agency's own file\n"
    inside = site.zone("AG001", "outbox", "b1.csv")
    code, _, err = kit.run("open", "B1.AG001.collector.csv.pgp", "--out", str(inside), capsys=capsys)
    assert code == 2 and "lies in the outbox directory" in err and not inside.exists()
