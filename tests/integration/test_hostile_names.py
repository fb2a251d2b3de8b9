"""Hostile and clumsy file names and unfinished uploads, through the whole flow (issue 9).

A bad name is that file's problem, never the zone's: the valid batch beside it is
delivered, the odd one gets an ``E_NAME`` receipt under a name that can always be
written, and an entry that cannot be read at all is refused — audited, shown by
`gateway status` — without stopping anything.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import SITES, Site, site_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=SITES)
def site(request, tmp_path, keybox):
    return site_for(request, tmp_path, keybox)


def drop_raw(site: Site, raw_name: bytes, plaintext: bytes) -> None:
    path = os.fsencode(site.zone("bank", "outgoing")) + b"/" + raw_name
    with open(path, "wb") as fh:
        fh.write(site.seal_as("bank", plaintext))


@pytest.mark.parametrize("raw_name", [
    b"B-EVIL\nX.csv.pgp",  # a newline
    b"B-EVIL\\X.csv.pgp",  # a backslash
    b"B-\xb0\xa1.csv.pgp",  # not UTF-8 (GB2312 bytes)
    b"B-\xe2\x80\xaegpj.csv.pgp",  # U+202E right-to-left override
    "\U0001F600".encode() * 63,  # 252 bytes of 4-byte characters
], ids=["newline", "backslash", "not-utf8", "rtl-override", "long-multibyte"])
def test_a_bad_name_is_that_files_problem(site, raw_name):
    records = list(synth.cases(4, ["AG001", "AG002"], seed=5))
    drop_raw(site, raw_name, synth.to_csv(records))
    site.drop_cases("B-GOOD.csv.pgp", [dict(r, case_id=r["case_id"] + "G")
                                       for r in synth.cases(3, ["AG001"], seed=6)])
    outcomes = site.run()
    assert outcomes["rejected"] == 1 and outcomes["accepted"] == 1, outcomes
    assert list(site.zone("bank", "outgoing").iterdir()) == []  # both answered and removed
    receipts = site.receipts()
    assert receipts["B-GOOD.csv.pgp.receipt.json.pgp"]["status"] == "accepted"
    (name,) = [n for n in receipts if n != "B-GOOD.csv.pgp.receipt.json.pgp"]
    assert len(name.encode()) <= 255 and name.isprintable() and "\\" not in name
    bad = receipts[name]
    assert bad["status"] == "rejected" and bad["errors"][0]["code"] == "E_NAME"
    assert bad["file"].isprintable()
    assert not site.plaintext_leaks(records)
    # later batches are answered as usual: one bad name stops no receipt
    site.drop_cases("B-LATER.csv.pgp", list(synth.cases(2, ["AG002"], seed=7)))
    assert site.run() == {"accepted": 1}
    assert "B-LATER.csv.pgp.receipt.json.pgp" in site.receipts()
    entries = list(audit.AuditLog(site.state / "audit").entries())
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok
    assert any(e["event"] == "file.rejected" and e.get("code") == "E_NAME" for e in entries)


def test_a_trailing_newline_does_not_pass_as_a_batch_name(site):
    drop_raw(site, b"B1.csv.pgp\n", synth.to_csv(list(synth.cases(2, ["AG001"], seed=8))))
    assert site.run() == {"rejected": 1}
    (receipt,) = site.receipts().values()
    assert receipt["errors"][0]["code"] == "E_NAME" and site.inbox("AG001") == []


def test_symlinks_and_fifos_are_refused_audited_and_shown(site, tmp_path):
    outgoing = site.zone("bank", "outgoing")
    (tmp_path / "target").write_bytes(site.seal_as("bank", b"x"))
    os.symlink(tmp_path / "target", outgoing / "LINK.csv.pgp")
    os.mkfifo(outgoing / "FIFO.csv.pgp")
    site.drop_cases("B-GOOD.csv.pgp", list(synth.cases(2, ["AG001"], seed=9)))
    for _ in range(2):  # refused every pass, audited once
        outcomes = site.run()
    assert outcomes["refused"] == 2
    refused = [e for e in audit.AuditLog(site.state / "audit").entries()
               if e["event"] == "file.refused"]
    assert sorted((e["file"], e["reason"]) for e in refused) == [
        ("FIFO.csv.pgp", "special"), ("LINK.csv.pgp", "symlink")]
    assert "B-GOOD.csv.pgp.receipt.json.pgp" in site.receipts()
    status = run_cli("status", "-c", str(site.config), "--json")
    assert status.returncode == 0, status.stderr
    (row,) = [r for r in json.loads(status.stdout) if r["zone"] == "bank.outgoing"]
    assert sorted(r["name"] for r in row["refused"]) == ["FIFO.csv.pgp", "LINK.csv.pgp"]
    human = run_cli("status", "-c", str(site.config))
    assert "refused in bank.outgoing: 'LINK.csv.pgp' (symlink" in human.stdout
    (outgoing / "LINK.csv.pgp").unlink()
    (outgoing / "FIFO.csv.pgp").unlink()
    site.run()
    status = run_cli("status", "-c", str(site.config), "--json")
    assert all(r["refused"] == [] for r in json.loads(status.stdout))


def test_run_once_leaves_a_file_that_is_still_being_written(tmp_path, keybox):
    site = Site(tmp_path / "site", keybox, settle_seconds=1.0)
    sealed = site.seal_as("bank", synth.to_csv(list(synth.cases(50, ["AG001"], seed=10))))
    assert site.run() == {}  # the ledger made (its migrations take a second of their own)
    target = site.zone("bank", "outgoing", "B1.csv.pgp")
    target.write_bytes(sealed[: len(sealed) // 3])  # a third is there, the writer goes on
    assert site.run() == {}
    assert target.read_bytes() == sealed[: len(sealed) // 3] and site.receipts() == {}
    with target.open("ab") as fh:
        fh.write(sealed[len(sealed) // 3:])
    time.sleep(1.1)
    assert site.run() == {"accepted": 1}


def test_an_upload_appended_in_sessions_is_taken_once_complete(tmp_path, keybox):
    """Four open/append/close sessions 0.7 s apart while the daemon runs (inotify wakes it
    at every close): one accepted receipt, every slice delivered — never a torn batch."""
    from tests.integration.test_daemon import start_daemon, stop_daemon, wait_for

    site = Site(tmp_path / "site", keybox, settle_seconds=2.0)
    records = list(synth.cases(300, ["AG001", "AG002"], seed=12))
    sealed = site.seal_as("bank", synth.to_csv(records))
    target = site.zone("bank", "outgoing", "B1.csv.pgp")
    proc = start_daemon(site, "--rescan", "60")
    try:
        quarter = len(sealed) // 4 + 1
        for i in range(4):
            with target.open("ab") as fh:
                fh.write(sealed[i * quarter:(i + 1) * quarter])
            time.sleep(0.7)
        receipt = site.zone("bank", "incoming", "B1.csv.pgp.receipt.json.pgp")
        wait_for(receipt.exists, timeout=30)
    finally:
        assert stop_daemon(proc) == 0
    receipts = site.receipts()
    assert list(receipts) == ["B1.csv.pgp.receipt.json.pgp"]
    assert receipts["B1.csv.pgp.receipt.json.pgp"]["status"] == "accepted"
    assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4


def test_a_writer_that_resumes_while_the_file_is_read_is_not_cut(tmp_path, keybox):
    """The settle time passed, the pick-up began, and the writer came back: the reader sees
    the file change under it and gives it back instead of taking a torn copy."""
    from gateway.transfer.base import FileChanged
    from gateway.transfer.local import LocalZone

    zone_dir = tmp_path / "z"
    zone_dir.mkdir()
    (zone_dir / "B1.csv.pgp").write_bytes(b"a" * 1_000_000)
    zone = LocalZone("bank.outgoing", zone_dir)
    appended = threading.Event()
    with pytest.raises(FileChanged), zone.open_read("B1.csv.pgp") as fh:
        fh.read(1000)
        with (zone_dir / "B1.csv.pgp").open("ab") as w:
            w.write(b"b" * 10)
            appended.set()
        while fh.read(65536):
            pass
    assert appended.is_set()


def test_a_file_still_being_written_does_not_mark_the_zone_failing(tmp_path, keybox):
    """A file that changed while it was read is that file's state, not the zone's:
    `gateway status` stays ok."""
    from gateway.transfer.base import FileChanged
    from gateway.transfer.local import LocalZone
    from gateway.transfer.wrappers import MonitoredZone

    d = tmp_path / "z"
    d.mkdir()
    (d / "B1.csv.pgp").write_bytes(b"a" * 100_000)
    zone = MonitoredZone(LocalZone("bank.outgoing", d))
    zone.list_ready()
    with pytest.raises(FileChanged), zone.open_read("B1.csv.pgp") as fh:
        fh.read(10)
        with (d / "B1.csv.pgp").open("ab") as w:
            w.write(b"more")
        while fh.read(65536):
            pass
    assert zone.health.last_error is None and zone.health.last_scan is not None
