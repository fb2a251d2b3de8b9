"""Unmask requests through the agency kit, against the real gateway flow with real GnuPG on
every end (docs/partners/agency.md, "Asking to see more"): the kit writes and signs the
request with the requester's role key; the gateway takes it; approvers decide with
`gateway unmask approve`; the gateway releases; the kit fetches, acknowledges and opens
the release — and destroys every copy at its expiry, which the deletion attestation at
the contract's end lists."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
from pathlib import Path

import pytest

from gateway import documents
from tests.integration.test_kit_local import scanned
from tests.integration.test_unmask import decide, unmask_site
from tests.kitsite import KitSite
from tests.leaks import LeakScanner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def site(tmp_path, keybox):
    s = unmask_site(tmp_path / "site", keybox, seed=29,
                    accounts=(("anna", "approver"), ("ben", "approver")))
    s.ag1 = [r for r in s.records if r["agency_code"] == "AG001"]
    return s


def ok(kit: KitSite, capsys, *args: str) -> tuple[str, str]:
    code, out, err = kit.run(*args, capsys=capsys)
    assert code == 0, f"gateway-agency {' '.join(args)}:\n{out}{err}"
    return out, err


def request_id(out: str) -> str:
    m = re.search(r"request-([0-9a-f]{32})\.unmask\.json\.pgp", out)
    assert m, out
    return m[1]


def test_a_request_from_the_kit_is_released_opened_and_destroyed_at_its_expiry(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"), store=True)
    ok(kit, capsys, "fetch")
    wanted = [c["case_id"] for c in site.ag1[:2]]
    out, _ = ok(kit, capsys, "unmask", "--role", "collector", "--purpose", "field_visit",
                "--fields", "home_address,id_number", "--note", "visits next week", *wanted)
    rid = request_id(out)
    sent = [p for p in kit.outbox() if p.name.endswith(".unmask.json.pgp")]
    assert [p.name for p in sent] == [f"request-{rid}.unmask.json.pgp"]
    out, _ = ok(kit, capsys, "status")
    assert (f"unmask request {rid[:8]} (collector, field_visit: home_address, id_number; "
            "2 case(s)): sent") in out

    site.run()  # the gateway takes it: pending, its receipt in the inbox
    out, _ = ok(kit, capsys, "fetch")
    assert f"unmask request {rid[:8]} pending, 2 approval(s) needed" in out
    out, _ = ok(kit, capsys, "status")
    assert re.search(rf"unmask request {rid[:8]} .*: pending, to be decided by 20", out), out

    assert decide(site, "approve", rid, "anna").returncode == 0
    assert decide(site, "approve", rid, "ben").returncode == 0
    site.run()  # released: the one-off slice and its manifest in the inbox
    assert "unmask-1.AG001.collector.csv.pgp" in site.inbox("AG001")
    out, err = ok(kit, capsys, "fetch")
    assert f"release unmask-1 of unmask request {rid[:8]} (field_visit: home_address, id_number)" in out
    assert "batch unmask-1: acknowledged 1 slice(s) and 1 manifest(s)" in out
    assert site.inbox("AG001") == [] and "problem" not in err
    assert kit.ledger_rows("SELECT COUNT(*) FROM cases WHERE batch_id = 'unmask-1'") == [(0,)]
    (ack,) = [p for p in kit.outbox() if p.name.startswith("unmask-1.AG001.ack")]
    assert {f.name for f in kit.open_document(ack).files} == {
        "unmask-1.AG001.collector.csv.pgp", "unmask-1.AG001.manifest.json.pgp"}
    site.run()  # the gateway takes the acknowledgement
    ok(kit, capsys, "fetch")
    (outcome,) = kit.ledger_rows(f"SELECT outcome FROM documents WHERE name = '{ack.name}'")
    assert outcome == ("accepted",)
    out, _ = ok(kit, capsys, "status")
    assert f"unmask request {rid[:8]}" in out and ": released (unmask-1)" in out
    assert re.search(r"release unmask-1 \(.*\): held until 20\S+Z, then destroyed", out), out

    # the requester's kit reads the unmasked fields; the batch's own slice keeps them masked
    opened = kit.run_process("open", "unmask-1.AG001.collector.csv.pgp")
    assert opened.returncode == 0, opened.stderr
    rows = list(csv.DictReader(io.StringIO(opened.stdout.decode())))
    assert [r["case_id"] for r in rows] == wanted
    for row, case in zip(rows, site.ag1[:2], strict=True):
        assert row["home_address"] == case["home_address"] and row["id_number"] == case["id_number"]
    masked = kit.run_process("open", "B1.AG001.collector.csv.pgp").stdout.decode()
    assert site.ag1[0]["home_address"] not in masked
    exported = tmp_path / "user" / "visits.csv"
    exported.parent.mkdir()
    ok(kit, capsys, "export", "unmask-1.AG001.collector.csv.pgp", "--out", str(exported))
    assert site.ag1[0]["home_address"] in exported.read_text()
    stored = kit.store / "unmask-1.AG001.collector.csv"
    assert stored.is_file()
    scanner = LeakScanner(site.records)
    assert {Path(f).parent for f, _ in scanner.scan_files(scanned(kit, site))} <= {kit.store}

    # the expiry, moved into the past in the kit's ledger: the next command destroys it all
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _set(kit, f"UPDATE releases SET expires_at = '{past}'")
    out, err = ok(kit, capsys, "status")
    assert f"release unmask-1 (unmask request {rid[:8]}) expired at {past}" in err
    assert re.search(rf"release unmask-1 .*: expired {past}, its copies destroyed 20", out), out
    assert not stored.exists() and not exported.exists()
    assert not [p for p in (kit.state / "files").iterdir() if p.name.startswith("unmask-1.")]
    assert (kit.state / "files" / "B1.AG001.collector.csv.pgp").exists()  # the batch stays
    assert (kit.store / "B1.AG001.collector.csv").exists()
    again = kit.run_process("open", "unmask-1.AG001.collector.csv.pgp")
    assert again.returncode != 0 and b"destroyed on" in again.stderr
    assert {Path(f).parent for f, _ in scanner.scan_files(scanned(kit, site))} <= {kit.store}
    assert kit.ledger_rows("SELECT decrypted FROM files WHERE name = "
                           "'unmask-1.AG001.collector.csv.pgp'") == [("destroyed",)]

    # the contract's end: the attestation lists the release as destroyed at its expiry
    from tests.integration.test_retention import end_contract

    end_contract(site, "AG001")
    kit.end_contract(days_ago=1)
    out, _ = ok(kit, capsys, "destroy", "--yes")
    (attestation,) = [p for p in kit.outbox() if ".attestation." in p.name]
    doc = kit.open_document(attestation)
    assert isinstance(doc, documents.Attestation)
    listed = {o.name: o for o in doc.objects}
    release = listed["unmask-1.AG001.collector.csv.pgp"]
    assert release.batch_id == "unmask-1" and release.decrypted == "destroyed"
    (expired_at,) = kit.ledger_rows("SELECT expired_at FROM releases")
    assert release.destroyed_at == documents_time(expired_at[0])
    assert "B1.AG001.collector.csv.pgp" in listed
    assert kit.ledger_rows("SELECT body FROM documents WHERE kind = 'unmask-request'") == [(None,)]
    assert scanner.scan_files(scanned(kit, site)) == []
    site.run()  # the gateway takes the attestation, the release's files in it
    out, _ = ok(kit, capsys, "fetch")
    assert f"receipt for {attestation.name}: accepted, 0 error(s)" in out


def documents_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _set(kit: KitSite, sql: str) -> None:
    import sqlite3

    db = sqlite3.connect(kit.state / "kit.db")
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()


def test_what_the_gateway_would_refuse_is_refused_by_the_kit_with_nothing_sent(
        site, keybox, tmp_path, capsys):
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    ok(kit, capsys, "fetch")
    before = kit.outbox()
    mine = site.ag1[0]["case_id"]
    theirs = next(r["case_id"] for r in site.records if r["agency_code"] == "AG002")
    base = ["unmask", "--role", "collector", "--purpose", "field_visit", "--fields", "home_address"]
    refused = [
        ([*base, "--note", f"call {site.ag1[0]['mobile']}", mine], "--note: "),
        ([*base, theirs], f"not cases of contract {kit.contract}"),
        ([*base, "NO-SUCH-CASE", mine], "1 case id(s) are not cases"),
        ([*base], "no case ids"),
        ([*base, mine, mine], "the same case twice"),
        (["unmask", "--role", "analyst", "--purpose", "field_visit", "--fields", "home_address",
          mine], "holds no key of role analyst"),
        (["unmask", "--role", "collector", "--purpose", "field_visit", "--fields", ",", mine],
         "--fields: name at least one field"),
        (["unmask", "--purpose", "field_visit", mine], "--role, --fields required"),
    ]
    for args, words in refused:
        code, _, err = kit.run(*args, capsys=capsys)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, err)
        assert site.ag1[0]["mobile"] not in err
    assert kit.outbox() == before
    assert kit.ledger_rows("SELECT COUNT(*) FROM unmask_requests") == [(0,)]

    cases = tmp_path / "cases.txt"
    cases.write_text("# case_id\n" + "\n".join(c["case_id"] for c in site.ag1[:2]) + "\n\n")
    out, _ = ok(kit, capsys, "unmask", "--role", "collector", "--purpose", "field_visit",
                "--fields", "customer_name", "--cases-file", str(cases))
    rid = request_id(out)
    site.run()  # what only the bank knows: customer_name is not requestable by collectors
    out, _ = ok(kit, capsys, "fetch")
    assert f"receipt for request-{rid}.unmask.json.pgp: rejected" in out
    out, _ = ok(kit, capsys, "status")
    assert f"unmask request {rid[:8]} (collector, field_visit: customer_name; 2 case(s)): " \
           "rejected (E_NOT_REQUESTABLE)" in out


def asked_for_an_id_number(site, keybox, tmp_path, capsys) -> tuple[KitSite, str]:
    """A collector's kit that fetched its batch and asked to see one case's id_number for
    legal action, and the gateway's pass that took the request: the kit and the request id."""
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    ok(kit, capsys, "fetch")
    out, _ = ok(kit, capsys, "unmask", "--role", "collector", "--purpose", "legal_action",
                "--fields", "id_number", site.ag1[0]["case_id"])
    rid = request_id(out)
    site.run()
    return kit, rid


def test_a_denial_is_told_and_shown(site, keybox, tmp_path, capsys):
    kit, rid = asked_for_an_id_number(site, keybox, tmp_path, capsys)
    ok(kit, capsys, "fetch")
    denied = decide(site, "deny", rid, "anna", "--reason", "not before the hearing")
    assert denied.returncode == 0, denied.stderr
    site.run()
    out, _ = ok(kit, capsys, "fetch")
    assert f"unmask request {rid[:8]}: denied: not before the hearing" in out
    assert not [n for n in site.inbox("AG001") if "decision" in n]
    out, _ = ok(kit, capsys, "status", "--json")
    (entry,) = KitSite.json_of(out)["unmask_requests"]
    assert entry["status"] == "denied" and entry["note"] == "not before the hearing"


def test_a_release_sealed_to_another_members_key_is_acknowledged_and_kept_sealed(
        site, keybox, tmp_path, capsys):
    """Two collectors: the release is sealed to the one who asked. The kit holding the
    other's key takes it whole, acknowledges it, keeps it encrypted — no problem reported —
    and destroys it at its expiry all the same."""
    from tests.integration.test_unmask import request, send

    other = keybox["ag001-collector-b"]
    shutil.copy(other.pub, site.root / "keys" / "ag001-collector-b.pub.asc")
    site.edit('encrypt_to = ["keys/ag001-collector.pub.asc"]',
              'encrypt_to = ["keys/ag001-collector.pub.asc", "keys/ag001-collector-b.pub.asc"]')
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    ok(kit, capsys, "fetch")
    (case,) = [r["case_id"] for r in site.ag1[:1]]
    req = request(site, [case], ["home_address"], purpose="legal_action")
    receipt = send(site, "b.unmask.json.pgp", req.to_json(), signer="ag001-collector-b")
    assert receipt["status"] == "accepted", receipt
    assert decide(site, "approve", req.id, "anna").returncode == 0
    site.run()
    out, err = ok(kit, capsys, "fetch")
    assert "sealed to key" in out and "kept encrypted" in out and "problem" not in err
    assert "batch unmask-1: acknowledged 1 slice(s)" in out
    code, _, err = kit.run("open", "unmask-1.AG001.collector.csv.pgp", capsys=capsys)
    assert code == 2 and "sealed to one member's key alone" in err
    _set(kit, "UPDATE releases SET expires_at = '2000-01-01T00:00:00Z'")
    ok(kit, capsys, "fetch")
    assert not [p for p in (kit.state / "files").iterdir() if p.name.startswith("unmask-1.")]


def test_a_request_cut_off_before_its_upload_is_sent_once_by_the_next_fetch(
        site, keybox, tmp_path, capsys, monkeypatch):
    """Recorded, not uploaded (the outbox failed): the next fetch sends it — sealed again
    from the ledger's JSON when the sealed copy is gone, and then with the same role key
    the gateway holds the request to."""
    from gateway.transfer import local

    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    ok(kit, capsys, "fetch")
    real = local.LocalZone.write_atomic

    def failing(self, name, src):
        if name.endswith(".unmask.json.pgp"):
            raise OSError(5, "Input/output error")
        return real(self, name, src)

    monkeypatch.setattr(local.LocalZone, "write_atomic", failing)
    code, _, err = kit.run("unmask", "--role", "collector", "--purpose", "legal_action",
                           "--fields", "id_number", site.ag1[0]["case_id"], capsys=capsys)
    assert code == 1 and err.strip().startswith("error: Input/output error"), err
    monkeypatch.setattr(local.LocalZone, "write_atomic", real)
    assert not [p for p in kit.outbox() if p.name.endswith(".unmask.json.pgp")]
    out, _ = ok(kit, capsys, "status")
    assert "not sent yet (run fetch)" in out
    for sealed in (kit.state / "outgoing").iterdir():
        sealed.unlink()  # lost before the upload: made again from the recorded JSON
    out, _ = ok(kit, capsys, "fetch")
    assert "(left to send by an earlier run)" in out
    (sent,) = [p for p in kit.outbox() if p.name.endswith(".unmask.json.pgp")]
    ok(kit, capsys, "fetch")
    assert [p for p in kit.outbox() if p.name.endswith(".unmask.json.pgp")] == [sent]
    site.run()
    out, _ = ok(kit, capsys, "fetch")
    assert "pending, 1 approval(s) needed" in out  # the role key's signature, accepted


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partners" / "agency.md"
_KIT_BLOCK = re.compile(r"^<!-- kit-test: ([a-z0-9-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)


def test_the_guides_unmask_command_runs_as_written(site, keybox, tmp_path, capsys):
    """docs/partners/agency.md section 8's command, in bash, as the person types it (its
    block is marked ``kit-test`` rather than ``test``: tests/integration/test_partner_guides.py
    runs its guide's blocks for a supervisor with no [unmask] configured)."""
    import os
    import subprocess
    import sys

    (block,) = [b for n, b in _KIT_BLOCK.findall(GUIDE.read_text()) if n == "agency-kit-unmask"]
    kit = KitSite(tmp_path / "kit", site, keybox, roles=("collector", "supervisor"))
    ok(kit, capsys, "fetch")
    (kit.root / "visits.txt").write_text("\n".join(c["case_id"] for c in site.ag1[:2]) + "\n")
    env = {**os.environ, "GATEWAY_AGENCY_CONFIG": str(kit.config),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=kit.root, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^sent request-[0-9a-f]{32}\.unmask\.json\.pgp: unmask request [0-9a-f]{8} "
                     r"for 2 case\(s\), home_address \(field_visit\)", proc.stdout), proc.stdout
    site.run()
    out, _ = ok(kit, capsys, "fetch")
    assert "pending, 2 approval(s) needed" in out


def test_a_request_approved_but_no_longer_releasable_is_told_as_failed(site, keybox, tmp_path,
                                                                        capsys):
    """The bank took id_number off what collectors may ask for after the approval: the
    gateway fails the request with a notice, and the kit takes and shows it (it once
    refused the notice on every fetch)."""
    kit, rid = asked_for_an_id_number(site, keybox, tmp_path, capsys)
    assert decide(site, "approve", rid, "anna").returncode == 0
    site.edit('collector = ["home_address", "id_number"]', 'collector = ["home_address"]')
    site.run()
    out, _ = ok(kit, capsys, "fetch")
    assert f"unmask request {rid[:8]}: failed: approved, but not released" in out
    assert not [n for n in site.inbox("AG001") if "decision" in n]
    out, _ = ok(kit, capsys, "status", "--json")
    (entry,) = KitSite.json_of(out)["unmask_requests"]
    assert entry["status"] == "failed" and "id_number" in entry["note"]
