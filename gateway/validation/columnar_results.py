"""The result rules of docs/formats.md §4 over a chunk of columns: the fast twin of :mod:`results`.

As with :mod:`columnar` for cases, each rule is an expression that says *this row is
valid*, and only that: a row the expressions do not pass goes to the per-row
:class:`results.ResultValidator`, which states its errors word for word or accepts it
after all (spaces around a value, an offset or a fraction in ``action_at``). The
differential property tests hold the two equal.

The fast path reads ``action_at`` only in the form agencies' systems write,
``YYYY-MM-DDTHH:MM:SS`` in the gateway's zone, and only on days whose UTC offset does
not change: such a wall-clock time *is* the local time the flags need, and its UTC
instant is the wall time minus that day's one offset. A day with a DST change (a
time that happens twice or never) goes to the reference.

Ownership and the ATTEMPTS count need the ledger; :meth:`ColumnarResults.owned` and
:meth:`ColumnarResults.judge` take them as two functions of Arrow arrays, so the flow
passes its own (an index of the agency's cases read once, ``ownership.py``; the ledger's
counts plus the file's, ``file_counts.py``) and the tests a dictionary's. Neither makes
a Python object per row: they answer with the few foreign cases and the keys counted
before.
"""

from __future__ import annotations

import collections
import datetime as dt
import zoneinfo
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway.validation.cases import RowError
from gateway.validation.chunks import Chunk, rows_with, string_bytes
from gateway.validation.columnar import (
    _RULES,
    _bool,
    _empty,
    _matches,
    _real_dates,
    iso_dates_ok,
    text_ok,
)
from gateway.validation.results import (
    ACTION_CODES,
    ATTEMPT_ACTIONS,
    CONTACT_TARGETS,
    RESULT_FIELDS,
    THIRD_PARTY_ALLOWED,
    TIMED_CONTACT,
    Result,
    ResultValidator,
)

_WALL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"
_COLLECTOR = r"^[A-Za-z0-9._-]{1,32}$"
_TEXT_LIMITS = {"outcome": 64, "note": 500, "new_address": 200}
_US = 1_000_000
_DAYS_KEPT = 10_000
_SKEW = dt.timedelta(minutes=5)  # as the reference: a little clock skew is not the future
# The flags in the order the reference lists them.
FLAGS = ("HOURS", "ATTEMPTS", "THIRD_PARTY", "DISPUTE", "FRAUD", "LATE")
NOT_ASSIGNED = "case_id is not a case assigned to this agency"

# Of these case ids (a chunk's, an id may repeat), those that are not the agency's live
# cases. Repeats allowed: the in-memory index looks each up as cheaply as it would have
# been hashed to make the ids distinct first (pc.unique: a fifth of the rules' Arrow time).
Foreign = Callable[[pa.Array], Collection[str]]
# For (case_id, local day) keys given as two arrays: the CALL/SMS rows counted before,
# by the key's position; a key counted nowhere may be left out.
Counted = Callable[[pa.Array, pa.Array], dict[int, int]]


@dataclass
class Checked:
    """A chunk after the rules: accepted rows (field names, stripped values), their row
    numbers, each one's local day (``YYYY-MM-DD``) and time of day (µs), the errors."""

    table: pa.Table
    rows: np.ndarray
    day: pa.Array
    time_us: np.ndarray
    errors: list[RowError]
    not_assigned: int = 0  # rows dropped by :meth:`ColumnarResults.owned`


@dataclass
class Judged:
    """What a chunk adds to the file: rows to forward (the bank's columns: the fields
    present, ``agency_code``, ``flags``), errors in row order, flag counts, how many
    rows were about someone else's case, and the CALL/SMS counts to stage (``case_id``,
    ``day``, ``count``: each key once)."""

    forward: pa.Table
    errors: list[RowError]
    flagged: collections.Counter[str]
    unflagged: int
    not_assigned: int
    attempts: pa.Table


class ColumnarResults:
    def __init__(self, columns: tuple[str, ...], tz: zoneinfo.ZoneInfo, now: dt.datetime, *,
                 agency: str, window: tuple[dt.time, dt.time], contract_end: dt.date,
                 max_attempts: int) -> None:
        self.reference = ResultValidator(columns, tz, now)
        self.columns = columns
        self.present = [c for c in RESULT_FIELDS if c in columns]
        self.tz = tz
        self.latest_us = _epoch_us(now + _SKEW)
        self.agency = agency
        self.window_us = (_time_us(window[0]), _time_us(window[1]))
        self.contract_end = contract_end.isoformat()
        self.max_attempts = max_attempts
        self._midnights: dict[str, int | None] = {}  # local day -> its midnight in UTC µs

    # --- the rules ----------------------------------------------------------------

    def check(self, chunk: Chunk) -> Checked:
        table = chunk.table.rename_columns(list(self.columns))
        cols = {name: whole(table.column(name)) for name in self.columns}
        n = table.num_rows
        ok, day, time_us = self._valid(cols, n)
        doubtful = np.flatnonzero(~ok)
        errors: list[tuple[int, list[RowError]]] = []
        rescued: dict[int, Result] = {}
        if len(doubtful):
            values = [cols[name].take(pa.array(doubtful)).to_pylist() for name in self.columns]
            for i, row_values in zip(doubtful, zip(*values, strict=True), strict=True):
                row = int(chunk.rows[i])
                result, problems = self.reference.validate(row, list(row_values))
                if problems:
                    errors.append((row, problems))
                elif result is not None:
                    rescued[int(i)] = result
        for row, values in chunk.odd:
            errors.append((row, self.reference.validate(row, values)[1]))
        errors.sort(key=lambda e: e[0])
        keep = ok.copy()
        out = {name: cols[name] for name in self.present}
        if rescued:
            index = np.fromiter(rescued, dtype=np.int64, count=len(rescued))
            index.sort()  # replace_with_mask takes its replacements in row order
            keep[index] = True
            mask = np.zeros(n, dtype=bool)
            mask[index] = True
            results = [rescued[int(j)] for j in index]
            for name in self.present:
                out[name] = pc.replace_with_mask(out[name], pa.array(mask), pa.array(
                    [r.values[name] for r in results], pa.string()))
            local = [r.at.astimezone(self.tz) for r in results]
            day = pc.replace_with_mask(day, pa.array(mask), pa.array(
                [t.date().isoformat() for t in local], pa.string()))
            time_us[index] = [_time_us(t.time()) for t in local]
        flat = [e for _, es in errors for e in es]
        if keep.all():  # the usual chunk: nothing to filter out (a copy of every column)
            return Checked(pa.table(out), chunk.rows, day, time_us, flat)
        chosen = pa.array(keep)
        return Checked(pa.table(out).filter(chosen), chunk.rows[keep], day.filter(chosen),
                       time_us[keep], flat)

    def _valid(self, cols: dict[str, pa.Array], n: int) -> tuple[np.ndarray, pa.Array, np.ndarray]:
        """Rows every rule passes, and for them the local day and time of ``action_at``."""
        def value(name: str) -> pa.Array:
            return cols[name] if name in cols else pa.repeat(pa.scalar("", pa.string()), n)

        filled: dict[str, np.ndarray] = {}

        def given(name: str) -> np.ndarray:
            """Rows with a value in *name*: from the column's offsets, once per column (an
            Arrow call or two each, asked up to four times per column per chunk)."""
            if name not in filled:
                filled[name] = ~_empty(cols[name]) if name in cols else np.zeros(n, dtype=bool)
            return filled[name]

        ok = np.ones(n, dtype=bool)
        for name, required in RESULT_FIELDS.items():
            if required:
                ok &= given(name)
        action = value("action_code")
        ok &= _spelled(value("case_id"), _ID_BYTES, 64)  # _RULES["case_id"]
        ok &= _bool(pc.is_in(action, pa.array(sorted(ACTION_CODES))))
        ok &= _bool(pc.is_in(value("contact_target"), pa.array(sorted(CONTACT_TARGETS))))
        ok &= _spelled(value("collector_id"), _ID_BYTES, 32)  # _COLLECTOR
        for name, limit in _TEXT_LIMITS.items():
            if name in cols:
                ok &= text_ok(cols[name], limit) | ~given(name)
        for name, rule in (("new_mobile", _RULES["phone"]), ("amount", _RULES["amount"])):
            if name in cols:
                ok &= _matches(cols[name], rule) | ~given(name)
        if "promise_date" in cols:
            col = cols["promise_date"]
            ok &= iso_dates_ok(col, _matches(col, _RULES["date"])) | ~given("promise_date")
        amount, promised = given("amount"), given("promise_date")
        ok &= ~_bool(pc.equal(action, "PROMISE_TO_PAY")) | (amount & promised)
        ok &= ~_bool(pc.equal(action, "PAYMENT_REPORTED")) | amount
        ok &= ~_bool(pc.equal(action, "CONTACT_UPDATE")) | given("new_mobile") | given("new_address")
        day, time_us, at_ok = self._action_at(value("action_at"), ok)
        return ok & at_ok, day, time_us

    def _action_at(self, col: pa.Array, candidates: np.ndarray
                   ) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """Wall-clock times on days of one UTC offset, real, not in the future."""
        day = pc.utf8_slice_codeunits(col, 0, 10)
        ok, time_us = wall_times(col, candidates)
        rows = np.flatnonzero(ok)
        if len(rows):
            days = pc.dictionary_encode(day.take(pa.array(rows)))  # one hashing, not two
            known = [self._midnight(d) for d in days.dictionary.to_pylist()]
            midnight = np.array([k or 0 for k in known], dtype=np.int64)
            plain = np.array([k is not None for k in known], dtype=bool)
            which = days.indices.to_numpy(zero_copy_only=False)
            utc = midnight[which] + time_us[rows]
            ok[rows] = plain[which] & (utc <= self.latest_us)
        return day, time_us, ok

    def _midnight(self, day: str) -> int | None:
        """The UTC µs of *day*'s local midnight if its UTC offset holds all day, else None."""
        if day not in self._midnights:
            if len(self._midnights) >= _DAYS_KEPT:  # a hostile file of many days: stay small
                self._midnights.clear()
            self._midnights[day] = None
            date = dt.date.fromisoformat(day)
            if date < dt.date.max:
                start = dt.datetime.combine(date, dt.time(), self.tz)
                offsets = {start.utcoffset(), dt.datetime.combine(date, dt.time(12), self.tz)
                           .utcoffset(), dt.datetime.combine(date + dt.timedelta(days=1),
                                                             dt.time(), self.tz).utcoffset()}
                if len(offsets) == 1:
                    self._midnights[day] = _epoch_us(start)
        return self._midnights[day]

    # --- ownership, attempts, flags ----------------------------------------------

    def owned(self, c: Checked, foreign: Foreign) -> Checked:
        """The checked rows about the agency's own live cases; the others become
        ``E_NOT_ASSIGNED`` errors. *foreign* gives, of the chunk's case ids, those that are
        not the agency's live cases."""
        ids = c.table.column("case_id")
        others = foreign(whole(ids))
        if not others:
            return c
        mine = ~_bool(pc.is_in(ids, pa.array(sorted(others), pa.string())))
        dropped = np.flatnonzero(~mine)
        shown = ids.take(pa.array(dropped)).to_pylist()
        errors = sorted(c.errors + [
            RowError(int(c.rows[i]), cid, "case_id", "E_NOT_ASSIGNED", NOT_ASSIGNED)
            for i, cid in zip(dropped, shown, strict=True)], key=lambda e: e.row)
        chosen = pa.array(mine)
        return Checked(c.table.filter(chosen), c.rows[mine], c.day.filter(chosen),
                       c.time_us[mine], errors, c.not_assigned + len(dropped))

    def judge(self, c: Checked, *, counted: Counted) -> Judged:
        """The flags of the rows :meth:`check` and :meth:`owned` kept (each step may run
        on a thread of its own); *counted* gives, for (case, day) keys, the CALL/SMS rows
        counted before this chunk (other files, earlier chunks)."""
        table = c.table
        action = _which(table.column("action_code"), _ACTIONS)
        target = _which(table.column("contact_target"), _TARGETS)
        tries, attempts = self._attempts(table.column("case_id"), c.day, _COUNTED[action],
                                         counted)
        start, end = self.window_us
        marks = {
            "HOURS": _TIMED[action] & (target <= _DEBTOR)
            & ~((c.time_us >= start) & (c.time_us < end)),
            "ATTEMPTS": tries > self.max_attempts,
            "THIRD_PARTY": (target == _THIRD_PARTY) & ~_ALLOWED[action],
            "DISPUTE": _DISPUTE[action],
            "FRAUD": _FRAUD[action],
            "LATE": _bool(pc.greater(c.day, self.contract_end)),
        }
        any_flag = np.zeros(table.num_rows, dtype=bool)
        flagged: collections.Counter[str] = collections.Counter()
        code = np.zeros(table.num_rows, dtype=np.int64)
        for name, hit in marks.items():
            if count := int(hit.sum()):
                flagged[name] = count
            any_flag |= hit
            code |= hit.astype(np.int64) << FLAGS.index(name)
        text = _FLAG_TEXTS.take(pa.array(code))
        forward = table.append_column("agency_code", pa.repeat(
            pa.scalar(self.agency, pa.string()), table.num_rows)).append_column("flags", text)
        return Judged(forward, c.errors, flagged, int((~any_flag).sum()), c.not_assigned,
                      attempts)

    def _attempts(self, ids: pa.ChunkedArray, day: pa.Array, counts: np.ndarray,
                  counted: Counted) -> tuple[np.ndarray, pa.Table]:
        """Each row's CALL/SMS count for its case and day, itself included (0 for the rows
        *counts* does not mark, other actions), in file order; and the chunk's count per
        (case, day) key."""
        tries = np.zeros(len(counts), dtype=np.int64)
        rows = np.flatnonzero(counts)
        if not len(rows):
            return tries, _NO_ATTEMPTS
        picked = pa.array(rows)
        case, when = whole(ids).take(picked), day.take(picked)
        encoded = pc.dictionary_encode(pc.binary_join_element_wise(case, when, "\x00"))
        which = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(which, kind="stable")  # file order within each key
        grouped = which[order]  # keys are numbered by first appearance: 0, 1, 2, …
        first = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)])) + 1
        shown = pa.array(order[first])  # each key's first row
        case, when = case.take(shown), when.take(shown)
        base = np.zeros(len(first), dtype=np.int64)
        for key, n in counted(case, when).items():
            base[key] = n
        tries[rows[order]] = base[grouped] + rank
        added = np.bincount(which, minlength=len(first))
        return tries, pa.table({"case_id": case, "day": when, "count": pa.array(added)})


def wall_times(col: pa.Array, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the candidate rows, those whose value is ``YYYY-MM-DDTHH:MM:SS`` (:data:`_WALL`)
    on a real calendar day with a real time of day; and for them that time (µs after
    midnight; 0 for rows not candidates). From each row's 19 bytes, gathered a position at
    a time: it was the regex, a gather of the date's digits as int64 and one of the time's
    (the rules' costliest step after the Arrow calls). One position at a time, each index
    and result is a small array; a 2-D gather of all 19 took megabytes of int64 indices
    per chunk, a fresh mapping under the daemon's fixed mmap threshold (``heap.bound``):
    3.8 ms against 2.0 ms per 16,384 rows."""
    offsets, data = string_bytes(col)
    ok = candidates & (np.diff(offsets) == len(_WALL_SHAPE))  # 19 ASCII characters = bytes
    time_us = np.zeros(len(candidates), dtype=np.int64)
    rows = np.flatnonzero(ok)
    if len(rows):
        starts = offsets[rows]
        shaped = np.ones(len(rows), dtype=bool)
        d: dict[int, np.ndarray] = {}  # position -> its digit's value
        for k, want in enumerate(_WALL_SHAPE):
            b = data[starts + k]
            if want == ord("0"):
                shaped &= (b >= 0x30) & (b <= 0x39)
                d[k] = b.astype(np.int32) - 0x30
            else:
                shaped &= b == want
        year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
        hh, mm, ss = d[11] * 10 + d[12], d[14] * 10 + d[15], d[17] * 10 + d[18]
        ok[rows] = (shaped & _real_dates(year, d[5] * 10 + d[6], d[8] * 10 + d[9])
                    & (hh < 24) & (mm < 60) & (ss < 60))
        time_us[rows] = (hh * 3600 + mm * 60 + ss).astype(np.int64) * _US
    return ok, time_us


_WALL_SHAPE = b"0000-00-00T00:00:00"  # what _WALL matches: 0 a digit, the rest themselves


def whole(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """*col* as one array. A table's column of one chunk (what the reader makes) is that
    chunk, not a copy: ``combine_chunks`` copies even then, and a chunk's columns were
    copied at each step — its buffers fresh allocations past the mmap threshold, faulted
    in page by page."""
    if isinstance(col, pa.Array):
        return col
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _spelled(col: pa.Array, allowed: np.ndarray, longest: int) -> np.ndarray:
    """Rows whose value is 1..*longest* bytes, each one that *allowed* (256 booleans, ASCII
    only) marks: the regex ``^[class]{1,longest}$`` (RE2: ``$`` is the end of the text),
    from the column's offsets and one pass over its bytes at ``bytes.translate`` speed —
    two of the rules' six regexes, the two asked of every row."""
    offsets, _ = string_bytes(col)
    lengths = np.diff(offsets)
    ok = (lengths >= 1) & (lengths <= longest)
    bad = rows_with(col, ~allowed)
    return ok if bad is None else ok & ~bad


_ID_BYTES = np.zeros(256, dtype=bool)  # [A-Za-z0-9._-]: case ids and collector ids
_ID_BYTES[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")] = True


def _which(col: pa.Array | pa.ChunkedArray, names: list[str]) -> np.ndarray:
    """Each value's position in *names*, ``len(names)`` for a value not among them: one
    Arrow call, after which each flag's test of the action or the target is a NumPy
    lookup (they were nine Arrow calls per chunk: ``is_in`` and ``equal`` each)."""
    at = pc.index_in(whole(col), value_set=pa.array(names, pa.string()))
    if at.null_count:
        at = pc.fill_null(at, len(names))
    return np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64)


def _member(names: list[str], chosen: Collection[str]) -> np.ndarray:
    """For each position :func:`_which` gives, whether its name is in *chosen*."""
    return np.array([n in chosen for n in names] + [False], dtype=bool)


_ACTIONS = sorted(ACTION_CODES)
_TIMED = _member(_ACTIONS, TIMED_CONTACT)
_COUNTED = _member(_ACTIONS, ATTEMPT_ACTIONS)
_ALLOWED = _member(_ACTIONS, THIRD_PARTY_ALLOWED)
_DISPUTE = _member(_ACTIONS, {"DISPUTE"})
_FRAUD = _member(_ACTIONS, {"FRAUD_SUSPECTED"})
_TARGETS = ["contact", "debtor", "third_party"]  # the first two are reached in person
_DEBTOR, _THIRD_PARTY = 1, 2
# Each set of flags, by its bits (flag i of FLAGS: bit i), as the reference writes it:
# the names in FLAGS' order joined by ";". One take per chunk instead of an if_else per
# flag, a join and a trim.
_FLAG_TEXTS = pa.array([";".join(f for i, f in enumerate(FLAGS) if bits >> i & 1)
                        for bits in range(1 << len(FLAGS))], pa.string())

_NO_ATTEMPTS = pa.table({"case_id": pa.array([], pa.string()), "day": pa.array([], pa.string()),
                        "count": pa.array([], pa.int64())})


def _time_us(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US + t.microsecond


def _epoch_us(at: dt.datetime) -> int:
    return (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
