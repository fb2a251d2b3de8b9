"""A file's staged work and its commit, for both flows: the batch flow's case ids and the
results flow's ownership checks and attempt counts, in the dialect's SQL."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, insert, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.ledger.claims import ClaimStore
from gateway.ledger.core import _reason
from gateway.ledger.schema import (
    BatchRow,
    CaseRow,
    CommitConflict,
    DeliveryRow,
    FileStatus,
    ReceiptRow,
    ResultFlagRow,
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
