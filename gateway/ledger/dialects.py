"""The SQL in which SQLite and PostgreSQL differ, one object per database, chosen once when
the ledger opens its engine — so a store says what it wants (``self.dialect.live_cases``)
and never which database it is on.

The differences are the hot paths' JSON arrays (``json_each`` and ``json_extract`` against
``json_array_elements`` and ``->>``), the parameter markers (``?`` against ``%s``: these
statements go to the driver as they are written, see :func:`_stage_cases`), the clock
leases are measured by, and how a staging transaction is told not to wait for the disk.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Iterator
from typing import ClassVar

from sqlalchemy import MetaData, delete, event, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from gateway.ledger.schema import Base, LedgerError, StagedCaseRow


class Dialect:
    """What a store may ask of its database's SQL; the subclasses are the two databases."""

    name: ClassVar[str]
    # Of a chunk's case ids (a JSON array ``[["case id", …], …]``): those this file staged
    # already (parameters: the array, the file id), those live in a batch (the array).
    staged_cases: ClassVar[str]
    live_cases: ClassVar[str]
    # Of a chunk's case ids, those this file staged, each with the row it was staged from
    # (the array, the file id): what :meth:`stage_new_cases` left out, told apart.
    staged_rows: ClassVar[str]
    # Of a chunk's case ids: those not live and delivered to an agency (the array, the agency).
    foreign_cases: ClassVar[str]
    # A page of an agency's live case ids after a given one, in the index's order: how many,
    # the ids joined by newlines, the greatest (the next page's start: an aggregate's order
    # is not promised) (parameters: the agency, the id after which, the page's size).
    live_case_page: ClassVar[str]
    # The counts of (case_id, day) pairs by position, joined to a table's key; {table} and
    # {column} are ("attempts", "agency_code") or ("staged_attempts", "file_id"), never input.
    counts: ClassVar[str]
    # A file's staged counts added to its agency's (parameters: the agency, the file id).
    add_attempts: ClassVar[str]
    # A file's counts given as a JSON array ``[["case id", "day", count], …]``, each pair
    # once, added to its agency's (the agency, the array).
    add_attempt_rows: ClassVar[str]
    # One chunk's counts added to the file's staged ones (the file id, the array).
    stage_attempts: ClassVar[str]
    # How the insert of a chunk's cases reads the array (see :func:`_stage_cases`).
    param: ClassVar[str]
    rows: ClassVar[str]
    case_fields: ClassVar[tuple[str, str, str]]

    def stage_cases(self, agencies: int) -> str:
        """The insert of a chunk's cases for a file with *agencies* agencies."""
        return _stage_cases(self.param, self.rows, self.case_fields, agencies)

    def stage_new_cases(self, agencies: int) -> str:
        """The insert of those of a chunk's cases that are new: neither staged by this
        file already nor live in a batch (see :func:`_stage_new_cases`)."""
        return _stage_new_cases(self.param, self.rows, self.case_fields, agencies)

    def begin_staging(self, conn: Connection) -> None:
        """Let a transaction that only writes staged work commit without waiting for the
        disk (a crash loses it; resuming the file stages it again)."""

    def drop_staged_cases(self, conn: Connection, file_id: int) -> None:
        """Delete what *file_id* staged, in its commit's transaction."""
        conn.execute(delete(StagedCaseRow).where(StagedCaseRow.file_id == file_id))

    def lock_agency(self, conn: Connection, agency_code: str) -> None:
        """Hold, until the transaction ends, the right to change *agency_code*'s cases and
        attempt counts. SQLite needs nothing: a writing transaction has the database's one
        write lock from its start (``BEGIN IMMEDIATE``)."""

    def server_now(self, s: Session) -> dt.datetime | None:
        """The database server's clock, if leases go by it (None: the host's)."""
        return None

    @contextlib.contextmanager
    def bulk_upsert(self, conn: Connection) -> Iterator[None]:
        """Around the statements of one transaction that write a file's worth of rows into
        one table (the results commit's attempt counts)."""
        yield


class SQLite(Dialect):
    """One host's ledger. Its staging transactions are lightened when they begin, by
    ``migrate._sqlite_begin``; its clock is the host's — one host, one clock."""

    name = "sqlite"
    # The chunk's JSON array first (CROSS JOIN keeps SQLite from scanning the table instead).
    staged_cases = ("SELECT s.case_id FROM json_each(?) AS j CROSS JOIN staged_cases AS s "
                    "WHERE s.file_id = ? AND s.case_id = json_extract(j.value, '$[0]')")
    live_cases = ("SELECT c.case_id FROM json_each(?) AS j CROSS JOIN cases AS c "
                  "WHERE c.case_id = json_extract(j.value, '$[0]') AND c.purged_at IS NULL")
    staged_rows = staged_cases.replace("s.case_id FROM", 's.case_id, s."row" FROM')
    foreign_cases = ("SELECT json_extract(j.value, '$[0]') FROM json_each(?) AS j WHERE NOT EXISTS "
                     "(SELECT 1 FROM cases AS c WHERE c.case_id = json_extract(j.value, '$[0]') "
                     "AND c.purged_at IS NULL AND c.agency_code = ?)")
    live_case_page = ("SELECT count(*), group_concat(case_id, char(10)), max(case_id) FROM "
                      "(SELECT case_id FROM cases WHERE agency_code = ? AND purged_at IS NULL "
                      "AND case_id > ? ORDER BY case_id LIMIT ?)")
    counts = ("SELECT j.key, a.count FROM json_each(?) AS j CROSS JOIN {table} AS a "
              "WHERE a.{column} = ? AND a.case_id = json_extract(j.value, '$[0]') "
              "AND a.day = json_extract(j.value, '$[1]')")
    add_attempts = ("INSERT INTO attempts (agency_code, case_id, day, count) "
                    "SELECT ?, case_id, day, count FROM staged_attempts WHERE file_id = ? "
                    "ON CONFLICT (agency_code, case_id, day) DO UPDATE "
                    "SET count = attempts.count + excluded.count")
    # "WHERE true": SQLite's parser would otherwise read ON CONFLICT as a join's ON.
    add_attempt_rows = ("INSERT INTO attempts (agency_code, case_id, day, count) "
                        "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                        "json_extract(value, '$[2]') FROM json_each(?) WHERE true "
                        "ON CONFLICT (agency_code, case_id, day) DO UPDATE "
                        "SET count = attempts.count + excluded.count")
    stage_attempts = ("INSERT INTO staged_attempts (file_id, case_id, day, count) "
                      "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                      "json_extract(value, '$[2]') FROM json_each(?) WHERE true "
                      "ON CONFLICT (file_id, case_id, day) DO UPDATE "
                      "SET count = staged_attempts.count + excluded.count")
    param = "?"
    rows = "FROM json_each(?)"

    def drop_staged_cases(self, conn: Connection, file_id: int) -> None:
        """When the file's rows are the only ones staged (the usual case on one host),
        ``DELETE`` without a ``WHERE``: SQLite then drops the table's pages whole instead
        of visiting a million rows (0.28 -> 0.12 CPU s at a million, ~a tenth of the
        commit). The writing transaction holds the database's one write lock (``BEGIN
        IMMEDIATE``), so no other file can stage a row between the look and the delete;
        the two ends of the key are two index lookups, whatever the table holds."""
        (lo, hi), = conn.exec_driver_sql(
            "SELECT (SELECT min(file_id) FROM staged_cases), "
            "(SELECT max(file_id) FROM staged_cases)").fetchall()
        if lo == hi == file_id:
            conn.exec_driver_sql("DELETE FROM staged_cases")
        else:
            super().drop_staged_cases(conn, file_id)

    # KiB of page cache while a commit adds a file's counts (see bulk_upsert): ~25 MB of
    # attempts' pages at a million rows, so a file of that size is written without spills.
    BULK_CACHE_KIB = 32 * 1024

    @contextlib.contextmanager
    def bulk_upsert(self, conn: Connection) -> Iterator[None]:
        """A larger page cache for a moment. With SQLite's default of 2 MB, a transaction
        that changes more pages than that writes them to the WAL as it goes (a spill) and
        reads them back for the next keys; the results commit of a million rows changes
        ~25 MB of ``attempts``. In a micro-benchmark of its 556,000 keys in key order:
        0.89–0.91 s of CPU with the default cache, 0.55–0.58 s with 32 MB. The cache grows
        only as pages are used, and its size goes back before the transaction ends: SQLite
        frees the pages beyond it as the commit releases them."""
        (before,) = conn.exec_driver_sql("PRAGMA cache_size").one()
        conn.exec_driver_sql(f"PRAGMA cache_size = -{self.BULK_CACHE_KIB}")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")
    case_fields = ("json_extract(value, '$[0]')", "json_extract(value, '$[1]')",
                   "json_extract(value, '$[2]')")


class Postgres(Dialect):
    """Several nodes' ledger: leases go by the server's clock, which every node reads."""

    name = "postgresql"
    staged_cases = ("SELECT s.case_id FROM json_array_elements(%s::json) AS j(v) "
                    "JOIN staged_cases AS s ON s.file_id = %s AND s.case_id = j.v->>0")
    live_cases = ("SELECT c.case_id FROM json_array_elements(%s::json) AS j(v) "
                  "JOIN cases AS c ON c.case_id = j.v->>0 AND c.purged_at IS NULL")
    staged_rows = staged_cases.replace("s.case_id FROM", 's.case_id, s."row" FROM')
    foreign_cases = ("SELECT j.v->>0 FROM json_array_elements(%s::json) AS j(v) WHERE NOT EXISTS "
                     "(SELECT 1 FROM cases AS c WHERE c.case_id = j.v->>0 "
                     "AND c.purged_at IS NULL AND c.agency_code = %s)")
    live_case_page = ("SELECT count(*), string_agg(case_id, E'\\n'), max(case_id) FROM "
                      "(SELECT case_id FROM cases WHERE agency_code = %s AND purged_at IS NULL "
                      "AND case_id > %s ORDER BY case_id LIMIT %s) AS p")
    counts = ("SELECT j.i - 1, a.count FROM json_array_elements(%s::json) "
              "WITH ORDINALITY AS j(v, i) JOIN {table} AS a ON a.{column} = %s "
              "AND a.case_id = j.v->>0 AND a.day = j.v->>1")
    add_attempts = SQLite.add_attempts.replace("?", "%s")
    add_attempt_rows = ("INSERT INTO attempts (agency_code, case_id, day, count) "
                        "SELECT %s, j.v->>0, j.v->>1, (j.v->>2)::integer "
                        "FROM json_array_elements(%s::json) AS j(v) "
                        "ON CONFLICT (agency_code, case_id, day) DO UPDATE "
                        "SET count = attempts.count + excluded.count")
    stage_attempts = ("INSERT INTO staged_attempts (file_id, case_id, day, count) "
                      "SELECT %s, j.v->>0, j.v->>1, (j.v->>2)::integer "
                      "FROM json_array_elements(%s::json) AS j(v) "
                      "ON CONFLICT (file_id, case_id, day) DO UPDATE "
                      "SET count = staged_attempts.count + excluded.count")
    param = "%s"
    rows = "FROM json_array_elements(%s::json) AS j(v)"
    case_fields = ("j.v->>0", "(j.v->>1)::integer", "j.v->>2")

    def begin_staging(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def lock_agency(self, conn: Connection, agency_code: str) -> None:
        """A transaction-scoped advisory lock per agency: two nodes' results commits of one
        agency add attempt counts one after the other (in either order they lock the same
        rows, and in different orders they deadlocked), and a purge of the agency waits for
        a results commit in progress, or makes it wait and see the purge."""
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_lock_key(agency_code),))

    def __init__(self) -> None:
        describe_postgresql()

    def server_now(self, s: Session) -> dt.datetime | None:
        return s.scalar(select(func.statement_timestamp()))


def for_engine(engine: Engine) -> Dialect:
    """The SQL of *engine*'s database; the ledger is written for these two only."""
    for dialect in (SQLite, Postgres):
        if engine.dialect.name == dialect.name:
            return dialect()
    raise LedgerError(f"the ledger runs on SQLite or PostgreSQL, not {engine.dialect.name}")


@functools.cache
def _stage_cases(p: str, rows: str, fields: tuple[str, str, str], agencies: int) -> str:
    """The insert of a chunk's JSON array; the contract is a CASE over the agency (an
    agency not in it leaves contract_id NULL, which the column refuses). The statement
    goes to the driver as written (``exec_driver_sql``: no compiling, for a few hundred
    chunks a batch), so its markers are the driver's own. Cached: for one database only
    the number of agencies varies."""
    case_id, row, agency = fields
    arms = " ".join([f"WHEN {p} THEN {p}"] * agencies) or "ELSE NULL"
    return ("INSERT INTO staged_cases (file_id, case_id, row, agency_code, contract_id) "
            f"SELECT {p}, {case_id}, {row}, {agency}, CASE {agency} {arms} END {rows}")


@functools.cache
def _stage_new_cases(p: str, rows: str, fields: tuple[str, str, str], agencies: int) -> str:
    """:func:`_stage_cases` for the rows whose case id is new: not live in a batch (the
    live-case index, ``ux_cases_live``, asked per row) and not staged by this file before
    (the staging key: ``DO NOTHING``). One statement does what a lookup of each and then
    an insert did, in one pass over the array; its count of rows inserted tells whether
    any was left out (then :attr:`Dialect.staged_rows` says which, and why)."""
    return _stage_cases(p, rows, fields, agencies) + _NEW_ONLY.format(case_id=fields[0])


# What makes :func:`_stage_cases` insert only new case ids ({case_id}: the dialect's field).
_NEW_ONLY = (" WHERE NOT EXISTS (SELECT 1 FROM cases AS c WHERE c.case_id = {case_id} "
             "AND c.purged_at IS NULL) ON CONFLICT (file_id, case_id) DO NOTHING")


def _lock_key(agency_code: str) -> int:
    """A stable 64-bit key for an agency's advisory lock (the same on every node)."""
    digest = hashlib.sha256(f"gateway.agency:{agency_code}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# The partial unique indexes' predicates on PostgreSQL. Named in the Index at import
# (``postgresql_where=``), the keyword made SQLAlchemy load its whole PostgreSQL dialect to
# check it — ~35 ms of every start, for a ledger that is as likely SQLite's. The migrations
# create the indexes; the model needs the predicates only to describe a PostgreSQL ledger
# (the migrations test compares the two), so they are added when one is opened.
_POSTGRESQL_WHERE = (("cases", "ux_cases_live", "purged_at IS NULL"),
                     ("alerts", "ix_alerts_open_key", "cleared_at IS NULL"))


def describe_postgresql() -> None:
    """Give the model's partial indexes their PostgreSQL predicates (idempotent): when a
    PostgreSQL ledger opens, and before the model's tables are created on one."""
    for table, name, where in _POSTGRESQL_WHERE:
        index = next(i for i in Base.metadata.tables[table].indexes if i.name == name)
        options = index.dialect_options["postgresql"]
        if options["where"] is None:
            options["where"] = text(where)


@event.listens_for(Base.metadata, "before_create")
def _before_create(_metadata: MetaData, connection: Connection, **_kw: object) -> None:
    if connection.dialect.name == "postgresql":
        describe_postgresql()
