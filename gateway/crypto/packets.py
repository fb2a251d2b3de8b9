"""Just enough of the OpenPGP packet framing (RFC 4880 §4.2) to tell a *truncated* message.

gpg reports a message that ends early the same way as one that was tampered with
(``BADMDC`` or ``NODATA``). For the sender these are different stories — "your
upload was cut off, send it again" versus "someone changed the file" — so after
gpg refused a message we walk its packet headers: if the last packet's declared
length runs past the end of the file, or the file ends before any encrypted
data, the message was truncated (``E_TRUNCATED``). Nothing here decrypts or
trusts anything; it only reads lengths. ASCII armor is decoded line by line, so
memory stays bounded at any size.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_SESSION_KEY_TAGS = {1, 3}  # PKESK, SKESK: a message that stops after them has no data
_ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
_ARMOR_END = b"-----END PGP MESSAGE-----"
_LONG_LINE = 64 * 1024  # bytes of an armor line held before it is handed on in pieces
# Bytes outside the base64 alphabet, padding included: only data characters are counted
# into groups of four (padding ends the data anyway).
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")))


class _Stream:
    """Reads exactly-n bytes from an iterator of chunks; ``None`` when it runs dry first.

    Consumed bytes are passed over by an offset, not sliced off: slicing copied the rest of
    the 256 KiB chunk at every read, and a file of two-byte packets took a second a chunk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._at = 0  # bytes of _buf already read

    def _next(self) -> bool:
        """The next chunk after what is left of this one; False at the end."""
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buf = self._buf[self._at:] + chunk
        self._at = 0
        return True

    def read(self, n: int) -> bytes | None:
        while len(self._buf) - self._at < n:
            if not self._next():
                return None
        at = self._at
        self._at = at + n
        return self._buf[at:at + n]

    def skip(self, n: int) -> bool:
        while n > len(self._buf) - self._at:
            n -= len(self._buf) - self._at
            self._buf, self._at = b"", 0
            if not self._next():
                return False
        self._at += n
        return True

    def at_end(self) -> bool:
        while self._at >= len(self._buf):
            chunk = next(self._chunks, None)
            if chunk is None:
                return True
            self._buf, self._at = chunk, 0
        return False


def _binary_chunks(fh: BinaryIO, first: bytes) -> Iterator[bytes]:
    yield first
    while chunk := fh.read(256 * 1024):
        yield chunk


def _armored_chunks(fh: BinaryIO, first: bytes, complete: list[bool]) -> Iterator[bytes]:
    """The base64 body of an armored message; sets ``complete[0]`` when the END line came.

    Base64 is decoded in whole groups of four characters, carried over from line to line:
    RFC 4880 only bounds a line at 76 characters, and a line of 70 decoded on its own (as
    if padded) would turn a complete message into one that seems to stop early."""
    lines = _lines(fh, first)
    in_body = headers_done = False
    pending = b""  # base64 characters of an unfinished group
    for line in lines:
        line = line.strip()
        if not in_body:
            in_body = line == _ARMOR_BEGIN
            continue
        if line == _ARMOR_END:
            complete[0] = True
            break
        if not headers_done:
            if not line:
                headers_done = True
                continue
            if b":" in line:
                continue
            headers_done = True  # no armor headers: this is already body
        elif line.startswith(b"="):  # the CRC-24 line
            continue
        pending += line.translate(None, _NOT_BASE64)
        whole = len(pending) - len(pending) % 4
        if whole:
            yield _b64(pending[:whole])
            pending = pending[whole:]
    if pending:
        yield _b64(pending)


def _lines(fh: BinaryIO, first: bytes) -> Iterator[bytes]:
    """The file's lines; one longer than :data:`_LONG_LINE` in pieces of at least that
    length. Armor lines have at most 76 characters (RFC 4880 §6.3): an endless line is a
    hostile file's, and held whole it grew without bound and was re-split at every read."""
    pending = first
    while True:
        chunk = fh.read(256 * 1024)
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from whole
        if len(pending) > _LONG_LINE:  # base64 groups carry over, so a piece reads the same
            yield pending
            pending = b""
        if not chunk:
            if pending:
                yield pending
            return


def _b64(line: bytes) -> bytes:
    try:
        return base64.b64decode(line + b"=" * (-len(line) % 4))
    except (binascii.Error, ValueError):
        return b""


def is_encrypted(head: bytes) -> bool:
    """Whether *head* (the first KiB of a file) starts an *encrypted* OpenPGP message: its
    first packet is a public-key or symmetric session key. Anything else — plaintext, a
    signed-only or clear-signed document, garbage — may hold case data in the clear, and
    the gateway keeps no copy of it."""
    if head.lstrip().startswith(_ARMOR_BEGIN):
        body = b"".join(_armored_chunks(io.BytesIO(b""), head.lstrip(), [False]))
        return _first_tag(body) in _SESSION_KEY_TAGS
    return _first_tag(head) in _SESSION_KEY_TAGS


def _first_tag(data: bytes) -> int | None:
    if not data or not data[0] & 0x80:
        return None
    return data[0] & 0x3F if data[0] & 0x40 else (data[0] >> 2) & 0x0F


def ends_early(path: Path) -> bool:
    """True when the OpenPGP message in *path* stops before its packets do."""
    with Path(path).open("rb") as fh:
        first = fh.read(4096)
        if first.lstrip().startswith(_ARMOR_BEGIN):
            complete = [False]
            body = _armored_chunks(fh, first, complete)
            truncated = _walk(_Stream(body))
            if not truncated:  # the walk may stop early (garbage, an indeterminate length):
                for _ in body:  # whether the END line came is still to be read, not assumed
                    pass
            return truncated or not complete[0]
        return _walk(_Stream(_binary_chunks(fh, first)))


def _walk(s: _Stream) -> bool:
    """Walk top-level packets; True if the data ends inside a header or a body."""
    last_tag = None
    while not s.at_end():
        head = s.read(1)
        if head is None:
            return True
        b = head[0]
        if not b & 0x80:
            return False  # not a packet header: garbage, not truncation (gpg said why)
        if b & 0x40:  # new format
            last_tag = b & 0x3F
            while True:
                o = s.read(1)
                if o is None:
                    return True
                o1 = o[0]
                if o1 < 192:
                    length, partial = o1, False
                elif o1 < 224:
                    o2 = s.read(1)
                    if o2 is None:
                        return True
                    length, partial = ((o1 - 192) << 8) + o2[0] + 192, False
                elif o1 == 255:
                    raw = s.read(4)
                    if raw is None:
                        return True
                    length, partial = int.from_bytes(raw, "big"), False
                else:
                    length, partial = 1 << (o1 & 0x1F), True
                if not s.skip(length):
                    return True
                if not partial:
                    break
        else:  # old format
            last_tag = (b >> 2) & 0x0F
            kind = b & 0x03
            if kind == 3:
                return False  # indeterminate length: runs to the end by definition
            raw = s.read((1, 2, 4)[kind])
            if raw is None or not s.skip(int.from_bytes(raw, "big")):
                return True
    return last_tag in _SESSION_KEY_TAGS  # keys for data that never came
