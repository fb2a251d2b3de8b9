"""Signed audit checkpoints (docs/formats.md §5.4): a cut, a forged append or a rebuilt chain is caught,
by the gateway's own checkpoints and by the copies the bank holds."""

from __future__ import annotations

import json
import shutil

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.gpgparty import GpgParty, validsig_primary

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path, keybox):
    s = Site(tmp_path / "site", keybox)
    for n in (1, 2):  # two runs: two checkpoints
        s.drop_cases(f"B{n}.csv.pgp", [dict(r, case_id=f"{r['case_id']}-{n}")
                                       for r in synth.cases(3, ["AG001"], seed=60 + n)])
        assert s.run() == {"accepted": 1}
    return s


def log_path(site: Site):
    return site.state / "audit" / "audit.jsonl"


def verify(site: Site, *args: str):
    return run_cli("audit", "verify", "-c", str(site.config), *args)


def lines(site: Site) -> list[dict]:
    return [json.loads(x) for x in log_path(site).read_bytes().splitlines()]


def write_chain(site: Site, entries: list[dict]) -> None:
    """What an attacker with write access does: recompute every hash so the chain holds."""
    prev = audit.GENESIS
    out = b""
    for n, e in enumerate(entries, start=1):
        e = {k: v for k, v in e.items() if k != "hash"} | {"seq": n, "prev": prev}
        e["hash"] = audit.entry_hash(e)
        prev = e["hash"]
        out += audit.canonical(e) + b"\n"
    log_path(site).write_bytes(out)


def test_each_run_ends_with_a_signed_checkpoint_the_bank_receives(site):
    entries = lines(site)
    assert entries[-1]["event"] == "audit.checkpoint"
    ours = sorted((site.state / "audit" / "checkpoints").glob("audit-checkpoint.*.json.asc"))
    banks = sorted(site.zone("bank", "incoming").glob("audit-checkpoint.*.json.asc"))
    assert len(ours) == 2 and [p.name for p in banks] == [p.name for p in ours]
    party = GpgParty(site.keys["gateway"].pub)
    try:
        body, status, rc = party.decrypt(banks[-1].read_bytes())  # clear-signed: readable
    finally:
        party.close()
    assert rc == 0 and validsig_primary(status) == site.keys["gateway"].fingerprint
    doc = json.loads(body)
    assert (doc["seq"], doc["hash"]) == (entries[-1]["seq"], entries[-1]["hash"])
    proc = verify(site)
    assert proc.returncode == 0, proc.stderr
    assert "2 signed checkpoints hold" in proc.stdout
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in ours)


def test_cutting_the_last_entry_is_caught(site):
    data = log_path(site).read_bytes().splitlines(keepends=True)
    log_path(site).write_bytes(b"".join(data[:-1]))
    proc = verify(site)
    assert proc.returncode == 1
    assert "cut from its end" in proc.stderr and "last good checkpoint: entry" in proc.stderr
    # the attacker also removes the gateway's own checkpoints: the bank's copies still tell
    shutil.rmtree(site.state / "audit" / "checkpoints")
    (site.state / "audit" / "checkpoints").mkdir()
    bank = run_cli("audit", "verify", "--file", str(log_path(site)), "--checkpoints",
                   str(site.zone("bank", "incoming")), "--key", str(site.keys["gateway"].pub))
    assert bank.returncode == 1 and "cut from its end" in bank.stderr, bank.stderr


def test_a_forged_appended_entry_is_caught(site):
    entries = lines(site)
    write_chain(site, [*entries, {"ts": entries[-1]["ts"], "event": "slice.collected",
                                  "actor": "daemon", "file": "B1.AG001.collector.csv.pgp"}])
    assert audit.verify(log_path(site)).ok  # the chain alone cannot tell
    proc = verify(site)
    assert proc.returncode == 1
    assert f"entries {len(entries) + 1}–{len(entries) + 1} come after the last checkpoint" in proc.stderr
    assert f"last good checkpoint: entry {len(entries)}" in proc.stderr


def test_console_entries_after_the_last_checkpoint_are_a_notice(site):
    """The console and `gateway users` hold no signing key: a nightly verify after a login
    must not page anyone, while any other unsealed entry still fails."""
    sealed = len(lines(site))
    log = audit.AuditLog(site.state / "audit", actor="console")
    log.record("console.login", account="alice", role="auditor", address="127.0.0.1")
    log.record("console.view", account="alice", page="overview")
    audit.AuditLog(site.state / "audit", actor="alice>root").record(
        "console.account_added", account="bob", role="auditor")
    proc = verify(site)
    assert proc.returncode == 0, proc.stderr
    assert (f"3 entries ({sealed + 1}–{sealed + 3}) after the last checkpoint were written by "
            "the console or `gateway users`") in proc.stdout
    assert "sealed by the gateway's next run" in proc.stdout
    log.record("file.received", zone="agency.AG001.outgoing", file="X.csv.pgp", bytes=1,
               sha256="0" * 64)
    proc = verify(site)
    assert proc.returncode == 1
    assert f"entries {sealed + 1}–{sealed + 4} come after the last checkpoint" in proc.stderr


def test_an_edited_and_rechained_entry_is_caught(site):
    entries = lines(site)
    first_cp = next(e["seq"] for e in entries if e["event"] == "audit.checkpoint")
    victim = next(e for e in entries if e["seq"] > first_cp and e["event"] == "batch.accepted")
    victim["records"] = 999
    write_chain(site, entries)
    proc = verify(site)
    assert proc.returncode == 1
    assert "was rewritten" in proc.stderr
    assert f"last good checkpoint: entry {first_cp} " in proc.stderr
    bank = run_cli("audit", "verify", "--file", str(log_path(site)), "--checkpoints",
                   str(site.zone("bank", "incoming")), "--key", str(site.keys["gateway"].pub))
    assert bank.returncode == 1 and "was rewritten" in bank.stderr


def test_a_checkpoint_signed_by_another_key_is_refused(site):
    party = GpgParty(site.keys["bank"].sec)
    try:
        fake = party.gpg("--clearsign", "-u", site.keys["bank"].fingerprint,
                         stdin=b'{"seq": 1, "hash": "00", "ts": "x"}\n', check=True).stdout
    finally:
        party.close()
    (site.state / "audit" / "checkpoints" / "audit-checkpoint.20990101T000000.000000Z.json.asc"
     ).write_bytes(fake)
    proc = verify(site)
    assert proc.returncode == 1 and "not made by the gateway's key" in proc.stderr


def test_a_torn_last_line_is_repaired_at_start(site):
    with log_path(site).open("ab") as fh:
        fh.write(b'{"actor":"daemon","event":"slice.deli')  # a crash in the middle of a write
    assert verify(site).returncode == 1
    assert site.run() == {}
    entries = lines(site)
    repaired = [e for e in entries if e["event"] == "audit.repaired"]
    assert len(repaired) == 1 and repaired[0]["bytes"] == 37
    proc = verify(site)
    assert proc.returncode == 0, proc.stderr


def test_the_daemon_seals_periodically_while_it_runs(tmp_path, keybox, monkeypatch):
    import threading
    import time

    from gateway import checkpoint, daemon

    monkeypatch.setattr(checkpoint, "INTERVAL", 0.0)  # "hourly", compressed
    site = Site(tmp_path / "site", keybox)
    site.drop_cases("B1.csv.pgp", list(synth.cases(3, ["AG001"], seed=64)))
    with daemon.open_context(site.cfg()) as ctx:
        worker = threading.Thread(target=daemon.run_forever, args=(ctx,),
                                  kwargs={"interval": 0.2, "rescan": 0.2})
        worker.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                e["event"] == "audit.checkpoint" for e in audit.AuditLog(site.state / "audit").entries()):
            time.sleep(0.1)
        ctx.run.stop.set()
        worker.join(timeout=20)
    events = [e["event"] for e in lines(site)]
    first = events.index("audit.checkpoint")
    assert first < events.index("gateway.stopped")  # sealed while running, not only at exit
    assert events[-1] == "audit.checkpoint"
    assert verify(site).returncode == 0
