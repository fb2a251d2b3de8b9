"""The agency kit against a real gateway on local zones, with real gpg on every end:
fetch and acknowledge, tampering, crash and re-run, results, destroy, leaks."""

from __future__ import annotations

import pytest

from gateway import documents, synth
from gateway.kit import ledger as kit_ledger
from tests.flowsite import Site
from tests.kitsite import KitSite

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
