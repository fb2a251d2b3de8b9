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

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import GatewayError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema of the release before migrations
_PG_LOCK = 0x6761_7465  # pg_advisory_lock key: "gate"


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


@cache
def known() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def revision_of(url: str) -> tuple[str | None, str]:
    """(revision, where) of the ledger at *url*, without changing anything."""
    engine = create_engine(url)
    try:
        where = (engine.url.database or "") if engine.dialect.name == "sqlite" else \
            engine.url.render_as_string(hide_password=True)
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
    with _migration_lock(engine) as conn:
        before = current(conn)
        if before is None and inspect(conn).has_table("files"):
            command.stamp(config(conn), BASELINE)  # made by the release before migrations
            before = BASELINE
        if before is not None and before not in known():
            raise GatewayError(f"the ledger is at schema revision {before}, which this gateway "
                               "does not know: it was written by a newer gateway; upgrade this one")
        command.upgrade(config(conn), target)
        conn.commit()
        return before, current(conn) or ""


def downgrade(engine: Engine, target: str) -> None:
    """For tests and for stepping back a release: every migration has a downgrade."""
    with _migration_lock(engine) as conn:
        command.downgrade(config(conn), target)
        conn.commit()


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
            yield conn
    finally:
        if fd >= 0:
            os.close(fd)
