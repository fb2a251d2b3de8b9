"""CSV in and out as chunks of Arrow columns: the columnar engine's I/O.

Reading. Arrow's CSV parser is ten times faster than ``csv.reader`` plus the
conversion of its rows to columns, but it is not the same parser: it is lenient
where :mod:`csvio` is strict (a quote after a closing quote, NUL bytes, a lone
CR, an empty line) and it reports no row numbers. So Arrow only parses what is
*proved plain* first: a block of whole lines, at most :data:`csvio.MAX_LINE`
bytes, that decodes, holds no NUL, no CR but in CRLF, no empty line, and — if it
holds a quote at all — matches the strict RFC 4180 grammar line by line (a
quoted field without line breaks). On such a block both parsers give the same
records, one per line. The first block that is not plain, and everything after
it, goes through the reference reader (:func:`csvio.read_records`), whose errors
carry the exact row; its rows are turned into the same chunks. Real exports are
plain, so the reference reader is the exception, and never wrong.

Writing. A chunk's CSV text is built column-wise (quote where ``csv.writer``
quotes, join with the delimiter, CRLF) and taken out of Arrow as one buffer, so
no Python object is made per row.
"""

from __future__ import annotations

import codecs
import csv
import functools
import importlib.util
import io
import json
import re
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gateway.streams import Readable, ReadsInto
from gateway.validation import csvio

if TYPE_CHECKING:
    from typing_extensions import Buffer

# pyarrow converts a Python scalar argument (``pc.equal(col, "x")``) after trying to
# import ``dateutil.relativedelta``; where python-dateutil is not installed that failed
# import searches sys.path on every call — a quarter of a profile of a million cases.
# A None entry is Python's own record of "no such module": the import fails at once.
if importlib.util.find_spec("dateutil") is None:
    sys.modules.setdefault("dateutil.relativedelta", None)  # type: ignore[arg-type]  # typeshed: modules only

# Arrow's CSV reader, in the main thread, swaps in its own SIGINT/SIGTERM handler while it
# parses and turns a signal into ArrowCancelled — so a SIGTERM that lands mid-parse ended
# the daemon as an "internal error", exit 1, instead of the clean stop of docs/cli.md (seen in
# CI). The gateway's own handlers say when to stop; the flows check them between chunks.
pa.enable_signal_handlers(False)

ROWS_PER_CHUNK = 4096  # rows checked, staged and sealed at a time: bounds memory
FIRST_CHUNK = 1000  # chunks grow from this, doubling: a small file is still checked in steps
_BOM = b"\xef\xbb\xbf"


@dataclass
class Chunk:
    """Consecutive records of a file. *table* holds the rows with as many fields as the
    header (column ``i`` is header position ``i``, all strings), *rows* their 1-based row
    numbers; *odd* the rows of another width, for the reference validator to explain."""

    table: pa.Table
    rows: np.ndarray
    odd: list[tuple[int, list[str]]]

    @property
    def records(self) -> int:
        return self.table.num_rows + len(self.odd)


def _strict_lines(delimiter: bytes) -> re.Pattern[bytes]:
    d = re.escape(delimiter)
    field = rb'(?:"(?:[^"\r\n]|"")*"|[^"\r\n' + d + rb"]*)"
    return re.compile(rb"(?:" + field + rb"(?:" + d + field + rb")*\r?\n)*")


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the stream: what the reference reader reads
    from once the fast path stops."""

    def __init__(self, prefix: bytes, rest: Readable) -> None:
        self._prefix, self._rest = memoryview(prefix), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        b = memoryview(buffer).cast("B")  # any writable buffer, as io.RawIOBase promises
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)


class ChunkReader:
    """A decrypted CSV stream as its header, then :class:`Chunk` s of at most
    :data:`ROWS_PER_CHUNK` records. Format errors raise :class:`csvio.CsvFormatError`
    with the row, exactly as :func:`csvio.read_records` does."""

    def __init__(self, binary: ReadsInto, *, encoding: str, delimiter: str,
                 rows_per_chunk: int = ROWS_PER_CHUNK) -> None:
        self._in = binary
        self._encoding = encoding
        self._delimiter = delimiter
        self._per_chunk = rows_per_chunk
        self._target = min(FIRST_CHUNK, rows_per_chunk)
        # One buffer, read into and parsed in place, for the reader's life: a fresh
        # megabyte per block (and per copy of it) is mapped, faulted in page by page and
        # unmapped by glibc, which cost the reading thread a second of system time per
        # 300,000 cases. Bytes [_used, _filled) are read, not yet parsed (in the file's
        # encoding); one byte more than a block, for the last line's missing line break.
        self._buf = bytearray(csvio.MAX_LINE + 1)
        self._view = memoryview(self._buf)
        self._breaks = np.empty(len(self._buf), dtype=np.bool_)  # scratch for _plain
        self._filled = self._used = 0
        self._eof = False
        self._row = -1  # the last record handed out; the header is row 0
        self._handover: _Prefixed | None = None  # set when the reference reader takes over
        self._reference: Generator[tuple[int, list[str]]] | None = None
        self._strict = _strict_lines(delimiter.encode())
        # Arrow splits on one ASCII byte other than NUL; [schema].delimiter may be any one
        # character (a fullwidth comma "，"), and a file so delimited is read by the
        # reference reader from its first byte — ParseOptions would refuse the delimiter.
        # So is one that is the quote or a line break: "plain" (below) assumes it is not.
        self._arrow = delimiter.isascii() and delimiter not in '\0"\r\n'
        self._width = 0
        self._raw = 0  # the last plain block's length, at the buffer's start: a hand-over
        self._fill(3)
        if self._buf.startswith(_BOM, 0, self._filled):
            self._encoding = "utf-8"  # a UTF-8 BOM wins over the configured encoding
            self._used = 3
        self._utf8 = codecs.lookup(self._encoding).name == "utf-8"

    # --- the header ---------------------------------------------------------------

    def header(self) -> list[str] | None:
        """Row 0, or None for an empty file."""
        line = self._plain_block(first_line=True) if self._arrow else None
        if line is None:
            return self._reference_record()
        self._row = 0
        return next(csv.reader([bytes(line).decode("utf-8")], delimiter=self._delimiter,
                               strict=True))

    # --- the records --------------------------------------------------------------

    def options(self, width: int) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions,
                                           pacsv.ConvertOptions]:
        """How Arrow parses a plain block of *width* columns: strictly, every value a
        string, UTF-8 checked."""
        names = [str(i) for i in range(width)]
        return (pacsv.ReadOptions(column_names=names, use_threads=False, block_size=2 * csvio.MAX_LINE),
                pacsv.ParseOptions(delimiter=self._delimiter, quote_char='"', double_quote=True,
                                   escape_char=False, newlines_in_values=False,
                                   ignore_empty_lines=False),
                pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                     strings_can_be_null=False, quoted_strings_can_be_null=False,
                                     check_utf8=True))

    def chunks(self, width: int, *, rows_per_chunk: int | None = None) -> Iterator[Chunk]:
        """The records as chunks of *width* columns; *rows_per_chunk*, if given, replaces
        the size the reader was made with (a flow that can afford larger chunks asks)."""
        if rows_per_chunk is not None:
            self._per_chunk = rows_per_chunk
            self._target = min(self._target, rows_per_chunk)
        self._width = width
        options = None  # made at the first plain block: Arrow may never be asked
        tables: list[pa.Table] = []
        rows = 0
        if not self._arrow and self._handover is None:  # header() not asked first
            self._to_reference(b"")
        while self._handover is None:
            block = self._plain_block(first_line=False)
            if block is None:
                break
            options = options or self.options(width)
            if bytes(block[:3]) == _BOM:  # Arrow drops a BOM at a block's start as the file's:
                self._to_reference(bytes(self._view[:self._raw]))  # mid-file, it is a
                break                                                # field's first character
            try:
                table = pacsv.read_csv(pa.py_buffer(block), *options)
            except pa.ArrowInvalid:  # a row of another width: the reference reader explains
                self._to_reference(bytes(self._view[:self._raw]))
                break
            tables.append(table)
            rows += table.num_rows
            while rows >= self._target:  # a chunk of the target size; the rest waits
                whole = pa.concat_tables(tables)
                yield self._fast_chunk(whole.slice(0, self._target))
                tables = [whole.slice(self._target)]
                rows = tables[0].num_rows
                self._grow()
        if rows:
            yield self._fast_chunk(pa.concat_tables(tables))
        if self._handover is not None:
            yield from self._reference_chunks()

    def _grow(self) -> None:
        self._target = min(self._target * 2, self._per_chunk)

    def _fast_chunk(self, table: pa.Table) -> Chunk:
        table = table.combine_chunks()
        first = self._row + 1
        self._row += table.num_rows
        return Chunk(table, np.arange(first, self._row + 1, dtype=np.int64), [])

    def _reference_chunks(self) -> Iterator[Chunk]:
        columns: list[list[str]] = [[] for _ in range(self._width)]
        rows: list[int] = []
        odd: list[tuple[int, list[str]]] = []
        try:
            for row, values in self._records():
                self._row = row
                if len(values) == self._width:
                    for col, v in zip(columns, values, strict=True):
                        col.append(v)
                    rows.append(row)
                else:
                    odd.append((row, values))
                if len(rows) + len(odd) >= self._target:
                    yield self._slow_chunk(columns, rows, odd)
                    columns, rows, odd = [[] for _ in range(self._width)], [], []
                    self._grow()
        except csvio.CsvFormatError:
            if rows or odd:  # the rows before the damage count, as they do row by row
                yield self._slow_chunk(columns, rows, odd)
            raise
        if rows or odd:
            yield self._slow_chunk(columns, rows, odd)

    def _slow_chunk(self, columns: list[list[str]], rows: list[int],
                    odd: list[tuple[int, list[str]]]) -> Chunk:
        table = pa.table({str(i): pa.array(c, pa.string()) for i, c in enumerate(columns)})
        return Chunk(table, np.array(rows, dtype=np.int64), odd)

    # --- blocks -------------------------------------------------------------------

    def _fill(self, limit: int) -> None:
        """Read until *limit* bytes are held or the stream ends (a pipe returns what it has)."""
        while not self._eof and self._filled < limit:
            n = self._in.readinto(self._view[self._filled:limit])
            if not n:
                self._eof = True
            else:
                self._filled += n

    def _compact(self) -> None:
        """Move what is read but not parsed to the buffer's start (a partial line, as a
        rule), once nothing handed out points into the buffer's front any more."""
        if self._used:
            rest = bytes(self._view[self._used:self._filled])  # overlapping: copy first
            self._buf[:len(rest)] = rest
            self._filled, self._used = len(rest), 0

    def _plain_block(self, *, first_line: bool) -> bytes | memoryview | None:
        """The next whole lines as UTF-8 if they are plain (see the module), else None with
        the reader switched to the reference (or at the end of the file). A UTF-8 block is
        a view of the reader's buffer: valid until the next call."""
        self._compact()
        if not self._filled and self._eof:
            return None
        self._fill(len(self._buf) - 1)  # a block of MAX_LINE bytes at most
        n, buf = self._filled, self._buf
        end = buf.find(b"\n", 0, n) if first_line else buf.rfind(b"\n", 0, n)
        if end < 0:
            if not self._eof or not n:  # a line longer than MAX_LINE, or nothing
                self._used = n
                self._to_reference(bytes(self._view[:n]))
                return None
            buf[n] = 0x0A  # the last line has no line break
            end = n
            self._filled = n + 1
        self._used = end + 1
        utf8 = self._plain(end + 1, decode=first_line or not self._utf8)
        if utf8 is None:
            self._to_reference(bytes(self._view[:end + 1]))
            return None
        self._raw = end + 1
        return utf8

    def _plain(self, m: int, *, decode: bool) -> bytes | memoryview | None:
        """The buffer's first *m* bytes (whole lines) as UTF-8 if they are plain, else None.
        The line breaks are judged from their positions (NumPy; the substring searches
        cost five times more). *decode* False: UTF-8 left for Arrow's parser to check,
        which refuses exactly what Python's decoder does (a test holds them equal) and
        hands the block over then."""
        buf = self._buf
        if buf.find(b"\0", 0, m) >= 0:
            return None
        a = np.frombuffer(buf, dtype=np.uint8, count=m)
        scratch = self._breaks[:m]
        if buf.find(b"\r", 0, m) >= 0:  # every CR is in a CRLF
            cr = np.flatnonzero(np.equal(a, 13, out=scratch))
            if cr[-1] + 1 >= m or not (a[cr + 1] == 10).all():
                return None
        if buf.startswith((b"\n", b"\r\n"), 0, m):  # an empty line first, or after a break:
            return None
        breaks = np.flatnonzero(np.equal(a, 10, out=scratch))
        gaps = np.diff(breaks)  # \n\n, or \n\r\n
        if (gaps == 1).any() or ((gaps == 2) & (a[breaks[:-1] + 1] == 13)).any():
            return None
        block = self._view[:m]
        if not decode:
            quoted = buf.find(b'"', 0, m) >= 0
            utf8: bytes | memoryview = block
        else:
            try:
                text = codecs.decode(block, self._encoding)
            except UnicodeDecodeError:
                return None
            utf8 = block if self._utf8 else text.encode("utf-8")
            quoted = '"' in text
        if quoted and self._strict.fullmatch(utf8) is None:
            return None
        return utf8

    def _to_reference(self, unread: bytes) -> None:
        """From here on, the reference reader: it gets the bytes this reader holds first."""
        self._handover = _Prefixed(unread + bytes(self._view[self._used:self._filled]), self._in)
        self._filled = self._used = 0
        self._eof = True

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """The reference reader's records, numbered on from the last row handed out."""
        if self._reference is None:
            assert self._handover is not None  # noqa: S101 — invariant, not an input check
            self._reference = csvio.read_records(self._handover, encoding=self._encoding,
                                                 delimiter=self._delimiter, start_row=self._row,
                                                 bom=False)
        return self._reference

    def _reference_record(self) -> list[str] | None:
        if self._handover is None:
            self._to_reference(b"")
        first = next(self._records(), None)
        if first is None:
            return None
        self._row = first[0]
        return first[1]

    def close(self) -> None:
        if self._reference is not None:
            self._reference.close()


# --- writing -----------------------------------------------------------------------


def string_bytes(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a string column: its UTF-8 bytes as NumPy views, no copy."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + len(col) + 1]
    data = col.buffers()[2]
    return offsets, (np.frombuffer(data, dtype=np.uint8) if data is not None and data.size
                     else np.zeros(1, dtype=np.uint8))


@functools.lru_cache(maxsize=16)
def _byte_sets(table: bytes) -> tuple[list[bytes], bytes]:
    """The bytes a 256-entry table marks (one by one), and the bytes it does not."""
    return ([bytes([b]) for b in range(256) if table[b]],
            bytes(b for b in range(256) if not table[b]))


def _none_of(data: bytes, table: bytes) -> bool:
    """Whether *data* holds no byte that *table* marks: a search per byte when they are
    few, else what is left after deleting the unmarked ones (both C loops; indexing the
    table with every byte costs ten times more)."""
    marked, unmarked = _byte_sets(table)
    if len(marked) <= 4:
        return not any(m in data for m in marked)
    return not data.translate(None, unmarked)


def rows_with(col: pa.Array, table: np.ndarray) -> np.ndarray | None:
    """Rows holding a byte that *table* (256 booleans) marks; None when no row does —
    one pass over the column's bytes instead of a regex per value."""
    offsets, data = string_bytes(col)
    span = data[offsets[0]:offsets[-1]]
    if _none_of(span.tobytes(), table.tobytes()):  # the usual case, at memchr speed
        return None
    hits = table[span]
    marks = np.concatenate(([0], np.cumsum(hits, dtype=np.int64)))
    return marks[offsets[1:] - offsets[0]] > marks[offsets[:-1] - offsets[0]]


QUOTE_BYTES = np.zeros(256, dtype=bool)
QUOTE_BYTES[[ord(","), ord('"'), ord("\r"), ord("\n")]] = True


def csv_bytes(columns: list[pa.Array], plain: list[bool] | None = None) -> bytes:
    """Rows of *columns* as ``csvio.writer`` writes them (see :func:`csv_lines`)."""
    if not columns or len(columns[0]) == 0:
        return b""
    return lines_bytes(csv_lines(columns, plain))


def csv_lines(columns: list[pa.Array], plain: list[bool] | None = None) -> pa.Array:
    """Each row of *columns* as ``csvio.writer`` writes it, one string per row: comma-
    separated, a field quoted (quotes doubled) when it holds a comma, a quote, CR or LF,
    the row ending CRLF. *plain* marks columns known to hold none of those (no need to
    look). One string per row, so consecutive rows are consecutive bytes
    (:func:`lines_bytes`): several slices are cut from one build."""
    quoted = []
    for i, col in enumerate(columns):
        needs = None if plain and plain[i] else rows_with(col, QUOTE_BYTES)
        if len(columns) == 1:  # csv.writer quotes a lone empty field: a row, not a blank line
            empty = pc.equal(pc.binary_length(col), 0).to_numpy(zero_copy_only=False)
            needs = empty if needs is None else needs | empty
        if needs is not None and needs.any():
            wrapped = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
            col = pc.if_else(pa.array(needs), wrapped, col)
        quoted.append(col)
    quoted[-1] = pc.binary_join_element_wise(quoted[-1], "\r\n", "")
    lines = pc.binary_join_element_wise(*quoted, ",") if len(quoted) > 1 else quoted[0]
    return lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines


def lines_buffer(lines: pa.Array, start: int = 0, length: int | None = None) -> pa.Buffer:
    """Rows *start*..*start+length* (default: to the end) of :func:`csv_lines`: a view of
    Arrow's bytes, written to a pipe as it is. A copy of each slice into ``bytes`` was a
    fresh quarter megabyte, mapped and faulted in, for every agency and role of a chunk."""
    offsets, _ = string_bytes(lines)
    end = len(lines) if length is None else start + length
    return lines.buffers()[2][int(offsets[start]):int(offsets[end])]


def lines_bytes(lines: pa.Array, start: int = 0, length: int | None = None) -> bytes:
    """:func:`lines_buffer` as bytes."""
    return lines_buffer(lines, start, length).to_pybytes()


# Bytes a JSON string cannot hold as they are. What the flows hand the ledger — valid
# case ids ([A-Za-z0-9._-]), dates, agency codes from the configuration — holds none;
# should a value ever, the rows are written by the json module instead.
_JSON_ESCAPED = np.zeros(256, dtype=bool)
_JSON_ESCAPED[[*range(0x20), ord('"'), ord("\\")]] = True


def json_rows(*arrays: pa.Array | pa.ChunkedArray) -> str:
    """``[[a, b, …], …]``: the rows of the columns (strings quoted, integers as they are)
    as one JSON array, the form in which the flows hand the ledger a chunk's keys —
    unpacked there by one statement instead of a statement, or an executemany, per row."""
    columns = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    if not len(columns[0]):
        return "[]"
    texts = [pa.types.is_string(c.type) for c in columns]
    if any(t and rows_with(c, _JSON_ESCAPED) is not None for c, t in zip(columns, texts, strict=True)):
        return json.dumps([list(r) for r in zip(*(c.to_pylist() for c in columns), strict=True)])
    parts: list[pa.Array | str] = []
    tail = "["  # what closes one value and opens the next, literals joined: fewer arguments
    for i, (col, text) in enumerate(zip(columns, texts, strict=True)):
        parts += [tail + ("," if i else "") + ('"' if text else ""),
                  col if text else pc.cast(col, pa.string())]
        tail = '"' if text else ""
    items = pc.binary_join_element_wise(*parts, tail + "],", "")
    return "[" + str(memoryview(lines_buffer(items))[:-1], "utf-8") + "]"
