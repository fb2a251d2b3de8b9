"""Streaming CSV in and out, with limits that make hostile input an error, not a crash.

Reading: UTF-8 (a BOM is accepted and removed) or GB18030, one record at a
time with its 1-based row number (0 is the header). A physical line longer
than :data:`MAX_LINE` characters, invalid encoding, NUL bytes or broken quoting
raise :class:`CsvFormatError` with a code and the row where it happened. The
input stream is never closed here — it belongs to the caller (for an
``OpenedMessage``, closing would kill gpg before the verdict).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from typing_extensions import Buffer

MAX_LINE = 1024 * 1024  # bytes in one physical line; a case row is a few hundred
csv.field_size_limit(MAX_LINE)


class CsvFormatError(Exception):
    def __init__(self, code: str, message: str, row: int) -> None:
        super().__init__(message)
        self.code, self.message, self.row = code, message, row


def _lines(buffered: BinaryIO, encoding: str, position: list[int]) -> Iterator[str]:
    """Physical lines, decoded one by one so an encoding error has an exact row.

    Splitting bytes on LF is safe for both encodings: 0x0A never occurs inside a
    UTF-8 or GB18030 multi-byte sequence.
    """
    while True:
        raw = buffered.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE:
            raise CsvFormatError("E_LINE_TOO_LONG", f"a line is longer than {MAX_LINE} bytes",
                                 position[0] + 1)
        if b"\0" in raw:
            raise CsvFormatError("E_CSV", "the file contains NUL bytes", position[0] + 1)
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError:
            raise CsvFormatError("E_ENCODING", f"a line is not valid {encoding} text",
                                 position[0] + 1) from None


def read_records(binary: io.RawIOBase | io.BufferedIOBase, *, encoding: str, delimiter: str,
                 start_row: int = -1, bom: bool = True) -> Generator[tuple[int, list[str]]]:
    """Yield (row, fields): row 0 is the header, then 1-based data rows.

    *start_row* is the row before the stream's first record (the columnar reader hands
    over mid-file); *bom* whether a UTF-8 BOM may open the stream.
    """
    buffered = binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(
        binary, buffer_size=256 * 1024)
    if bom and buffered.peek(3)[:3] == b"\xef\xbb\xbf":
        buffered.read(3)
        encoding = "utf-8"  # a UTF-8 BOM wins over the configured encoding
    position = [start_row]
    try:
        reader = csv.reader(_lines(buffered, encoding, position), delimiter=delimiter, strict=True)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CsvFormatError("E_CSV", f"malformed CSV: {exc}", position[0] + 1) from None
            position[0] += 1
            yield position[0], fields
    finally:
        if buffered is not binary:
            with contextlib.suppress(ValueError):  # already closed by its owner
                buffered.detach()  # keep the caller's stream open


class BinaryWriter(Protocol):
    """What :class:`TextSink` writes to: a SealWriter, a file."""

    def write(self, data: Buffer, /) -> object: ...


class TextSink:
    """Text -> UTF-8 bytes for a binary writer (a SealWriter), buffered.

    ``csv.writer`` writes once per row; without a buffer that is one pipe write
    per row and per role. Call :meth:`flush` before closing the writer below.
    """

    def __init__(self, raw: BinaryWriter, buffer_bytes: int = 256 * 1024) -> None:
        self._raw = raw
        self._parts: list[Buffer] = []
        self._size = 0
        self._limit = buffer_bytes

    def write(self, s: str) -> int:
        b = s.encode("utf-8")
        self._parts.append(b)
        self._size += len(b)
        if self._size >= self._limit:
            self.flush()
        return len(s)

    DIRECT = 64 * 1024  # a pipe's capacity: a larger part gains nothing from company

    def write_bytes(self, b: Buffer) -> None:
        """Text already encoded (a chunk from :func:`chunks.csv_bytes`, or a view of
        Arrow's bytes). A part of :data:`DIRECT` bytes or more goes to the writer as it is
        (after what waits): joining it to the rest would copy it once more."""
        size = memoryview(b).nbytes
        if size >= min(self.DIRECT, self._limit):
            self.flush()
            self._raw.write(b)
            return
        self._parts.append(b)
        self._size += size
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._raw.write(b"".join(self._parts))
            self._parts.clear()
            self._size = 0


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def needs_neutralising(value: str) -> bool:
    """Whether a spreadsheet would read *value* as a formula (OWASP: CSV injection)."""
    return value.startswith(FORMULA_TRIGGERS)


def neutralise(value: str) -> str:
    """A free-text value as the gateway writes it: a leading ``'`` makes spreadsheet
    programs show ``=HYPERLINK(…)`` as text instead of running it."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def writer(sink: TextSink) -> Any:
    """A CSV writer (RFC 4180, CRLF line ends) into *sink*."""
    return csv.writer(sink, lineterminator="\r\n")
