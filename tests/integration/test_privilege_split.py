"""The privilege split, for real: a production-style site (`gateway init` with production
paths under a temporary root), set up by `gateway install --root` with host users and
groups of the test's own, served by a real sshd that chroots each party as the generated
drop-in says; the daemon runs as the gateway's user (never root, with its unit's umask),
the console as its own user, the bank and each agency as their own logins over SFTP.

It proves: a batch and a results file go through with nobody but the gateway's user
touching the zones; an agency sees its own directory only; the console's user reads no
secret key, no passphrase file and no zone, and still serves its pages, its accounts and
its audit entries in the same ledger and log; nothing the gateway wrote is world-readable;
neither the console's user nor the gateway's may write a file of the gateway package
they run — code, templates, static assets (tests/prodsite.py :func:`package_writable_by`,
checked by :func:`build` for every production-style site; issue 29).

sshd refuses a chroot below a directory others may write (/tmp), so the root is a
root-owned 0755 directory under /var/lib, removed at the end with every account made.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from gateway import audit, synth
from tests.faults import results_csv
from tests.integration.test_console import PASSWORD, http_login, wait_for_console
from tests.prodsite import (  # noqa: F401 (the fixtures, by their own names)
    accounts_fixture,
    as_user,
    build,
    gateway,
    opened,
    package_writable_by,
    root_fixture,
    sealed,
    sftp,
    tries_as,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_each_user_reaches_only_what_it_must(root, accounts, keybox, tmp_path):
    started = time.monotonic()
    acc = accounts
    site = build(root, accounts, keybox, tmp_path)
    etc, conf, layout, port, sshd = site.etc, site.conf, site.layout, site.port, site.sshd
    try:
        # -- the gateway's ExecStartPre, as its user
        gateway("check", "-c", str(conf), user=acc.user)

        # -- the bank drops a case file over SFTP; the gateway, as its user, delivers
        records = list(synth.cases(10, ["AG001", "AG002"], seed=5))
        t, bank = sftp(sshd, acc.bank_login)
        assert sorted(bank.listdir("/")) == ["dev", "incoming", "outgoing"]
        bank.putfo(io.BytesIO(sealed(keybox, "bank", synth.to_csv(records))), "/outgoing/B1.csv.pgp")
        t.close()
        ran = gateway("run", "--once", "-c", str(conf), user=acc.user)
        assert "1 accepted" in ran.stderr, ran.stderr

        # -- each agency fetches its own slices, sees nothing of the other's, uploads results
        zones = layout.zones_dir
        for code, login in acc.logins:
            other = "AG002" if code == "AG001" else "AG001"
            t, client = sftp(sshd, login)
            assert sorted(client.listdir("/")) == ["dev", "inbox", "outbox"]
            names = client.listdir("/inbox")
            slice_name = next(n for n in names if n.endswith(f".{code}.collector.csv.pgp"))
            body = opened(keybox, f"{code.lower()}-collector", client.open(f"/inbox/{slice_name}").read())
            mine = {r["case_id"] for r in records if r["agency_code"] == code}
            got = {row.split(",")[0] for row in body.decode().splitlines()[1:]}
            assert got == mine
            assert not any(other in n for n in names)
            for elsewhere in (f"/../{other}/inbox", str(zones / other / "inbox"), "/../bank/outgoing"):
                with pytest.raises(OSError):
                    client.listdir(elsewhere)
            client.putfo(io.BytesIO(sealed(keybox, code.lower(), results_csv(sorted(mine)[:2]))),
                         f"/outbox/r-{code}.csv.pgp")
            if code == "AG002":  # staff remove what they fetched: the gateway sees it collected
                client.remove(f"/inbox/{slice_name}")
                collected = slice_name
            t.close()
        ran = gateway("run", "--once", "-c", str(conf), user=acc.user)
        assert "2 accepted" in ran.stderr, ran.stderr
        log = (layout.state_dir / "audit" / "audit.jsonl").read_text().splitlines()
        assert any('"event":"slice.collected"' in line and collected in line for line in log)
        for code, _login in acc.logins:
            assert not (zones / code / "outbox" / f"r-{code}.csv.pgp").exists()  # taken
        t, bank = sftp(sshd, acc.bank_login)
        forwarded = [n for n in bank.listdir("/incoming") if n.startswith("results.")]
        assert len(forwarded) == 2
        rows = opened(keybox, "bank", bank.open(f"/incoming/{forwarded[0]}").read())
        assert b"agency_code" in rows
        t.close()
    finally:
        sshd.stop()

    # -- the console's user: no secret key, no passphrase, no zone, no private state
    state = layout.state_dir
    inbox = zones / "AG001" / "inbox"
    a_slice = next(p for p in inbox.iterdir() if p.name.endswith(".csv.pgp"))
    denied = [etc / "keys" / "gateway.sec.asc", etc / "secrets.env", a_slice, state / "gnupg",
              state / "archive", state / "secrets"]
    for code in ("AG001", "AG002"):
        denied += [zones / code / "inbox", zones / code / "outbox"]
    denied += [zones / "bank" / "outgoing", zones / "bank" / "incoming"]
    answers = tries_as(acc.console, denied)
    assert answers == {str(p): "EACCES" for p in denied}, answers
    allowed = [conf, etc / "keys" / "gateway.pub.asc", state / "audit" / "audit.jsonl",
               layout.ledger]
    assert tries_as(acc.console, allowed) == {str(p): "ok" for p in allowed}
    # an agency's login reaches nothing of the gateway's either, nor the other's zones
    agency_denied = [etc / "keys" / "gateway.sec.asc", state / "audit" / "audit.jsonl",
                     zones / "AG002" / "inbox"]
    assert set(tries_as(acc.logins[0][1], agency_denied).values()) == {"EACCES"}

    # -- the console, as its own user, on the same ledger and audit log
    added = gateway("users", "add", "alice", "--role", "auditor", "--password-stdin", "-c",
                    str(conf), user=acc.user, stdin=PASSWORD + "\n")
    secret = re.search(r"secret=([A-Z2-7]+)", added.stdout).group(1)  # type: ignore[union-attr]
    proc = subprocess.Popen(as_user(acc.console, "console", "-c", str(conf)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            env={**os.environ, "HOME": "/nonexistent"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_console(url, proc)
        cookie = http_login(url, "alice", secret)
        pages = {}
        for page in ("/", "/audit", "/audit/verify", "/access", "/retention", "/keys"):
            req = urllib.request.Request(url + page, headers={"Cookie": cookie})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
                pages[page] = resp.read().decode()
        assert "AG001" in pages["/access"] and "AG002" in pages["/retention"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    events = [e["event"] for e in audit.AuditLog(state / "audit").entries()]
    assert "console.login" in events and "console.view" in events
    index = layout.console_dir / "audit-index.sqlite"
    assert index.exists() and index.stat().st_uid == pwd.getpwnam(acc.console).pw_uid
    # the daemon carries on after the console wrote the ledger and the log, and the chain holds
    gateway("run", "--once", "-c", str(conf), user=acc.user)
    gateway("audit", "verify", "-c", str(conf), user=acc.user)

    # -- nothing the gateway's user wrote is world-readable; only the console's share is
    # group-readable in the state directory
    uid = pwd.getpwnam(acc.user).pw_uid
    written = [p for base in (state, zones) for p in base.rglob("*")
               if not p.is_symlink() and p.lstat().st_uid == uid]
    assert written
    loose = [(str(p), oct(stat.S_IMODE(p.lstat().st_mode))) for p in written
             if p.lstat().st_mode & 0o007]
    assert loose == []
    shared = {p.relative_to(state).parts[0] for p in state.rglob("*")
              if p.lstat().st_mode & 0o070 and not p.is_symlink()}
    assert shared <= {"audit", "ledger", "certificates", "gateway.lock"}, shared
    assert time.monotonic() - started < 120


def test_the_console_and_gateway_users_cannot_write_the_gateway_package(root, accounts, keybox,
                                                                        tmp_path):
    """Issue 29: a service that can change its own code turns any write into code execution
    (Cleo 2024; MOVEit's web shell written into the web root). As installed for production,
    the console's user — the one facing HTTP — and the gateway's user can open no file of the
    package they run for writing (.py, templates, static assets, __pycache__) and create none
    in its directories. (:func:`build` checks the same for every production-style site.)"""
    site = build(root, accounts, keybox, tmp_path)
    site.sshd.stop()
    for user in (accounts.console, accounts.user):
        top, writable = package_writable_by(user)
        assert writable == [], (user, top, writable[:20])
        files = [p for p in Path(top).rglob("*") if p.is_file()]
        assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".css" for p in files)
