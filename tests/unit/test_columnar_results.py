"""The columnar results engine against its per-row reference (docs/formats.md §4).

For generated result files — the synthesiser's rows with values swapped for odd ones,
about cases the agency holds and cases it does not, in a zone without DST and in one
with it — the chunk engine must give what the row-by-row reading gives: the same
errors in row order (``E_NOT_ASSIGNED`` included), the same forwarded CSV bytes (the
stripped values, neutralised free text, ``agency_code``, the flags), the same flag
counts, and the same CALL/SMS counts however the file is cut into chunks.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import zoneinfo

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import synth
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.validation import chunks, csvio
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import NOT_ASSIGNED, ColumnarResults
from gateway.validation.results import (
    ATTEMPT_ACTIONS,
    FREE_TEXT_RESULT_FIELDS,
    RESULT_FIELDS,
    ResultValidator,
    flags,
)
from tests.unit.test_columnar import chunk_of

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = {"Asia/Shanghai": dt.datetime(2026, 11, 22, 12, 0),
         "Europe/Berlin": dt.datetime(2026, 10, 26, 12, 0)}  # the day after a DST change
OWNED = [f"C{i}" for i in range(6)]
CASES = [*OWNED, "X1", "X2"]  # X*: someone else's
VALID = [r for zone, now in ZONES.items()
         for r in synth.results(CASES, 60, seed=5, today=now.date())]
HOT = ["2026-11-18T10:00:00", "2026-11-18T22:00:00", "2026-10-25T10:00:00",
       "2026-10-24T09:00:00"]
ODD = ["", " ", "\u3000", "x ", " CALL", "CALL ", "call", "SMS", "CALL", "VISIT", "DISPUTE",
       "FRAUD_SUSPECTED", "CONTACT_UPDATE", "PROMISE_TO_PAY", "PAYMENT_REPORTED", "UNREACHABLE",
       "debtor", "contact", "third_party", "none", "Debtor", "=1+1", "-3", "@a", "+1", "\t",
       '"', ",", "a,b", 'q"q', "张\u200b三", "\x85", "١٢٣", "0", "1.5", "1.505", "12345678901234567",
       "13812345678", "+8613812345678", "+4420123456", "12812345678", "2026-02-29", "2028-02-29",
       "2026-13-01", "2026-11-20", "2026-11-20T10:00:00", "2026-11-20T07:59:59",
       "2026-11-20T21:00:00", "2026-11-20T20:59:59", "2026-11-20 10:00", "2026-11-20T10:00",
       "2026-11-20T10:00:00Z", "2026-11-20T10:00:00+08:00", "2026-11-20T10:00:00-0500",
       "2026-11-20T10:00:00.5", "2026-11-20T24:00:00", "2026-11-20T23:60:00", "2026-02-30T10:00:00",
       "0000-01-01T00:00:00", "9999-12-31T23:59:59", "2026-11-22T12:04:59", "2026-11-22T12:05:01",
       "2026-11-22T12:05:00", "2026-10-26T12:05:00", "2026-10-26T12:05:01",
       "2026-10-25T02:30:00", "2026-10-25T01:59:59", "2026-03-29T02:30:00", "2026-03-29T08:30:00",
       "2026-12-01T10:00:00", "col-1", "c" * 32, "c" * 33, "x" * 64, "x" * 65, "张" * 500,
       "张" * 501, "C1", "C2", "X1", "c1", "C 1"]


@st.composite
def files(draw):
    """(zone, rows of strings, chunk sizes) — some rows of the wrong width."""
    n = draw(st.integers(1, 24))
    out = []
    for _ in range(n):
        rec = dict(draw(st.sampled_from(VALID)))
        if draw(st.booleans()):  # the same few cases and days: ATTEMPTS gets its chance
            rec["case_id"] = draw(st.sampled_from(["C1", "C2", "X1"]))
            rec["action_at"] = draw(st.sampled_from(HOT))
            rec["action_code"] = draw(st.sampled_from(["CALL", "SMS", "CALL", "VISIT", "DISPUTE"]))
        for name in draw(st.lists(st.sampled_from(synth.RESULT_COLUMNS), max_size=3)):
            rec[name] = draw(st.sampled_from(ODD) | st.text(max_size=5))
        values = [rec.get(c, "") for c in synth.RESULT_COLUMNS]
        if draw(st.integers(0, 30)) == 0:
            values = values[:-1]
        out.append(values)
    cuts = sorted(draw(st.lists(st.integers(1, n), max_size=3, unique=True)))
    return draw(st.sampled_from(sorted(ZONES))), out, cuts


def setup(zone: str):
    tz = zoneinfo.ZoneInfo(zone)
    now = ZONES[zone].replace(tzinfo=tz)
    return tz, now, dict(window=(dt.time(8), dt.time(21)), contract_end=dt.date(2026, 11, 19),
                         max_attempts=2)


PRIOR = {("C1", "2026-11-18"): 2, ("C2", "2026-10-25"): 1}  # other files' CALL/SMS counts


def by_rows(zone: str, values: list[list[str]]):
    """What the row-by-row reading gives: errors, forwarded rows, flag counts."""
    tz, now, rules = setup(zone)
    columns = tuple(synth.RESULT_COLUMNS)
    validator = ResultValidator(columns, tz, now)
    present = [c for c in RESULT_FIELDS if c in columns]
    errors, forward, flagged, unflagged = [], [], collections.Counter(), 0
    counts = collections.Counter(PRIOR)
    for row, v in enumerate(values, start=1):
        result, problems = validator.validate(row, v)
        if problems:
            errors += problems
            continue
        assert result is not None
        if result.case_id not in OWNED:
            errors.append(RowError(row, result.case_id, "case_id", "E_NOT_ASSIGNED", NOT_ASSIGNED))
            continue
        tries = 0
        if result.action in ATTEMPT_ACTIONS:
            key = (result.case_id, result.at.astimezone(tz).date().isoformat())
            counts[key] += 1
            tries = counts[key]
        row_flags = flags(result, tz=tz, attempts_today=tries, **rules)
        flagged.update(row_flags)
        unflagged += not row_flags
        forward.append([*(csvio.neutralise(result.values[c]) if c in FREE_TEXT_RESULT_FIELDS
                          else result.values[c] for c in present), "AG001", ";".join(row_flags)])
    return errors, forward, flagged, unflagged


def by_chunks(zone: str, values: list[list[str]], cuts: list[int]):
    tz, now, rules = setup(zone)
    columns = tuple(synth.RESULT_COLUMNS)
    engine = ColumnarResults(columns, tz, now, agency="AG001", **rules)
    staged: collections.Counter = collections.Counter()
    errors, parts, flagged, unflagged = [], [], collections.Counter(), 0
    for start, end in zip([0, *cuts], [*cuts, len(values)], strict=True):
        if start == end:
            continue
        chunk = chunk_of(values[start:end], len(columns), first_row=start + 1)
        owned = engine.owned(engine.check(chunk),
                             foreign=lambda ids: set(ids.to_pylist()) - set(OWNED))
        judged = engine.judge(
            owned, counted=lambda case, day: {
                i: PRIOR.get(k, 0) + staged[k]
                for i, k in enumerate(zip(case.to_pylist(), day.to_pylist(), strict=True))})
        added = judged.attempts.to_pylist()
        assert len({(a["case_id"], a["day"]) for a in added}) == len(added)  # each key once
        staged.update({(a["case_id"], a["day"]): a["count"] for a in added})
        errors += judged.errors
        flagged.update(judged.flagged)
        unflagged += judged.unflagged
        cols = [judged.forward.column(name).combine_chunks()
                for name in judged.forward.column_names]
        cols = [neutralise(c) if name in FREE_TEXT_RESULT_FIELDS else c
                for name, c in zip(judged.forward.column_names, cols, strict=True)]
        parts.append(chunks.csv_bytes(cols))
        assert judged.not_assigned == sum(e.code == "E_NOT_ASSIGNED" for e in judged.errors)
    return errors, b"".join(parts), flagged, unflagged


@SETTINGS
@given(files())
def test_chunks_give_what_rows_give(case):
    zone, values, cuts = case
    errors, forward, flagged, unflagged = by_rows(zone, values)
    got_errors, got_bytes, got_flagged, got_unflagged = by_chunks(zone, values, cuts)
    assert got_errors == errors
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(forward)
    assert got_bytes.decode() == buf.getvalue()
    assert (got_flagged, got_unflagged) == (flagged, unflagged)


def test_attempts_count_across_chunks_and_files():
    """C1 has 2 CALLs counted by other files on the 18th: a third in chunk one and a fourth
    in chunk three both get ATTEMPTS (max 2); C3's second CALL only in chunk three."""
    at = "2026-11-18T10:00:00"
    row = {"action_at": at, "action_code": "CALL", "contact_target": "debtor",
           "collector_id": "c1"}
    rows = [{**row, "case_id": c} for c in ("C1", "C3", "C4", "C3", "C1")]
    values = [[r.get(c, "") for c in synth.RESULT_COLUMNS] for r in rows]
    _, forward, flagged, _ = by_rows("Asia/Shanghai", values)
    _, got, got_flagged, _ = by_chunks("Asia/Shanghai", values, [1, 3])
    assert [r[-1] for r in forward] == ["ATTEMPTS", "", "", "", "ATTEMPTS"]
    assert got_flagged == flagged == {"ATTEMPTS": 2}
    assert got.decode().splitlines()[0].endswith("ATTEMPTS")


def test_a_changed_offset_day_goes_to_the_reference():
    """02:30 on the day Berlin's clocks go back happens twice: the fast path does not
    guess, the reference reads it (fold 0) and the flags follow its answer."""
    tz, now, rules = setup("Europe/Berlin")
    engine = ColumnarResults(tuple(synth.RESULT_COLUMNS), tz, now, agency="AG001", **rules)
    assert engine._midnight("2026-10-25") is None and engine._midnight("2026-10-26") is not None
    values = [["C1", "2026-10-25T02:30:00", "CALL", "debtor", "", "", "", "", "", "", "c1"],
              ["C1", "2026-10-25T07:30:00", "CALL", "debtor", "", "", "", "", "", "", "c1"]]
    assert by_chunks("Europe/Berlin", values, [])[1] == b"".join(
        f"C1,{at},CALL,debtor,,,,,,,c1,AG001,{f}\r\n".encode()
        for at, f in (("2026-10-25T02:30:00", "HOURS"), ("2026-10-25T07:30:00", "HOURS")))


def test_neutralised_values_are_counted_as_the_reference_counts():
    values = ["=1", "ok", "-2", "+x", "@y", "\tz", "a=b", "\r", ""]
    assert needs_neutralising(pa.array(values)) == sum(map(csvio.needs_neutralising, values))


@SETTINGS
@given(st.lists(st.sampled_from(ODD) | st.text(max_size=70) | st.text(
    "AZaz09._-\n\u00e9\u5f20 ", max_size=66), max_size=20))
def test_id_spellings_are_the_regexes_they_replace(values):
    """The byte-class check of case and collector ids against the RE2 patterns it
    replaced (anchors, lengths, a line break at the end, non-ASCII)."""
    from gateway.validation.columnar import _RULES, _matches
    from gateway.validation.columnar_results import _COLLECTOR, _ID_BYTES, _spelled

    col = pa.array(values, pa.string())
    assert _spelled(col, _ID_BYTES, 64).tolist() == _matches(col, _RULES["case_id"]).tolist()
    assert _spelled(col, _ID_BYTES, 32).tolist() == _matches(col, _COLLECTOR).tolist()
    if len(values) > 1:  # an offset into the buffers, as a slice of a chunk has
        part = col.slice(1)
        assert (_spelled(part, _ID_BYTES, 64).tolist()
                == _matches(part, _RULES["case_id"]).tolist())


@SETTINGS
@given(st.lists(st.sampled_from(ODD) | st.sampled_from(HOT) | st.text(max_size=21) | st.text(
    "0123456789-T: \u0661", min_size=17, max_size=20), max_size=20), st.data())
def test_wall_times_are_the_regex_and_the_calendar_they_replace(values, data):
    """wall_times() against what it replaced: the _WALL regex, then iso_dates_ok over the
    date's digits, then the time's digits below 24:60:60."""
    import numpy as np

    from gateway.validation.columnar import _digits, _matches, iso_dates_ok
    from gateway.validation.columnar_results import _WALL, wall_times

    col = pa.array(values, pa.string())
    candidates = np.array(data.draw(st.lists(st.booleans(), min_size=len(values),
                                             max_size=len(values))), dtype=bool)
    ok = candidates & _matches(col, _WALL)
    ok &= iso_dates_ok(col, ok)
    time_us = np.zeros(len(values), dtype=np.int64)
    rows = np.flatnonzero(ok)
    if len(rows):
        d = _digits(col, rows, 11, 8)
        hh, mm, ss = d[:, 0] * 10 + d[:, 1], d[:, 3] * 10 + d[:, 4], d[:, 6] * 10 + d[:, 7]
        ok[rows] = (hh < 24) & (mm < 60) & (ss < 60)
        time_us[rows] = (hh * 3600 + mm * 60 + ss) * 1_000_000
    got, got_us = wall_times(col, candidates)
    assert got.tolist() == ok.tolist()
    assert got_us[ok].tolist() == time_us[ok].tolist()
