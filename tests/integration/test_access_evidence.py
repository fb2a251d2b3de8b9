"""Access evidence from a real OpenSSH (docs/security-team.md): AG001's inbox served by sshd's
internal-sftp, chrooted, logging at INFO to ``<chroot>/dev/log``; a datagram socket
bound there writes the lines to a file, as rsyslog would; the gateway reads that file.

sshd refuses a chroot under a world-writable directory such as /tmp, so the site sits
in a root-owned directory under /var/lib (removed at the end).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paramiko
import pytest

from gateway import audit, synth
from tests.flowsite import Site
from tests.sshd import Sshd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Syslog(threading.Thread):
    """What rsyslog does for one chroot: receive datagrams on ``dev/log``, append each to a
    file; keeps its file open until told to reopen it (after a rotation)."""

    def __init__(self, socket_path: Path, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(socket_path))
        socket_path.chmod(0o666)
        self.sock.settimeout(0.2)
        self.fh = out.open("ab", buffering=0)
        self.received = 0
        self.reopen_wanted = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if self.reopen_wanted.is_set():
                self.fh.close()
                self.fh = self.out.open("ab", buffering=0)
                self.reopen_wanted.clear()
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.fh.write(data.rstrip(b"\n") + b"\n")
            self.received += 1
        self.fh.close()
        self.sock.close()

    def wait_for(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.received < n:
            assert time.monotonic() < deadline, (f"{self.received} lines logged, {n} expected: "
                                                 f"{self.out.read_text()}")
            time.sleep(0.05)


@pytest.fixture
def logins():
    """Two OS accounts for AG001's staff, a collector and a supervisor (key login only;
    not locked, or sshd refuses them), removed at the end."""
    names = {"collector": f"gwt{os.getpid()}c", "supervisor": f"gwt{os.getpid()}s"}
    for name in names.values():
        subprocess.run(["useradd", "--no-create-home", "--home-dir", "/inbox", "--shell",
                        "/usr/sbin/nologin", name], check=True, capture_output=True)
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    try:
        yield names
    finally:
        for name in names.values():
            subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def served(tmp_path, keybox, logins):
    """A site whose AG001 inbox holds a batch's slices, served by a chrooted sshd to the
    agency's collector and supervisor logins (and to root, a login no agency names)."""
    base = Path(tempfile.mkdtemp(prefix="gwaccess", dir="/var/lib"))
    base.chmod(0o755)  # root-owned, writable by no one else: sshd accepts a chroot below it
    try:
        site = Site(base / "site", keybox)
        log = base / "sftp.log"
        site.edit('receipts_role = "supervisor"',
                  'receipts_role = "supervisor"\nssh_users = { '
                  f'"{logins["collector"]}" = "collector", "{logins["supervisor"]}" = "supervisor" }}')
        site.edit('path = "zones/AG001/inbox", settle_seconds = 0 }',
                  'path = "zones/AG001/inbox", settle_seconds = 0, file_mode = 0o644 }')
        site.edit("[console]", f'[access]\nsshd_log = "{log}"\n\n[console]')
        records = list(synth.cases(12, ["AG001"], seed=3))
        site.drop_cases("B1.csv.pgp", records)
        assert site.run() == {"accepted": 1}
        chroot = site.zone("AG001", "inbox").parent
        (chroot / "dev").mkdir()
        for d in (chroot, chroot / "dev", chroot / "inbox"):  # the gateway's runs in this
            d.chmod(0o755)  # process leave its umask at 077: the logins must get through
        syslog = Syslog(chroot / "dev" / "log", log)
        syslog.start()
        sshd = Sshd(tmp_path / "sshd")
        authorized = base / "authorized_keys"  # sshd reads it as the login: where it may
        shutil.copy(sshd.authorized, authorized)
        authorized.chmod(0o644)
        sshd.config.write_text(
            sshd.config.read_text().replace("Subsystem sftp internal-sftp",
                                            "Subsystem sftp internal-sftp -l INFO")
            .replace(f"AuthorizedKeysFile {sshd.authorized}", f"AuthorizedKeysFile {authorized}")

            + f"Match User {sshd.user},{','.join(logins.values())}\n  ChrootDirectory {chroot}\n"
              "  ForceCommand internal-sftp -l INFO\n  AllowTcpForwarding no\n")
        sshd.start(log_file=tmp_path / "sshd.log")
        yield site, sshd, syslog, log
        sshd.stop()
        syslog.done.set()
        syslog.join(timeout=5)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def sftp(sshd: Sshd, user: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    t = paramiko.Transport(("127.0.0.1", sshd.port))
    t.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(sshd.client_key)))
    return t, paramiko.SFTPClient.from_transport(t)


def events(site: Site, *names: str) -> list[dict]:
    return [e for e in audit.AuditLog(site.state / "audit").entries() if e["event"] in names]


def test_who_read_what_whole_or_not_and_in_which_role(served, logins):
    site, sshd, syslog, _log = served
    col, sup = logins["collector"], logins["supervisor"]
    inbox = site.zone("AG001", "inbox")
    collector = next(p for p in inbox.iterdir() if ".collector." in p.name)
    supervisor = next(p for p in inbox.iterdir() if ".supervisor." in p.name)
    t, client = sftp(sshd, col)
    client.getfo(f"/inbox/{collector.name}", io.BytesIO())  # the whole file
    with client.open(f"/inbox/{collector.name}") as fh:  # half of it
        fh.read(collector.stat().st_size // 2)
    client.getfo(f"/inbox/{supervisor.name}", io.BytesIO())  # another role's slice
    t.close()
    t, client = sftp(sshd, sup)
    client.getfo(f"/inbox/{supervisor.name}", io.BytesIO())  # the supervisor's own
    t.close()
    t, client = sftp(sshd, sshd.user)  # root: a login no agency names
    client.getfo(f"/inbox/{collector.name}", io.BytesIO())
    t.close()
    syslog.wait_for(8 + 4 + 4)  # per session: opened, (open, close) per file, closed
    site.run()
    accessed = [(e["file"], e["role"], e["login"], e["address"], e["bytes"], e["complete"])
                for e in events(site, "slice.accessed")]
    c_size, s_size = collector.stat().st_size, supervisor.stat().st_size
    assert accessed[0] == (collector.name, "collector", col, "127.0.0.1", c_size, True)
    assert accessed[1][:3] == (collector.name, "collector", col) and accessed[1][5] is False
    assert 0 < accessed[1][4] < c_size
    assert accessed[2] == (supervisor.name, "supervisor", col, "127.0.0.1", s_size, True)
    assert accessed[3] == (supervisor.name, "supervisor", sup, "127.0.0.1", s_size, True)
    assert accessed[4] == (collector.name, "collector", sshd.user, "127.0.0.1", c_size, True)
    assert len(accessed) == 5
    mismatch = events(site, "security.role_mismatch")
    assert [(e["file"], e["role"], e["login"]) for e in mismatch] == [(supervisor.name, "supervisor", col)]
    unknown = events(site, "security.unknown_login")
    assert [(e["file"], e["login"]) for e in unknown] == [(collector.name, sshd.user)]
    site.run()  # nothing new in the log: nothing recorded twice
    assert len(events(site, "slice.accessed")) == 5
    shown = subprocess.run([sys.executable, "-m", "gateway", "access", "--agency", "AG001", "--json",
                            "-c", str(site.config)], capture_output=True, text=True, check=True)
    listed = json.loads(shown.stdout)
    assert [(r["file"], r["login"], r["complete"], r["alarm"]) for r in listed] == [
        (collector.name, col, True, None), (collector.name, col, False, None),
        (supervisor.name, col, True, "role_mismatch"), (supervisor.name, sup, True, None),
        (collector.name, sshd.user, True, "unknown_login")]
    page = console_page(site, "/access")  # the console's Access page gains the logins
    assert f"<td>{col}</td><td>127.0.0.1</td>" in page.replace("\n", "")


def test_rotation_in_the_middle_loses_and_doubles_nothing(served, logins):
    site, sshd, syslog, log = served
    inbox = site.zone("AG001", "inbox")
    collector = next(p for p in inbox.iterdir() if ".collector." in p.name)

    def download(times: int) -> None:
        t, client = sftp(sshd, logins["collector"])
        for _ in range(times):
            client.getfo(f"/inbox/{collector.name}", io.BytesIO())
        t.close()

    download(1)
    syslog.wait_for(4)
    site.run()  # reads the first download
    download(2)  # logged to sftp.log …
    syslog.wait_for(10)
    log.rename(log.with_name("sftp.log.1"))  # … which logrotate renames now
    download(1)  # rsyslog has not reopened yet: still the old file
    syslog.wait_for(14)
    syslog.reopen_wanted.set()  # logrotate's postrotate: rsyslog opens a new sftp.log
    time.sleep(0.5)
    download(2)
    syslog.wait_for(20)
    site.run()
    accessed = events(site, "slice.accessed")
    assert len(accessed) == 6 and all(e["complete"] for e in accessed)
    assert log.exists() and log.with_name("sftp.log.1").exists()
    started = dt.datetime.fromisoformat(accessed[0]["ts"].replace("Z", "+00:00"))
    assert all(dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) >= started for e in accessed)


def console_page(site: Site, path: str) -> str:
    """A page of a console serving *site*, fetched with a real session (no browser)."""
    from gateway.console.auth import Accounts
    from gateway.ledger import Ledger
    from tests.integration.test_console import PASSWORD, Clock, Server, http_login

    ledger = Ledger(site.cfg().gateway.db_url)
    secret = Accounts(ledger, audit.AuditLog(site.state / "audit")).add(
        "auditor", "auditor", PASSWORD).secret
    ledger.close()
    server = Server(site.cfg(), Clock())
    try:
        cookie = http_login(server.url, "auditor", secret)
        req = urllib.request.Request(server.url + path, headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read().decode()
    finally:
        server.stop()
