"""The columnar engine against its per-row reference (DESIGN: "the fast path has a slow twin").

For generated rows — valid ones from the synthesiser, then with values swapped for
hostile, odd or merely unusual ones — the chunk engine must give exactly what the
reference gives: the same errors (row, case id, field, code, message) in row order,
the same accepted records, the same masked values for every rule, the same CSV
bytes, and the same records or the same format error out of the reader.
"""

from __future__ import annotations

import csv
import io
import itertools
import json

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import masking, masking_columns, synth
from gateway.flows.batch_rows import _cases_json
from gateway.masking import Rule
from gateway.validation import chunks, csvio
from gateway.validation.cases import CaseValidator, map_header
from gateway.validation.columnar import PY_WHITESPACE, ColumnarCases
from gateway.validation.schema import CASE_FIELDS, FREE_TEXT_CASE_FIELDS
from tests.unit.test_cases import TODAY  # the day the shared `cfg` site is judged on

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


VALID = list(synth.cases(40, ["AG001"], seed=11, today=TODAY))
# Values that sit on the edge of some rule: spaces (ASCII and not), controls, digits
# that are not ASCII, a lowercase check character, impossible dates, formula triggers.
ODD = ["", " ", "\u3000", "\xa0x", "x ", " x", "\t", "=1+1", "-3", "@a", "+86", "'", '"', ",",
       "a,b", 'q"q', "张\u200b三", "张三\u202e", "\x85", "١٢٣", "１２３", "0", "00", "0000", "9999",
       "10000", "007", "1.5", "1.50", "1.505", ".5", "1e3", "123456789012345", "1234567890123456.1",
       "2026-02-29", "2028-02-29", "2026-13-01", "0000-01-01", "2026-1-01", "2026-11-22",
       "2099-01-01", "110105199003071234", "11010519900307123x", "11010519900307123X",
       "110105199002301234", "110105203003071234", "110105189903071234", "6222020000000007",
       "6222020000000001", "4111111111111111", "13812345678", "+8613812345678", "+4420123456",
       "12812345678", "AG001", "AG002", "AG999", "credit_card", "mortgage", "resident_id",
       "passport", "other", "E12345678", "e12345678", "CNY", "cny", "XXX", "广东省深圳市南山区科技园路1号",
       "北京市朝阳区建国路88号", "12 Baker Street", "x" * 64, "x" * 65, "张" * 200, "张" * 201,
       "C2026-1", "C 1", "c" * 64, "c" * 65, "配偶"]


@st.composite
def rows(draw):
    """Rows of the synthesiser with some values replaced by odd ones."""
    n = draw(st.integers(1, 12))
    out = []
    for _ in range(n):
        rec = dict(draw(st.sampled_from(VALID)))
        for name in draw(st.lists(st.sampled_from(synth.CASE_COLUMNS), max_size=4)):
            other = draw(st.sampled_from(VALID))[name]
            rec[name] = draw(st.sampled_from(ODD) | st.just(other) | st.text(max_size=6))
        out.append([rec[c] for c in synth.CASE_COLUMNS])
    return out


def chunk_of(values: list[list[str]], width: int, first_row: int = 1) -> chunks.Chunk:
    good = [(i, v) for i, v in enumerate(values) if len(v) == width]
    cols = list(zip(*[v for _, v in good], strict=True)) if good else [() for _ in range(width)]
    table = pa.table({str(i): pa.array(list(c), pa.string()) for i, c in enumerate(cols)})
    odd = [(first_row + i, v) for i, v in enumerate(values) if len(v) != width]
    return chunks.Chunk(table, np.array([first_row + i for i, _ in good], dtype=np.int64), odd)


def test_whitespace_table_is_what_python_strips():
    assert set(PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}


@SETTINGS
@given(rows())
def test_errors_and_records_equal_the_reference(cfg, values):
    header, _ = map_header(list(synth.CASE_COLUMNS), cfg)
    reference = CaseValidator(cfg, header, TODAY)
    expected_errors, expected_records = [], []
    for row, v in enumerate(values, start=1):
        rec, errors = reference.validate(row, list(v))
        expected_errors += errors
        if rec is not None:
            expected_records.append(rec)
    checked = ColumnarCases(cfg, header, TODAY).check(chunk_of(values, len(header.fields)))
    assert checked.errors == expected_errors
    assert checked.table.to_pylist() == expected_records


@SETTINGS
@given(rows(), st.sampled_from([["case_id", "agency_code", "product", "account_number",
                                 "customer_name", "id_number", "mobile", "home_address",
                                 "principal", "interest", "fees", "total_due", "overdue_days",
                                 "assigned_on", "due_back_on"], synth.CASE_COLUMNS]))
def test_fewer_columns_and_wrong_widths_too(cfg, values, columns):
    """Optional columns absent (id_type absent: resident IDs by default); rows of another
    width go to the reference whole."""
    keep = [synth.CASE_COLUMNS.index(c) for c in columns]
    values = [[v[i] for i in keep] for v in values]
    values[0] = values[0][:-1]  # one row short
    header, _ = map_header(list(columns), cfg)
    reference = CaseValidator(cfg, header, TODAY)
    results = [reference.validate(row, v) for row, v in enumerate(values, start=1)]
    checked = ColumnarCases(cfg, header, TODAY).check(chunk_of(values, len(columns)))
    assert checked.errors == [e for _, errs in results for e in errs]
    assert checked.table.to_pylist() == [rec for rec, _ in results if rec is not None]


ALL_RULES = [(name, rule) for name, spec in CASE_FIELDS.items() if name in synth.CASE_COLUMNS
             for rule in sorted(masking.ALLOWED[spec.kind], key=lambda r: r.value)
             if rule is not Rule.DROP]


@SETTINGS
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=8),
       st.lists(st.tuples(st.sampled_from(synth.CASE_COLUMNS), st.sampled_from(ODD) | st.text(max_size=8)),
                max_size=6))
def test_every_mask_equals_the_reference(recs, changes):
    """Masks see validated values in production; they must agree on any string anyway."""
    recs = [dict(r) for r in recs]
    for i, (name, value) in enumerate(changes):
        recs[i % len(recs)][name] = value
    table = pa.table({c: pa.array([r[c] for r in recs], pa.string()) for c in synth.CASE_COLUMNS})
    secret = b"s" * 32
    masks = masking_columns.ChunkMasks(table, FREE_TEXT_CASE_FIELDS)
    cut = len(recs) // 2  # two agencies' slices of one chunk: offsets other than zero
    for name, rule in ALL_RULES:
        policy = masking.RolePolicy("r", {name: rule})
        got = []
        for start, length in ((0, cut), (cut, len(recs) - cut)):
            (col,), _ = masks.role(policy, [name], start, length, secret)
            got += col.to_pylist()
        want = []
        for r in recs:
            v = masking.apply(rule, name, r[name], id_type=r.get("id_type") or "resident_id",
                              secret=secret)
            want.append(csvio.neutralise(v) if name in FREE_TEXT_CASE_FIELDS else v)
        assert got == want, (name, rule)


@SETTINGS
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=9), st.data())
def test_agencies_sharing_a_role_share_one_build(recs, data):
    """What `_seal` does: a role's columns for several agencies' spans (each with its own
    token key, some agencies left out), built into CSV once and cut, give each agency the
    bytes its own build would."""
    table = pa.table({c: pa.array([r[c] for r in recs], pa.string()) for c in synth.CASE_COLUMNS})
    masks = masking_columns.ChunkMasks(table, FREE_TEXT_CASE_FIELDS)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(recs)), max_size=3)))
    bounds = [0, *cuts, len(recs)]
    spans = [(a, b - a, bytes([65 + i]) * 32) for i, (a, b) in enumerate(itertools.pairwise(bounds))
             if b > a and data.draw(st.booleans())]
    if not spans:
        return
    policy = masking.RolePolicy("r", {**dict.fromkeys(synth.CASE_COLUMNS, Rule.FULL),
                                      "customer_name": Rule.TOKEN, "home_address": Rule.REGION,
                                      "id_number": Rule.MASK, "mobile": Rule.MASK})
    columns = policy.columns(synth.CASE_COLUMNS)
    built, plain = masks.spans(policy, columns, spans)
    lines = chunks.csv_lines(built, plain)
    at = 0
    for start, length, key in spans:
        own, own_plain = masks.role(policy, columns, start, length, key)
        assert chunks.lines_bytes(lines, at, length) == chunks.csv_bytes(own, own_plain)
        at += length


@given(st.lists(st.binary(max_size=24), max_size=12), st.integers(1, 16))
def test_the_sink_writes_parts_in_order_whatever_their_size(parts, limit):
    """A part as large as the sink's buffer bypasses it (a view of Arrow's bytes is not
    copied again); what waited goes first."""
    out = io.BytesIO()
    sink = csvio.TextSink(out, buffer_bytes=limit)
    for i, part in enumerate(parts):
        sink.write_bytes(pa.py_buffer(part) if i % 2 else part)
    sink.flush()
    assert out.getvalue() == b"".join(parts)


@given(st.binary(max_size=80), st.binary(min_size=1, max_size=80))
def test_token_is_hmac_sha256(secret, value):
    text = value.decode("utf-8", "replace")
    got = masking_columns.token(secret or b"k", pa.array([text])).to_pylist()
    assert got == [masking.token(secret or b"k", text)]


FIELD_TEXT = st.text(alphabet=st.sampled_from('ab张,"\r\n \t=\x85\u2028'), max_size=6)


@given(st.lists(st.lists(FIELD_TEXT, min_size=1, max_size=4), min_size=1, max_size=10))
def test_csv_bytes_are_csv_writers(table_rows):
    width = len(table_rows[0])
    table_rows = [(r + [""] * width)[:width] for r in table_rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(table_rows)
    columns = [pa.array([r[i] for r in table_rows], pa.string()) for i in range(width)]
    assert chunks.csv_bytes(columns) == buf.getvalue().encode()
    sliced = [pa.array(["x", *[r[i] for r in table_rows]], pa.string()).slice(1) for i in range(width)]
    assert chunks.csv_bytes(sliced) == buf.getvalue().encode()


# --- the reader ------------------------------------------------------------------

# Byte strings that are not UTF-8: a surrogate, overlong forms, beyond U+10FFFF, cut short.
NOT_UTF8 = [b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
            b"\xe4\xb8", b"\x80", b"\xf0\x9f\x98"]
CELL = st.text(alphabet=st.sampled_from('ab张1,;"\r\n \t'), max_size=5)


@st.composite
def csv_files(draw):
    """Mostly well-formed CSV (csv.writer's, with LF or CRLF), sometimes damaged."""
    width = draw(st.integers(1, 4))
    body = [[draw(CELL) for _ in range(width)] for _ in range(draw(st.integers(0, 30)))]
    buf = io.StringIO()
    csv.writer(buf, lineterminator=draw(st.sampled_from(["\r\n", "\n"]))).writerows(
        [[f"h{i}" for i in range(width)], *body])
    data = buf.getvalue().encode(draw(st.sampled_from(["utf-8", "gb18030"])))
    for _ in range(draw(st.integers(0, 2))):  # damage: a byte in, a byte out, a row cut short
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\0", b"\xff", b'"', b"\r", b"\n", b"\n\n", b",", b"\xef\xbb\xbf",
                                     b"x" * 40, *NOT_UTF8]))
        data = data[:at] + junk + data[at + draw(st.integers(0, 2)):]
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return width, data


def reference_read(data: bytes, encoding: str):
    out = []
    try:
        for row, fields in csvio.read_records(io.BytesIO(data), encoding=encoding, delimiter=","):
            out.append((row, fields))
    except csvio.CsvFormatError as exc:
        return out, (exc.code, exc.row)
    return out, None


class Trickle(io.RawIOBase):
    """A pipe that hands out a few bytes per read, as gpg's may under load."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._at, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._step, len(self._data) - self._at)
        b[:n] = self._data[self._at:self._at + n]
        self._at += n
        return n


def chunk_read(data: bytes, encoding: str, width: int, step: int = 0):
    """The chunks are looked at only after the whole file is read, as the sealer does
    (later): the reader reuses its buffer, so a chunk must not point into it."""
    out, got, error = [], [], None
    source = Trickle(data, step) if step else io.BytesIO(data)
    reader = chunks.ChunkReader(source, encoding=encoding, delimiter=",", rows_per_chunk=4)
    try:
        header = reader.header()
        if header is None:
            return out, None
        out.append((0, header))
        for chunk in reader.chunks(width):
            got.append(chunk)
    except csvio.CsvFormatError as exc:
        error = (exc.code, exc.row)
    for chunk in got:
        d = chunk.table.to_pydict()
        rows = [(int(r), [d[str(i)][k] for i in range(width)]) for k, r in enumerate(chunk.rows)]
        out += sorted(rows + chunk.odd)
    return out, error


@settings(max_examples=300, deadline=None)
@given(csv_files(), st.sampled_from(["utf-8", "gb18030"]), st.sampled_from([64, 1024 * 1024]),
       st.sampled_from([0, 1, 7]))
def test_reader_gives_the_reference_records_or_its_error(csv_file, encoding, max_line, step):
    """Small MAX_LINE values make many blocks (and lines too long) out of a small file;
    a source of a few bytes per read makes the reader fill its buffer in pieces."""
    width, data = csv_file
    saved = csvio.MAX_LINE
    csvio.MAX_LINE = max_line
    try:
        assert chunk_read(data, encoding, width, step) == reference_read(data, encoding)
    finally:
        csvio.MAX_LINE = saved


@given(st.lists(st.sampled_from([*NOT_UTF8, "张".encode(), b"a", b"\xef\xbf\xbe", b"\xf4\x8f\xbf\xbf"]))
       .map(b"".join) | st.binary(max_size=12))
def test_arrow_refuses_exactly_what_python_cannot_decode(value):
    """The fast reader leaves a UTF-8 block's checking to Arrow's parser (a refused block
    goes to the reference, which names the row): both must draw the line in one place."""
    try:
        value.decode("utf-8")
        python = True
    except UnicodeDecodeError:
        python = False
    reader = chunks.ChunkReader(io.BytesIO(b"h\n"), encoding="utf-8", delimiter=",")
    reader.header()
    options = reader.options(1)
    try:
        chunks.pacsv.read_csv(pa.py_buffer(b'"' + value.replace(b'"', b'""') + b'"\n'), *options)
        arrow = True
    except pa.ArrowInvalid:
        arrow = False
    assert arrow == python


def test_a_plain_file_is_read_by_arrow_and_a_quoted_newline_by_the_reference():
    plain = b"a,b\r\n1,2\r\n3,4\r\n"
    reader = chunks.ChunkReader(io.BytesIO(plain), encoding="utf-8", delimiter=",")
    assert reader.header() == ["a", "b"]
    (chunk,) = list(reader.chunks(2))
    assert chunk.rows.tolist() == [1, 2] and reader._handover is None
    quoted = b'a,b\r\n1,"x\r\ny"\r\n3,4\r\n'
    reader = chunks.ChunkReader(io.BytesIO(quoted), encoding="utf-8", delimiter=",")
    reader.header()
    (chunk,) = list(reader.chunks(2))
    assert chunk.table.column("1").to_pylist() == ["x\r\ny", "4"] and reader._handover is not None


def test_a_sigterm_mid_parse_reaches_the_gateway_not_arrow():
    """Arrow's reader would swap in its own handler while it parses and raise ArrowCancelled:
    the daemon ended as an "internal error" instead of stopping cleanly (seen in CI)."""
    import os
    import signal
    import threading
    import time

    import pyarrow.csv as pacsv

    block = pa.py_buffer(b"a,b,c\n" + b"12345,abcdef,xyz\n" * 400_000)
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:  # parsing nearly all the time
            pacsv.read_csv(block)
        timer.join()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == [signal.SIGTERM]


@settings(deadline=None)
@given(st.lists(st.tuples(st.one_of(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
                                    st.text(max_size=8)),
                          st.integers(1, 10**9), st.sampled_from(["AG001", "AG002", 'A"\\\n'])),
                max_size=20))
def test_a_chunks_cases_reach_the_ledger_as_the_json_they_are(cases):
    """Arrow writes the array the ledger unpacks; a value JSON would have to escape (no
    valid case id holds one) goes through the json module instead: either way, the same
    array."""
    ids, rows, codes = zip(*cases, strict=True) if cases else ((), (), ())
    table = pa.table({"case_id": pa.array(ids, pa.string()),
                      "agency_code": pa.array(codes, pa.string())})
    text = _cases_json(table, np.array(rows, dtype=np.int64))
    assert json.loads(text) == [list(c) for c in cases]


@settings(deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=20),
       st.integers(0, 3))
def test_keys_reach_the_ledger_as_the_json_they_are(pairs, skip):
    """The results flow's keys — one column (case ids) or two (case, day), sliced as
    chunks are — come out as the array the json module would write."""
    cases = pa.array([p[0] for p in pairs], pa.string()).slice(skip)
    days = pa.array([p[1] for p in pairs], pa.string()).slice(skip)
    assert json.loads(chunks.json_rows(cases)) == [[c] for c in cases.to_pylist()]
    assert json.loads(chunks.json_rows(pa.chunked_array([cases]), days)) == [
        list(p) for p in pairs[skip:]]
