"""What is committed but not yet placed in its zone — deliveries and receipts — and whether
each delivered slice was collected."""

from __future__ import annotations

import datetime as dt
from typing import Unpack

from sqlalchemy import func, select, update

from gateway.ledger.core import Core, _assign, _rowcount
from gateway.ledger.schema import (
    INBOX_KINDS,
    DeliveryRow,
    FileRow,
    PurgeRow,
    ReceiptProgress,
    ReceiptRow,
    utcnow,
)


class OutboxStore(Core):
    def pending_deliveries(self) -> list[DeliveryRow]:
        with self.session(write=False) as s:
            # a slice, manifest or notice purged before it was placed (its inbox down until
            # the contract's purge, or a one-off release's expiry) is never placed: the
            # agency's data is gone. What goes to the bank (results, reports) still goes.
            return list(s.scalars(select(DeliveryRow).where(
                DeliveryRow.delivered_at.is_(None),
                DeliveryRow.purged_at.is_(None) | DeliveryRow.kind.not_in(INBOX_KINDS))
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
            return _rowcount(s.execute(update(DeliveryRow).where(
                DeliveryRow.id == delivery_id, DeliveryRow.delivered_at.is_(None))
                .values(delivered_at=utcnow())
                .execution_options(synchronize_session=False))) == 1

    def receipt(self, receipt_id: int) -> ReceiptRow:
        with self.session(write=False) as s:
            return s.get_one(ReceiptRow, receipt_id)

    def pending_receipts(self) -> list[ReceiptRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(ReceiptRow).where(
                (ReceiptRow.sent_at.is_(None)) | (ReceiptRow.input_removed_at.is_(None)))
                .order_by(ReceiptRow.id)))

    def update_receipt(self, receipt_id: int, **progress: Unpack[ReceiptProgress]) -> None:
        with self.session() as s:
            _assign(s.get_one(ReceiptRow, receipt_id), progress, ReceiptProgress)

    def open_receipt_for(self, zone: str, name: str, sha256: str) -> ReceiptRow | None:
        """A receipt for this very arrival whose input was not removed yet (crash recovery)."""
        with self.session(write=False) as s:
            return s.scalars(select(ReceiptRow).where(
                ReceiptRow.input_zone == zone, ReceiptRow.input_name == name,
                ReceiptRow.file_sha256 == sha256, ReceiptRow.input_removed_at.is_(None))).first()

    def exchanged(self, start: dt.datetime, end: dt.datetime) -> set[str]:
        """The agencies the gateway delivered to (a report aside) or received from in
        [start, end): an agency's monthly report is made only then. Two statements for
        every agency, which each pass asks."""
        with self.session(write=False) as s:
            delivered = s.scalars(select(DeliveryRow.agency_code).where(
                DeliveryRow.agency_code.is_not(None), DeliveryRow.kind != "report",
                DeliveryRow.delivered_at >= start, DeliveryRow.delivered_at < end).distinct())
            received = s.scalars(select(FileRow.agency_code).where(
                FileRow.agency_code.is_not(None), FileRow.received_at >= start,
                FileRow.received_at < end).distinct())
            return {a for a in (*delivered, *received) if a is not None}

    def delivery_name_taken(self, name: str) -> bool:
        with self.session(write=False) as s:
            return (s.scalar(select(func.count()).select_from(DeliveryRow)
                             .where(DeliveryRow.name == name)) or 0) > 0

    def delivery_named(self, name: str) -> DeliveryRow | None:
        """The delivery the gateway placed under *name* (names are unique)."""
        with self.session(write=False) as s:
            row = s.scalars(select(DeliveryRow).where(DeliveryRow.name == name)).first()
            if row is not None:
                s.expunge(row)
            return row

    def add_receipt(self, receipt: ReceiptRow) -> None:
        with self.session() as s:
            s.add(receipt)

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
            return _rowcount(s.execute(update(DeliveryRow).where(
                DeliveryRow.id == delivery_id, DeliveryRow.collected_at.is_(None))
                .values(collected_at=utcnow())
                .execution_options(synchronize_session=False))) == 1
