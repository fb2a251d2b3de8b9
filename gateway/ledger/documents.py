"""The agency's signed documents (docs/formats.md §7): which deliveries an agency
acknowledged, and its attestation that a contract's files were destroyed.

What makes a document *true* is answered here from the deliveries: every file it lists
must be one the gateway delivered to that agency, by name and ciphertext hash."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import func, select, update

from gateway.ledger.commits import CommitStore
from gateway.ledger.schema import (
    UNMASK_BATCH_PREFIX,
    AgencyDocumentRow,
    DeliveryRow,
    FileEnd,
    FileRow,
    FileStatus,
    ReceiptRow,
)

HELD_KINDS = ("slice", "manifest")  # what an agency receives and acknowledges


class DocumentStore(CommitStore):
    def delivered_to(self, agency_code: str, hashes: Collection[str]) -> dict[str, DeliveryRow]:
        """Of the ciphertext hashes in *hashes*, those of slices and manifests delivered to
        *agency_code*, each with its delivery (a hash delivered to anybody else is absent)."""
        out: dict[str, DeliveryRow] = {}
        wanted = sorted(set(hashes))
        with self.session(write=False) as s:
            for start in range(0, len(wanted), 500):  # bound the IN list
                for d in s.scalars(select(DeliveryRow).where(
                        DeliveryRow.agency_code == agency_code,
                        DeliveryRow.kind.in_(HELD_KINDS),
                        DeliveryRow.delivered_at.is_not(None),
                        DeliveryRow.sha256.in_(wanted[start:start + 500]))):
                    s.expunge(d)
                    out[d.sha256] = d
        return out

    def held_count(self, agency_code: str) -> int:
        """Slices and manifests ever delivered to *agency_code* — but not a one-off release
        the gateway deleted at its expiry before the agency took it: the agency never held
        it, and its attestation cannot list it."""
        with self.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(DeliveryRow).where(
                DeliveryRow.agency_code == agency_code, DeliveryRow.kind.in_(HELD_KINDS),
                DeliveryRow.delivered_at.is_not(None),
                ~(DeliveryRow.batch_id.startswith(UNMASK_BATCH_PREFIX)
                  & DeliveryRow.purged_at.is_not(None) & DeliveryRow.collected_at.is_(None)))
            ) or 0

    def document_seen(self, doc_id: str) -> AgencyDocumentRow | None:
        with self.session(write=False) as s:
            return s.scalar(select(AgencyDocumentRow).where(AgencyDocumentRow.doc_id == doc_id))

    def commit_document(self, *, file_id: int, document: AgencyDocumentRow,
                        acknowledged: Sequence[int], receipt: ReceiptRow, end: FileEnd,
                        delivery: DeliveryRow | None = None) -> None:
        """One transaction: the document, the deliveries it acknowledges, the receipt and
        the file's end. A document id another node accepted first is a
        :class:`CommitConflict` (then checked again: a replay)."""
        with self._conflicts(), self.session() as s:
            s.add(document)
            if acknowledged:
                s.execute(update(DeliveryRow).where(
                    DeliveryRow.id.in_(acknowledged), DeliveryRow.acknowledged_at.is_(None))
                    .values(acknowledged_at=document.accepted_at)
                    .execution_options(synchronize_session=False))
            s.add(receipt)
            if delivery is not None:  # a notice to the bank (a late attestation)
                s.add(delivery)
            s.flush()
            self._finish(s, file_id, FileStatus.ACCEPTED, end)

    def attestations(self, agency_code: str | None = None) -> list[tuple[AgencyDocumentRow, FileRow]]:
        """Accepted deletion attestations (newest first), each with the file it came in."""
        with self.session(write=False) as s:
            q = (select(AgencyDocumentRow, FileRow)
                 .join(FileRow, FileRow.id == AgencyDocumentRow.file_id)
                 .where(AgencyDocumentRow.kind == "attestation"))
            if agency_code is not None:
                q = q.where(AgencyDocumentRow.agency_code == agency_code)
            rows = [(d, f) for d, f in s.execute(q.order_by(AgencyDocumentRow.id.desc()))]
            for d, f in rows:
                s.expunge(d)
                s.expunge(f)
            return rows

    def attestation(self, agency_code: str, contract_id: str
                    ) -> tuple[AgencyDocumentRow, FileRow] | None:
        """The contract's latest accepted attestation, with its file, or None."""
        for d, f in self.attestations(agency_code):
            if d.contract_id == contract_id:
                return d, f
        return None

    def unacknowledged(self, agency_code: str, before: dt.datetime) -> list[DeliveryRow]:
        """Slices and manifests delivered to *agency_code* before *before*, never
        acknowledged and not purged."""
        with self.session(write=False) as s:
            rows = list(s.scalars(select(DeliveryRow).where(
                DeliveryRow.agency_code == agency_code, DeliveryRow.kind.in_(HELD_KINDS),
                DeliveryRow.delivered_at.is_not(None), DeliveryRow.delivered_at < before,
                DeliveryRow.acknowledged_at.is_(None), DeliveryRow.purged_at.is_(None))
                .order_by(DeliveryRow.delivered_at)))
            for r in rows:
                s.expunge(r)
            return rows
