"""A file's staged work and its commit, for both flows: the batch flow's case ids and the
results flow's ownership checks and attempt counts, in the dialect's SQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Unpack

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.ledger.claims import ClaimStore
from gateway.ledger.core import _reason
from gateway.ledger.schema import (
    BatchRow,
    CaseRow,
    CommitConflict,
    DeliveryRow,
    FileEnd,
    FileStatus,
    PurgeRow,
    ReceiptRow,
    ResultFlagRow,
    ResultsEnd,
    StagedAttemptRow,
    StagedCaseRow,
    utcnow,
)


class CommitStore(ClaimStore):
    """Staging and commits end a claim (:meth:`ClaimStore._finish`): a store over the claims."""

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
        with self.session(write=False) as s:
            conn = s.connection()
            return ({r[0] for r in _fetch(conn, self.dialect.staged_cases, (cases, file_id))},
                    {r[0] for r in _fetch(conn, self.dialect.live_cases, (cases,))})

    def stage_cases(self, file_id: int, cases: str, contracts: Mapping[str, str]) -> None:
        """Stage the accepted rows in *cases* (the JSON array above) for a file in
        progress, each with its agency's contract from *contracts*."""
        arms = [x for pair in sorted(contracts.items()) for x in pair]
        sql = self.dialect.stage_cases(len(contracts))
        with self.session(staging=True) as s:
            s.connection().exec_driver_sql(sql, (file_id, *arms, cases))

    def stage_new_cases(self, file_id: int, cases: str, contracts: Mapping[str, str]) -> int:
        """Stage those rows in *cases* (the JSON array above, without a case id twice)
        whose case id is neither staged by this file already nor live in a batch; returns
        how many were staged. The batch flow's common case, a chunk of new ids, is then one
        statement and one transaction, not two lookups and an insert: a chunk that comes
        back short asks :meth:`staged_rows` which rows were left out."""
        arms = [x for pair in sorted(contracts.items()) for x in pair]
        sql = self.dialect.stage_new_cases(len(contracts))
        with self.session(staging=True) as s:
            result = s.connection().exec_driver_sql(sql, (file_id, *arms, cases))
            return result.rowcount

    def staged_rows(self, file_id: int, cases: str) -> dict[str, int]:
        """Of the case ids in *cases* (the JSON array above), those this file has staged,
        each with the row it was staged from."""
        with self.session(write=False) as s:
            return dict(_fetch(s.connection(), self.dialect.staged_rows, (cases, file_id)))

    def commit_batch(self, *, file_id: int, batch: BatchRow, deliveries: list[DeliveryRow],
                     receipt: ReceiptRow, status: FileStatus, signer: str) -> None:
        """One transaction: the batch, its cases, pending deliveries and receipt, the file's end.
        Its checkpoint (a million cases: 175 MB of SQLite's WAL) runs beside the deliveries
        that follow (``checkpoint_behind``)."""
        with self._conflicts(), self.session(checkpoint_behind=True) as s:
            s.add(batch)
            s.flush()  # the batch id is unique: a concurrent twin fails here
            s.execute(insert(CaseRow).from_select(
                ["case_id", "batch_id", "agency_code", "contract_id", "assigned_at"],
                select(StagedCaseRow.case_id, literal(batch.batch_id), StagedCaseRow.agency_code,
                       StagedCaseRow.contract_id, literal(utcnow()))
                .where(StagedCaseRow.file_id == file_id)))
            self.dialect.drop_staged_cases(s.connection(), file_id)
            s.add_all([*deliveries, receipt])
            self._finish(s, file_id, status, FileEnd(
                batch_id=batch.batch_id, signer=signer, records=batch.records,
                accepted=batch.accepted, rejected=batch.rejected))

    def reject_file(self, *, file_id: int, receipt: ReceiptRow, **fields: Unpack[FileEnd]) -> None:
        with self.session() as s:
            s.execute(delete(StagedCaseRow).where(StagedCaseRow.file_id == file_id))
            s.execute(delete(StagedAttemptRow).where(StagedAttemptRow.file_id == file_id))
            s.add(receipt)
            self._finish(s, file_id, FileStatus.REJECTED, fields)

    @staticmethod
    @contextmanager
    def _conflicts() -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise CommitConflict(f"another node committed first: {_reason(exc)}") from exc

    # The results flow hands the ledger a chunk's keys as JSON arrays too (see
    # :func:`chunks.json_rows`), for the reason given for batches above: each
    # check is one statement whatever the chunk's length, and what comes back is only
    # what the flow must act on — the rare foreign case, the keys counted before.

    def foreign_cases(self, agency_code: str, ids: str) -> set[str]:
        """Of the case ids in *ids* (``[["case id"], …]``), those that are not live cases
        delivered to *agency_code*: another agency's, a purged one's, or no case at all.
        (The results flow asks its in-memory index instead, :meth:`live_case_pages`; this
        is for an agency too large for it.)"""
        with self.session(write=False) as s:
            return {r[0] for r in _fetch(s.connection(), self.dialect.foreign_cases,
                                         (ids, agency_code))}

    def live_case_pages(self, agency_code: str, page: int) -> Iterator[tuple[int, str]]:
        """The live cases delivered to *agency_code*, *page* at a time in the database's
        order of ids: how many, and their ids joined by newlines — one string a page, not a
        Python object per id (the results flow's ownership index reads a million at once).
        Each page is a short statement of its own, not one read held over the agency."""
        after = ""
        while True:
            with self.session(write=False) as s:
                ((count, ids, last),) = _fetch(s.connection(), self.dialect.live_case_page,
                                               (agency_code, after, page))
            if not count:
                return
            yield count, ids
            if count < page:
                return
            after = last

    def finished_purges(self, agency_code: str) -> int:
        """How many of *agency_code*'s contracts were purged: a purge is the only way its
        cases leave the ledger (see :mod:`gateway.validation.ownership`)."""
        with self.session(write=False) as s:
            return self._finished_purges(s, agency_code)

    @staticmethod
    def _finished_purges(s: Session, agency_code: str) -> int:
        return s.scalar(select(func.count()).select_from(PurgeRow).where(
            PurgeRow.agency_code == agency_code, PurgeRow.finished_at.is_not(None))) or 0

    def attempt_counts(self, agency_code: str, file_id: int, keys: str, *,
                       staged: bool = True) -> dict[int, int]:
        """For the (case_id, day) pairs in *keys* (``[["case id", "day"], …]``): what
        committed files counted plus (if *staged*) what this file's earlier chunks staged,
        by the pair's position in *keys*; a pair counted nowhere is left out."""
        out: dict[int, int] = {}
        tables = [("attempts", "agency_code", agency_code),
                  *([("staged_attempts", "file_id", file_id)] if staged else [])]
        with self.session(write=False) as s:
            conn = s.connection()
            for table, column, value in tables:
                sql = self.dialect.counts.format(table=table, column=column)
                for i, n in _fetch(conn, sql, (keys, value)):
                    out[i] = out.get(i, 0) + n
        return out

    def stage_attempts(self, file_id: int, added: str) -> None:
        """Add one chunk's counts, ``[["case id", "day", count], …]`` with each pair once,
        to what the file has staged (the results flow holds them in memory until they pass
        its bound, ``validation/file_counts.py``)."""
        if added == "[]":
            return
        with self.session(staging=True) as s:
            s.connection().exec_driver_sql(self.dialect.stage_attempts, (file_id, added))

    def commit_results(self, *, file_id: int, agency_code: str, delivery: DeliveryRow | None,
                       receipt: ReceiptRow, status: FileStatus, attempts: Iterable[str] = (),
                       purges: int | None = None, **end: Unpack[ResultsEnd]) -> None:
        """One transaction: the forwarded file (pending), the receipt, the flag counts, the
        file's attempt counts added to the agency's — those it staged, and those it held in
        memory, given as JSON arrays in *attempts* (``[["case id", "day", count], …]``, each
        pair once in all) — by upserts driven by the file's own counts, so they cost as
        much as this file (an UPDATE over every count the agency ever had, then an INSERT
        of the new ones, cost as much as the agency's history).

        *purges*: how many of the agency's purges had finished when the file's reading
        began (its ownership index was read then). Checked again here, under the agency's
        lock (:meth:`Dialect.lock_agency`, which a purge takes too): a purge that finished
        since makes this commit give way (:class:`CommitConflict`) and the file is read
        again against the cases that are left."""
        flags = end.pop("flags", None)
        staged = StagedAttemptRow
        with self._conflicts(), self.session() as s:
            self.dialect.lock_agency(s.connection(), agency_code)
            if purges is not None and self._finished_purges(s, agency_code) != purges:
                raise CommitConflict(f"a purge of {agency_code}'s cases finished while its "
                                     "file was read")
            if delivery is not None:
                s.add(delivery)
            s.add(receipt)
            s.add_all([ResultFlagRow(file_id=file_id, flag=f, count=n)
                       for f, n in sorted((flags or {}).items()) if n])
            s.flush()
            conn = s.connection()
            with self.dialect.bulk_upsert(conn):
                conn.exec_driver_sql(self.dialect.add_attempts, (agency_code, file_id))
                for rows in attempts:
                    if rows != "[]":
                        conn.exec_driver_sql(self.dialect.add_attempt_rows, (agency_code, rows))
            s.execute(delete(staged).where(staged.file_id == file_id))
            self._finish(s, file_id, status, end)


def _fetch(conn: Connection, sql: str, params: Sequence[Any]) -> Sequence[Any]:
    """All rows of a query at once: iterating a SQLAlchemy result fetches row by row
    (~2 µs a row in Python), and the case-id checks read a million rows a batch."""
    return conn.exec_driver_sql(sql, params).fetchall()
