"""Console logins cost the same Argon2 work whatever the outcome (issue 22, finding 5): a
disabled or locked account used to be refused before any hash was checked, in a few
milliseconds, where a name that matches no account costs a decoy verification (~0.1 s)
— so the answer's speed told which names exist."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest
from argon2 import PasswordHasher

from gateway.audit import AuditLog
from gateway.console.auth import MAX_FAILURES, Accounts
from gateway.ledger import Ledger

PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """argon2-cffi's hasher with its default (production) cost, counting verifications."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    """alice active, dora disabled, lena locked (five wrong passwords)."""
    root = tmp_path_factory.mktemp("accounts")
    ledger = Ledger(f"sqlite:///{root / 'gateway.db'}")
    hasher = CountingHasher()
    accounts = Accounts(ledger, AuditLog(root / "audit", actor="console"), now=Clock(),
                        hasher=hasher)
    for name in ("alice", "dora", "lena"):
        accounts.add(name, "auditor", PASSWORD)
    accounts.disable("dora")
    for _ in range(MAX_FAILURES):
        accounts.login("lena", "not the password", "000000")
    assert accounts.login("lena", PASSWORD, "000000").reason == "locked"
    yield accounts, hasher
    ledger.close()


ATTEMPTS = {"unknown_account": "nobody", "disabled": "dora", "locked": "lena", "password": "alice"}


@pytest.mark.parametrize("reason", list(ATTEMPTS))
def test_every_refusal_verifies_one_password_hash(accounts, reason):
    accts, hasher = accounts
    before = hasher.verified
    result = accts.login(ATTEMPTS[reason], "a wrong password", "123456")
    assert (result.ok, result.reason) == (False, reason)
    assert hasher.verified - before == 1


def test_a_disabled_or_locked_account_answers_as_slowly_as_an_unknown_name(accounts):
    """Medians of a few tries each, compared with a generous margin: before the fix the
    disabled and locked answers took about 3 % of the unknown name's time; now they take
    the same Argon2 verification, so anything above half is the same cost."""
    accts, _ = accounts

    def median_seconds(name: str) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            accts.login(name, "a wrong password", "123456")
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    unknown = median_seconds("nobody")
    for name in ("dora", "lena"):
        assert median_seconds(name) > unknown / 2, name


def test_guesses_side_by_side_meet_the_same_lockout(tmp_path):
    """The console checks logins on worker threads: twelve wrong passwords sent at once
    are still refused from the sixth on as "locked" (each login reads the account's
    failures before its Argon2 check), and the right password during the lock fails."""
    import concurrent.futures

    import pyotp

    ledger = Ledger(f"sqlite:///{tmp_path / 'gateway.db'}")
    accts = Accounts(ledger, AuditLog(tmp_path / "audit", actor="console"), now=Clock())
    secret = accts.add("mara", "auditor", PASSWORD).secret
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: accts.login("mara", "a wrong guess", "000000"),
                                    range(12)))
        reasons = sorted(r.reason for r in results)
        assert reasons == ["locked"] * (12 - MAX_FAILURES) + ["password"] * MAX_FAILURES
        code = pyotp.TOTP(secret).at(Clock()())
        assert accts.login("mara", PASSWORD, code).reason == "locked"
    finally:
        ledger.close()


def test_a_step_up_code_works_once_and_wrong_ones_lock_the_account(tmp_path):
    """:meth:`Accounts.confirm_code` (an approver's decision): a code of the login's step or
    of an earlier confirmation is refused, a fresh one taken, and wrong codes count with
    the login's failures — five lock the account, and a locked account confirms nothing."""
    import pyotp

    clock = Clock()
    ledger = Ledger(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        accounts = Accounts(ledger, AuditLog(tmp_path / "audit", actor="console"), now=clock)
        secret = accounts.add("anna", "approver", PASSWORD).secret
        code = pyotp.TOTP(secret).at(clock.now)
        assert accounts.login("anna", PASSWORD, code).ok
        assert not accounts.confirm_code("anna", code)  # the login's code
        clock.now += dt.timedelta(seconds=30)
        fresh = pyotp.TOTP(secret).at(clock.now)
        assert accounts.confirm_code("anna", fresh)
        assert not accounts.confirm_code("anna", fresh)  # taken
        assert not accounts.confirm_code("nobody", fresh)
        clock.now += dt.timedelta(seconds=30)
        wrong = f"{(int(pyotp.TOTP(secret).at(clock.now)) + 1) % 10**6:06d}"
        # the fresh code's success reset the count (as a login does): the reuse after it
        # and these make five failures
        for n in range(MAX_FAILURES - 1):
            assert ledger.account("anna").locked_until is None, n
            assert not accounts.confirm_code("anna", wrong)
        assert ledger.account("anna").locked_until is not None
        assert not accounts.confirm_code("anna", pyotp.TOTP(secret).at(clock.now))
        reasons = [e.get("reason") for e in AuditLog(tmp_path / "audit").entries()
                   if e["event"] == "console.login_failed"]
        assert reasons == ["step_up_code_reused", "step_up_code_reused",
                           *["step_up_code"] * (MAX_FAILURES - 1)]
    finally:
        ledger.close()
