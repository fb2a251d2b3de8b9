"""The ledger: what the gateway has seen, decided and delivered — identifiers only.

SQLAlchemy 2 over SQLite (WAL) by default, PostgreSQL for several workers. It
holds SHA-256s, batch and case ids, case -> agency/contract assignments,
deliveries and receipts; never a name, number or address. Exactly-once rests on
one unique row per file *content* (``files.sha256``): claiming inserts it, and a
second arrival of the same bytes finds it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from gateway.errors import GatewayError
from gateway.ledger import migrate
from gateway.transfer.base import display_name, raw_name

T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FileName(TypeDecorator[str]):
    """A zone file name as a sender chose it — newline, backslash, bytes that are not
    UTF-8 and all. Stored in its reversible printable spelling
    (:func:`~gateway.transfer.base.display_name`), so no name can fail to encode in a
    query, and read back as the real name the zone knows."""

    impl = String(1024)  # a 255-byte name, escaped, fits
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else display_name(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else raw_name(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Every time in the ledger is UTC. SQLite keeps no offset: an aware time in another
    zone (a local clock) would come back as a different instant, so times are converted
    to UTC on the way in, and come back aware (UTC) from either database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None or value.tzinfo is None:
            return value  # naive: UTC already, by the convention of the code that made it
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class LedgerError(GatewayError):
    """The ledger database failed."""

    code = "E_LEDGER"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime}


class FileStatus(StrEnum):
    CLAIMED = "claimed"  # being processed (a lease holder works on it)
    ACCEPTED = "accepted"
    PARTIAL = "partial"  # skip_rows: some rows delivered, the rest reported
    REJECTED = "rejected"


class FileRow(Base):
    """One distinct file content that arrived in a zone."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # case_file | results
    zone: Mapped[str] = mapped_column(String(80))  # config key path, e.g. bank.outgoing
    name: Mapped[str] = mapped_column(FileName)
    size: Mapped[int] = mapped_column(BigInteger)
    agency_code: Mapped[str | None] = mapped_column(String(32))  # sender, for results
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.CLAIMED.value)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    signer: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(48))
    records: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None]
    archive_name: Mapped[str | None] = mapped_column(String(255))
    purged_at: Mapped[dt.datetime | None]


class BatchRow(Base):
    """An accepted (or partially accepted) bank batch; its id is unique for the bank."""

    __tablename__ = "batches"
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    status: Mapped[str] = mapped_column(String(16))
    records: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    committed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaseRow(Base):
    """A case delivered to an agency under a contract (no personal value, only the id)."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.batch_id"))
    agency_code: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    purged_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # case_id is unique across *live* cases (SPEC §4); a purged case's id may return.
        Index("ux_cases_live", "case_id", unique=True,
              sqlite_where=text("purged_at IS NULL"), postgresql_where=text("purged_at IS NULL")),
        # purged_at too: the ownership check is answered from the index alone (0007)
        Index("ix_cases_agency", "agency_code", "case_id", "purged_at"),
    )


class StagedCaseRow(Base):
    """A case id seen in a file being processed; moved to ``cases`` when the file commits."""

    __tablename__ = "staged_cases"
    file_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the claim (0008)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    row: Mapped[int] = mapped_column(Integer)
    agency_code: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str] = mapped_column(String(64))
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class DeliveryRow(Base):
    """A file the gateway placed (or is about to place) in an agency's inbox."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    # slice | manifest | results | certificate | checkpoint
    kind: Mapped[str] = mapped_column(String(16), default="slice")
    batch_id: Mapped[str | None] = mapped_column(String(64))
    agency_code: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(32))  # None for a manifest
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the ciphertext
    size: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime | None]  # None: committed, not yet moved into the inbox
    collected_at: Mapped[dt.datetime | None]
    purged_at: Mapped[dt.datetime | None]


class ReceiptRow(Base):
    """One receipt per arrival — duplicates included, so nothing goes unanswered.

    Sending is two-phase: the row is committed with the sealed receipt staged
    (``sent_at`` None), then the receipt is written to the zone and the input
    removed; a crash in between is finished by the next run.
    """

    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_zone: Mapped[str] = mapped_column(String(80))
    input_name: Mapped[str] = mapped_column(FileName)
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str | None] = mapped_column(String(255))  # chosen when sent
    staged: Mapped[str] = mapped_column(String(255))  # file name under the staging directory
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    input_removed_at: Mapped[dt.datetime | None]


class AttemptRow(Base):
    """Calls/messages per case and local day, across result files (the ATTEMPTS flag)."""

    __tablename__ = "attempts"
    agency_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, gateway zone
    count: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class StagedAttemptRow(Base):
    """A results file's CALL/SMS counts per case and day while it is processed, chunk by
    chunk; added to ``attempts`` when the file commits (memory stays flat)."""

    __tablename__ = "staged_attempts"
    file_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the claim (0008)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class AccountRow(Base):
    """A console account (SPEC §13). The password only as an Argon2id hash; the TOTP
    secret as it must be to check a code; *last_step* the TOTP time step last accepted
    (a code works once); *failures* since the last good login (5 lock it);
    *sessions_from*: a session begun before it is void (a logout, a reset)."""

    __tablename__ = "console_accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # auditor | operator
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(default=False)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]
    sessions_from: Mapped[dt.datetime | None]  # sessions begun earlier are void (logout, reset)


class ResultFlagRow(Base):
    """How many accepted rows of a results file carry each flag (SPEC §8), and how many were
    refused as ``NOT_ASSIGNED`` — the Compliance page's figures, kept with no case in them."""

    __tablename__ = "result_flags"
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), primary_key=True)
    flag: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class AccessCursorRow(Base):
    """How far a node has read internal-sftp's log (SPEC §14): the file's inode, the offset
    after the last whole line, and the parser's open sessions as JSON."""

    __tablename__ = "access_cursors"
    source: Mapped[str] = mapped_column(String(300), primary_key=True)  # "<node>:<path>"
    inode: Mapped[int | None] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PurgeRow(Base):
    """One purge per contract: planned first, executed object by object, then certified."""

    __tablename__ = "purges"
    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_code: Mapped[str] = mapped_column(String(32))
    effective_end: Mapped[str] = mapped_column(String(10))
    deadline: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    late: Mapped[bool] = mapped_column(default=False)
    cases: Mapped[int] = mapped_column(Integer, default=0)
    certificate: Mapped[str | None] = mapped_column(String(255))


class PurgeObjectRow(Base):
    """Something a purge deletes: a zone file, an archived ciphertext, a token key."""

    __tablename__ = "purge_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("purges.contract_id"), index=True)
    location: Mapped[str] = mapped_column(String(80))  # zone key, or state:archive / state:quarantine …
    name: Mapped[str] = mapped_column(FileName)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="planned")  # planned|deleted|absent
    deleted_at: Mapped[dt.datetime | None]


class ZoneStatusRow(Base):
    """What the daemon last saw of each zone, for `gateway status`."""

    __tablename__ = "zone_status"
    zone: Mapped[str] = mapped_column(String(80), primary_key=True)
    description: Mapped[str] = mapped_column(String(255))
    last_scan_at: Mapped[dt.datetime | None]
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RefusedFileRow(Base):
    """An entry in a zone the gateway will not read (a symlink, a FIFO, a file it may not
    open): audited once as ``file.refused`` and listed by `gateway status` until it goes."""

    __tablename__ = "refused_files"
    zone: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(FileName, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeaseRow(Base):
    """A work item one node is doing: a pending delivery (``delivery:<id>``), a receipt to
    send (``receipt:<id>``), a purge (``purge:<contract>``). Input files keep theirs in
    ``files``. A lease past ``until`` is free for another node to take over."""

    __tablename__ = "leases"
    item: Mapped[str] = mapped_column(String(160), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    until: Mapped[dt.datetime]
    taken_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeaseLost(GatewayError):
    """Another node took over a file this node was processing (its lease ran out — this node
    could not renew it in time): this node's result is dropped, theirs counts."""

    code = "E_LEASE_LOST"


class CommitConflict(LedgerError):
    """Another node committed, meanwhile, something this commit contradicts — the same
    case id in a batch, the same batch id, an attempt count, a delivery's name. Nothing
    of this commit was kept; processing the file again sees the other node's work."""

    code = "E_COMMIT_CONFLICT"


class ClaimOutcome(StrEnum):
    NEW = "new"  # this caller owns the file now
    DUPLICATE = "duplicate"  # the same content was already finished
    BUSY = "busy"  # another worker holds a live lease on it
    RESUMED = "resumed"  # a previous attempt died (lease expired); this caller takes over


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    file_id: int
    status: str


class Ledger:
    """The few queries the flows need, each in its own short transaction."""

    def __init__(self, url: str, *, owner: str | None = None, upgrade: bool = True) -> None:
        """*upgrade*: bring the schema to this gateway's head (the daemon, the CLI); the
        console, whose database role may not change the schema, only checks it is there."""
        self.url = url
        self.owner = owner  # this node, when it processes files: commits check its lease
        try:
            if url.startswith("sqlite:///") and upgrade:
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = migrate.make_engine(url)
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
            self._qmark = self.engine.dialect.paramstyle == "qmark"  # SQLite's; psycopg: %s
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot open the ledger database {self.where}: {_reason(exc)}") \
                from exc
        except OSError as exc:
            raise GatewayError(f"cannot open the ledger database: {exc.strerror}: "
                               f"{exc.filename}") from exc

    @contextmanager
    def session(self, *, write: bool = True, staging: bool = False) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception.

        A database that cannot be written (a full disk, a lost server) is one readable
        :class:`LedgerError`; nothing of the transaction was committed. On SQLite a
        transaction that will write takes the write lock when it begins (``BEGIN
        IMMEDIATE``), waiting for it: one that read first and then wrote would fail at once
        ("database is locked") whenever another writer — the lease-renewal thread, a CLI
        command — committed in between. Read-only ones (``write=False``) stay deferred and
        never wait for a writer (WAL).

        ``staging=True``: what the transaction writes is a file's staged work, which a
        crash may lose (resuming the file clears it and stages it again), so its commit
        does not wait for the disk (see ``migrate._sqlite_begin``)."""
        s = self._sessions()
        try:
            with s.begin():
                conn = s.connection(execution_options={migrate.SQLITE_WRITE: write,
                                                       migrate.STAGING: staging})
                if staging and conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield s
        except OperationalError as exc:
            raise LedgerError(f"ledger {self.where}: {_reason(exc)}") from exc
        finally:
            s.close()

    @property
    def where(self) -> str:
        return migrate.describe(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # -- files -------------------------------------------------------------------
    def claim_file(self, *, sha256: str, kind: str, zone: str, name: str, size: int,
                   owner: str, lease_seconds: int = 600, agency_code: str | None = None) -> Claim:
        """Take a file content for processing, exactly once across workers and restarts."""
        try:
            with self.session() as s:
                until = self.clock(s) + dt.timedelta(seconds=lease_seconds)
                row = FileRow(sha256=sha256, kind=kind, zone=zone, name=name, size=size,
                              agency_code=agency_code, lease_owner=owner, lease_until=until,
                              received_at=utcnow())
                s.add(row)
                s.flush()
                return Claim(ClaimOutcome.NEW, row.id, row.status)
        except IntegrityError:
            pass
        with self.session() as s:
            now = self.clock(s)
            until = now + dt.timedelta(seconds=lease_seconds)
            row = s.execute(select(FileRow).where(FileRow.sha256 == sha256)
                            .with_for_update()).scalar_one()
            if row.status != FileStatus.CLAIMED.value:
                return Claim(ClaimOutcome.DUPLICATE, row.id, row.status)
            lease_until = _aware(row.lease_until)
            if row.lease_owner not in (None, owner) and lease_until and lease_until > now:
                return Claim(ClaimOutcome.BUSY, row.id, row.status)
            row.lease_owner, row.lease_until = owner, until
            return Claim(ClaimOutcome.RESUMED, row.id, row.status)

    def take_file(self, file_id: int, owner: str, lease_seconds: int) -> bool:
        """Take over a claimed file whose worker died (our own, or a lease that ran out) —
        atomically, so of two nodes resuming it at once only one gets it."""
        with self.session() as s:
            now = self.clock(s)
            taken = s.execute(update(FileRow).where(
                FileRow.id == file_id, FileRow.status == FileStatus.CLAIMED.value,
                or_(FileRow.lease_owner.is_(None), FileRow.lease_owner == owner,
                    FileRow.lease_until <= now))
                .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False))
            return taken.rowcount == 1

    def file_lease_held(self, file_id: int, owner: str) -> bool:
        with self.session(write=False) as s:
            row = s.get_one(FileRow, file_id)
            return row.status == FileStatus.CLAIMED.value and row.lease_owner == owner

    # -- leases on other work ------------------------------------------------------
    def take_lease(self, item: str, owner: str, lease_seconds: int) -> bool:
        """Claim *item* for *owner*: free, already ours, or its holder's lease ran out.
        The conditional UPDATE is the atomic claim (on PostgreSQL a concurrent claimer
        waits for the row and re-checks the condition; SQLite has one writer)."""
        try:
            with self.session() as s:
                now = self.clock(s)
                until = now + dt.timedelta(seconds=lease_seconds)
                s.add(LeaseRow(item=item, owner=owner, until=until, taken_at=now))
                s.flush()
                return True
        except IntegrityError:
            pass
        with self.session() as s:
            now = self.clock(s)
            until = now + dt.timedelta(seconds=lease_seconds)
            taken = s.execute(update(LeaseRow).where(
                LeaseRow.item == item, or_(LeaseRow.owner == owner, LeaseRow.until <= now))
                .values(owner=owner, until=until, taken_at=now)
                .execution_options(synchronize_session=False))
            return taken.rowcount == 1

    def release_lease(self, item: str, owner: str) -> None:
        with self.session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.item == item, LeaseRow.owner == owner))

    def renew_leases(self, owner: str, items: Collection[str], file_ids: Collection[int],
                     lease_seconds: int) -> set[str]:
        """Extend this node's leases; returns the items (``file:<id>`` for files) it no
        longer holds — another node took them over."""
        with self.session() as s:
            until = self.clock(s) + dt.timedelta(seconds=lease_seconds)
            held: set[str] = set()
            if items:
                s.execute(update(LeaseRow).where(LeaseRow.owner == owner,
                                                 LeaseRow.item.in_(list(items)))
                          .values(until=until).execution_options(synchronize_session=False))
                held |= set(s.scalars(select(LeaseRow.item).where(
                    LeaseRow.owner == owner, LeaseRow.item.in_(list(items)))))
            if file_ids:
                s.execute(update(FileRow).where(
                    FileRow.lease_owner == owner, FileRow.id.in_(list(file_ids)),
                    FileRow.status == FileStatus.CLAIMED.value)
                    .values(lease_until=until).execution_options(synchronize_session=False))
                held |= {f"file:{i}" for i in s.scalars(select(FileRow.id).where(
                    FileRow.id.in_(list(file_ids)),  # ours, or finished (by us: committed)
                    or_(FileRow.lease_owner == owner,
                        FileRow.status != FileStatus.CLAIMED.value)))}
        return ({*items, *(f"file:{i}" for i in file_ids)}) - held

    def clock(self, s: Session) -> dt.datetime:
        """The time leases are measured by. On PostgreSQL, the server's: every node then
        reads one clock, and a host whose clock is ahead cannot take a live node's work
        (nor one behind keep a dead node's). SQLite serves one host: its clock."""
        if self.engine.dialect.name == "postgresql":
            return _aware(s.scalar(select(func.statement_timestamp()))) or utcnow()
        return utcnow()

    def finish_file(self, file_id: int, status: FileStatus, **fields: Any) -> None:
        with self.session() as s:
            self._finish(s, file_id, status, **fields)

    def files(self, *, kind: str | None = None, limit: int = 100) -> list[FileRow]:
        with self.session(write=False) as s:
            q = select(FileRow).order_by(FileRow.id.desc()).limit(limit)
            if kind:
                q = q.where(FileRow.kind == kind)
            return list(s.scalars(q))

    def batch(self, batch_id: str) -> BatchRow | None:
        with self.session(write=False) as s:
            return s.get(BatchRow, batch_id)

    def live_case_count(self, agency_code: str) -> int:
        with self.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(CaseRow).where(
                CaseRow.agency_code == agency_code, CaseRow.purged_at.is_(None))) or 0


    # -- batch flow ---------------------------------------------------------------
    def clear_staged(self, file_id: int) -> None:
        """Forget what an interrupted attempt staged for *file_id*."""
        with self.session() as s:
            s.execute(delete(StagedCaseRow).where(StagedCaseRow.file_id == file_id))
            s.execute(delete(StagedAttemptRow).where(StagedAttemptRow.file_id == file_id))

    # A batch's chunk goes to the database as one JSON array, ``[["case id", row,
    # "agency"], …]``, unpacked there by one statement (json_each, json_array_elements).
    # Row by row (executemany), each insert let go of the GIL and then waited to take it
    # back from the threads reading and sealing: ~20,000 more context switches per
    # 300,000 cases (and, beside a thread busy in Python, one row per hand-over: 24 s
    # and more for what takes 0.7 s alone, in a micro-benchmark).

    def stage_chunk(self, file_id: int, cases: str) -> tuple[set[str], set[str]]:
        """Of the case ids in *cases* (the JSON array above): those already staged for
        this file, and those live in another batch."""
        if self._qmark:
            staged_q, live_q = (_STAGED_JSON, (cases, file_id)), (_LIVE_JSON, (cases,))
        else:
            staged_q, live_q = (_STAGED_JSON_PG, (cases, file_id)), (_LIVE_JSON_PG, (cases,))
        with self.session(write=False) as s:
            conn = s.connection()
            return ({r[0] for r in _fetch(conn, *staged_q)},
                    {r[0] for r in _fetch(conn, *live_q)})

    def stage_cases(self, file_id: int, cases: str, contracts: Mapping[str, str]) -> None:
        """Stage the accepted rows in *cases* (the JSON array above) for a file in
        progress, each with its agency's contract from *contracts*."""
        arms = [x for pair in sorted(contracts.items()) for x in pair]
        sql = _stage_json(len(contracts), qmark=self._qmark)
        with self.session(staging=True) as s:
            s.connection().exec_driver_sql(sql, (file_id, *arms, cases))

    def commit_batch(self, *, file_id: int, batch: BatchRow, deliveries: list[DeliveryRow],
                     receipt: ReceiptRow, status: FileStatus, signer: str) -> None:
        """One transaction: the batch, its cases, pending deliveries and receipt, the file's end."""
        with self._conflicts(), self.session() as s:
            s.add(batch)
            s.flush()  # the batch id is unique: a concurrent twin fails here
            s.execute(insert(CaseRow).from_select(
                ["case_id", "batch_id", "agency_code", "contract_id", "assigned_at"],
                select(StagedCaseRow.case_id, literal(batch.batch_id), StagedCaseRow.agency_code,
                       StagedCaseRow.contract_id, literal(utcnow()))
                .where(StagedCaseRow.file_id == file_id)))
            s.execute(delete(StagedCaseRow).where(StagedCaseRow.file_id == file_id))
            s.add_all([*deliveries, receipt])
            self._finish(s, file_id, status, batch_id=batch.batch_id, signer=signer,
                         records=batch.records, accepted=batch.accepted, rejected=batch.rejected)

    def reject_file(self, *, file_id: int, receipt: ReceiptRow, **fields: Any) -> None:
        with self.session() as s:
            s.execute(delete(StagedCaseRow).where(StagedCaseRow.file_id == file_id))
            s.execute(delete(StagedAttemptRow).where(StagedAttemptRow.file_id == file_id))
            s.add(receipt)
            self._finish(s, file_id, FileStatus.REJECTED, **fields)

    def add_receipt(self, receipt: ReceiptRow) -> None:
        with self.session() as s:
            s.add(receipt)

    @staticmethod
    @contextmanager
    def _conflicts() -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise CommitConflict(f"another node committed first: {_reason(exc)}") from exc

    def _finish(self, s: Session, file_id: int, status: FileStatus, **fields: Any) -> None:
        """End a claimed file — only while this node still holds it (the row is locked, so
        a node taking it over waits, then finds it finished). A node that lost its lease
        commits nothing: the one that took over does."""
        row = s.get_one(FileRow, file_id, with_for_update=True)
        if self.owner is not None and (row.status != FileStatus.CLAIMED.value
                                       or row.lease_owner != self.owner):
            raise LeaseLost(f"file {file_id} was taken over by {row.lease_owner or 'another node'}")
        row.status = status.value
        row.finished_at = utcnow()
        row.lease_owner = row.lease_until = None
        for k, v in fields.items():
            setattr(row, k, v)

    def file(self, file_id: int) -> FileRow:
        with self.session(write=False) as s:
            return s.get_one(FileRow, file_id)

    def resumable(self, owner: str, kind: str, zone: str) -> list[FileRow]:
        """Claimed files whose worker died: ours (this node, restarted), or anyone's with an
        expired lease. Candidates only: :meth:`take_file` decides who gets each."""
        with self.session(write=False) as s:
            now = self.clock(s)
            rows = s.scalars(select(FileRow).where(FileRow.status == FileStatus.CLAIMED.value,
                                                   FileRow.kind == kind, FileRow.zone == zone)
                             .order_by(FileRow.id))
            return [r for r in rows if r.lease_owner in (None, owner)
                    or (_aware(r.lease_until) or now) <= now]

    def next_expiry(self, owner: str, kind: str, zone: str) -> dt.datetime | None:
        """When the first live lease another node holds on a file of this channel runs out
        (if that node is dead, this node takes the file over then)."""
        with self.session(write=False) as s:
            return _aware(s.scalar(select(func.min(FileRow.lease_until)).where(
                FileRow.status == FileStatus.CLAIMED.value, FileRow.kind == kind,
                FileRow.zone == zone, FileRow.lease_owner != owner,
                FileRow.lease_until > self.clock(s))))

    def leases_held(self, owner: str) -> int:
        """Work items this node has claimed and is (or was, before a crash) working on."""
        with self.session(write=False) as s:
            files = s.scalar(select(func.count()).select_from(FileRow).where(
                FileRow.status == FileStatus.CLAIMED.value, FileRow.lease_owner == owner)) or 0
            other = s.scalar(select(func.count()).select_from(LeaseRow).where(
                LeaseRow.owner == owner, LeaseRow.until > self.clock(s))) or 0
            return files + other

    def work_in_hand(self) -> list[tuple[str, str, dt.datetime, bool]]:
        """(item, node, lease until, lease ran out) for every claimed work item — what
        `gateway status` shows of the nodes sharing this ledger."""
        with self.session(write=False) as s:
            now = self.clock(s)
            files = [(f"file:{r.id} ({display_name(r.name)})", r.lease_owner or "?",
                      _aware(r.lease_until) or now)
                     for r in s.scalars(select(FileRow).where(
                         FileRow.status == FileStatus.CLAIMED.value).order_by(FileRow.id))]
            other = [(r.item, r.owner, _aware(r.until) or now)
                     for r in s.scalars(select(LeaseRow).order_by(LeaseRow.item))]
        return [(item, node, until, until <= now) for item, node, until in files + other]

    def staging_abandoned(self, file_id: int) -> bool:
        """Whether a staging directory may go: its file is no longer being processed and
        nothing of it waits to be delivered. One transaction, so a commit by another node
        (status and pending deliveries at once) is seen whole or not at all."""
        with self.session(write=False) as s:
            row = s.get(FileRow, file_id)
            if row is None or row.status == FileStatus.CLAIMED.value:
                return row is None
            return not s.scalar(select(func.count()).select_from(DeliveryRow).where(
                DeliveryRow.file_id == file_id, DeliveryRow.delivered_at.is_(None)))

    def pending_deliveries(self) -> list[DeliveryRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(DeliveryRow).where(DeliveryRow.delivered_at.is_(None))
                                  .order_by(DeliveryRow.id)))

    def add_delivery(self, delivery: DeliveryRow) -> None:
        with self.session() as s:
            s.add(delivery)

    def delivery(self, delivery_id: int) -> DeliveryRow:
        with self.session(write=False) as s:
            return s.get_one(DeliveryRow, delivery_id)

    def mark_delivered(self, delivery_id: int) -> bool:
        """True if this call marked it (another node may have delivered it meanwhile)."""
        with self.session() as s:
            return s.execute(update(DeliveryRow).where(
                DeliveryRow.id == delivery_id, DeliveryRow.delivered_at.is_(None))
                .values(delivered_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount == 1

    def receipt(self, receipt_id: int) -> ReceiptRow:
        with self.session(write=False) as s:
            return s.get_one(ReceiptRow, receipt_id)

    def pending_receipts(self) -> list[ReceiptRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(ReceiptRow).where(
                (ReceiptRow.sent_at.is_(None)) | (ReceiptRow.input_removed_at.is_(None)))
                .order_by(ReceiptRow.id)))

    def update_receipt(self, receipt_id: int, **fields: Any) -> None:
        with self.session() as s:
            row = s.get_one(ReceiptRow, receipt_id)
            for k, v in fields.items():
                setattr(row, k, v)

    def open_receipt_for(self, zone: str, name: str, sha256: str) -> ReceiptRow | None:
        """A receipt for this very arrival whose input was not removed yet (crash recovery)."""
        with self.session(write=False) as s:
            return s.scalars(select(ReceiptRow).where(
                ReceiptRow.input_zone == zone, ReceiptRow.input_name == name,
                ReceiptRow.file_sha256 == sha256, ReceiptRow.input_removed_at.is_(None))).first()

    # -- results flow -------------------------------------------------------------
    # The results flow hands the ledger a chunk's keys as JSON arrays too (see
    # :func:`chunks.json_rows`), for the reason given for batches above: each
    # check is one statement whatever the chunk's length, and what comes back is only
    # what the flow must act on — the rare foreign case, the keys counted before.

    def foreign_cases(self, agency_code: str, ids: str) -> set[str]:
        """Of the case ids in *ids* (``[["case id"], …]``), those that are not live cases
        delivered to *agency_code*: another agency's, a purged one's, or no case at all."""
        sql, params = ((_FOREIGN_JSON, (ids, agency_code)) if self._qmark
                       else (_FOREIGN_JSON_PG, (ids, agency_code)))
        with self.session(write=False) as s:
            return {r[0] for r in _fetch(s.connection(), sql, params)}

    def attempt_counts(self, agency_code: str, file_id: int, keys: str) -> dict[int, int]:
        """For the (case_id, day) pairs in *keys* (``[["case id", "day"], …]``): what
        committed files counted plus what this file's earlier chunks staged, by the pair's
        position in *keys*; a pair counted nowhere is left out."""
        out: dict[int, int] = {}
        with self.session(write=False) as s:
            conn = s.connection()
            for table, column, value in (("attempts", "agency_code", agency_code),
                                         ("staged_attempts", "file_id", file_id)):
                sql = (_COUNTS_JSON if self._qmark else _COUNTS_JSON_PG).format(
                    table=table, column=column)
                for i, n in _fetch(conn, sql, (keys, value)):
                    out[i] = out.get(i, 0) + n
        return out

    def stage_attempts(self, file_id: int, added: str) -> None:
        """Add one chunk's counts, ``[["case id", "day", count], …]`` with each pair once,
        to what the file has staged."""
        if added == "[]":
            return
        with self.session(staging=True) as s:
            s.connection().exec_driver_sql(
                _STAGE_ATTEMPTS_JSON if self._qmark else _STAGE_ATTEMPTS_JSON_PG,
                (file_id, added))

    def commit_results(self, *, file_id: int, agency_code: str, delivery: DeliveryRow | None,
                       receipt: ReceiptRow, status: FileStatus, flags: dict[str, int] | None = None,
                       **fields: Any) -> None:
        """One transaction: the forwarded file (pending), the receipt, the staged attempt
        counts added to the agency's — by one upsert driven by the file's staged rows, so
        it costs as much as this file (an UPDATE over every count the agency ever had,
        then an INSERT of the new ones, cost as much as the agency's history)."""
        staged = StagedAttemptRow
        with self._conflicts(), self.session() as s:
            if delivery is not None:
                s.add(delivery)
            s.add(receipt)
            s.add_all([ResultFlagRow(file_id=file_id, flag=f, count=n)
                       for f, n in sorted((flags or {}).items()) if n])
            s.flush()
            s.connection().exec_driver_sql(_ADD_ATTEMPTS if self._qmark else _ADD_ATTEMPTS_PG,
                                           (agency_code, file_id))
            s.execute(delete(staged).where(staged.file_id == file_id))
            self._finish(s, file_id, status, **fields)

    def delivery_name_taken(self, name: str) -> bool:
        with self.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(DeliveryRow)
                            .where(DeliveryRow.name == name)) > 0

    # -- access evidence (SPEC §14) ---------------------------------------------------
    def access_cursor(self, source: str) -> AccessCursorRow | None:
        with self.session(write=False) as s:
            row = s.get(AccessCursorRow, source)
            if row is not None:
                s.expunge(row)
            return row

    def save_access_cursor(self, source: str, inode: int | None, offset: int, state: str) -> None:
        with self.session() as s:
            row = s.get(AccessCursorRow, source, with_for_update=True)
            if row is None:
                s.add(AccessCursorRow(source=source, inode=inode, offset=offset, state=state))
            else:
                row.inode, row.offset, row.state, row.updated_at = inode, offset, state, utcnow()

    def delivery_named(self, name: str) -> DeliveryRow | None:
        """The delivery the gateway placed under *name* (names are unique)."""
        with self.session(write=False) as s:
            row = s.scalars(select(DeliveryRow).where(DeliveryRow.name == name)).first()
            if row is not None:
                s.expunge(row)
            return row

    # -- console accounts (SPEC §13) ------------------------------------------------
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

    def change_account(self, name: str, **values: Any) -> bool:
        """Set *values* on account *name*; False if there is none."""
        with self.session() as s:
            row = s.get(AccountRow, name, with_for_update=True)
            if row is None:
                return False
            for key, value in values.items():
                setattr(row, key, value)
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

    # -- retention ----------------------------------------------------------------
    def purge(self, contract_id: str) -> PurgeRow | None:
        with self.session(write=False) as s:
            return s.get(PurgeRow, contract_id)

    def purge_objects(self, contract_id: str) -> list[PurgeObjectRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(PurgeObjectRow).where(
                PurgeObjectRow.contract_id == contract_id).order_by(PurgeObjectRow.id)))

    def plan_purge(self, purge: PurgeRow | None, contract_id: str,
                   objects: list[PurgeObjectRow]) -> None:
        """Record the purge (if new) and the objects it will delete, before deleting any."""
        with self.session() as s:
            if purge is not None:
                s.add(purge)
                s.flush()  # the parent row first: objects reference it
            s.add_all(objects)

    def mark_purged_object(self, object_id: int, state: str) -> None:
        with self.session() as s:
            row = s.get_one(PurgeObjectRow, object_id)
            row.state, row.deleted_at = state, utcnow()

    def results_files(self, agency_code: str) -> list[FileRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(FileRow).where(
                FileRow.kind == "results", FileRow.agency_code == agency_code,
                FileRow.purged_at.is_(None))))

    def batch_files_fed(self, agency_code: str) -> list[tuple[FileRow, set[str]]]:
        """Bank files that fed *agency_code*, each with every agency it fed."""
        with self.session(write=False) as s:
            batch_ids = set(s.scalars(select(DeliveryRow.batch_id).where(
                DeliveryRow.agency_code == agency_code, DeliveryRow.batch_id.is_not(None))))
            out = []
            for batch_id in sorted(batch_ids):
                batch = s.get(BatchRow, batch_id)
                if batch is None:
                    continue
                file = s.get_one(FileRow, batch.file_id)
                fed = set(s.scalars(select(DeliveryRow.agency_code).where(
                    DeliveryRow.batch_id == batch_id)))
                out.append((file, fed))
            return out

    def purged_agencies(self) -> set[str]:
        with self.session(write=False) as s:
            return set(s.scalars(select(PurgeRow.agency_code).where(
                PurgeRow.finished_at.is_not(None))))

    def finish_purge(self, *, contract_id: str, agency_code: str, late: bool, certificate: str,
                     delivery: DeliveryRow, purged_file_ids: list[int]) -> int:
        """One transaction: forget the agency's cases, mark what was deleted, queue the certificate."""
        now = utcnow()
        with self.session() as s:
            cases = s.execute(delete(CaseRow).where(CaseRow.agency_code == agency_code)).rowcount
            s.execute(delete(AttemptRow).where(AttemptRow.agency_code == agency_code))
            for d in s.scalars(select(DeliveryRow).where(DeliveryRow.agency_code == agency_code,
                                                         DeliveryRow.kind != "certificate")):
                d.purged_at = d.purged_at or now
            for f in s.scalars(select(FileRow).where(FileRow.id.in_(purged_file_ids))):
                f.purged_at = f.purged_at or now
            row = s.get_one(PurgeRow, contract_id)
            row.finished_at, row.late, row.certificate = now, late, certificate
            row.cases = cases or 0
            s.add(delivery)
            return row.cases

    # -- daemon -------------------------------------------------------------------
    def uncollected(self, zone: str) -> list[DeliveryRow]:
        """Slices and manifests delivered into *zone* and not yet fetched by the agency. Not
        for an agency whose purge has begun: what its purge deleted was not collected."""
        with self.session(write=False) as s:
            return list(s.scalars(select(DeliveryRow).where(
                DeliveryRow.zone == zone, DeliveryRow.kind.in_(("slice", "manifest")),
                DeliveryRow.delivered_at.is_not(None), DeliveryRow.collected_at.is_(None),
                DeliveryRow.purged_at.is_(None),
                DeliveryRow.agency_code.not_in(select(PurgeRow.agency_code)))))

    def mark_collected(self, delivery_id: int) -> bool:
        """True if this call marked it: of two nodes noticing, one audits it."""
        with self.session() as s:
            return s.execute(update(DeliveryRow).where(
                DeliveryRow.id == delivery_id, DeliveryRow.collected_at.is_(None))
                .values(collected_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount == 1

    def save_zone_status(self, zone: str, description: str, **fields: Any) -> None:
        _first_row_race(lambda: self._save_zone_status(zone, description, **fields))

    def _save_zone_status(self, zone: str, description: str, **fields: Any) -> None:
        with self.session() as s:
            row = s.get(ZoneStatusRow, zone)
            if row is None:
                row = ZoneStatusRow(zone=zone, description=description)
                s.add(row)
            row.description, row.updated_at = description, utcnow()
            for k, v in fields.items():
                setattr(row, k, v)

    def note_refused(self, zone: str, name: str, reason: str) -> bool:
        """Remember a refused entry; True the first time (when it is to be audited)."""
        return _first_row_race(lambda: self._note_refused(zone, name, reason))

    def _note_refused(self, zone: str, name: str, reason: str) -> bool:
        with self.session() as s:
            row = s.get(RefusedFileRow, (zone, name))
            if row is not None and row.reason == reason:
                return False
            if row is None:
                s.add(RefusedFileRow(zone=zone, name=name, reason=reason))
            else:
                row.reason = reason
            return True

    def forget_refused(self, zone: str, present: set[str]) -> None:
        """Entries no longer in the zone (someone removed them) are no longer refused."""
        with self.session() as s:
            for row in s.scalars(select(RefusedFileRow).where(RefusedFileRow.zone == zone)):
                if row.name not in present:
                    s.delete(row)

    def refused_files(self) -> list[RefusedFileRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(RefusedFileRow).order_by(RefusedFileRow.zone,
                                                                  RefusedFileRow.first_seen)))

    def zone_statuses(self) -> list[ZoneStatusRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(ZoneStatusRow).order_by(ZoneStatusRow.zone)))

    def batch_detail(self, batch_id: str) -> tuple[BatchRow, FileRow, list[DeliveryRow],
                                                   list[ReceiptRow]] | None:
        with self.session(write=False) as s:
            batch = s.get(BatchRow, batch_id)
            if batch is None:
                return None
            file = s.get_one(FileRow, batch.file_id)
            deliveries = list(s.scalars(select(DeliveryRow).where(DeliveryRow.batch_id == batch_id)
                                        .order_by(DeliveryRow.id)))
            receipts = list(s.scalars(select(ReceiptRow).where(ReceiptRow.file_id == file.id)
                                      .order_by(ReceiptRow.id)))
            return batch, file, deliveries, receipts


def _first_row_race(write: Callable[[], T]) -> T:
    """Run a read-then-insert-or-update *write*; if another node inserted the same row
    between our read and our insert (two daemons starting together), run it again: the
    row is there now and is updated. Without this the second daemon died of the
    unique-key error."""
    try:
        return write()
    except IntegrityError:
        return write()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]


# The chunk's JSON array first (CROSS JOIN keeps SQLite from scanning the table instead).
_STAGED_JSON = ("SELECT s.case_id FROM json_each(?) AS j CROSS JOIN staged_cases AS s "
                "WHERE s.file_id = ? AND s.case_id = json_extract(j.value, '$[0]')")
_LIVE_JSON = ("SELECT c.case_id FROM json_each(?) AS j CROSS JOIN cases AS c "
              "WHERE c.case_id = json_extract(j.value, '$[0]') AND c.purged_at IS NULL")
_STAGED_JSON_PG = ("SELECT s.case_id FROM json_array_elements(%s::json) AS j(v) "
                   "JOIN staged_cases AS s ON s.file_id = %s AND s.case_id = j.v->>0")
_LIVE_JSON_PG = ("SELECT c.case_id FROM json_array_elements(%s::json) AS j(v) "
                 "JOIN cases AS c ON c.case_id = j.v->>0 AND c.purged_at IS NULL")


@functools.cache
def _stage_json(agencies: int, *, qmark: bool) -> str:
    """The insert of a chunk's JSON array; the contract is a CASE over the agency (an
    agency not in it leaves contract_id NULL, which the column refuses)."""
    if qmark:
        p, at = "?", "json_extract(value, '$[{}]')"
        rows = "FROM json_each(?)"
        case_id, row, agency = at.format(0), at.format(1), at.format(2)
    else:
        p = "%s"
        rows = "FROM json_array_elements(%s::json) AS j(v)"
        case_id, row, agency = "j.v->>0", "(j.v->>1)::integer", "j.v->>2"
    arms = " ".join([f"WHEN {p} THEN {p}"] * agencies) or "ELSE NULL"
    return ("INSERT INTO staged_cases (file_id, case_id, row, agency_code, contract_id) "
            f"SELECT {p}, {case_id}, {row}, {agency}, CASE {agency} {arms} END {rows}")


_FOREIGN_JSON = ("SELECT json_extract(j.value, '$[0]') FROM json_each(?) AS j WHERE NOT EXISTS "
                 "(SELECT 1 FROM cases AS c WHERE c.case_id = json_extract(j.value, '$[0]') "
                 "AND c.purged_at IS NULL AND c.agency_code = ?)")
_FOREIGN_JSON_PG = ("SELECT j.v->>0 FROM json_array_elements(%s::json) AS j(v) WHERE NOT EXISTS "
                    "(SELECT 1 FROM cases AS c WHERE c.case_id = j.v->>0 "
                    "AND c.purged_at IS NULL AND c.agency_code = %s)")
# The counts of (case_id, day) pairs by position, joined to a table's key; {table} and
# {column} are ("attempts", "agency_code") or ("staged_attempts", "file_id"), never input.
_COUNTS_JSON = ("SELECT j.key, a.count FROM json_each(?) AS j CROSS JOIN {table} AS a "
                "WHERE a.{column} = ? AND a.case_id = json_extract(j.value, '$[0]') "
                "AND a.day = json_extract(j.value, '$[1]')")
_COUNTS_JSON_PG = ("SELECT j.i - 1, a.count FROM json_array_elements(%s::json) "
                   "WITH ORDINALITY AS j(v, i) JOIN {table} AS a ON a.{column} = %s "
                   "AND a.case_id = j.v->>0 AND a.day = j.v->>1")
_ADD_ATTEMPTS = ("INSERT INTO attempts (agency_code, case_id, day, count) "
                 "SELECT ?, case_id, day, count FROM staged_attempts WHERE file_id = ? "
                 "ON CONFLICT (agency_code, case_id, day) DO UPDATE "
                 "SET count = attempts.count + excluded.count")
_ADD_ATTEMPTS_PG = _ADD_ATTEMPTS.replace("?", "%s")
# "WHERE true": SQLite's parser would otherwise read ON CONFLICT as a join's ON.
_STAGE_ATTEMPTS_JSON = ("INSERT INTO staged_attempts (file_id, case_id, day, count) "
                        "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                        "json_extract(value, '$[2]') FROM json_each(?) WHERE true "
                        "ON CONFLICT (file_id, case_id, day) DO UPDATE "
                        "SET count = staged_attempts.count + excluded.count")
_STAGE_ATTEMPTS_JSON_PG = ("INSERT INTO staged_attempts (file_id, case_id, day, count) "
                           "SELECT %s, j.v->>0, j.v->>1, (j.v->>2)::integer "
                           "FROM json_array_elements(%s::json) AS j(v) "
                           "ON CONFLICT (file_id, case_id, day) DO UPDATE "
                           "SET count = staged_attempts.count + excluded.count")


def _fetch(conn: Connection, sql: str, params: Sequence[Any]) -> Sequence[Any]:
    """All rows of a query at once: iterating a SQLAlchemy result fetches row by row
    (~2 µs a row in Python), and the case-id checks read a million rows a batch."""
    return conn.exec_driver_sql(sql, params).fetchall()  # type: ignore[arg-type]
