"""Shared fixtures: keys generated once per session with the real gpg, and trial setups."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import scaffold
from gateway.crypto import keys
from tests import exec_audit
from tests.gpgparty import GpgParty


@dataclass(frozen=True)
class Key:
    name: str
    fingerprint: str
    pub: Path
    sec: Path


class KeyBox:
    """Named key pairs in one directory; generated on first use."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._keys: dict[str, Key] = {}

    def __getitem__(self, name: str) -> Key:
        if name not in self._keys:
            self._keys[name] = self._make(name)
        return self._keys[name]

    def _make(self, name: str) -> Key:
        if name == "weak":  # keys.generate only makes strong keys; plain gpg makes this one
            return self._plain_gpg(name, "rsa2048", "rsa2048")
        if name == "expired":  # valid during 2023 only
            g = keys.generate(name, "expired@test.example", self.dir, expire="1y",
                              faked_time="20230101T000000")
        elif name == "gw_old":  # a gateway key that already existed in 2023, for signing in the past
            g = keys.generate(name, "gw_old@test.example", self.dir, expire="never",
                              faked_time="20221201T000000")
        elif name == "revoked":
            return self._plain_gpg(name, "ed25519", "cv25519", revoke=True)
        else:
            g = keys.generate(name, f"{name}@test.example", self.dir)
        return Key(name, g.fingerprint, g.public_path, g.secret_path)

    def _plain_gpg(self, name: str, primary: str, sub: str, *, revoke: bool = False) -> Key:
        party = GpgParty()
        try:
            proc = party.gpg("--quick-gen-key", f"{name} <{name}@test.example>", primary,
                             "cert,sign", "2y", check=True)
            fpr = next(ln.split()[3] for ln in proc.stderr.decode().splitlines()
                       if "KEY_CREATED" in ln)
            party.gpg("--quick-add-key", fpr, sub, "encr", "2y", check=True)
            pub, sec = self.dir / f"{name}.pub.asc", self.dir / f"{name}.sec.asc"
            pub.write_bytes(party.gpg("--armor", "--export", fpr, check=True).stdout)
            sec.write_bytes(party.gpg("--armor", "--export-secret-keys", fpr, check=True).stdout)
            sec.chmod(0o600)
            if revoke:  # keep the unrevoked copy, then publish the revocation
                shutil.copy(pub, self.dir / f"{name}.unrevoked.pub.asc")
                cert = (party.home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
                cert = cert.replace(":-----BEGIN", "-----BEGIN")
                party.gpg("--import", stdin=cert.encode(), check=True)
                pub.write_bytes(party.gpg("--armor", "--export", fpr, check=True).stdout)
            return Key(name, fpr, pub, sec)
        finally:
            party.close()


@pytest.fixture(scope="session")
def keybox(tmp_path_factory: pytest.TempPathFactory) -> KeyBox:
    return KeyBox(tmp_path_factory.mktemp("keys"))


@dataclass
class Setup:
    dir: Path
    config: Path
    keys: KeyBox

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))


@pytest.fixture
def setup(tmp_path: Path, keybox: KeyBox) -> Setup:
    """A `gateway init` directory with every key it names, as bank IT would have it."""
    config = scaffold.init_project(tmp_path / "gw")
    for name in scaffold.key_names(scaffold.DEFAULT_AGENCIES):
        k = keybox[name]
        shutil.copy(k.pub, tmp_path / "gw" / "keys" / f"{name}.pub.asc")
        if name == "gateway":
            dst = tmp_path / "gw" / "keys" / "gateway.sec.asc"
            shutil.copy(k.sec, dst)
            dst.chmod(0o600)
    return Setup(tmp_path / "gw", config, keybox)


def run_cli(*args: str, env: dict[str, str] | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `gateway` command as a person would."""
    import os
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, env=full_env, input=None if stdin is None else stdin.decode(),
                          check=False)


def run_cli_at(at: dt.datetime, *args: str) -> subprocess.CompletedProcess[str]:
    """`gateway *args*` in a process whose clock (``gateway.ledger.utcnow``, what a command
    asks for "now") reads *at*: a report on this month, say, once the month has ended."""
    import sys

    script = ("import datetime as dt, gateway.ledger as ledger; "
              f"ledger.utcnow = lambda: dt.datetime.fromisoformat({at.isoformat()!r}); "
              "from gateway.cli import run; run()")
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real OpenSSH server on loopback for the whole session."""
    from tests.sshd import Sshd

    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (the machine's binaries) for the whole session."""
    from tests.pg import Postgres

    server = Postgres()
    server.start()
    yield server
    server.stop()


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    """A fresh, empty ledger database of each kind: SQLite in a file, or PostgreSQL."""
    if request.param == "sqlite":
        (tmp_path / "state").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'state' / 'gateway.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def ledger(db_url):
    """A ledger over :func:`db_url`, closed after the test."""
    from gateway.ledger import Ledger

    led = Ledger(db_url)
    yield led
    led.close()


@pytest.fixture(autouse=True)
def _logging_to_the_streams_of_the_moment():
    """A command run in this process configures the operational log with the stream of
    that moment — a test's captured stderr, a progress bar's — which is closed once that
    test ends. Back to structlog's defaults after each test (they print to whatever
    sys.stdout is when a line is written), so no later test writes to a closed file,
    whichever order the two cores take the tests in."""
    yield
    import structlog

    structlog.reset_defaults()


# --- the subprocess allow-list (tests/exec_audit.py) ---------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.stash[_EXEC_LOG] = exec_audit.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every program gateway code started in this session, in this process and its Python
    children, against the allow-list: a problem fails the session (the summary lists it)."""
    folder = session.config.stash.get(_EXEC_LOG, None)
    if folder is None:
        return
    records, problems = exec_audit.finish(folder)
    session.config.stash[_EXEC_PROBLEMS] = (len(records), problems)
    if problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count, problems = config.stash.get(_EXEC_PROBLEMS, (0, []))
    if problems:
        terminalreporter.section("subprocess allow-list (tests/exec_audit.py)", red=True)
        for line in dict.fromkeys(problems):
            terminalreporter.line(f"FAILED {line}", red=True)
    elif count:
        terminalreporter.write_line(f"subprocess allow-list: {count} program start(s) by "
                                    "gateway code, all allowed")


_EXEC_LOG = pytest.StashKey[Path | None]()
_EXEC_PROBLEMS = pytest.StashKey[tuple[int, list[str]]]()
