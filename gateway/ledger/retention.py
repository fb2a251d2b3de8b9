"""Purges (docs/formats.md §5.3): what a contract's purge planned, deleted and certified."""

from __future__ import annotations

from sqlalchemy import delete, select

from gateway.ledger.core import Core, _rowcount
from gateway.ledger.schema import (
    AttemptRow,
    BatchRow,
    CaseRow,
    DeliveryRow,
    FileRow,
    FileStatus,
    PurgeObjectRow,
    PurgeRow,
    utcnow,
)

DOCUMENT_KINDS = ("acknowledgement", "attestation")  # see gateway.documents


class RetentionStore(Core):
    def purge(self, contract_id: str) -> PurgeRow | None:
        with self.session(write=False) as s:
            return s.get(PurgeRow, contract_id)

    def purges(self, contract_ids: list[str]) -> dict[str, PurgeRow]:
        """The purges of *contract_ids* there are, by contract: one statement for the
        states of every contract, which each pass asks twice."""
        with self.session(write=False) as s:
            return {row.contract_id: row for row in s.scalars(
                select(PurgeRow).where(PurgeRow.contract_id.in_(contract_ids)))}

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
        """What the agency sent that its purge deletes: every results file and unmask
        request (case ids and a note: the register keeps what was decided), and every
        document the gateway rejected (it may be anything under a document's name). An
        accepted acknowledgement or attestation stays: names and hashes only, it is the
        agency's evidence, cited by the deletion certificate."""
        with self.session(write=False) as s:
            return list(s.scalars(select(FileRow).where(
                FileRow.agency_code == agency_code, FileRow.purged_at.is_(None),
                FileRow.kind.in_(("results", "request")) | (
                    FileRow.kind.in_(DOCUMENT_KINDS)
                    & (FileRow.status == FileStatus.REJECTED.value)))))

    def batch_files_fed(self, agency_code: str) -> list[tuple[FileRow, set[str]]]:
        """Bank files that fed *agency_code*, each with every agency it fed."""
        with self.session(write=False) as s:
            batch_ids = {b for b in s.scalars(select(DeliveryRow.batch_id).where(
                DeliveryRow.agency_code == agency_code, DeliveryRow.batch_id.is_not(None)))
                if b is not None}
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
            self.dialect.lock_agency(s.connection(), agency_code)  # after a results commit
            cases = _rowcount(s.execute(delete(CaseRow).where(CaseRow.agency_code == agency_code)))
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
