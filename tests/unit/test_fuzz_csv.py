"""Hostile case and results files against both CSV engines (issue 22, deliverable 2).

A sender's file reaches the gateway's parsers as bytes: the per-row reference
(:func:`csvio.read_records`, :func:`cases.map_header`, :class:`cases.CaseValidator`, and for
results :func:`results.map_results_header`, :class:`results.ResultValidator`) and the
columnar engine (:class:`chunks.ChunkReader`, :class:`columnar.ColumnarCases`,
:class:`columnar_results.ColumnarResults`). Whatever the bytes — random, in the wrong
encoding, with stray BOMs, NULs, lone CRs, unbalanced quotes, another delimiter, missing,
doubled or reordered headers, digits that are not ASCII, amounts and dates at and past
every edge — each parser must accept them or refuse them with the gateway's own error
(:class:`csvio.CsvFormatError`, or a :class:`cases.RowError` with a known code), and never
raise anything else. Where it is cheap the two engines are held to the same verdict:
the same accepted rows and the same errors, in the same order.

The value-level differential tests (``test_columnar.py``, ``test_columnar_results.py``)
start from valid rows with odd values swapped in; these start from hostile bytes. Example
counts: ``test_fuzz_settings.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway import synth
from gateway.validation import chunks, csvio
from gateway.validation.cases import (
    CaseValidator,
    RowError,
    column_label,
    is_forbidden_column,
    map_header,
    printable_label,
)
from gateway.validation.columnar import ColumnarCases
from gateway.validation.columnar_results import NOT_ASSIGNED, ColumnarResults
from gateway.validation.results import (
    ATTEMPT_ACTIONS,
    RESULT_FIELDS,
    ResultValidator,
    flags,
    map_results_header,
    parse_action_at,
)
from gateway.validation.schema import CASE_FIELDS
from tests.unit.test_cases import TODAY
from tests.unit.test_columnar import NOT_UTF8, ODD, Trickle, chunk_of
from tests.unit.test_columnar_results import ODD as RESULT_ODD
from tests.unit.test_fuzz_settings import fuzz

# Every code a reader, a header mapping or a row rule may give: receipts promise these.
FORMAT_CODES = {"E_LINE_TOO_LONG", "E_CSV", "E_ENCODING"}
HEADER_CODES = {"E_NO_HEADER", "E_DUPLICATE_COLUMN", "E_FORBIDDEN_COLUMN", "E_UNKNOWN_COLUMN",
                "E_MISSING_COLUMN"}
CASE_CODES = {"E_ROW_SHAPE", "E_REQUIRED", "E_CASE_ID", "E_AGENCY", "E_CONTRACT_ENDED",
              "E_CONTRACT_NOT_STARTED", "E_PRODUCT", "E_ID_TYPE", "E_ID_NUMBER", "E_BIRTH_DATE",
              "E_ID_CHECKSUM", "E_ACCOUNT", "E_LUHN", "E_PHONE", "E_TEXT", "E_AMOUNT", "E_DATE",
              "E_OVERDUE_DAYS", "E_CURRENCY", "E_TOTAL", "E_DATE_ORDER"}
RESULT_CODES = {"E_ROW_SHAPE", "E_REQUIRED", "E_CASE_ID", "E_DATETIME", "E_FUTURE", "E_NOT_ASSIGNED",
                "E_ACTION_CODE", "E_CONTACT_TARGET", "E_COLLECTOR_ID", "E_TEXT", "E_PHONE",
                "E_AMOUNT", "E_DATE"}
EMPTY = RowError(0, None, None, "E_EMPTY", "the file is empty")

# --- hostile values ------------------------------------------------------------------

# Digits of other scripts: fullwidth, Arabic-Indic, extended Arabic-Indic, Devanagari,
# mathematical bold; and characters that are numeric but not decimal digits.
FOREIGN_DIGITS = ["１２３", "١٢٣", "۱۲۳", "१२३", "𝟏𝟐𝟑", "²", "Ⅻ", "〇", "௧௨௩", "᠑᠒"]
NUMBERS = ["-0", "-0.00", "+0", "+1.00", "0.000", "00.00", "1e3", "1E+2", "1.0e-2", "1e99999",
           "Infinity", "-inf", "NaN", "nan", "sNaN", "0x10", "1_000", "1,000.00", "1 000",
           ".5", "5.", "1.", "12.345678901234567890", "0.00000000000000000001",
           "9" * 15 + ".99", "9" * 16, "1" * 20, "1" * 4301, "0" * 5000 + "1", "9" * 5000,
           "1" * 100_000, "\ufeff123", "123\ufeff", "１２３.４５", "٠٫٥"]
DATES = ["0000-00-00", "0000-01-01", "0001-01-01", "9999-12-31", "2026-02-30", "2026-02-29",
         "2028-02-29", "2100-02-29", "2026-00-10", "2026-12-32", "10000-01-01", "2026-1-1",
         "20260101", "2026/01/01", "2026-W01-1", "2026-001", "２０２６-０１-０１",
         "٢٠٢٦-٠١-٠١", "2026-01-01T00:00:00", "-2026-01-01", "+2026-01-01"]
DATETIMES = ["0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00",
             "0001-01-01T00:00:00Z", "0001-01-01 00:00", "9999-12-31T23:59:59",
             "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59+23:59", "2026-11-20T10:00:00+99:99",
             "2026-11-20T10:00:00+2400", "2026-11-20T10:00:00-00:00", "2026-02-30T10:00:00",
             "2026-11-20T24:00:00", "2026-11-20T10:00:60", "2026-11-20T10:00:00.1234567",
             "２０２６-１１-２０T10:00:00", "2026-11-20T١٠:00:00", "2026-11-20t10:00:00",
             "2026-11-20T10:00:00 +08:00"]
STRUCTURE = ["", " ", '"', '""', '"""', 'a"b', '"a', 'a"', '"a"b', "\r", "\n", "\r\n", "\n\r",
             ",", ";", "\t", "|", "，", "\x00", "\x1a", "\ufeff", "\u2028", "\x85", "\ud7ff",
             "\U0010ffff", "x" * 70_000]
HOSTILE = [*ODD, *RESULT_ODD, *FOREIGN_DIGITS, *NUMBERS, *DATES, *DATETIMES, *STRUCTURE]


def _datetime_text(parts: tuple[int, int, int, int, int, int, str, str, str]) -> str:
    y, mo, d, h, mi, s, sep, frac, offset = parts
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{offset}"


def weighted(*choices: tuple[int, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """One of the strategies, each as often as its weight (``one_of`` flattens nested
    choices into equal ones, so a rare kind of trouble would stay rare)."""
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


digits = st.text(st.characters(categories=["Nd"]), min_size=1, max_size=20)  # any script's
# Long runs of one digit: int() refuses more than 4,300 digits (CVE-2020-10735's limit).
long_digits = st.builds(lambda d, n, tail: d * n + tail, st.sampled_from(["0", "1", "9", "１", "٠"]),
                        st.sampled_from([16, 4300, 4301, 5000]) | st.integers(1, 6000),
                        st.sampled_from(["", "", "", "1", ".5", "e3"]))
numbers = weighted((3, st.sampled_from([*NUMBERS, *FOREIGN_DIGITS])), (1, digits), (2, long_digits),
                   (1, st.integers().map(str)),
                   (1, st.decimals(allow_nan=True, allow_infinity=True).map(str)))  # 1E+3, -0, sNaN
dates = weighted((1, st.sampled_from(DATES)), (1, st.tuples(
    st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99)).map(
    lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}")))
datetimes = weighted((1, st.sampled_from(DATETIMES)), (1, st.tuples(
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
    st.integers(0, 61), st.integers(0, 61), st.sampled_from(["T", " ", "t"]),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["", "Z", "+08:00", "-05:00", "+14:00", "-12:00", "+0530", "+99:99",
                     "-23:59"])).map(_datetime_text)))
value_text = weighted((3, st.sampled_from(HOSTILE)), (2, st.text(max_size=10)), (1, digits),
                      (1, numbers), (1, st.floats().map(repr)), (1, dates), (1, datetimes))
# Each field's own kind of trouble first: a random value rarely lands in the one column
# where it matters (5,000 digits in overdue_days, a year-1 instant in action_at).
BY_FIELD = {
    **dict.fromkeys(["principal", "interest", "fees", "total_due", "amount", "overdue_days"],
                    numbers),
    **dict.fromkeys(["assigned_on", "due_back_on", "promise_date"], dates),
    **dict.fromkeys(["account_number", "id_number", "mobile", "contact1_phone", "new_mobile"],
                    numbers | digits.map(lambda d: "1" + d)),
    "action_at": datetimes,
}


def hostile(column: str) -> st.SearchStrategy[str]:
    """A value for *column*: mostly of its own kind's trouble, else anything hostile."""
    own = BY_FIELD.get(column)
    return value_text if own is None else weighted((3, own), (1, value_text))

# --- hostile files -------------------------------------------------------------------

DELIMITERS = [",", ";", "\t", "|", "，"]  # what [schema].delimiter may be (one character)
ODD_DELIMITERS = ['"', "\n", "\r", "\0", " ", "x", "'", "\\", "\u3000"]  # and the config takes these
ENCODINGS = ["utf-8", "gb18030"]  # what [schema].encoding may be
# What a sender's export may really be in: UTF-16 with and without its BOM, legacy codepages.
FILE_ENCODINGS = ["utf-8", "utf-8", "utf-8-sig", "gb18030", "gbk", "big5", "shift_jis", "utf-16",
                  "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]
JUNK = [b"\0", b"\xff", b"\xfe", b'"', b"\r", b"\n", b"\r\r", b"\n\n", b",", b";", b"\t",
        b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x81\x30", b"\x81", b"\x1a", b"x" * 300,
        *NOT_UTF8]
VALID_CASES = list(synth.cases(30, ["AG001"], seed=22, today=TODAY))
ZONES = {"Asia/Shanghai": dt.datetime(2026, 11, 22, 12, 0),
         "Europe/Berlin": dt.datetime(2026, 10, 26, 12, 0),
         "Pacific/Kiritimati": dt.datetime(2026, 11, 22, 12, 0),  # UTC+14
         "Pacific/Pago_Pago": dt.datetime(2026, 11, 22, 12, 0)}  # UTC-11
OWNED = ["C1", "C2", "C3"]
VALID_RESULTS = [dict(r) for zone, now in ZONES.items()
                 for r in synth.results([*OWNED, "X1"], 20, seed=9, today=now.date())]
FORBIDDEN_HEADERS = ["cvv", "CVV2", "pin", "Card Expiry", "密码", "有效期", "track2", "otp"]


@st.composite
def headers(draw: st.DrawFn, columns: list[str]) -> list[str]:
    """The columns, some missing, doubled, reordered, renamed, padded or disguised."""
    out = list(columns)
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "double", "unknown", "forbidden", "pad", "case",
                                   "fullwidth", "bom", "empty"]))
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        if op == "drop":
            del out[i]
        elif op == "double":
            out.insert(draw(st.integers(0, len(out))), out[i])
        elif op == "unknown":
            out.insert(i, draw(st.text(max_size=12) | st.sampled_from(HOSTILE[:40])))
        elif op == "forbidden":
            out.insert(i, draw(st.sampled_from(FORBIDDEN_HEADERS)))
        elif op == "pad":
            out[i] = f" {out[i]}\t"
        elif op == "case":
            out[i] = out[i].upper()
        elif op == "fullwidth":  # NFKC folds it back; the mapping must not
            out[i] = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in out[i])
        elif op == "bom":
            out[i] = "\ufeff" + out[i]
        else:
            out[i] = ""
    return out


def serialise(draw: st.DrawFn, table: list[list[str]], delimiter: str) -> str:
    """As ``csv.writer`` writes it, or the values merely joined (quotes left unbalanced)."""
    terminator = draw(st.sampled_from(["\r\n", "\n", "\r", "\n\r"]))
    if draw(st.booleans()):
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator=terminator).writerows(table)
        text = buf.getvalue()
    else:
        text = "".join(delimiter.join(r) + terminator for r in table)
    return text if draw(st.integers(0, 4)) else text.rstrip("\r\n")  # no final line break


def damage(draw: st.DrawFn, data: bytes) -> bytes:
    """A byte in, bytes out, the file cut short: what a bad export or transfer does."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "cut", "flip"]))
        if op == "insert":
            data = data[:at] + draw(st.sampled_from(JUNK) | st.binary(max_size=8)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)):]
        elif op == "cut":
            data = data[:at]
        elif at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data


class Upload(NamedTuple):
    """A file's bytes and the [schema] settings it is read with."""

    encoding: str
    delimiter: str
    data: bytes


@st.composite
def hostile_files(draw: st.DrawFn, columns: list[str], valid: list[dict[str, str]]) -> Upload:
    """A file of valid rows with hostile values, headers and framing — or random bytes."""
    encoding = draw(st.sampled_from(ENCODINGS))
    configured = draw(st.sampled_from(DELIMITERS * 3 + ODD_DELIMITERS))
    if draw(st.integers(0, 5)) == 0:
        return Upload(encoding, configured, draw(st.binary(max_size=400)))
    head = draw(headers(columns))
    table = [head]
    for _ in range(draw(st.integers(0, 9))):
        rec = dict(draw(st.sampled_from(valid)))
        for name in draw(st.lists(st.sampled_from(columns), max_size=4)):
            rec[name] = draw(hostile(name))
        row = [rec.get(h, "") for h in head]
        if not draw(st.integers(0, 12)):  # a row of another width
            row = row[:-1] if draw(st.booleans()) else [*row, draw(value_text)]
        table.append(row)
    delimiter = configured if draw(st.integers(0, 4)) else draw(st.sampled_from(DELIMITERS))
    text = serialise(draw, table, delimiter)
    if draw(st.integers(0, 5)) == 0:
        text = "\ufeff" + text  # a BOM, encoded as whatever the file is in
    data = text.encode(draw(st.sampled_from(FILE_ENCODINGS)), errors="replace")
    return Upload(encoding, configured, damage(draw, data))


@contextmanager
def line_limit(limit: int | None) -> Iterator[None]:
    """A small MAX_LINE makes ``E_LINE_TOO_LONG`` and many reader blocks out of a small file."""
    saved = csvio.MAX_LINE
    csvio.MAX_LINE = limit or saved
    try:
        yield
    finally:
        csvio.MAX_LINE = saved


def format_error(exc: csvio.CsvFormatError) -> RowError:
    """A format error as the flows list it in the receipt (intake.read_signed_csv)."""
    assert exc.code in FORMAT_CODES, exc.code
    return RowError(exc.row, None, None, exc.code, exc.message)


def source(data: bytes, step: int) -> io.RawIOBase | io.BytesIO:
    return Trickle(data, step) if step else io.BytesIO(data)


# --- the readers -----------------------------------------------------------------------


def records_by_rows(data: bytes, encoding: str, delimiter: str) -> tuple[list, RowError | None]:
    out = []
    records = csvio.read_records(io.BytesIO(data), encoding=encoding, delimiter=delimiter)
    try:
        out.extend(records)
    except csvio.CsvFormatError as exc:
        return out, format_error(exc)
    finally:
        records.close()
    return out, None


def records_by_chunks(data: bytes, encoding: str, delimiter: str, width: int | None, step: int,
                      per_chunk: int) -> tuple[list, RowError | None]:
    out: list = []
    got: list[chunks.Chunk] = []
    error = None
    reader = chunks.ChunkReader(source(data, step), encoding=encoding, delimiter=delimiter,
                                rows_per_chunk=per_chunk)
    try:
        header = reader.header()
        if header is None:
            return out, None
        out.append((0, header))
        for chunk in reader.chunks(width or len(header)):
            got.append(chunk)  # looked at once the file is read: a chunk must not share the buffer
    except csvio.CsvFormatError as exc:
        error = format_error(exc)
    finally:
        reader.close()
    for chunk in got:
        cols = chunk.table.to_pydict()
        rows = [(int(r), [cols[str(i)][k] for i in range(chunk.table.num_columns)])
                for k, r in enumerate(chunk.rows)]
        out += sorted(rows + chunk.odd)
    return out, error


@fuzz(300)
@example(  # [schema].delimiter "，" (one character, so the config takes it): Arrow refused it
    upload=Upload("utf-8", "，", b"\x01"), step=0, per_chunk=3, max_line=None, width_delta=0)
@example(  # [schema].delimiter '"': the strict line grammar passed what csv.reader refuses,
    upload=Upload("utf-8", '"', b'\xef\xbb\xbf" case_id\t"\t'  # and its csv.Error escaped
                  + "\t".join(synth.CASE_COLUMNS[2:]).encode()),
    step=0, per_chunk=3, max_line=None, width_delta=0)
@given(hostile_files(synth.CASE_COLUMNS, VALID_CASES), st.sampled_from([0, 1, 5]),
       st.sampled_from([3, 4096]), st.sampled_from([None, 48, 300]), st.integers(0, 3))
def test_both_readers_give_the_same_records_or_the_same_error(upload, step, per_chunk, max_line,
                                                              width_delta):
    """Records (row numbers included) or ``CsvFormatError`` — nothing else — and the same
    from both readers, whatever the bytes and whatever width the header promises."""
    encoding, delimiter, raw = upload
    with line_limit(max_line):
        expected = records_by_rows(raw, encoding, delimiter)
        header = expected[0][0][1] if expected[0] else None
        width = len(header) + width_delta - 1 if header and width_delta else None
        got = records_by_chunks(raw, encoding, delimiter, width or None, step, per_chunk)
    assert got == expected


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("delimiter", [",", "，"])
@pytest.mark.parametrize("extra", [-2, -1, 0, 1])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_lines_at_the_real_limit(encoding, delimiter, extra, ending):
    """Lines of MAX_LINE bytes (line break included) and one more, unpatched: a huge field
    is read, one byte more is ``E_LINE_TOO_LONG`` on its row — from both readers."""
    d = delimiter.encode(encoding)
    line = b"1" + d + b"x" * (csvio.MAX_LINE + extra - len(b"1" + d) - len(ending)) + ending
    data = b"a" + d + b"b\n" + line + (b"2" + d + b"y\n" if ending else b"")
    expected = records_by_rows(data, encoding, delimiter)
    assert records_by_chunks(data, encoding, delimiter, None, 0, 4096) == expected
    error = expected[1]
    assert (error is not None and (error.code, error.row) == ("E_LINE_TOO_LONG", 1)) == (extra > 0)
    assert error is not None or len(expected[0][1][1][1]) == len(line) - len(ending) - len(b"1" + d)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_quoted_field_past_the_field_limit(encoding):
    """A quoted field of short lines but more than MAX_LINE characters in all (csv's
    field_size_limit): ``E_CSV`` on its row from both readers, the rows before it read."""
    field = "\r\n".join(["x" * 1000] * (csvio.MAX_LINE // 1000 + 2))
    data = f'a,b\n1,2\n3,"{field}"\n4,5\n'.encode(encoding)
    expected = records_by_rows(data, encoding, ",")
    assert records_by_chunks(data, encoding, ",", None, 0, 4096) == expected
    assert expected[1] is not None and (expected[1].code, expected[1].row) == ("E_CSV", 2)
    assert expected[0] == [(0, ["a", "b"]), (1, ["1", "2"])]


# --- the header mappings ---------------------------------------------------------------

header_cells = st.lists(st.sampled_from([*synth.CASE_COLUMNS, *synth.RESULT_COLUMNS,
                                         *FORBIDDEN_HEADERS]) | value_text, max_size=30)


@fuzz(500)
@given(header_cells)
def test_headers_map_or_are_refused_with_header_codes(cfg, header):
    for fields, errors in (map_header(header, cfg), map_results_header(header)):
        assert (fields is None) == bool(errors)
        assert {e.code for e in errors} <= HEADER_CODES
        # A header that may be a value (a decimal digit in it: a card number, a phone) is named by
        # its position in a receipt, never shown. Six characters: "0" is in "10 columns".
        value_like = [h.strip() for h in header if len(h.strip()) >= 6 and any(
            c.isdecimal() for c in h) and h.strip() not in CASE_FIELDS]
        assert not [v for v in value_like for e in errors if v in e.message]
    for h in header:
        assert isinstance(is_forbidden_column(h), bool)
        assert printable_label(h).isprintable() and column_label(h, 1)


# --- the case rules, both engines ------------------------------------------------------

def check_codes(errors: list[RowError], codes: set[str]) -> None:
    assert {e.code for e in errors} <= codes | HEADER_CODES | FORMAT_CODES | {"E_EMPTY"}, errors


def cases_by_rows(cfg, data: bytes, encoding: str, delimiter: str):
    """The per-row reference, as the flow would run it row by row."""
    errors: list[RowError] = []
    accepted: list[tuple[int, dict[str, str]]] = []
    records = csvio.read_records(io.BytesIO(data), encoding=encoding, delimiter=delimiter)
    try:
        first = next(records, None)
        if first is None:
            return [EMPTY], accepted
        header, problems = map_header(first[1], cfg)
        if header is None:
            return problems, accepted
        validator = CaseValidator(cfg, header, TODAY)
        for row, values in records:
            rec, problems = validator.validate(row, values)
            errors += problems
            if rec is not None:
                accepted.append((row, rec))
    except csvio.CsvFormatError as exc:
        errors.append(format_error(exc))
    finally:
        records.close()
    return errors, accepted


def cases_by_chunks(cfg, data: bytes, encoding: str, delimiter: str, step: int, per_chunk: int):
    """The columnar engine, as ``batches._rows`` runs it."""
    errors: list[RowError] = []
    accepted: list[tuple[int, dict[str, str]]] = []
    reader = chunks.ChunkReader(source(data, step), encoding=encoding, delimiter=delimiter,
                                rows_per_chunk=per_chunk)
    try:
        first = reader.header()
        if first is None:
            return [EMPTY], accepted
        header, problems = map_header(first, cfg)
        if header is None:
            return problems, accepted
        engine = ColumnarCases(cfg, header, TODAY)
        for chunk in reader.chunks(len(header.fields)):
            checked = engine.check(chunk)
            errors += checked.errors
            accepted += zip(checked.rows.tolist(), checked.table.to_pylist(), strict=True)
    except csvio.CsvFormatError as exc:
        errors.append(format_error(exc))
    finally:
        reader.close()
    return errors, accepted


@fuzz(150)
@given(hostile_files(synth.CASE_COLUMNS, VALID_CASES), st.sampled_from([0, 3]),
       st.sampled_from([2, 4096]), st.sampled_from([None, 300]))
def test_case_files_get_one_verdict_from_both_engines(cfg, upload, step, per_chunk, max_line):
    encoding, delimiter, raw = upload
    with line_limit(max_line):
        expected = cases_by_rows(cfg, raw, encoding, delimiter)
        got = cases_by_chunks(cfg, raw, encoding, delimiter, step, per_chunk)
    check_codes(expected[0], CASE_CODES)
    assert got == expected


SHORT_CASE_COLUMNS = [*synth.CASE_COLUMNS[:11], "principal", "interest", "fees", "total_due",
                      "overdue_days", "assigned_on", "due_back_on"]  # no contact, no currency


@st.composite
def case_rows(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """(columns, rows): valid rows with any field replaced, some of another width."""
    columns = draw(st.sampled_from([synth.CASE_COLUMNS, SHORT_CASE_COLUMNS]))
    values = []
    for rec in draw(st.lists(st.sampled_from(VALID_CASES), min_size=1, max_size=8)):
        row = [rec[c] for c in columns]
        for i in draw(st.lists(st.sampled_from(range(len(columns))), max_size=5)):
            row[i] = draw(hostile(columns[i]))
        if not draw(st.integers(0, 10)):
            row = row[:draw(st.integers(0, len(row)))]
        values.append(row)
    return columns, values


@fuzz(300)
@example(table=(synth.CASE_COLUMNS, [[  # 4,301 digits of overdue_days: int() raised ValueError
    "" if c == "case_id" else "-0" if c == "principal" else "1" * 4301 if c == "overdue_days"
    else VALID_CASES[0][c] for c in synth.CASE_COLUMNS]]))
@given(case_rows())
def test_case_rows_of_any_values_get_one_verdict(cfg, table):
    """Values straight into the rules (no CSV framing in the way)."""
    columns, values = table
    header, _ = map_header(list(columns), cfg)
    reference = CaseValidator(cfg, header, TODAY)
    results = [reference.validate(row, list(v)) for row, v in enumerate(values, start=1)]
    check_codes([e for _, errs in results for e in errs], CASE_CODES)
    checked = ColumnarCases(cfg, header, TODAY).check(chunk_of(values, len(columns)))
    assert checked.errors == [e for _, errs in results for e in errs]
    assert checked.table.to_pylist() == [rec for rec, _ in results if rec is not None]


# --- the result rules, both engines ----------------------------------------------------

RULES = dict(window=(dt.time(8), dt.time(21)), contract_end=dt.date(2026, 11, 19), max_attempts=2)
RESULT_WORDS = st.sampled_from(["CALL", "SMS", "PROMISE_TO_PAY", "PAYMENT_REPORTED",
                                "CONTACT_UPDATE", "DISPUTE", "debtor", "third_party", "C1", "X1"])


def results_by_rows(data: bytes, encoding: str, delimiter: str, zone: str):
    """Rows the reference accepts about the agency's cases, as forwarded: present fields,
    agency, flags; a row about another case is ``E_NOT_ASSIGNED``."""
    tz = zoneinfo.ZoneInfo(zone)
    now = ZONES[zone].replace(tzinfo=tz)
    errors: list[RowError] = []
    forward: list[tuple[int, list[str]]] = []
    counts: Counter[tuple[str, str]] = Counter()
    records = csvio.read_records(io.BytesIO(data), encoding=encoding, delimiter=delimiter)
    try:
        first = next(records, None)
        if first is None:
            return [EMPTY], forward
        columns, problems = map_results_header(first[1])
        if columns is None:
            return problems, forward
        validator = ResultValidator(columns, tz, now)
        present = [c for c in RESULT_FIELDS if c in columns]
        for row, values in records:
            result, problems = validator.validate(row, values)
            errors += problems
            if result is None:
                continue
            if result.case_id not in OWNED:
                errors.append(RowError(row, result.case_id, "case_id", "E_NOT_ASSIGNED",
                                       NOT_ASSIGNED))
                continue
            tries = 0
            if result.action in ATTEMPT_ACTIONS:
                key = (result.case_id, result.at.astimezone(tz).date().isoformat())
                counts[key] += 1
                tries = counts[key]
            marks = flags(result, tz=tz, attempts_today=tries, **RULES)
            forward.append((row, [*(result.values[c] for c in present), "AG001", ";".join(marks)]))
    except csvio.CsvFormatError as exc:
        errors.append(format_error(exc))
    finally:
        records.close()
    return errors, forward


def results_by_chunks(data: bytes, encoding: str, delimiter: str, zone: str, step: int,
                      per_chunk: int):
    """The columnar engine as ``result_rows._rows`` runs it (the agency holds :data:`OWNED`)."""
    tz = zoneinfo.ZoneInfo(zone)
    now = ZONES[zone].replace(tzinfo=tz)
    errors: list[RowError] = []
    forward: list[tuple[int, list[str]]] = []
    staged: Counter[tuple[str, str]] = Counter()
    reader = chunks.ChunkReader(source(data, step), encoding=encoding, delimiter=delimiter,
                                rows_per_chunk=per_chunk)

    def counted(case, day) -> dict[int, int]:
        keys = zip(case.to_pylist(), day.to_pylist(), strict=True)
        return {i: staged[k] for i, k in enumerate(keys) if staged[k]}

    try:
        first = reader.header()
        if first is None:
            return [EMPTY], forward
        columns, problems = map_results_header(first)
        if columns is None:
            return problems, forward
        engine = ColumnarResults(columns, tz, now, agency="AG001", **RULES)
        for chunk in reader.chunks(len(columns)):
            checked = engine.owned(engine.check(chunk),
                                   foreign=lambda ids: set(ids.to_pylist()) - set(OWNED))
            judged = engine.judge(checked, counted=counted)
            for a in judged.attempts.to_pylist():
                staged[(a["case_id"], a["day"])] += a["count"]
            errors += judged.errors
            rows = [list(r.values()) for r in judged.forward.to_pylist()]
            forward += zip(checked.rows.tolist(), rows, strict=True)
    except csvio.CsvFormatError as exc:
        errors.append(format_error(exc))
    finally:
        reader.close()
    return errors, forward


@fuzz(150)
@given(hostile_files(synth.RESULT_COLUMNS, VALID_RESULTS), st.sampled_from(sorted(ZONES)),
       st.sampled_from([0, 3]), st.sampled_from([2, 4096]))
def test_results_files_get_one_verdict_from_both_engines(upload, zone, step, per_chunk):
    encoding, delimiter, raw = upload
    expected = results_by_rows(raw, encoding, delimiter, zone)
    check_codes(expected[0], RESULT_CODES)
    assert results_by_chunks(raw, encoding, delimiter, zone, step, per_chunk) == expected


@st.composite
def result_rows(draw: st.DrawFn) -> list[list[str]]:
    """Valid result rows with any field replaced."""
    out = []
    for rec in draw(st.lists(st.sampled_from(VALID_RESULTS), min_size=1, max_size=10)):
        rec = dict(rec)
        for name in draw(st.lists(st.sampled_from(synth.RESULT_COLUMNS), max_size=4)):
            rec[name] = draw(weighted((3, hostile(name)), (1, RESULT_WORDS)))
        out.append([rec.get(c, "") for c in synth.RESULT_COLUMNS])
    return out


@fuzz(300)
@example(values=[[  # a row starting a block with U+FEFF: Arrow dropped it as a file's BOM
    "\ufeff123", "2026-11-21T19:39:00", "VISIT", "debtor", "已留言", "", "", "", "", "",
    "col-36"]], zone="Asia/Shanghai")
@example(values=[[  # still year 0 in Shanghai: astimezone raised OverflowError in the flags
    "\xa0x", "0001-01-01T00:00:00+14:00", "VISIT", "debtor", "已留言", "", "", "", "", "",
    "col-36"]], zone="Asia/Shanghai")
@given(result_rows(), st.sampled_from(sorted(ZONES)))
def test_result_rows_of_any_values_get_one_verdict(values, zone):
    """Values straight into the rules, framing aside: as :func:`results_by_rows` and
    :func:`results_by_chunks`, one chunk."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([synth.RESULT_COLUMNS, *values])
    raw = buf.getvalue().encode("utf-8")
    expected = results_by_rows(raw, "utf-8", ",", zone)
    check_codes(expected[0], RESULT_CODES)
    assert results_by_chunks(raw, "utf-8", ",", zone, 0, 4096) == expected


@fuzz(500)
@example(value="0001-01-01T00:00:00+14:00", zone="Asia/Shanghai")  # OverflowError, as above
@given(datetimes | value_text, st.sampled_from(sorted(ZONES)))
def test_action_at_is_a_local_time_or_refused(value, zone):
    """An accepted ``action_at`` has a local time in the gateway's zone (flags need it)."""
    tz = zoneinfo.ZoneInfo(zone)
    at = parse_action_at(value, tz)
    if at is not None:
        assert at.tzinfo is not None
        at.astimezone(tz)
