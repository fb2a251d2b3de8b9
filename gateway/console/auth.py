"""Console accounts (docs/security-team.md): Argon2id passwords, a TOTP second factor, lockouts.

The accounts live in the ledger, so two console hosts on one PostgreSQL share
them, their failure counts and their lockouts; the counting is done in the
ledger's transactions, not in a process's memory. What a login attempt did is
written to the audit log with the account's name — never the password, the
code, or a name that matches no account (a person who typed their password into
the name field must not find it in the log).

A login answers only "yes" or "no" to the person; the audit log says why
(``password``, ``code``, ``code_reused``, ``locked``, ``disabled``,
``unknown_account``) for the security team.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.audit import AuditLog
from gateway.errors import UsageError
from gateway.ledger import AccountRow, Ledger, utcnow
from gateway.queries import account_state

ROLES = ("auditor", "operator", "approver")  # approver: decides unmask requests
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # Argon2 takes any length; a megabyte "password" is an attack
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
STEP_SECONDS = 30  # RFC 6238's time step; codes of one step either side are accepted
ISSUER = "gateway console"
NAME_RE = re.compile(r"[a-z][a-z0-9._-]{0,31}")

# Argon2id with argon2-cffi's defaults: RFC 9106's second recommended profile
# (t=3, m=64 MiB, p=4), ~0.1 s here — slow enough against guessing a stolen hash.
_HASHER = PasswordHasher()
# A hash to check when the name is unknown, so that a wrong name costs the same time as
# a wrong password (the answer's timing does not tell which names exist).
_DECOY = _HASHER.hash("not an account's password")


@dataclass(frozen=True)
class Enrolment:
    """What the person needs to set up their authenticator app."""

    account: str
    secret: str  # base32, 160 bits
    uri: str  # otpauth://totp/...


@dataclass(frozen=True)
class Login:
    ok: bool
    reason: str  # "ok", or why not (for the audit log only)
    account: AccountRow | None = None


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"account name {name!r}: use 1-32 of a-z 0-9 . _ -, starting with a letter")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"password: at most {MAX_PASSWORD} characters")
    if password != password.strip():
        raise UsageError("password: no spaces at either end (they are easily mistyped)")
    return password


class Accounts:
    """The console's accounts over the ledger, every change and login audited."""

    def __init__(self, ledger: Ledger, audit: AuditLog,
                 now: Callable[[], dt.datetime] = utcnow, *,
                 hasher: PasswordHasher = _HASHER) -> None:
        self.ledger, self.audit, self.now = ledger, audit, now
        self.hasher = hasher  # a test counts its verifications through its own
        # One login at a time in this process: each reads the account's failures and lock
        # before its Argon2 check (~0.1 s, 64 MiB), so logins side by side on the worker
        # threads would all pass a lockout meant to stop the sixth guess, and 40 of them
        # would need 2.5 GiB at once.
        self._logins = threading.Lock()

    # --- administration (the ``gateway users`` commands) ----------------------------

    def add(self, name: str, role: str, password: str) -> Enrolment:
        check_name(name)
        check_role(role)
        secret = pyotp.random_base32()
        row = AccountRow(name=name, role=role, password_hash=self.hasher.hash(check_password(password)),
                         totp_secret=secret, disabled=False, failures=0)
        if not self.ledger.add_account(row):
            raise UsageError(f"account {name!r} exists (to start it afresh: gateway users reset {name})")
        self.audit.record("console.account_added", account=name, role=role)
        return _enrolment(name, secret)

    def reset(self, name: str, password: str) -> Enrolment:
        """A new password and a new TOTP secret; unlocks and re-enables the account."""
        check_name(name)
        secret = pyotp.random_base32()
        if not self.ledger.change_account(name, password_hash=self.hasher.hash(check_password(password)),
                                          totp_secret=secret, disabled=False, failures=0,
                                          locked_until=None, last_step=None,
                                          sessions_from=self.now()):
            raise UsageError(f"no account {name!r} (see gateway users list)")
        self.audit.record("console.account_reset", account=name)
        return _enrolment(name, secret)

    def disable(self, name: str) -> None:
        check_name(name)
        if not self.ledger.change_account(name, disabled=True, sessions_from=self.now()):
            raise UsageError(f"no account {name!r} (see gateway users list)")
        self.audit.record("console.account_disabled", account=name)

    def list(self) -> list[AccountRow]:
        return self.ledger.accounts()

    # --- logging in ------------------------------------------------------------------

    def login(self, name: str, password: str, code: str, *, address: str | None = None) -> Login:
        """Password and code for *name*; audited (with the client's *address*) either way."""
        with self._logins:
            return self._login(name, password, code, address)

    def _login(self, name: str, password: str, code: str, address: str | None) -> Login:
        now = self.now()
        row = self.ledger.account(name) if NAME_RE.fullmatch(name) else None
        # One Argon2 verification on every path, before anything is decided: a refusal
        # that skipped it (a disabled or locked account) would answer in milliseconds
        # where a wrong name or password takes ~0.1 s, and so tell which names exist.
        password_ok = self._verify(row.password_hash if row else _DECOY, password)
        if row is None:
            return self._refuse(None, "unknown_account", address)
        if (state := account_state(row, now)) != "active":
            return self._refuse(row, state, address)
        step = _matching_step(row.totp_secret, code, now) if password_ok else None
        if not password_ok or step is None:
            return self._fail(row, now, "password" if not password_ok else "code", address)
        if not self.ledger.login_succeeded(row.name, step, now):
            return self._fail(row, now, "code_reused", address)
        if self.hasher.check_needs_rehash(row.password_hash):  # the parameters were raised
            self.ledger.change_account(row.name, password_hash=self.hasher.hash(password))
        self.audit.record("console.login", account=row.name, role=row.role, address=address)
        return Login(True, "ok", row)

    def confirm_code(self, name: str, code: str, *, address: str | None = None) -> bool:
        """Step-up for a decision already signed in: a fresh TOTP code of *name*'s
        authenticator, checked as at the login — one step either side, and taken once
        (the ledger's ``last_step``: the login's code, or a code copied from a screen or
        another form, is refused). A wrong or reused code counts as a failed login, so a
        stolen session cannot guess codes past the lockout; audited as one (reason
        ``step_up_code`` or ``step_up_code_reused``). Whoever holds a session has the
        password's half already; this asks for the device's half again, at the moment a
        decision releases personal data."""
        with self._logins:
            now = self.now()
            row = self.ledger.account(name)
            if row is None or account_state(row, now) != "active":
                return False
            step = _matching_step(row.totp_secret, code.strip(), now)
            if step is None:
                self._fail(row, now, "step_up_code", address)
                return False
            # the login's step-taking, one transaction with the row locked: two consoles
            # given the same code at once take it once (not recorded as a login)
            if not self.ledger.take_step(row.name, step):
                self._fail(row, now, "step_up_code_reused", address)
                return False
            return True

    def _verify(self, hashed: str, password: str) -> bool:
        if len(password) > MAX_PASSWORD:
            return False
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _fail(self, row: AccountRow, now: dt.datetime, reason: str, address: str | None) -> Login:
        locked = self.ledger.login_failed(row.name, now, lock_after=MAX_FAILURES, lock_for=LOCKOUT)
        refused = self._refuse(row, reason, address)
        if locked:
            self.audit.record("console.locked", account=row.name, count=MAX_FAILURES)
        return refused

    def _refuse(self, row: AccountRow | None, reason: str, address: str | None) -> Login:
        self.audit.record("console.login_failed", account=row.name if row else None, reason=reason,
                          address=address)
        return Login(False, reason, row)


    def logout(self, name: str) -> None:
        """End every session of *name* (this browser's and any other's)."""
        self.ledger.change_account(name, sessions_from=self.now())
        self.audit.record("console.logout", account=name)

    def holder(self, session: Session) -> AccountRow | None:
        """The account a session speaks for, if it still may: it exists, is not disabled
        or locked, and was not logged out, reset or disabled since the session began."""
        row = self.ledger.account(session.account)
        if row is None or account_state(row, self.now()) != "active":
            return None
        if row.sessions_from is not None and session.begun <= row.sessions_from.timestamp():
            return None
        return row


# --- sessions and CSRF ------------------------------------------------------------------

IDLE = dt.timedelta(minutes=15)
ABSOLUTE = dt.timedelta(hours=8)


@dataclass(frozen=True)
class Session:
    account: str
    begun: float  # epoch seconds
    seen: float
    csrf: str  # the token every form of this session carries


class Signer:
    """Signed cookies (HMAC-SHA256). The key is made when the console starts and lives
    only in its memory: the console keeps no long-lived secret on disk, and a restart
    ends every session (at most 8 hours of work, usually 15 minutes of idleness)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return f"{body.decode()}.{base64.urlsafe_b64encode(mac).decode()}"

    def unsign(self, value: str) -> dict[str, Any] | None:
        body, _, mac = value.partition(".")
        try:
            expected = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(base64.urlsafe_b64decode(mac.encode()), expected):
                return None
            payload = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, binascii.Error, UnicodeError):
            return None
        return payload if isinstance(payload, dict) else None

    def session(self, account: str, now: dt.datetime) -> tuple[str, Session]:
        t = now.timestamp()
        s = Session(account, t, t, secrets.token_urlsafe(24))
        return self.cookie(s), s

    def cookie(self, s: Session) -> str:
        return self.sign({"a": s.account, "b": s.begun, "s": s.seen, "c": s.csrf})

    def read(self, value: str | None, now: dt.datetime) -> tuple[Session | None, str]:
        """The session in a cookie, or None and why ("none", "invalid", "expired")."""
        if not value:
            return None, "none"
        p = self.unsign(value)
        try:
            s = Session(str(p["a"]), float(p["b"]), float(p["s"]), str(p["c"])) if p else None
        except (KeyError, TypeError, ValueError):
            s = None
        if s is None:
            return None, "invalid"
        t = now.timestamp()
        if t - s.seen > IDLE.total_seconds() or t - s.begun > ABSOLUTE.total_seconds():
            return None, "expired"
        return Session(s.account, s.begun, t, s.csrf), "ok"


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a and b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def _enrolment(name: str, secret: str) -> Enrolment:
    return Enrolment(name, secret, pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER))




def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code *code* is (this one or one either side), or None."""
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    found = None
    for step in (current - 1, current, current + 1):  # all three: the same time either way
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found

