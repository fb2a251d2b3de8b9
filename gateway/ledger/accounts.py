"""Console accounts (docs/security-team.md): rows and the counters a login changes, each in one
transaction."""

from __future__ import annotations

import datetime as dt
from typing import Unpack

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway import keywords
from gateway.ledger.core import Core, _assign
from gateway.ledger.schema import AccountChange, AccountRow, utcnow


class AccountStore(Core):
    def add_account(self, row: AccountRow) -> bool:
        """Add *row*; False if its name is taken."""
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            return False
        return True

    def account(self, name: str) -> AccountRow | None:
        with self.session(write=False) as s:
            row = s.get(AccountRow, name)
            if row is not None:
                s.expunge(row)
            return row

    def accounts(self) -> list[AccountRow]:
        with self.session(write=False) as s:
            rows = list(s.scalars(select(AccountRow).order_by(AccountRow.name)))
            s.expunge_all()
            return rows

    def change_account(self, name: str, **change: Unpack[AccountChange]) -> bool:
        """Set *change* on account *name*; False if there is none."""
        keywords.check(change, AccountChange)  # a misspelling fails whether or not *name* exists
        with self.session() as s:
            row = s.get(AccountRow, name, with_for_update=True)
            if row is None:
                return False
            _assign(row, change, AccountChange)
            row.changed_at = utcnow()
            return True

    def login_failed(self, name: str, now: dt.datetime, *, lock_after: int,
                     lock_for: dt.timedelta) -> bool:
        """Count a failed login (a lockout that has run out starts the count afresh);
        True if this failure locks the account. One transaction with the row locked:
        two console hosts counting at once both count."""
        with self.session() as s:
            row = s.get(AccountRow, name, with_for_update=True)
            if row is None:
                return False
            if row.locked_until is not None and row.locked_until <= now:
                row.failures, row.locked_until = 0, None
            row.failures += 1
            if row.failures >= lock_after and row.locked_until is None:
                row.locked_until = now + lock_for
                return True
            return False

    def login_succeeded(self, name: str, step: int, now: dt.datetime) -> bool:
        """Take TOTP time step *step* for *name*: False if it, or a later one, was taken
        already (a code works once, even across console hosts)."""
        with self.session() as s:
            row = s.get(AccountRow, name, with_for_update=True)
            if row is None or (row.last_step is not None and step <= row.last_step):
                return False
            row.last_step, row.failures, row.locked_until = step, 0, None
            row.last_login_at = now
            return True

    def take_step(self, name: str, step: int) -> bool:
        """Take TOTP time step *step* for *name* without it counting as a login (a step-up
        code at a decision): False if it, or a later one, was taken already."""
        with self.session() as s:
            row = s.get(AccountRow, name, with_for_update=True)
            if row is None or (row.last_step is not None and step <= row.last_step):
                return False
            row.last_step, row.failures, row.locked_until = step, 0, None
            return True
