"""The privilege split, for real: a production-style site (`gateway init` with production
paths under a temporary root), set up by `gateway install --root` with host users and
groups of the test's own, served by a real sshd that chroots each party as the generated
drop-in says; the daemon runs as the gateway's user (never root, with its unit's umask),
the console as its own user, the bank and each agency as their own logins over SFTP.

It proves: a batch and a results file go through with nobody but the gateway's user
touching the zones; an agency sees its own directory only; the console's user reads no
secret key, no passphrase file and no zone, and still serves its pages, its accounts and
its audit entries in the same ledger and log; nothing the gateway wrote is world-readable.

sshd refuses a chroot below a directory others may write (/tmp), so the root is a
root-owned 0755 directory under /var/lib, removed at the end with every account made.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from gateway import audit, scaffold, synth
from tests.conftest import KeyBox
from tests.faults import results_csv
from tests.gpgparty import GpgParty
from tests.integration.test_console import PASSWORD, free_port, http_login, wait_for_console
from tests.sshd import Sshd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

AGENCIES = [scaffold.AgencyTemplate("AG001", "First Collections", ("supervisor", "collector")),
            scaffold.AgencyTemplate("AG002", "Second Recovery", ("supervisor", "collector"))]
UMASK = "0o077"  # deploy/gateway.service's UMask=0077
TAG = f"gwt{os.getpid() % 100000}"


@dataclass(frozen=True)
class Accounts:
    """The host accounts of this test: the gateway's and the console's users, each party's
    group (the installer makes these), and one SFTP login per party (made here)."""

    user: str = f"{TAG}d"
    console: str = f"{TAG}c"
    group_pattern: str = f"{TAG}-{{code}}"
    bank_login: str = f"{TAG}b"
    logins: tuple[tuple[str, str], ...] = (("AG001", f"{TAG}a1"), ("AG002", f"{TAG}a2"))

    def group(self, code: str) -> str:
        return self.group_pattern.format(code=code.lower())


def _exists(kind: str, name: str) -> bool:
    return subprocess.run(["getent", kind, name], capture_output=True).returncode == 0


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    acc = Accounts()
    try:
        yield acc
    finally:  # whatever was made, even by a run that failed half-way
        for user in [acc.bank_login, *(login for _c, login in acc.logins), acc.console, acc.user]:
            if _exists("passwd", user):
                subprocess.run(["userdel", user], capture_output=True)
        for group in [acc.group("bank"), *(acc.group(c) for c, _l in acc.logins), acc.user,
                      acc.console]:
            if _exists("group", group):
                subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture
def root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="gwpriv", dir="/var/lib"))
    base.chmod(0o755)
    # as on a host, /etc, /var and /srv are 0755: not the 0700 that an earlier test's
    # daemon, run in this process, would leave its umask (077) to make them
    umask = os.umask(0o022)
    try:
        yield base
    finally:
        os.umask(umask)
        shutil.rmtree(base, ignore_errors=True)


def as_user(user: str, *args: str) -> list[str]:
    """argv of `gateway ARGS` as *user*: its own groups, the unit's umask set before
    anything else runs, no home. setpriv execs the interpreter itself (a shell in between
    could not reach an interpreter under root's private home, where pyenv puts it)."""
    boot = (f"import os, sys; os.umask({UMASK}); sys.argv[0] = 'gateway'; "
            "from gateway.cli import run; run()")
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--",
            sys.executable, "-c", boot, *args]


def gateway(*args: str, user: str | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS`, as root or as *user* (:func:`as_user`)."""
    argv = as_user(user, *args) if user else [sys.executable, "-m", "gateway", *args]
    env = {**os.environ, "HOME": "/nonexistent"} if user else None
    proc = subprocess.run(argv, capture_output=True, text=True, input=stdin, env=env,
                          cwd="/", check=False)
    if check:
        assert proc.returncode == 0, f"gateway {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def tries_as(user: str, paths: list[Path]) -> dict[str, str]:
    """What os.open answers *user* (its own groups) for each path: "ok" or the errno."""
    code = ("import errno, json, os, sys\nout = {}\nfor p in sys.argv[1:]:\n"
            "    try:\n        os.close(os.open(p, os.O_RDONLY))\n        out[p] = 'ok'\n"
            "    except OSError as e:\n        out[p] = errno.errorcode[e.errno]\n"
            "print(json.dumps(out))")
    gid = str(pwd.getpwnam(user).pw_gid)
    proc = subprocess.run(["setpriv", "--reuid", user, "--regid", gid, "--init-groups", "--",
                           sys.executable, "-c", code, *map(str, paths)],
                          capture_output=True, text=True, check=True, cwd="/")
    return json.loads(proc.stdout)


def sealed(keys: KeyBox, signer: str, plaintext: bytes) -> bytes:
    party = GpgParty(keys[signer].sec, keys["gateway"].pub)
    try:
        return party.seal(plaintext, signer=keys[signer].fingerprint,
                          recipients=[keys["gateway"].fingerprint])
    finally:
        party.close()


def opened(keys: KeyBox, key: str, ciphertext: bytes) -> bytes:
    party = GpgParty(keys[key].sec, keys["gateway"].pub)
    try:
        body, _status, rc = party.decrypt(ciphertext)
    finally:
        party.close()
    assert rc == 0
    return body


def sftp(sshd: Sshd, login: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    t = paramiko.Transport(("127.0.0.1", sshd.port))
    t.connect(username=login, pkey=paramiko.Ed25519Key.from_private_key_file(str(sshd.client_key)))
    return t, paramiko.SFTPClient.from_transport(t)  # type: ignore[return-value]


def python_runs_as(user: str) -> bool:
    """Whether *user* can run this interpreter and import the gateway (a checkout or venv
    under a private home would not let it)."""
    proc = subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--",
                           sys.executable, "-c", "import gateway.cli"], capture_output=True,
                          cwd="/", check=False)
    return proc.returncode == 0


def test_each_user_reaches_only_what_it_must(root, accounts, keybox, tmp_path):
    started = time.monotonic()
    acc = accounts
    # -- the site, as `gateway init` writes it for production, with paths under the root
    etc = root / "etc" / "gateway"
    layout = scaffold.Layout(root / "var/lib/gateway", root / "srv/gateway/zones",
                             root / "var/lib/gateway-console")
    today = dt.date.today() - dt.timedelta(days=30)
    conf = scaffold.init_project(etc, agencies=AGENCIES, today=today, settle_seconds=0,
                                 layout=layout)
    port = free_port()
    text = conf.read_text().replace("max_daily_attempts = 6", 'max_daily_attempts = 6\n'
                                    'metrics_listen = "127.0.0.1:0"')
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    for code, login in acc.logins:
        text = text.replace(f'code = "{code}"', f'code = "{code}"\nssh_users = {{ "{login}" = '
                                                '"collector" }', 1)
    conf.write_text(text)
    for name in scaffold.key_names(AGENCIES):
        shutil.copy(keybox[name].pub, etc / "keys" / f"{name}.pub.asc")
    shutil.copy(keybox["gateway"].sec, etc / "keys" / "gateway.sec.asc")
    (etc / "secrets.env").write_text("GATEWAY_KEY_PASSPHRASE=not-used-here\n")

    # -- the installer, twice: the second run changes nothing
    install = ["install", "-c", str(conf), "--root", str(root), "--user", acc.user,
               "--console-user", acc.console, "--agency-group", acc.group_pattern]
    dry = gateway(*install, "--dry-run")
    assert "todo " in dry.stdout and not _exists("passwd", acc.user)
    first = gateway(*install)
    assert "change(s) made" in first.stdout, first.stdout
    again = gateway(*install)
    assert "done " not in again.stdout and "nothing to do" in again.stdout, again.stdout
    if not python_runs_as(acc.user):
        pytest.skip(f"{sys.executable} cannot be run by another user here (a private home?)")

    # -- each party's login, in its group, key login only
    parties = [("bank", acc.bank_login), *acc.logins]
    for code, login in parties:
        subprocess.run(["useradd", "--gid", acc.group(code), "--no-create-home", "--home-dir",
                        "/", "--shell", "/usr/sbin/nologin", login], check=True,
                       capture_output=True)
        subprocess.run(["usermod", "-p", "*", login], check=True, capture_output=True)

    # -- sshd with the generated drop-in (its paths are the host's: under the root here)
    dropin = (root / "etc/ssh/sshd_config.d/gateway-zones.conf").read_text()
    dropin = dropin.replace("ChrootDirectory /", f"ChrootDirectory {root}/").replace(
        "AuthorizedKeysFile /", f"AuthorizedKeysFile {root}/")
    sshd = Sshd(tmp_path / "sshd")
    for _code, login in parties:  # one file per login, root's, where the drop-in looks
        shutil.copy(sshd.authorized, root / "etc/ssh/gateway-authorized-keys" / login)
        (root / "etc/ssh/gateway-authorized-keys" / login).chmod(0o644)
    sshd.config.write_text(sshd.config.read_text() + dropin)
    checked = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(sshd.config)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    sshd.start(log_file=tmp_path / "sshd.log")
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
