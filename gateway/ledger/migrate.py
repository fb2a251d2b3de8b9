"""The ledger's schema comes from Alembic migrations, the same for SQLite and PostgreSQL.

:func:`upgrade` is what opening a ledger does: nothing when the schema is at the
head revision (one cheap query), otherwise it takes the migration lock and
upgrades — a PostgreSQL advisory lock, so two nodes starting at the same moment
do not both create tables; for SQLite a ``flock`` beside the database file. A
ledger made before migrations existed (tables, no ``alembic_version``) is stamped
at the first revision and upgraded from there. A ledger at a revision this
gateway does not know was written by a newer gateway: refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema of the release before migrations
# The newest revision in migrations/versions (a unit test holds them equal). Opening a
# ledger that is already there needs no Alembic at all: a daemon on local zones stays
# ~35 MB smaller without importing it (and Mako with it).
HEAD = "0013"
_PG_LOCK = 0x6761_7465  # pg_advisory_lock key: "gate"


def make_engine(url: str) -> Engine:
    """The engine every part of the gateway uses for *url* (the ledger, the migrations).

    SQLite: pysqlite's own transaction handling begins a transaction only before an
    INSERT/UPDATE/DELETE, so DDL — a migration — would run statement by statement and a
    failure (a full disk) would leave half a schema. We switch that off and emit BEGIN
    ourselves when SQLAlchemy begins, so every transaction, a migration included, is all
    or nothing (SQLAlchemy's documented recipe)."""
    # PostgreSQL sessions in UTC, whatever the server's TimeZone: a time is then read back
    # as it was stored, also at the ends of the range (a server east of UTC cannot show
    # 9999-12-31T23:59Z in its own zone, and the read fails).
    args = {"options": "-c timezone=UTC"} if make_url(url).get_backend_name() == "postgresql" \
        else {}
    engine = create_engine(url, pool_pre_ping=True, connect_args=args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


SQLITE_WRITE = "gateway_sqlite_write"  # execution option: this transaction will write
# Execution option: what this transaction writes is staged work a crash may lose (it is
# cleared and staged again on resume), so its commit need not wait for the disk.
STAGING = "gateway_staging"
# Execution option: this transaction's commit leaves the WAL's checkpoint to the caller
# (``Core.session(checkpoint_behind=True)``), which runs it beside what comes next.
NO_CHECKPOINT = "gateway_no_checkpoint"
WAL_AUTOCHECKPOINT = 1000  # SQLite's default: pages of WAL after which a commit checkpoints


def _sqlite_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE for a transaction that will write (see ``Ledger.session``), plain
    BEGIN otherwise — migrations included, which run under their own lock.

    A staging transaction commits with ``synchronous=NORMAL``: in WAL mode the commit
    is atomic and ordered but not yet synced, and the next FULL commit's sync carries it
    to the disk. A batch stages a few hundred chunks: a sync each is a few hundred
    waits for the disk (~3 ms each on this project's VMs, more on a disk that honours
    them).

    A transaction run with ``NO_CHECKPOINT`` commits without the automatic checkpoint
    (the next transaction on the connection sets it back): see ``Core.session``."""
    options = conn.get_execution_options()
    write = options.get(SQLITE_WRITE, False)
    if write:
        sync = "NORMAL" if options.get(STAGING, False) else "FULL"
        info = conn.connection.info
        if info.get("synchronous") != sync:
            conn.exec_driver_sql(f"PRAGMA synchronous={sync}")
            info["synchronous"] = sync
        pages = 0 if options.get(NO_CHECKPOINT, False) else WAL_AUTOCHECKPOINT
        if info.get("wal_autocheckpoint", WAL_AUTOCHECKPOINT) != pages:
            conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}")
            info["wal_autocheckpoint"] = pages
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.isolation_level = None  # BEGIN comes from the "begin" event above
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives kill -9
    cur.execute("PRAGMA synchronous=FULL")  # a committed claim is on disk before we act on it
    record.info["synchronous"] = "FULL"
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")  # milliseconds
    cur.close()


def config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return HEAD


@cache
def known() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def current(connection: Connection) -> str | None:
    """The ledger's revision, as Alembic records it in ``alembic_version`` (None: none)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def describe(url: str) -> str:
    """The database, for messages: the SQLite file, or the server without credentials."""
    u = make_url(url)
    return (u.database or "") if u.drivername.startswith("sqlite") else \
        u.render_as_string(hide_password=True)


def revision_of(url: str) -> tuple[str | None, str]:
    """(revision, where) of the ledger at *url*, without changing anything."""
    engine = make_engine(url)
    try:
        where = describe(url)
        try:
            with engine.connect() as conn:
                return current(conn), where
        except SQLAlchemyError as exc:
            raise GatewayError(f"cannot open the ledger database {where}: "
                               f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}") from exc
    finally:
        engine.dispose()


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Bring the schema to *target*; returns (revision before, revision after)."""
    with engine.connect() as conn:
        before = current(conn)
        conn.rollback()
    if before == head() and target == "head":
        return before, before
    from alembic import command

    with _migration_lock(engine) as conn:
        before = current(conn)
        if before is None and _pre_migration_ledger(conn):
            command.stamp(config(conn), BASELINE)  # made by the release before migrations
            before = BASELINE
        if before is not None and before not in known():
            raise GatewayError(f"the ledger is at schema revision {before}, which this gateway "
                               "does not know: it was written by a newer gateway; upgrade this one")
        command.upgrade(config(conn), target)
        _commit(conn)
        return before, current(conn) or ""


def _pre_migration_ledger(conn: Connection) -> bool:
    """The first release created its tables with ``create_all`` and wrote schema_version 1
    into ``meta``; only such a ledger is stamped, never a half-made schema."""
    if not inspect(conn).has_table("meta"):
        return False
    version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    return version == "1"


def downgrade(engine: Engine, target: str) -> None:
    """For tests and for stepping back a release: every migration has a downgrade."""
    from alembic import command

    with _migration_lock(engine) as conn:
        command.downgrade(config(conn), target)
        _commit(conn)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """One migrator at a time: other nodes wait, then find the schema current."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK})
                conn.commit()
        return
    database = engine.url.database
    lock = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600) if lock else -1
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        with engine.connect() as conn:
            # SQLite rebuilds a table to alter it (batch mode); with foreign keys enforced,
            # dropping the old copy would fail. Off for the migration (a PRAGMA that only
            # works outside a transaction), checked before the commit, on again after.
            raw = conn.connection.dbapi_connection
            assert raw is not None  # noqa: S101 — None only once the connection is invalidated
            raw.cursor().execute("PRAGMA foreign_keys=OFF")
            try:
                yield conn
            finally:
                raw.cursor().execute("PRAGMA foreign_keys=ON")
    finally:
        if fd >= 0:
            os.close(fd)


def _commit(conn: Connection) -> None:
    if conn.dialect.name == "sqlite" and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
        raise GatewayError("a migration left rows that break a foreign key; nothing was changed")
    conn.commit()
