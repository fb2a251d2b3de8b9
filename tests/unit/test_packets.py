"""The OpenPGP framing walker: truncated messages are told from complete ones, never mistaken."""

from __future__ import annotations

import base64
import os

from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto.packets import ends_early


def new_packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        n -= 192
        head = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        head = b"\xff" + len(body).to_bytes(4, "big")
    return bytes([0xC0 | tag]) + head + body


def partial_packet(tag: int, body: bytes, chunk_pow: int = 9) -> bytes:
    size = 1 << chunk_pow
    out = bytes([0xC0 | tag])
    while len(body) > size:
        out += bytes([224 + chunk_pow]) + body[:size]
        body = body[size:]
    return out + new_packet(0, body)[1:]


def old_packet(tag: int, body: bytes) -> bytes:
    return bytes([0x80 | (tag << 2) | 1]) + len(body).to_bytes(2, "big") + body


def message(data_len: int) -> bytes:
    return (new_packet(1, os.urandom(94)) + old_packet(1, os.urandom(60))
            + partial_packet(18, os.urandom(data_len)))


def armored(raw: bytes) -> bytes:
    b64 = base64.b64encode(raw)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN PGP MESSAGE-----\n\n" + b"\n".join(lines) + b"\n=abcd\n-----END PGP MESSAGE-----\n"


@given(st.integers(min_value=0, max_value=20000), st.booleans())
def test_complete_messages_are_not_truncated(tmp_path_factory, n, armor):
    path = tmp_path_factory.mktemp("p") / "m.pgp"
    raw = message(n)
    path.write_bytes(armored(raw) if armor else raw)
    assert not ends_early(path)


@given(st.integers(min_value=0, max_value=5000), st.floats(min_value=0.0, max_value=0.999))
def test_every_cut_is_truncated(tmp_path_factory, n, keep):
    path = tmp_path_factory.mktemp("p") / "m.pgp"
    raw = message(n)
    path.write_bytes(raw[: max(1, int(len(raw) * keep))])
    assert ends_early(path)


def test_armor_without_its_end_line_is_truncated(tmp_path):
    path = tmp_path / "m.asc"
    path.write_bytes(armored(message(300)).split(b"=abcd")[0])
    assert ends_early(path)


def test_garbage_and_empty_are_not_called_truncated(tmp_path):
    for data in (b"", b"not openpgp at all\n" * 10, b"\x00\x01\x02"):
        (tmp_path / "g").write_bytes(data)
        assert not ends_early(tmp_path / "g")
