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
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gateway.validation import csvio

# pyarrow converts a Python scalar argument (``pc.equal(col, "x")``) after trying to
# import ``dateutil.relativedelta``; where python-dateutil is not installed that failed
# import searches sys.path on every call — a quarter of a profile of a million cases.
# A None entry is Python's own record of "no such module": the import fails at once.
if importlib.util.find_spec("dateutil") is None:
    sys.modules.setdefault("dateutil.relativedelta", None)  # type: ignore[arg-type]

# Arrow's CSV reader, in the main thread, swaps in its own SIGINT/SIGTERM handler while it
# parses and turns a signal into ArrowCancelled — so a SIGTERM that lands mid-parse ended
# the daemon as an "internal error", exit 1, instead of the clean stop of SPEC §11 (seen in
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

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix, self._rest = memoryview(prefix), rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
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

    def __init__(self, binary: BinaryIO, *, encoding: str, delimiter: str,
                 rows_per_chunk: int = ROWS_PER_CHUNK) -> None:
        self._in = binary
        self._encoding = encoding
        self._delimiter = delimiter
        self._per_chunk = rows_per_chunk
        self._target = min(FIRST_CHUNK, rows_per_chunk)
        self._pending = b""  # read, not yet parsed (in the file's encoding)
        self._eof = False
        self._row = -1  # the last record handed out; the header is row 0
        self._handover: _Prefixed | None = None  # set when the reference reader takes over
        self._reference: Iterator[tuple[int, list[str]]] | None = None
        self._strict = _strict_lines(delimiter.encode())
        self._width = 0
        self._raw = b""  # the last plain block as read, for a hand-over to the reference
        start = self._read(3)
        if start == _BOM:
            self._encoding = "utf-8"  # a UTF-8 BOM wins over the configured encoding
        else:
            self._pending = start
        self._utf8 = codecs.lookup(self._encoding).name == "utf-8"

    # --- the header ---------------------------------------------------------------

    def header(self) -> list[str] | None:
        """Row 0, or None for an empty file."""
        line = self._plain_block(first_line=True)
        if line is None:
            return self._reference_record()
        self._row = 0
        return next(csv.reader([line.decode("utf-8")], delimiter=self._delimiter, strict=True))

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

    def chunks(self, width: int) -> Iterator[Chunk]:
        self._width = width
        options = self.options(width)
        tables: list[pa.Table] = []
        rows = 0
        while self._handover is None:
            block = self._plain_block(first_line=False)
            if block is None:
                break
            try:
                table = pacsv.read_csv(pa.py_buffer(block), *options)
            except pa.ArrowInvalid:  # a row of another width: the reference reader explains
                self._to_reference(self._raw)
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

    def _read(self, n: int) -> bytes:
        if self._eof:
            return b""
        parts, want = [], n
        while want > 0:  # a pipe returns what it has: fill the block
            data = self._in.read(want)
            if not data:
                self._eof = True
                break
            parts.append(data)
            want -= len(data)
        return b"".join(parts)

    def _plain_block(self, *, first_line: bool) -> bytes | None:
        """The next whole lines as UTF-8 if they are plain (see the module), else None with
        the reader switched to the reference (or at the end of the file)."""
        if not self._pending and self._eof:
            return None
        data = self._pending + self._read(csvio.MAX_LINE - len(self._pending))
        self._pending = b""
        end = data.find(b"\n") if first_line else data.rfind(b"\n")
        if end < 0:
            if not self._eof or not data:  # a line longer than MAX_LINE, or nothing
                self._to_reference(data)
                return None
            end, data = len(data), data + b"\n"  # the last line has no line break
        block, self._pending = data[:end + 1], data[end + 1:]
        utf8 = self._plain(block, decode=first_line or not self._utf8)
        if utf8 is None:
            self._to_reference(block)
            return None
        self._raw = block
        return utf8

    def _plain(self, block: bytes, *, decode: bool) -> bytes | None:
        """*block* (whole lines) as UTF-8 if it is plain, else None. The line breaks are
        judged from their positions (NumPy; the substring searches cost five times more).
        *decode* False: UTF-8 left for Arrow's parser to check, which refuses exactly what
        Python's decoder does (a test holds them equal) and hands the block over then."""
        if b"\0" in block:
            return None
        a = np.frombuffer(block, dtype=np.uint8)
        if b"\r" in block:  # every CR is in a CRLF
            cr = np.flatnonzero(a == 13)
            if cr[-1] + 1 >= len(a) or not (a[cr + 1] == 10).all():
                return None
        if block.startswith((b"\n", b"\r\n")):  # an empty line first, or after a break:
            return None
        breaks = np.flatnonzero(a == 10)
        gaps = np.diff(breaks)  # \n\n, or \n\r\n
        if (gaps == 1).any() or ((gaps == 2) & (a[breaks[:-1] + 1] == 13)).any():
            return None
        utf8 = block
        if decode:
            try:
                text = block.decode(self._encoding)
            except UnicodeDecodeError:
                return None
            utf8 = block if self._utf8 else text.encode("utf-8")
        if b'"' in utf8 and self._strict.fullmatch(utf8) is None:
            return None
        return utf8

    def _to_reference(self, unread: bytes) -> None:
        """From here on, the reference reader: it gets the bytes this reader holds first."""
        self._handover = _Prefixed(unread + self._pending, self._in)
        self._pending, self._eof = b"", True

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """The reference reader's records, numbered on from the last row handed out."""
        if self._reference is None:
            assert self._handover is not None
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
            self._reference.close()  # type: ignore[attr-defined]


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


def lines_bytes(lines: pa.Array, start: int = 0, length: int | None = None) -> bytes:
    """Rows *start*..*start+length* (default: to the end) of :func:`csv_lines`, as bytes."""
    offsets, _ = string_bytes(lines)
    end = len(lines) if length is None else start + length
    return lines.buffers()[2][int(offsets[start]):int(offsets[end])].to_pybytes()
