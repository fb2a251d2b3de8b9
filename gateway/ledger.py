"""The ledger: what the gateway has seen, decided and delivered — identifiers only.

SQLAlchemy 2 over SQLite (WAL) by default, PostgreSQL for several workers. It
holds SHA-256s, batch and case ids, case -> agency/contract assignments,
deliveries and receipts; never a name, number or address. Exactly-once rests on
one unique row per file *content* (``files.sha256``): claiming inserts it, and a
second arrival of the same bytes finds it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from gateway.errors import GatewayError

SCHEMA_VERSION = 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


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
    name: Mapped[str] = mapped_column(String(255))
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
        Index("ix_cases_agency", "agency_code", "case_id"),
    )


class DeliveryRow(Base):
    """A file the gateway placed in an agency's inbox (slice or manifest)."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    agency_code: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(32))  # None for a manifest
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the ciphertext
    size: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    collected_at: Mapped[dt.datetime | None]
    purged_at: Mapped[dt.datetime | None]


class ReceiptRow(Base):
    """One receipt per arrival — duplicates included, so nothing goes unanswered."""

    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_zone: Mapped[str] = mapped_column(String(80))
    input_name: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


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

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, future=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self._check_version()
        except SQLAlchemyError as exc:
            raise GatewayError(f"cannot open the ledger database: {_reason(exc)}") from exc
        except OSError as exc:
            raise GatewayError(f"cannot open the ledger database: {exc.strerror}: "
                               f"{exc.filename}") from exc

    def _check_version(self) -> None:
        with self.session() as s:
            row = s.get(MetaRow, "schema_version")
            if row is None:
                s.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) > SCHEMA_VERSION:
                raise GatewayError(f"the ledger was written by a newer gateway (schema "
                                   f"{row.value} > {SCHEMA_VERSION}); upgrade this gateway")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        s = self._sessions()
        try:
            with s.begin():
                yield s
        finally:
            s.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- files -------------------------------------------------------------------
    def claim_file(self, *, sha256: str, kind: str, zone: str, name: str, size: int,
                   owner: str, lease_seconds: int = 600, agency_code: str | None = None) -> Claim:
        """Take a file content for processing, exactly once across workers and restarts."""
        now = utcnow()
        until = now + dt.timedelta(seconds=lease_seconds)
        try:
            with self.session() as s:
                row = FileRow(sha256=sha256, kind=kind, zone=zone, name=name, size=size,
                              agency_code=agency_code, lease_owner=owner, lease_until=until,
                              received_at=now)
                s.add(row)
                s.flush()
                return Claim(ClaimOutcome.NEW, row.id, row.status)
        except IntegrityError:
            pass
        with self.session() as s:
            row = s.execute(select(FileRow).where(FileRow.sha256 == sha256)
                            .with_for_update()).scalar_one()
            if row.status != FileStatus.CLAIMED.value:
                return Claim(ClaimOutcome.DUPLICATE, row.id, row.status)
            lease_until = _aware(row.lease_until)
            if row.lease_owner not in (None, owner) and lease_until and lease_until > now:
                return Claim(ClaimOutcome.BUSY, row.id, row.status)
            row.lease_owner, row.lease_until = owner, until
            return Claim(ClaimOutcome.RESUMED, row.id, row.status)

    def finish_file(self, file_id: int, status: FileStatus, **fields: Any) -> None:
        with self.session() as s:
            row = s.get_one(FileRow, file_id)
            row.status = status.value
            row.finished_at = utcnow()
            row.lease_owner = row.lease_until = None
            for k, v in fields.items():
                setattr(row, k, v)

    def files(self, *, kind: str | None = None, limit: int = 100) -> list[FileRow]:
        with self.session() as s:
            q = select(FileRow).order_by(FileRow.id.desc()).limit(limit)
            if kind:
                q = q.where(FileRow.kind == kind)
            return list(s.scalars(q))

    def batch(self, batch_id: str) -> BatchRow | None:
        with self.session() as s:
            return s.get(BatchRow, batch_id)

    def live_case_count(self, agency_code: str) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(CaseRow).where(
                CaseRow.agency_code == agency_code, CaseRow.purged_at.is_(None))) or 0


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives kill -9
    cur.execute("PRAGMA synchronous=FULL")  # a committed claim is on disk before we act on it
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")  # milliseconds
    cur.close()


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
