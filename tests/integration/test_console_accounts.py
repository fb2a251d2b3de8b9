"""Console accounts (docs/security-team.md) on a real ledger of each kind: Argon2id, TOTP, lockout, and
what the audit log says about every attempt — never the password, the code, or a name
that matches no account."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse

import pyotp
import pytest

from gateway.audit import AuditLog
from gateway.console.auth import LOCKOUT, MAX_FAILURES, STEP_SECONDS, Accounts
from gateway.errors import UsageError
from gateway.ledger import Ledger
from tests.flowsite import Site

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
# Rules that do not depend on the database run on SQLite alone; what the two databases do
# differently (row locks, two hosts counting at once) runs on both.
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def setup(db_url, tmp_path):
    ledger = Ledger(db_url)
    clock = Clock()
    audit = AuditLog(tmp_path / "audit", actor="console")
    yield Accounts(ledger, audit, now=clock), clock, audit
    ledger.close()


def code(secret: str, clock: Clock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now.timestamp() + steps * STEP_SECONDS)


def events(audit: AuditLog) -> list[tuple[str, str | None, str | None]]:
    return [(e["event"], e.get("account"), e.get("reason")) for e in audit.entries()]


def test_password_and_code_log_in_once(setup):
    accounts, clock, audit = setup
    enrolment = accounts.add("alice", "auditor", PASSWORD)
    uri = urllib.parse.urlparse(enrolment.uri)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert urllib.parse.parse_qs(uri.query)["secret"] == [enrolment.secret]
    login = accounts.login("alice", PASSWORD, code(enrolment.secret, clock))
    assert login.ok and login.account.role == "auditor"
    again = accounts.login("alice", PASSWORD, code(enrolment.secret, clock))  # the same code
    assert (again.ok, again.reason) == (False, "code_reused")
    clock.tick(STEP_SECONDS)
    assert accounts.login("alice", PASSWORD, code(enrolment.secret, clock)).ok
    assert events(audit) == [("console.account_added", "alice", None),
                             ("console.login", "alice", None),
                             ("console.login_failed", "alice", "code_reused"),
                             ("console.login", "alice", None)]
    assert accounts.list()[0].last_login_at == clock.now


@SQLITE
def test_a_code_of_the_step_before_or_after_is_accepted_two_steps_is_not(setup):
    accounts, clock, _ = setup
    secret = accounts.add("alice", "auditor", PASSWORD).secret
    assert accounts.login("alice", PASSWORD, code(secret, clock, -2)).reason == "code"
    assert accounts.login("alice", PASSWORD, code(secret, clock, +2)).reason == "code"
    assert accounts.login("alice", PASSWORD, code(secret, clock, -1)).ok
    assert accounts.login("alice", PASSWORD, code(secret, clock, +1)).ok


def test_five_failures_lock_for_fifteen_minutes(setup):
    accounts, clock, audit = setup
    secret = accounts.add("alice", "operator", PASSWORD).secret
    reasons = []
    for i in range(MAX_FAILURES):
        wrong = accounts.login("alice", PASSWORD + "x", "000000") if i % 2 else \
            accounts.login("alice", PASSWORD, "999999" if code(secret, clock) != "999999" else "999998")
        reasons.append(wrong.reason)
    assert reasons == ["code", "password", "code", "password", "code"]
    assert ("console.locked", "alice", None) in events(audit)
    locked = accounts.login("alice", PASSWORD, code(secret, clock))  # right, but locked
    assert (locked.ok, locked.reason) == (False, "locked")
    clock.tick(LOCKOUT.total_seconds() - 1)
    assert accounts.login("alice", PASSWORD, code(secret, clock)).reason == "locked"
    clock.tick(1)
    assert accounts.login("alice", PASSWORD, code(secret, clock)).ok
    assert accounts.list()[0].failures == 0


@SQLITE
def test_a_lapsed_lockout_starts_the_count_afresh(setup):
    accounts, clock, _ = setup
    accounts.add("alice", "auditor", PASSWORD)
    for _ in range(MAX_FAILURES):
        accounts.login("alice", "wrong password!", "000000")
    clock.tick(LOCKOUT.total_seconds())
    assert accounts.login("alice", "wrong password!", "000000").reason == "password"
    assert accounts.list()[0].failures == 1 and accounts.list()[0].locked_until is None


def test_two_console_hosts_count_failures_together(setup, db_url, tmp_path):
    accounts, clock, audit = setup
    other_ledger = Ledger(db_url)
    try:
        other = Accounts(other_ledger, AuditLog(tmp_path / "audit", actor="console2"), now=clock)
        accounts.add("alice", "auditor", PASSWORD)
        for i in range(MAX_FAILURES):
            (accounts if i % 2 else other).login("alice", "wrong password!", "000000")
        assert other.login("alice", "wrong password!", "000000").reason == "locked"
        assert [e for e, *_ in events(audit)].count("console.locked") == 1
    finally:
        other_ledger.close()


@SQLITE
def test_unknown_names_disabled_accounts_and_reset(setup):
    accounts, clock, audit = setup
    old = accounts.add("alice", "auditor", PASSWORD).secret
    typed_password_as_name = "My Secret Pass 1"
    assert accounts.login(typed_password_as_name, PASSWORD, "123456").reason == "unknown_account"
    assert accounts.login("nobody", PASSWORD, "123456").reason == "unknown_account"
    accounts.disable("alice")
    assert accounts.login("alice", PASSWORD, code(old, clock)).reason == "disabled"
    new = accounts.reset("alice", "another good passphrase").secret
    assert new != old
    assert accounts.login("alice", PASSWORD, code(new, clock)).reason == "password"
    assert accounts.login("alice", "another good passphrase", code(old, clock)).reason == "code"
    assert accounts.login("alice", "another good passphrase", code(new, clock)).ok
    text = audit.path.read_text()
    assert typed_password_as_name not in text and "nobody" not in text
    for secret in (old, new):
        assert secret not in text and code(secret, clock) not in text
    assert PASSWORD not in text and "another good passphrase" not in text
    assert ("console.login_failed", None, "unknown_account") in events(audit)


@SQLITE
@pytest.mark.parametrize(("name", "role", "password", "message"), [
    ("Alice", "auditor", PASSWORD, "account name 'Alice'"),
    ("alice", "admin", PASSWORD, "--role: 'admin' is not one of auditor, operator"),
    ("alice", "auditor", "short", "at least 12 characters"),
    ("alice", "auditor", " padded password ", "no spaces at either end"),
])
def test_account_rules(setup, name, role, password, message):
    accounts, _, _ = setup
    with pytest.raises(UsageError, match=message):
        accounts.add(name, role, password)
    assert accounts.list() == []


@SQLITE
def test_the_password_is_stored_as_argon2id(setup):
    accounts, _, _ = setup
    accounts.add("alice", "auditor", PASSWORD)
    stored = accounts.list()[0].password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def gateway(*args: str, site, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(site.config)],
                          input=stdin, capture_output=True, text=True, check=False)


@pytest.fixture
def site(tmp_path, keybox):
    return Site(tmp_path / "site", keybox)


def test_users_commands(site):
    added = gateway("users", "add", "alice", "--role", "auditor", "--password-stdin", site=site,
                    stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "otpauth://totp/" in added.stdout
    listed = json.loads(gateway("users", "list", "--json", site=site).stdout)
    assert [(a["name"], a["role"], a["state"]) for a in listed] == [("alice", "auditor", "active")]
    twice = gateway("users", "add", "alice", "--role", "auditor", "--password-stdin", site=site,
                    stdin=PASSWORD + "\n")
    assert (twice.returncode, twice.stderr.strip()) == (
        2, "error: account 'alice' exists (to start it afresh: gateway users reset alice)")
    no_tty = gateway("users", "add", "bob", "--role", "auditor", site=site, stdin="")
    assert (no_tty.returncode, no_tty.stderr.strip()) == (
        2, "error: no terminal to ask for the password on: use --password-stdin")
    assert gateway("users", "disable", "alice", site=site).returncode == 0
    assert json.loads(gateway("users", "list", "--json", site=site).stdout)[0]["state"] == "disabled"
    reset = gateway("users", "reset", "alice", "--password-stdin", site=site, stdin=PASSWORD + "\n")
    assert reset.returncode == 0 and "otpauth://" in reset.stdout
    assert json.loads(gateway("users", "list", "--json", site=site).stdout)[0]["state"] == "active"
    missing = gateway("users", "disable", "carol", site=site)
    assert (missing.returncode, missing.stderr.strip()) == (
        2, "error: no account 'carol' (see gateway users list)")


def echoing(fd: int) -> bool:
    """Whether the terminal echoes what is typed (getpass turns it off before reading; the
    prompt may show a moment before that)."""
    import termios

    return bool(termios.tcgetattr(fd)[3] & termios.ECHO)


def at_terminal(argv: list[str], answers: list[tuple[bytes, bytes]], timeout: float = 60) -> bytes:
    """Run *argv* on a pseudo-terminal; when the screen shows each prompt, type its answer.
    Returns everything the terminal showed."""
    import pty
    import select
    import time

    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, close_fds=True,
                            start_new_session=True, env={**os.environ, "TERM": "xterm",
                                                         "COLUMNS": "120"})
    os.close(child)
    screen, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if answers and answers[0][0] in screen and not echoing(main):
                prompt, answer = answers.pop(0)  # type only once echo is off, as a person
                screen = screen.replace(prompt, prompt.upper(), 1)  # would see it answered
                os.write(main, answer)
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                screen += data
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, screen.decode(errors="replace")
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
    return screen


def test_users_add_at_a_terminal_asks_twice_and_shows_a_qr_code(site):
    """On a terminal: the password asked twice without echo, then the URI and its QR code."""
    typed = (PASSWORD + "\n").encode()
    screen = at_terminal([sys.executable, "-m", "gateway", "users", "add", "alice", "--role",
                          "operator", "-c", str(site.config)],
                         [(b"Password:", typed), (b"Repeat for confirmation:", typed)]).decode()
    assert "PASSWORD:" in screen and "REPEAT FOR CONFIRMATION:" in screen
    assert "otpauth://totp/" in screen
    assert "█" in screen or "▀" in screen or "▄" in screen  # the QR code's blocks
    assert PASSWORD not in screen  # not echoed
