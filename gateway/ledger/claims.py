"""Claims on files and leases on other work: who processes what, until when (docs/operations.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Unpack

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import keywords
from gateway.ledger.core import Core, _assign, _aware, _rowcount
from gateway.ledger.schema import (
    INBOX_KINDS,
    BatchRow,
    CaseRow,
    Claim,
    ClaimOutcome,
    DeliveryRow,
    FileEnd,
    FileRow,
    FileSeen,
    FileStatus,
    LeaseLost,
    LeaseRow,
    ReceiptRow,
    utcnow,
)
from gateway.names import display_name


class ClaimStore(Core):
    def claim_file(self, *, owner: str, lease_seconds: int = 600,
                   **arrival: Unpack[FileSeen]) -> Claim:
        """Take a file content for processing, exactly once across workers and restarts."""
        keywords.check(arrival, FileSeen)
        sha256 = arrival["sha256"]
        try:
            with self.session() as s:
                until = self.clock(s) + dt.timedelta(seconds=lease_seconds)
                row = FileRow(**arrival, lease_owner=owner, lease_until=until,
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
            return _rowcount(taken) == 1

    def file_lease_held(self, file_id: int, owner: str) -> bool:
        with self.session(write=False) as s:
            row = s.get_one(FileRow, file_id)
            return row.status == FileStatus.CLAIMED.value and row.lease_owner == owner

    def take_lease(self, item: str, owner: str, lease_seconds: int) -> bool:
        """Claim *item* for *owner*: free, already ours, or its holder's lease ran out.
        The conditional UPDATE is the atomic claim (on PostgreSQL a concurrent claimer
        waits for the row and re-checks the condition; SQLite has one writer).

        Its commit does not wait for the disk (``staging=True``): a lease is visible to
        every node once committed, and what is done under it commits after it, synced,
        which carries the lease to the disk too; a lease lost with the machine only means
        another node may take the item again, as it may once the lease runs out. Each
        delivery takes and releases one: two waits for the disk of a 100-case batch's
        five (~20 deliveries)."""
        try:
            with self.session(staging=True) as s:
                now = self.clock(s)
                until = now + dt.timedelta(seconds=lease_seconds)
                s.add(LeaseRow(item=item, owner=owner, until=until, taken_at=now))
                s.flush()
                return True
        except IntegrityError:
            pass
        with self.session(staging=True) as s:
            now = self.clock(s)
            until = now + dt.timedelta(seconds=lease_seconds)
            taken = s.execute(update(LeaseRow).where(
                LeaseRow.item == item, or_(LeaseRow.owner == owner, LeaseRow.until <= now))
                .values(owner=owner, until=until, taken_at=now)
                .execution_options(synchronize_session=False))
            return _rowcount(taken) == 1

    def release_lease(self, item: str, owner: str) -> None:
        with self.session(staging=True) as s:  # lost with the machine: it runs out
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

    def finish_file(self, file_id: int, status: FileStatus, **fields: Unpack[FileEnd]) -> None:
        with self.session() as s:
            self._finish(s, file_id, status, fields)

    def _finish(self, s: Session, file_id: int, status: FileStatus, fields: FileEnd) -> None:
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
        _assign(row, fields, FileEnd)

    def file(self, file_id: int) -> FileRow:
        with self.session(write=False) as s:
            return s.get_one(FileRow, file_id)

    def resumable(self, owner: str, kinds: Collection[str], zone: str) -> list[FileRow]:
        """Claimed files of *kinds* whose worker died: ours (this node, restarted), or
        anyone's with an expired lease. Candidates only: :meth:`take_file` decides who gets
        each."""
        _kinds(kinds)
        with self.session(write=False) as s:
            now = self.clock(s)
            rows = s.scalars(select(FileRow).where(FileRow.status == FileStatus.CLAIMED.value,
                                                   FileRow.kind.in_(kinds), FileRow.zone == zone)
                             .order_by(FileRow.id))
            return [r for r in rows if r.lease_owner in (None, owner)
                    or (_aware(r.lease_until) or now) <= now]

    def next_expiry(self, owner: str, kinds: Collection[str], zone: str) -> dt.datetime | None:
        """When the first live lease another node holds on a file of this channel runs out
        (if that node is dead, this node takes the file over then)."""
        _kinds(kinds)
        with self.session(write=False) as s:
            return _aware(s.scalar(select(func.min(FileRow.lease_until)).where(
                FileRow.status == FileStatus.CLAIMED.value, FileRow.kind.in_(kinds),
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
                DeliveryRow.file_id == file_id, DeliveryRow.delivered_at.is_(None),
                # as the outbox sees it: an inbox delivery purged unplaced waits for nothing
                DeliveryRow.purged_at.is_(None) | DeliveryRow.kind.not_in(INBOX_KINDS)))

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


def _kinds(kinds: Collection[str]) -> None:
    """A plain string is a collection of its characters: ``IN ('c', 'a', …)`` would
    quietly match nothing."""
    if isinstance(kinds, str):
        raise TypeError("kinds must be a collection of kinds, not one string")
