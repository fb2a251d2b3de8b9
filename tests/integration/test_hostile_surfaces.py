"""Hostile input at the newer surfaces (issue 22's second round of probes), each through
the real interface: the sshd log the daemon reads, `gateway run` and `retention run`
started as an operator would, `status` after a failed delivery, `report --out` into a
folder someone else can write, `audit verify --checkpoints` on a folder holding a FIFO,
and the audit actor of a command whose environment lies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest

from gateway import audit, synth
from gateway.reports.figures import previous_month
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.integration import test_retention as retention
from tests.integration.test_daemon import start_daemon, stop_daemon
from tests.integration.test_retention import results_csv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
def site(tmp_path, keybox):
    s = Site(tmp_path / "site", keybox)
    s.log = tmp_path / "sftp.log"
    s.edit('receipts_role = "supervisor"',
           'receipts_role = "supervisor"\nssh_users = { "ag001-anna" = "collector" }')
    s.edit("[console]", f'[access]\nsshd_log = "{s.log}"\n\n[console]')
    s.records = list(synth.cases(10, ["AG001", "AG002"], seed=22))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    return s


def entries(site: Site, *names: str) -> list[dict]:
    return [e for e in audit.AuditLog(site.state / "audit").entries()
            if not names or e["event"] in names]


def sftp_lines(pid: int, login: bytes, address: bytes, path: str, nread: int) -> bytes:
    p = f"<38>Dec  7 09:{pid % 60:02d}:00 internal-sftp[{pid}]: ".encode()
    name = path.encode()
    return b"".join(p + line + b"\n" for line in (
        b"session opened for local user " + login + b" from [" + address + b"]",
        b'open "' + name + b'" flags READ mode 0666',
        b'close "' + name + b'" bytes read ' + str(nread).encode() + b" written 0",
        b"session closed for local user " + login + b" from [" + address + b"]"))


def end_contract(site: Site, code: str) -> None:
    """The agency's contract ended yesterday and its purge is due now."""
    retention.end_contract(site, code)
    site.edit("purge_after_days = 30", "purge_after_days = 0")


def test_hostile_log_lines_stop_nothing_and_no_read_is_recorded_twice(site):
    """Logins outside the usual pattern, IPv6 link-local and UNKNOWN addresses, and reads of
    same-named copies outside the inbox: `run --once` exits 0, the same pass still purges and
    tracks collection, each read of the slice is recorded once — across restarts too — with
    odd logins kept as their hash and flagged, and copies elsewhere recorded not at all."""
    inbox = site.zone("AG001", "inbox")
    collector = next(p for p in inbox.iterdir() if ".collector." in p.name)
    size = collector.stat().st_size
    slice_path = f"/inbox/{collector.name}"
    lines = b"".join([
        sftp_lines(101, b"CORP\\anna", b"10.0.0.1", slice_path, size),
        sftp_lines(102, b'ev"il<b>pwn</b>', b"10.0.0.2", slice_path, size),
        sftp_lines(103, b"a" * 80, b"10.0.0.3", slice_path, 5),
        sftp_lines(104, b"\xff\xfeanna", b"10.0.0.4", slice_path, size),
        sftp_lines(105, b"ag001-anna", b"fe80::1%eth0", slice_path, size),
        sftp_lines(106, b"ag001-anna", b"UNKNOWN", collector.name, size),  # relative: home
        sftp_lines(107, b"ag001-anna", b"10.0.0.7", f"/outbox/{collector.name}", size),
        sftp_lines(108, b"ag001-anna", b"10.0.0.8", f"/tmp/copies/{collector.name}", size),
        sftp_lines(109, b"ag001-anna", b"10.0.0.9", f"/inbox/../outbox/{collector.name}", size),
    ])
    site.log.write_bytes(lines)
    supervisor = next(p for p in inbox.iterdir() if ".supervisor." in p.name)
    supervisor.unlink()  # collected by the agency
    end_contract(site, "AG002")
    for _ in range(3):  # the first pass records; two restarts record nothing again
        proc = run_cli("run", "--once", "-c", str(site.config))
        assert proc.returncode == 0, proc.stderr
        assert "internal error" not in proc.stderr
    reads = entries(site, "slice.accessed")
    assert len(reads) == 6, reads  # 101-106; not the copies in /outbox, /tmp, nor ../outbox
    by_address = {e.get("address", e.get("address_sha256")): e for e in reads}
    assert {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "fe80::1%eth0", "UNKNOWN"} == set(by_address)
    assert by_address["fe80::1%eth0"]["login"] == "ag001-anna"
    assert by_address["UNKNOWN"]["login"] == "ag001-anna"
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        assert "login" not in by_address[address] and len(by_address[address]["login_sha256"]) == 64
    import hashlib
    assert by_address["10.0.0.1"]["login_sha256"] == hashlib.sha256(b"CORP\\anna").hexdigest()
    unsafe = entries(site, "security.unsafe_field")
    assert len(unsafe) == 4 and {e["field"] for e in unsafe} == {"login"}
    assert len(entries(site, "security.unknown_login")) == 4
    assert not entries(site, "security.role_mismatch", "pass.failed")
    assert len(entries(site, "retention.purged")) == 1  # the same passes went on
    assert [e["file"] for e in entries(site, "slice.collected")] == [supervisor.name]
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
    access = run_cli("access", "--json", "-c", str(site.config))
    assert access.returncode == 0, access.stderr
    shown = json.loads(access.stdout)
    assert len(shown) == 6 and sum(r["login"].startswith("sha256:") for r in shown) == 4


def test_the_daemon_lives_through_a_hostile_log_and_records_each_read_once(site):
    """The daemon itself, restarted as systemd would after each start: it stays up, and a
    read in the log is recorded once however many times it starts."""
    inbox = site.zone("AG001", "inbox")
    collector = next(p for p in inbox.iterdir() if ".collector." in p.name)
    site.log.write_bytes(sftp_lines(201, b"CORP\\anna", b"fe80::1%eth0",
                                    f"/inbox/{collector.name}", 3))
    for _ in range(3):
        proc = start_daemon(site)
        time.sleep(0.5)  # the first pass is done; it stopped ~0.5 s after start before
        assert proc.poll() is None, proc.stderr.read()
        assert stop_daemon(proc) == 0
    assert len(entries(site, "slice.accessed")) == 1
    assert len(entries(site, "gateway.started")) == 3 and not entries(site, "pass.failed")


def test_retention_run_right_after_the_daemon_starts_does_not_kill_it(site):
    """`retention run` finds the daemon's pid in the lock file and asks it for a pass with
    SIGUSR1 — before, a request that came before the daemon's handler killed it (signal 10).
    Here the request is sent the moment the pid appears."""
    lock = site.state / "gateway.lock"
    lock.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(site.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.001)
        os.kill(int(lock.read_text()), signal.SIGUSR1)
        time.sleep(3)
        assert proc.poll() is None, (proc.returncode, proc.stderr.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_status_says_failing_while_an_inbox_cannot_be_written(site):
    """AG001's inbox full: `run --once` exits 1 naming it, and `status` says the zone is
    failing (exit 1) until a write succeeds — a listing that works is not enough."""
    inbox = site.zone("AG001", "inbox")
    for p in inbox.iterdir():
        p.unlink()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(inbox)], check=True)
    try:
        filler = inbox / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        site.drop_cases("B2.csv.pgp", list(synth.cases(6, ["AG001"], seed=23, prefix="D")))
        proc = run_cli("run", "--once", "-c", str(site.config))
        assert proc.returncode == 1 and "AG001.inbox" in proc.stderr, proc.stderr
        status = run_cli("status", "--json", "-c", str(site.config))
        assert status.returncode == 1, status.stdout
        states = {r["zone"]: r["state"] for r in json.loads(status.stdout)}
        assert states["AG001.inbox"] == "failing"
        assert {k for k, v in states.items() if v == "failing"} == {"AG001.inbox"}
        filler.unlink()
        assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
        status = run_cli("status", "--json", "-c", str(site.config))
        assert status.returncode == 0, status.stdout
    finally:
        subprocess.run(["umount", "-l", str(inbox)], check=False)


def test_report_does_not_write_through_planted_links(site, tmp_path):
    """Links planted at the temporary names `report` used (``.report.AG001.<month>.html.part``)
    pointed its writes at any file the gateway's user owns; the targets stay untouched."""
    out = tmp_path / "out"
    out.mkdir()
    month = previous_month(dt.datetime.now(TZ).date())  # a month that has ended
    target = site.state / "audit" / "audit.jsonl"
    before = target.read_bytes()
    for ext in ("html", "json"):
        (out / f".report.AG001.{month}.{ext}.part").symlink_to(target)
    proc = run_cli("report", "--agency", "AG001", "--month", month, "--out", str(out),
                   "-c", str(site.config))
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes()[:len(before)] == before
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
    assert (out / f"report.AG001.{month}.html").read_bytes().lower().startswith(b"<!doctype html>")


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "1969-12", "2026-13", "２０２６-01",
                                   "9998-12"])
def test_report_months_out_of_range_are_one_readable_line(site, tmp_path, month):
    proc = run_cli("report", "--agency", "AG001", "--month", month, "--out", str(tmp_path),
                   "-c", str(site.config))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: --month:") and "internal error" not in line, line


def test_audit_verify_refuses_a_fifo_named_like_a_checkpoint(site, tmp_path):
    folder = tmp_path / "bank-checkpoints"
    folder.mkdir()
    os.mkfifo(folder / "audit-checkpoint.node.000001.json.asc")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "-c",
                           str(site.config), "--checkpoints", str(folder)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert time.monotonic() - started < 30
    assert proc.returncode != 0 and "not a regular file" in proc.stdout + proc.stderr


def test_the_audit_actor_is_the_os_user_whatever_the_environment_says(site):
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    proc = run_cli("users", "add", "alice", "--role", "auditor", "--password-stdin",
                   "-c", str(site.config), stdin=b"Tr0ub4dor-and-3-more-words\n")
    assert proc.returncode == 0, proc.stderr
    lying = {"USER": "alice-colleague", "LOGNAME": "daemon", "SUDO_USER": "mallory",
             "SUDO_UID": "1000"}
    proc = run_cli("users", "disable", "alice", "-c", str(site.config), env=lying)
    assert proc.returncode == 0, proc.stderr
    (entry,) = entries(site, "console.account_disabled")
    assert entry["actor"] == me  # not alice-colleague, daemon nor mallory>root
    assert Path(f"/proc/{os.getpid()}").exists()


def test_a_piece_of_a_pass_that_raises_stops_only_itself(site, monkeypatch):
    """A bug met in one piece (here: the access log's, made to raise) is logged, counted,
    audited once while it lasts and reported by run --once; the purge, the collections and
    the other agencies' results in the same pass go on."""
    from gateway import daemon
    from gateway.access import evidence

    def broken(*_args, **_kw):
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(evidence, "collect", broken)
    end_contract(site, "AG002")
    supervisor = next(p for p in site.zone("AG001", "inbox").iterdir() if ".supervisor." in p.name)
    supervisor.unlink()
    with daemon.open_context(site.cfg()) as ctx:
        assert daemon.run_once(ctx) == {"purged": 1}
        assert set(ctx.run.part_errors) == {"access"}
        daemon.run_once(ctx)  # still failing: not audited again
        assert ctx.metrics.pass_failures.labels(part="access")._value.get() == 2
        monkeypatch.undo()
        daemon.run_once(ctx)
        assert ctx.run.part_errors == {}
    (failed,) = entries(site, "pass.failed")
    assert (failed["part"], failed["error"]) == ("access", "RuntimeError")
    assert len(entries(site, "retention.purged")) == 1
    assert [e["file"] for e in entries(site, "slice.collected")] == [supervisor.name]


@pytest.mark.parametrize("fault", ["after_access_pending", "after_access_written"])
def test_a_kill_around_the_audit_write_records_each_read_once(site, fault):
    """Killed after the line's entries were saved ahead but before they were written, or
    after they were written but before the cursor moved on: the next run writes what is
    missing and nothing twice."""
    inbox = site.zone("AG001", "inbox")
    collector = next(p for p in inbox.iterdir() if ".collector." in p.name)
    site.log.write_bytes(
        sftp_lines(301, b"ag001-anna", b"10.0.0.1", f"//inbox/{collector.name}", 9)
        + sftp_lines(302, b"ag001-bob", b"10.0.0.2", f"/inbox/{collector.name}", 3))
    killed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": fault})
    assert killed.returncode == 137, killed.stderr
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    assert run_cli("run", "--once", "-c", str(site.config)).returncode == 0
    reads = entries(site, "slice.accessed")
    assert sorted((e["login"], e["bytes"]) for e in reads) == [("ag001-anna", 9), ("ag001-bob", 3)]
    assert len(entries(site, "security.unknown_login")) == 1  # bob: named by no agency
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0


def test_a_fifo_as_the_log_fails_the_access_piece_and_nothing_else(site):
    """A FIFO at the log's path once hung the pass (and SIGTERM with it). Now the access
    piece fails — audited, exit 1 from run --once — and the rest of the pass goes on."""
    os.mkfifo(site.log)
    supervisor = next(p for p in site.zone("AG001", "inbox").iterdir() if ".supervisor." in p.name)
    supervisor.unlink()
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "--once", "-c", str(site.config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "access failed" in proc.stderr, proc.stderr
    assert "not a regular file" in proc.stderr
    (failed,) = entries(site, "pass.failed")
    assert (failed["part"], failed["error"]) == ("access", "OSError")
    assert [e["file"] for e in entries(site, "slice.collected")] == [supervisor.name]


def test_one_file_that_fails_unexpectedly_holds_back_no_other(site, monkeypatch):
    """A bug met by one results file: the agency's other files, before and after it in the
    outbox, are answered in the same pass; the failing one is tried again each pass and
    audited once."""
    from gateway import daemon
    from gateway.flows import results

    ag1 = [r["case_id"] for r in site.records if r["agency_code"] == "AG001"]
    real = results.FLOW

    def read(ctx, arrival, reading, staging):
        if arrival.name == "r2.csv.pgp":
            raise RuntimeError("a bug this file meets")
        real.read(ctx, arrival, reading, staging)

    monkeypatch.setattr(results, "FLOW", dataclasses.replace(real, read=read))
    for n in (1, 2, 3):
        site.upload("AG001", f"r{n}.csv.pgp", results_csv([ag1[n]]))
        os.utime(site.zone("AG001", "outbox", f"r{n}.csv.pgp"), (1_000_000 + n, 1_000_000 + n))
    with daemon.open_context(site.cfg()) as ctx:
        assert daemon.run_once(ctx) == {"accepted": 2}
        assert set(ctx.run.part_errors) == {"results.AG001"}
        daemon.run_once(ctx)
    (failed,) = entries(site, "pass.failed")
    assert (failed["part"], failed["error"]) == ("results.AG001", "RuntimeError")
    assert len(site.agency_receipts("AG001")) == 2




def test_a_file_that_keeps_meeting_conflicts_waits_alone(site, monkeypatch):
    """Other nodes' commits getting in first, again and again: after a bounded number of
    tries the file waits for the next pass, still claimed; the pass is not failed (a
    conflict is not a ledger failure), its staged receipts are gone, and the next pass
    answers the file once."""
    from gateway import daemon
    from gateway.flows import arrival, results
    from gateway.ledger import CommitConflict

    ag1 = [r["case_id"] for r in site.records if r["agency_code"] == "AG001"]
    real, tries = results.FLOW, []

    def taken_first(_row):
        raise CommitConflict("another node's commit took a case id first")

    def commit(ctx, file, reading, staging):
        tries.append(file.name)
        receipt = arrival.Receipt(file=file.name, sha256=file.sha256,
                                  received_at=file.received_at, status="accepted")
        arrival.commit_with_receipt(ctx, file, receipt, taken_first)

    monkeypatch.setattr(results, "FLOW", dataclasses.replace(real, commit=commit))
    site.upload("AG001", "r1.csv.pgp", results_csv([ag1[0]]))
    with daemon.open_context(site.cfg()) as ctx:
        assert daemon.run_once(ctx) == {"conflict": 1}
        assert ctx.run.part_errors == {} and ctx.run.failures() == []
        assert tries == ["r1.csv.pgp"] * arrival.MAX_CONFLICTS
        assert list((ctx.state.staging_root / "receipts").iterdir()) == []
        monkeypatch.setattr(results, "FLOW", real)
        assert daemon.run_once(ctx) == {"accepted": 1}
    assert len(site.agency_receipts("AG001")) == 1

def test_a_delivery_that_always_fails_holds_back_no_other_wherever_the_outbox_runs(site):
    """A pending delivery the outbox cannot handle (its zone no longer configured): the
    daemon's outbox and the batch flow's own call after its commit both pass it by; the new
    batch is accepted and delivered in the same pass, and the failure is audited once."""
    from gateway import daemon
    from gateway.ledger import DeliveryRow, Ledger

    ledger = Ledger(site.cfg().gateway.db_url)
    ledger.add_delivery(DeliveryRow(kind="slice", agency_code="AG009", role="collector",
                                    zone="AG009.inbox", name="B0.AG009.collector.csv.pgp",
                                    sha256="0" * 64, size=1, file_id=None))
    ledger.close()
    site.drop_cases("B2.csv.pgp", list(synth.cases(6, ["AG001"], seed=24, prefix="E")))
    with daemon.open_context(site.cfg()) as ctx:
        assert daemon.run_once(ctx) == {"accepted": 1}
        assert set(ctx.run.part_errors) == {"outbox"}
        daemon.run_once(ctx)
    assert sum(".E" not in n and n.startswith("B2.") for n in site.inbox("AG001")) == 3
    (failed,) = entries(site, "pass.failed")
    assert (failed["part"], failed["error"]) == ("outbox", "KeyError")
    assert "B2.csv.pgp.receipt.json.pgp" in {p.name for p in site.zone("bank", "incoming").iterdir()}
