"""What every store of the ledger shares: the engine, one transaction at a time, the
database's clock, and the mapping of its failures to :class:`LedgerError`."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import CursorResult, Engine, Result
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from gateway import clock, keywords
from gateway.errors import GatewayError
from gateway.ledger import dialects, migrate
from gateway.ledger.schema import Base, LedgerError, T, utcnow


class Core:
    """The engine and its sessions; each store is a set of methods over them."""

    def __init__(self, url: str, *, owner: str | None = None, upgrade: bool = True) -> None:
        """*upgrade*: bring the schema to this gateway's head (the daemon, the CLI); the
        console, whose database role may not change the schema, only checks it is there."""
        self.url = url
        self.owner = owner  # this node, when it processes files: commits check its lease
        try:
            if url.startswith("sqlite:///") and upgrade:
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = migrate.make_engine(url)
            self.dialect = dialects.for_engine(self.engine)
            if upgrade:
                migrate.upgrade(self.engine)  # the schema comes from the migrations, under a lock
            else:
                with self.engine.connect() as conn:
                    found = migrate.current(conn)
                if found != migrate.head():
                    self.engine.dispose()
                    raise LedgerError(f"the ledger {self.where} is at schema revision {found}, not "
                                      f"{migrate.head()}: run `gateway db upgrade` (as the "
                                      "gateway's user) first")
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self._checkpoint: threading.Thread | None = None
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot open the ledger database {self.where}: {_reason(exc)}") \
                from exc
        except OSError as exc:
            raise GatewayError(f"cannot open the ledger database: {exc.strerror}: "
                               f"{exc.filename}") from exc

    @contextmanager
    def session(self, *, write: bool = True, staging: bool = False,
                checkpoint_behind: bool = False) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception.

        A database that cannot be written (a full disk, a lost server) is one readable
        :class:`LedgerError`; nothing of the transaction was committed. On SQLite a
        transaction that will write takes the write lock when it begins (``BEGIN
        IMMEDIATE``), waiting for it: one that read first and then wrote would fail at once
        ("database is locked") whenever another writer — the lease-renewal thread, a CLI
        command — committed in between. Read-only ones (``write=False``) stay deferred and
        never wait for a writer (WAL).

        ``staging=True``: what the transaction writes is a file's staged work, which a
        crash may lose (resuming the file clears it and stages it again), a lease
        (``take_lease``) or a zone's status (rewritten every pass), so its commit does not
        wait for the disk (see ``migrate._sqlite_begin``).

        ``checkpoint_behind=True`` (SQLite; a transaction that writes a great deal, a
        million-case batch's commit): the commit is durable as ever (its WAL synced), but
        copying its pages from the WAL into the database — SQLite's automatic checkpoint,
        which the committing call otherwise waits for (175 MB of WAL, ~0.4-1.5 s, for a
        million cases) — is done by a thread of its own, while the caller goes on (the
        batch's deliveries). A commit on another connection meanwhile finds the checkpoint
        busy and does not wait for it; :meth:`close` waits for it."""
        s = self._sessions()
        behind = checkpoint_behind and self.dialect.name == "sqlite"
        try:
            with s.begin():
                conn = s.connection(execution_options={migrate.SQLITE_WRITE: write,
                                                       migrate.STAGING: staging,
                                                       migrate.NO_CHECKPOINT: behind})
                if staging:
                    self.dialect.begin_staging(conn)
                yield s
        except OperationalError as exc:
            raise LedgerError(f"ledger {self.where}: {_reason(exc)}") from exc
        except PoolTimeout as exc:  # every pooled connection busy: the console's pages run
            # on many worker threads at once; the page says so rather than failing with a 500
            raise LedgerError(f"ledger {self.where}: no free connection in the pool "
                              f"({_reason(exc)})") from exc
        finally:
            s.close()
        if behind:
            self._checkpoint_behind()

    def _checkpoint_behind(self) -> None:
        """SQLite's checkpoint (``PASSIVE``: it waits for no reader or writer) on a pooled
        connection outside any transaction, on a thread of its own; one at a time. A
        checkpoint that fails leaves the pages in the WAL, for the next one."""
        self._join_checkpoint()

        def run() -> None:
            with contextlib.suppress(Exception):
                raw = self.engine.raw_connection()
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    raw.close()

        self._checkpoint = threading.Thread(target=run, name="ledger-checkpoint", daemon=True)
        self._checkpoint.start()

    def _join_checkpoint(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.join()
            self._checkpoint = None

    @property
    def where(self) -> str:
        return migrate.describe(self.url)

    def close(self) -> None:
        self._join_checkpoint()
        self.engine.dispose()

    def clock(self, s: Session) -> dt.datetime:
        """The time leases are measured by. On PostgreSQL, the server's: every node then
        reads one clock, and a host whose clock is ahead cannot take a live node's work
        (nor one behind keep a dead node's). SQLite serves one host: its clock."""
        return _aware(self.dialect.server_now(s)) or utcnow()


def _first_row_race(write: Callable[[], T]) -> T:
    """Run a read-then-insert-or-update *write*; if another node inserted the same row
    between our read and our insert (two daemons starting together), run it again: the
    row is there now and is updated. Without this the second daemon died of the
    unique-key error."""
    try:
        return write()
    except IntegrityError:
        return write()


def _rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched: its result is a cursor's, which the types of
    ``Session.execute`` (one signature for every statement) do not say."""
    assert isinstance(result, CursorResult)  # noqa: S101 — invariant, not an input check
    return result.rowcount


def _assign(row: Base, values: Mapping[str, object], typed: Any) -> None:
    """Set *values* on *row*, each named in the ``TypedDict`` *typed*: a misspelled column
    raises instead of becoming an attribute the database never sees."""
    keywords.check(values, typed)
    for key, value in values.items():
        setattr(row, key, value)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC (:func:`clock.aware`)."""
    return None if value is None else clock.aware(value)


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
