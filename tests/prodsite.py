"""A production-style site for tests that need the real users and groups: `gateway init`
with production paths under a temporary root, `gateway install --root` with host users
and groups of the test's own, one SFTP login per party, and a real sshd that chroots
each party as the generated drop-in says.

sshd refuses a chroot below a directory others may write (/tmp), so the root is a
root-owned 0755 directory under /var/lib, removed at the end with every account made.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from gateway import scaffold
from tests.conftest import KeyBox
from tests.gpgparty import GpgParty
from tests.integration.test_console import free_port
from tests.sshd import Sshd

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


def exists(kind: str, name: str) -> bool:
    return subprocess.run(["getent", kind, name], capture_output=True).returncode == 0


@pytest.fixture(name="accounts")
def accounts_fixture() -> Iterator[Accounts]:
    acc = Accounts()
    try:
        yield acc
    finally:  # whatever was made, even by a run that failed half-way
        for user in [acc.bank_login, *(login for _c, login in acc.logins), acc.console, acc.user]:
            if exists("passwd", user):
                subprocess.run(["userdel", user], capture_output=True)
        for group in [acc.group("bank"), *(acc.group(c) for c, _l in acc.logins), acc.user,
                      acc.console]:
            if exists("group", group):
                subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture(name="root")
def root_fixture() -> Iterator[Path]:
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


def package_writable_by(user: str) -> tuple[str, list[str]]:
    """The gateway package *user*'s Python imports (its directory), and every file of it
    (code, templates, static assets, compiled ``__pycache__``) that *user* could open for
    writing and every directory in it where *user* could create or replace a file.

    The threat: a service that can change its own code turns any write into code
    execution (Cleo 2024: files dropped in a folder were run; MOVEit's web shell
    ``human2.aspx`` was written into the web root). Files are opened ``O_WRONLY`` without
    ``O_CREAT`` or ``O_TRUNC``, so nothing is changed even where the open succeeds."""
    code = ("import json, os, gateway\n"
            "top = os.path.dirname(os.path.realpath(gateway.__file__))\n"
            "found = [top] if os.access(top, os.W_OK) else []\n"
            "for folder, dirs, files in os.walk(top):\n"
            "    found += [os.path.join(folder, d) for d in dirs\n"
            "              if os.access(os.path.join(folder, d), os.W_OK)]\n"
            "    for f in files:\n"
            "        path = os.path.join(folder, f)\n"
            "        try:\n"
            "            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW))\n"
            "        except OSError:\n"
            "            continue\n"
            "        found.append(path)\n"
            "print(json.dumps([top, found]))")
    gid = str(pwd.getpwnam(user).pw_gid)
    proc = subprocess.run(["setpriv", "--reuid", user, "--regid", gid, "--init-groups", "--",
                           sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd="/")
    top, found = json.loads(proc.stdout)
    return top, found


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
    gid = str(pwd.getpwnam(user).pw_gid)  # its own group, or a party's (an agency login's)
    proc = subprocess.run(["setpriv", "--reuid", user, "--regid", gid, "--init-groups", "--",
                           sys.executable, "-c", "import gateway.cli"], capture_output=True,
                          cwd="/", check=False)
    return proc.returncode == 0




@dataclass(frozen=True)
class ProductionSite:
    root: Path
    etc: Path
    conf: Path
    layout: scaffold.Layout
    port: int  # the console's
    sshd: Sshd
    accounts: Accounts


def build(root: Path, accounts: Accounts, keybox: KeyBox, tmp_path: Path) -> ProductionSite:
    """The site installed, each party's login made, sshd listening (stop it when done)."""
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
    assert "todo " in dry.stdout and not exists("passwd", acc.user)
    first = gateway(*install)
    assert "change(s) made" in first.stdout, first.stdout
    again = gateway(*install)
    assert "done " not in again.stdout and "nothing to do" in again.stdout, again.stdout
    if not python_runs_as(acc.user):
        pytest.skip(f"{sys.executable} cannot be run by another user here (a private home?)")
    # -- neither the console's user nor the gateway's may change the code they run
    for user in (acc.console, acc.user):
        top, writable = package_writable_by(user)
        assert top.endswith("gateway") and writable == [], (user, top, writable[:20])

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
    return ProductionSite(root, etc, conf, layout, port, sshd, acc)
