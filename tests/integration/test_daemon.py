"""The daemon for real: inotify pick-up lag, SIGTERM mid-batch, host-key refusal, status, pick-up tracking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.sshd import keygen

pytestmark = pytest.mark.integration


def start_daemon(site: Site, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(site.config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for its first pass: watching from then on
        line = proc.stdout.readline()
        if '"pass.done"' in line or "pass.done" in line:
            return proc
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
    raise AssertionError("the daemon did not finish its first pass")


def read_lines_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Lines of the daemon's log up to the first holding *marker* — read by a thread, so a
    missing line fails the test after *timeout* instead of hanging it."""
    import queue
    import threading

    lines = getattr(proc, "lines", None)
    if lines is None:
        lines = proc.lines = queue.Queue()  # type: ignore[attr-defined]
        threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, "")],
                         daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if marker in seen[-1]:
            return seen
    raise AssertionError(f"no {marker!r} within {timeout} s; saw {seen[-5:]}")


def stop_daemon(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


def test_dropped_batch_is_delivered_within_seconds(tmp_path, keybox):
    """Pick-up lag with a settle time: ready once left alone for settle_seconds, then taken
    at once (the daemon wakes when a file settles, not at the next rescan)."""
    site = Site(tmp_path / "site", keybox, settle_seconds=0.5)
    records = list(synth.cases(200, ["AG001", "AG002"], seed=41))
    sealed = site.seal_as("bank", synth.to_csv(records))
    proc = start_daemon(site, "--rescan", "120")  # the rescan cannot be what finds it
    try:
        lags = []
        for n, how in enumerate(("move", "write")):
            name = f"B{n}.csv.pgp"
            target = site.zone("bank", "outgoing", name)
            if how == "move":  # uploaded under a temporary name, then moved into place
                tmp = site.zone("bank", "outgoing", f".{name}.part")
                tmp.write_bytes(sealed)
                start = time.monotonic()
                os.rename(tmp, target)
            else:  # written in place, picked up when closed
                start = time.monotonic()
                target.write_bytes(site.seal_as("bank", synth.to_csv(
                    [dict(r, case_id=r["case_id"] + "W") for r in records])))
            receipt = site.zone("bank", "incoming", f"{name}.receipt.json.pgp")
            wait_for(receipt.exists, timeout=30)
            lags.append(time.monotonic() - start)
        print(f"pickup-to-receipt lag: {', '.join(f'{lag:.2f} s' for lag in lags)}")
        assert min(lags) >= 0.5 and max(lags) < 0.5 + 2.0, lags
        assert len(site.inbox("AG001")) == 2 * 3
    finally:
        assert stop_daemon(proc) == 0
    events = [e["event"] for e in audit.AuditLog(site.state / "audit").entries()]
    assert events[-2:] == ["gateway.stopped", "audit.checkpoint"]  # sealed on the way out


def test_sigterm_mid_batch_delivers_all_or_nothing(site):
    records = list(synth.cases(30000, ["AG001", "AG002"], seed=43))
    proc = start_daemon(site, "--rescan", "120")
    try:
        site.drop_cases("B-big.csv.pgp", records)
        wait_for(lambda: any((site.state / "staging").glob("[0-9]*/*.csv.pgp")), timeout=60)
        rc = stop_daemon(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr.read()
    delivered = site.inbox("AG001") + site.inbox("AG002")
    assert len(delivered) in (0, 7), delivered  # everything or nothing
    print(f"SIGTERM mid-batch: {'rolled back' if not delivered else 'finished first'}")
    assert site.plaintext_leaks(records[:300]) == []
    again = run_cli("run", "--once", "-c", str(site.config))
    assert again.returncode == 0, again.stderr
    assert len(site.inbox("AG001") + site.inbox("AG002")) == 7
    (receipt,) = site.receipts().values()
    assert receipt["counts"]["accepted"] == 30000


def test_collected_slices_are_audited_and_status_is_reported(site):
    site.drop_cases("B1.csv.pgp", list(synth.cases(4, ["AG001"], seed=45)))
    assert site.run() == {"accepted": 1}
    site.zone("AG001", "inbox", "B1.AG001.collector.csv.pgp").unlink()  # the agency fetched it
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    collected = [e for e in audit.AuditLog(site.state / "audit").entries()
                 if e["event"] == "slice.collected"]
    assert [(e["file"], e["agency"], e["role"]) for e in collected] == [
        ("B1.AG001.collector.csv.pgp", "AG001", "collector")]
    proc = run_cli("status", "-c", str(site.config), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["state"] for r in rows} == {"ok"} and len(rows) == 6


def test_wrong_pinned_host_key(tmp_path, keybox, sshd):
    site = Site(tmp_path / "site", keybox)
    other = " ".join(keygen(tmp_path / "impostor").split()[:2])
    incoming = site.root / "zones" / "bank" / "incoming"
    site.edit('incoming = { kind = "local", path = "zones/bank/incoming", settle_seconds = 0 }',
              "incoming = " + sshd.zone_toml(incoming, known_host=other))
    proc = run_cli("check", "-c", str(site.config))
    assert proc.returncode == 1
    assert "bank.incoming: host key of 127.0.0.1" in proc.stderr and "does not match" in proc.stderr
    site.drop_cases("B1.csv.pgp", list(synth.cases(3, ["AG001"], seed=47)))
    proc = run_cli("run", "--once", "-c", str(site.config))
    assert proc.returncode == 1 and "does not match the pinned" in proc.stderr
    assert list(incoming.iterdir()) == []  # nothing delivered to that server
    refused = [e for e in audit.AuditLog(site.state / "audit").entries()
               if e["event"] == "zone.refused"]
    assert refused and refused[0]["zone"] == "bank.incoming" and refused[0]["reason"] == "host_key_mismatch"
    status = run_cli("status", "-c", str(site.config), "--json")
    assert status.returncode == 1
    (row,) = [r for r in json.loads(status.stdout) if r["zone"] == "bank.incoming"]
    assert row["state"] == "failing" and "does not match" in row["last_error"]
    # the agencies got their slices; the bank's receipt waits until the key is fixed
    assert len(site.inbox("AG001")) == 3
    site.edit(f'known_host = "{other}"', f'known_host = "{sshd.known_host}"')
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    assert [p.name for p in incoming.iterdir() if not p.name.startswith("audit-checkpoint.")] == [
        "B1.csv.pgp.receipt.json.pgp"]


def test_check_logs_in_to_sftp_zones(tmp_path, keybox, sshd):
    site = Site(tmp_path / "site", keybox, sshd=sshd)
    proc = run_cli("check", "-c", str(site.config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(host key matches, login, write)") == 6


def test_sftp_outage_across_passes_delivers_exactly_once(tmp_path, keybox):
    """The agency's SFTP server is down for a whole pass: deliveries wait, committed; when it is
    back, each slice arrives exactly once and no temporary file is left."""
    from tests.sshd import Sshd

    server = Sshd(tmp_path / "sshd")
    server.start()
    site = Site(tmp_path / "site", keybox)
    inbox = site.root / "zones" / "AG001" / "inbox"
    site.edit('inbox  = { kind = "local", path = "zones/AG001/inbox", settle_seconds = 0 }',
              "inbox  = " + server.zone_toml(inbox))
    server.stop()
    site.drop_cases("B1.csv.pgp", list(synth.cases(50, ["AG001", "AG002"], seed=49)))
    try:
        down = run_cli("run", "--once", "-c", str(site.config))
        assert down.returncode == 1 and "AG001.inbox" in down.stderr
        assert list(inbox.iterdir()) == [] and len(site.inbox("AG002")) == 4
        assert site.receipts()["B1.csv.pgp.receipt.json.pgp"]["status"] == "accepted"
        server.start()
        up = run_cli("run", "--once", "-c", str(site.config))
        assert up.returncode == 0, up.stderr
        assert sorted(p.name for p in inbox.iterdir()) == [
            "B1.AG001.collector.csv.pgp", "B1.AG001.manifest.json.pgp", "B1.AG001.supervisor.csv.pgp"]
        assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
        assert len(list(inbox.iterdir())) == 3
    finally:
        server.stop()


def test_sigusr1_runs_a_pass_now(site):
    proc = start_daemon(site, "--rescan", "600")
    try:
        for attempt in range(3):  # the kernel may hand the signal to any of its threads
            os.kill(proc.pid, signal.SIGUSR1)
            seen = read_lines_until(proc, "pass.done", timeout=10)
            assert "pass.done" in seen[-1], (attempt, seen)
        assert any("pass.requested" in x for x in seen)
        for _ in range(40):  # signals in the middle of logging never freeze it (seen in CI)
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.005)
        read_lines_until(proc, "pass.done", timeout=10)
    finally:
        started = time.monotonic()
        assert stop_daemon(proc) == 0
    assert time.monotonic() - started < 5  # SIGTERM is not left waiting for the 600 s rescan


def test_retention_run_while_the_daemon_runs(tmp_path, keybox):
    """`retention run` no longer fails with "another gateway process is running": it hands
    the purge to the daemon and reports the certificate the daemon wrote."""
    from gateway.state import runner_active
    from tests.integration.test_retention import end_contract

    site = Site(tmp_path / "site", keybox)
    site.drop_cases("B0.csv.pgp", list(synth.cases(6, ["AG002"], seed=80)))
    assert site.run() == {"accepted": 1}
    end_contract(site, "AG002")
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    site.drop_cases("B1.csv.pgp", list(synth.cases(30000, ["AG001"], seed=81)))  # a long pass
    audit_log = site.state / "audit" / "audit.jsonl"
    started_before = audit_log.read_text().count('"gateway.started"')
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(site.config),
                             "--rescan", "600"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: runner_active(site.state), timeout=30)
        # Held at its first pass (signal handlers in place: it has audited its start; the
        # pass's purge still to come) until `retention run` has handed the purge over — the
        # batch alone no longer makes the pass outlast the command.
        wait_for(lambda: audit_log.read_text().count('"gateway.started"') > started_before, 30)
        os.kill(proc.pid, signal.SIGSTOP)
        log = tmp_path / "retention.err"
        with log.open("w") as err:
            cli_proc = subprocess.Popen([sys.executable, "-m", "gateway", "retention", "run", "-c",
                                         str(site.config)], stdout=subprocess.PIPE, stderr=err,
                                        text=True)
            try:
                wait_for(lambda: "retention.handed_over" in log.read_text(), timeout=60)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            stdout, _ = cli_proc.communicate(timeout=120)
        assert cli_proc.returncode == 0, log.read_text()
        cli = subprocess.CompletedProcess(cli_proc.args, cli_proc.returncode, stdout, log.read_text())
        assert f"the running gateway (pid {proc.pid}) was asked to purge now" in cli.stdout
        assert "AG002 (contract" in cli.stdout and "certificate: deletion-certificate." in cli.stdout
    finally:
        assert stop_daemon(proc) == 0
    assert site.inbox("AG002") == []
    certs = list(site.zone("bank", "incoming").glob("deletion-certificate.*.json.asc"))
    assert len(certs) == 1


def test_run_once_takes_a_file_still_settling_and_status_counts_what_is_there(tmp_path, keybox):
    """A case file dropped a moment before ``run --once`` is still settling: the run waits
    for it instead of saying "nothing pending", and ``status`` afterwards counts what lies
    in each zone now (the bank's drop zone empty, each inbox its slices and manifest)."""
    site = Site(tmp_path / "site", keybox, settle_seconds=1.5)
    site.drop_cases("B1.csv.pgp", list(synth.cases(20, ["AG001", "AG002"], seed=71)))
    proc = run_cli("run", "--once", "-c", str(site.config))
    assert proc.returncode == 0, proc.stderr
    assert "done: 1 accepted" in proc.stderr and "left in" not in proc.stderr
    waiting = {r["zone"]: r["waiting"] for r in json.loads(
        run_cli("status", "--json", "-c", str(site.config)).stdout)}
    assert waiting["bank.outgoing"] == 0 and waiting["bank.incoming"] == 1  # the receipt
    assert waiting["AG001.inbox"] == len(site.inbox("AG001")) == 3  # 2 roles + manifest
    assert waiting["AG002.inbox"] == len(site.inbox("AG002")) == 4


def test_run_once_names_a_file_still_being_written(tmp_path, keybox):
    """A file that keeps changing is an upload under way: ``run --once`` waits its
    patience out, then says which file it left and when it may be ready."""
    import threading

    site = Site(tmp_path / "site", keybox, settle_seconds=1)
    path = site.zone("bank", "outgoing", "B2.csv.pgp")
    done = threading.Event()

    def upload() -> None:
        with path.open("ab") as f:
            while not done.is_set():
                f.write(b"x" * 64)
                f.flush()
                done.wait(0.2)

    writer = threading.Thread(target=upload)
    writer.start()
    try:
        proc = run_cli("run", "--once", "-c", str(site.config))
    finally:
        done.set()
        writer.join()
    assert proc.returncode == 0, proc.stderr
    assert "left in bank.outgoing: 'B2.csv.pgp' is still being written" in proc.stderr
    assert "done: nothing ready yet" in proc.stderr


def test_zone_health_seen_before_a_zone_fails_unexpectedly_is_saved(tmp_path, keybox):
    """Every zone's health is saved in one transaction at the end of the pass; a zone whose
    listing raises something unforeseen (not a ZoneError) stops the piece, yet the zones
    listed before it are saved, as when each was saved on its own."""
    from gateway import config
    from gateway.daemon import open_context, save_health

    site = Site(tmp_path / "site", keybox)
    with open_context(config.load(site.config)) as ctx:
        keys = list(ctx.zones)
        broken = ctx.zones[keys[2]]

        def fails() -> list[object]:
            raise RuntimeError("unforeseen")

        broken.list_all = fails  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="unforeseen"):
            save_health(ctx)
        saved = {row.zone for row in ctx.ledger.zone_statuses()}
    assert set(keys[:2]) <= saved and keys[2] not in saved
