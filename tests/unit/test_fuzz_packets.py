"""The OpenPGP packet walker against hostile bytes (issue 22, deliverable 2).

:func:`packets.ends_early` reads a sender's file after gpg refused it, and
:func:`packets.is_encrypted` the first KiB of every file picked up: both see whatever a
sender uploaded. Any bytes — random, a real message cut anywhere or damaged, packets of
every header form (old and new format, one-, two- and five-byte lengths, partial
lengths, lengths at their boundaries and 0xFFFFFFFF), ASCII armor of any shape — give
a boolean, never an exception; and on well-formed packet sequences the walker says
"truncated" exactly when a packet's declared length runs past the end of the file, or
the file stops after session keys.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.crypto.packets import _lines, _Stream, _walk, ends_early, is_encrypted
from tests.unit.test_fuzz_settings import fuzz

SESSION_KEYS = {1, 3}  # PKESK, SKESK

# Made with gpg 2.2.40 (a throwaway key): signed and encrypted to one ECDH key (old-format
# PKESK, then a SEIPD packet in partial lengths), and symmetric (old-format SKESK, SEIPD
# with a two-byte length).
REAL_SIGNED = base64.b64decode(
    "hF4DXOWvyMAiSwUSAQdA9Z6aD5uzUAcz/lY3BO7yMukFozDjIlmAhQuQeewneiIwU8fIvVOvUoz5LtxFhgbnYV/fCBAAkk0y"
    "+PXFA9T4VTFpfQIjh+xrhMB9HwEcCz0P0uoBTXjszmS9PcBrCYElkajkynVynCw2Hsw5B9WK3MAYf1jHE575NpS0a38sFV8J"
    "f0SqUGOEHUaXPavGNGli3rrX/FZS0Xx9+QC6SenUoKNSCyQPgC1e5Imh5qzhs48h4RongNrEYBr+Fatp+zYA9Rim2ZQW0F0y"
    "zHtkU0o/xKP56dWvjXiUdCYpMl5iRMfAXo9nppuxv6kct6Hlch/6vHeHeZ7rl3j6VL4SFKvF7byz5UjsI+UYyEERVoc4WafH"
    "lc408T5ySfI7WrDpTZGOT4ET0nVViJozk0JrunvP4vazbTj2Ce+8q9ShDNHFLqgBVw8PU7xW4npZZpK2xF/UTYllvB48ir/f"
    "dfP88pYVS2g7HuhzxsKDaKTIfC3MSSd3x/4rX1qkb5aO9Ifw4woKLdvyQWmNGuSqKOceCqGjn0TeskjHbUkirBOxK81S9y/8"
    "GSzSn/6dTf5w+a0hP7l2KYm0UjxZaKT7GeCvPAQS9iDAwZiWKGFpWr5c1wt4lJFfYG9RcqNgbtxZhp51ytI7B9M9qSaHqYYd"
    "zLCHnORr9ULTneJEAHpejM1qMpryrJH2qN48Yur+gw39TUzBgotXIy/UCW8KyHbNiWQjRzafUqJWtmyXcneUlNqY+lGLy3qL"
    "gKcesgFEYox13Ol2FHFN3TyU4TkH/UFEJ9n55UVvRvEN5E/x5Lw5gecI9xvetA0iOlQCErMZ90sRVl3e6rTpJZ517p/wh3GR"
    "z2UrmL2aVGJx7PRGjITGiZxInmi6vDALEgy2evikKn6h6v+mI5RSec19U6l6AvDt+ojpfCdc//LrzwJjAHK0Ze+x7Mov4NLk"
    "J1ryVdkLHuwl8133hJcts+41c+O1mvnqZGPXpofQSHWtWGgP+SgiSv8W7A4dSdJe9P2mKfix+0CSgYD5kePgvOduViEbjIxa"
    "9w0VqmpK9Z3wWBRZryEop4x03bw/LwPgvUWB5xW8NMvJG4lj7DxYALmgfd2W8U+EIkaD5fbOaOWU3o3PxD2d80r9mw/ilQrz"
    "qEZWRerZEFLa5tOnT0+6TuzfDi7B77wrWzymdvclDV6o/kAHhsVcBGhFKPpAturXEzpOFhoGMfgs9Bp4kmJA3c6OTqDGuMCu"
    "X0EMas+ZguPX4En69YG+4eTFytm1QKr03aLVNJJ0Pmd+5v6qNcLeMVC/vsAtRKQYz+LkBJjWtDjLBzgkyIKJe4cBncElYmJF"
    "tsl447zqJljFUS+pmNZgBbbCWTS6iCI3bPrMPt+FsgoQsyDtS0/po9bEWVmmNI1Eept3kzMuSX1ois1uhlZnKB4wGs7+EPfP"
    "B9xf1lj6GpWhitz3hmsWed7QzS5nVUVhbiZyNJHwxeVklQtLx3KKZw+/6RybM09OSa3FUHogOfNODbbymSwVMhXDy9STm/uc"
    "uSPhavrP40GBA7w5LWkfjl6bgGeOMTdQMM7WpsKSNKgBlNLqjJgtUsrpqqJe/qpVmTZBoIL0T56JkqxoXG81vL+2m6wnfXA3"
    "Oy731wsU69lIa4I5Lyhqd+F+XxHghArSmoMaAsOlC4Ptcu3LFQadv8Mul+V/8RSzTz6TqmeC8dJm9yB6fzc1yn5S+PcFY80K"
    "x4cuudjpVxRejIV2sHxZEIom1DTb0Xf+Sl5yvZ2SUtDVjr6qbQOoysDAYNhNiLCJ9PVXE5fW9BHfP838FWEsodgTr9Y4TDp8"
    "Gzdofhljr9RgrDX4iG74DyGU2hFiIS51zphm7X/WspUzaBuRRdRBZn2HD+YqPCif4wfLmJWn4oJJSMrO/o8aRXy+35m070/F"
    "Bf/Uirr3U/3oVa5t2UUGzUxblXmMpJS1uxyUfxF8w44HlBfwzhhWJznpSdA/XJmbKYu5vb/H2fKUS95xmLroqQ0s6DVJzLFR"
    "coYh1DV7umIt9NPP+56jO6h7Q8aETgo99YtDawZg3ipyudWyRs0ZXuIlwc0XEShYrBX8fKLBuuYzMKpwapz5QRlPuQuBFk1w"
    "Bw8/urTe2z5zv+1xLATrzlOTkp+jXgX1TAVmuUdJHQ6avQ+t1cq0YyZ1j7vTaN53swvnwF1M5U77fwxxUmr2ODBrZzea7Q7c"
    "OvtZhqD5VzPdSLIPdi4F9lPHXczjzwk5ePPgS/Bm092e6q3QNhf8+aFYFYpkiDxuQ/nODcLJbCI2MxSP+W377RMJ/SrIucyM"
    "inF0+X8rp+otSkP3qRx66oIi/QTDftaN0ryw1umxGscZ9fEAL3U3zFLShCHPu9sh7x2ELO7GjThXhVqnwSZBAgcmtuLuOH5x"
    "rnee2sKE1MZLK+POg8tQb/g3Ku4MmI8C22v5kyF53wuLnsuQyCiWnUd0Y8o8JJUJCrbA1cJy8UMPrdNrUO7IhpjZvgNVVdna"
    "k82bGVWgTn2NSSz9IODbklB/gn4GY4qGG9syLZhhvFDfilYvtwLuZK7VSeHwo9WcUq4=")
REAL_SYMMETRIC = base64.b64decode(
    "jA0ECQMCic8q3K4uf0X/0sEIAT6bkC/8/wPhcmUpq/GwguJoxgnMeub0hcSR36vmhT/EQFsSQE+s/tranAY7cN5Sfzyz1NuG"
    "KrFrvOGv0VTbp55VCbW7BkNmBIKj2MSc3UJlJZiUyn9q7O0ptOFKk9V5v6ImcS69A/WEHdIBciZSD+h1jPXDuCvG859nJ9KT"
    "kkIFcwKNvfsnCNB0ijpZVgBUieWS2CiY0Hvofh1Y61jqhrqZTEzgIXZK8IrZnZk3rYzV3efNWOv2H/wOf9bsN27zGbn+EGCd"
    "yQm4fyyzaPCIs4buGRc4vjxXzSgXVLCFD3rUfbJt6TbxLwggtEHIOstyAi+N8kg7FTIN8nQXUJ3yr1EuIIyysnqQKzIaR0+w"
    "5Gb9P6s2L/FB0awYJRpPvixJd5tQjsqm4B7BuBMcjL0jkgPs1Se1ycn3aW4rCbfJpXBctLeKWRW51EZtDp0gvsL3PJKnB59j"
    "0dKH4TH9bTshZjyh5lYtS1ACvfb6SAlFlDztxnXRzgmpukqpI4lP17+6OCXQAFILrfyRksvv35gRsQDPn/65WgI/1KZdV9rH"
    "8l1Yy2nmt8rA/lPE4DYJxagwIzLi6Goch0Ow4iwhx9jGojteGLn+KPrk")
REAL = [REAL_SIGNED, REAL_SYMMETRIC]
ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"


def walk(tmp_path: Path, data: bytes) -> bool:
    path = tmp_path / "in.pgp"
    path.write_bytes(data)
    result = ends_early(path)
    assert isinstance(result, bool)
    return result


def armor(raw: bytes, *, width: int = 64, eol: bytes = b"\n", headers: bytes = b"",
          crc: bool = True, end: bool = True) -> bytes:
    b64 = base64.b64encode(raw)
    body = eol.join(b64[i:i + width] for i in range(0, len(b64), width))
    return (b"-----BEGIN PGP MESSAGE-----" + eol + headers + eol + body + eol
            + (b"=abcd" + eol if crc else b"") + (b"-----END PGP MESSAGE-----" + eol if end else b""))


# --- packets of every header form ----------------------------------------------------


class Packet(NamedTuple):
    tag: int
    data: bytes


def _new_length(n: int, form: str) -> bytes:
    if form == "five" or (form == "one" and n > 191) or (form == "two" and n > 8383):
        return b"\xff" + n.to_bytes(4, "big")
    if form == "one" or n < 192:
        return bytes([n])
    n -= 192
    return bytes([(n >> 8) + 192, n & 0xFF])


@st.composite
def packets(draw: st.DrawFn, *, tags: st.SearchStrategy[int] | None = None) -> Packet:
    """One packet with a complete body, in any header form the walker must read."""
    size = draw(st.sampled_from([0, 1, 190, 191, 192, 193, 255, 256, 8383, 8384])
                | st.integers(0, 700))
    body = bytes([draw(st.integers(0, 255))]) * size
    form = draw(st.sampled_from(["old", "one", "two", "five", "partial"]))
    if form == "old":
        tag = draw(st.integers(0, 15) if tags is None else tags) & 0x0F
        kind = draw(st.sampled_from([k for k, limit in ((0, 0xFF), (1, 0xFFFF), (2, 2**32 - 1))
                                     if size <= limit]))
        return Packet(tag, bytes([0x80 | tag << 2 | kind]) + size.to_bytes((1, 2, 4)[kind], "big")
                      + body)
    tag = draw(st.integers(0, 63) if tags is None else tags)
    out = bytes([0xC0 | tag])
    if form == "partial":  # chunks of 2**p, then the rest with a regular length
        while True:
            power = draw(st.integers(0, 10))
            if 1 << power > len(body) or not draw(st.integers(0, 3)):
                break
            out += bytes([224 + power]) + body[:1 << power]
            body = body[1 << power:]
        form = draw(st.sampled_from(["one", "two", "five"]))
    return Packet(tag, out + _new_length(len(body), form) + body)


class Message(NamedTuple):
    data: bytes
    ends: list[tuple[int, int]]  # (offset where a packet ends, its tag)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Whole packets one after another: session keys, then anything."""
    parts = draw(st.lists(packets(tags=st.sampled_from([1, 3])), max_size=2))
    parts += draw(st.lists(packets(), min_size=1, max_size=4))
    data, ends = b"", []
    for p in parts:
        data += p.data
        ends.append((len(data), p.tag))
    return Message(data, ends)


def expected_at(message: Message, cut: int) -> bool:
    """What the walker must say of the message's first *cut* bytes."""
    if cut == 0:
        return False  # an empty file is garbage, not a truncated message
    for end, tag in message.ends:
        if cut == end:
            return tag in SESSION_KEYS  # whole packets; only keys for data that never came
    return True  # inside a packet: its declared length runs past the end


@fuzz(400)
@given(messages(), st.data())
def test_complete_and_cut_packet_sequences(tmp_path_factory, message, data):
    tmp = tmp_path_factory.mktemp("p")
    full = len(message.data)
    assert walk(tmp, message.data) == (message.ends[-1][1] in SESSION_KEYS)
    cuts = data.draw(st.lists(st.integers(0, full), max_size=6))
    cuts += [end for end, _ in message.ends[:2]] + [max(full - 1, 0)]
    for cut in cuts:
        assert walk(tmp, message.data[:cut]) == expected_at(message, cut), cut
    assert is_encrypted(message.data[:1024]) == (message.ends[0][1] in SESSION_KEYS)


@fuzz(200)
@given(messages(), st.sampled_from([64, 76]) | st.integers(1, 120), st.sampled_from([b"\n", b"\r\n"]),
       st.sampled_from([b"", b"Version: x\n", b"Comment: a: b\nCharset: UTF-8\n"]), st.data())
def test_armored_sequences_read_as_their_bytes(tmp_path_factory, message, width, eol, headers,
                                              data):
    """Armor changes nothing, at any line width (RFC 4880 §6.3 only bounds it at 76, and
    base64 groups may run across lines); without its END line a message is truncated."""
    tmp = tmp_path_factory.mktemp("a")
    cut = data.draw(st.integers(0, len(message.data)))
    text = armor(message.data[:cut], width=width, eol=eol, headers=headers.replace(b"\n", eol))
    assert walk(tmp, text) == expected_at(message, cut)
    assert walk(tmp, armor(message.data, width=width, end=False))
    assert is_encrypted(text[:1024]) == (cut > 0 and message.data[0] in (0x84, 0x85, 0x86, 0x8C,
                                                                          0x8D, 0x8E, 0xC1, 0xC3))


@fuzz(400)
@example(raw=b"\x00", width=64, eol=b"\n")  # the walk stopped at garbage before the END line
@example(raw=b"\xc0\x00", width=2, eol=b"\n")  # "wA" / "A=" decoded line by line lost a byte
@given(st.binary(max_size=600).filter(lambda b: not b.lstrip().startswith(ARMOR_BEGIN))
       | messages().map(lambda m: m.data),
       st.sampled_from([64, 76]) | st.integers(1, 120), st.sampled_from([b"\n", b"\r\n"]))
def test_armor_changes_no_verdict(tmp_path_factory, raw, width, eol):
    """Whatever the bytes (garbage after the packets included), armored with its END line
    at any line width they get the verdict they get bare — bytes that are armor already
    aside: bare, they are read as armor."""
    tmp = tmp_path_factory.mktemp("v")
    assert walk(tmp, armor(raw, width=width, eol=eol)) == walk(tmp, raw)


# --- lengths at their limits -----------------------------------------------------------

# Headers at the limits of each form, with the length they declare: five-byte 0xFFFFFFFF
# and 0, the largest partial chunk (2**30), old-format four-, two- and one-byte maxima,
# the two-byte maximum (8383) and the one-byte maximum (191).
LIMITS = [(b"\xd2\xff\xff\xff\xff\xff", 2**32 - 1), (b"\xd2\xff\x00\x00\x00\x00", 0),
          (b"\xd2\xfe", 2**30), (b"\x8a\xff\xff\xff\xff", 2**32 - 1), (b"\x89\xff\xff", 0xFFFF),
          (b"\x88\xff", 0xFF), (b"\xd2\xdf\xff", 8383), (b"\xd2\xbf", 191)]


@pytest.mark.parametrize(("header", "declared"), LIMITS)
@pytest.mark.parametrize("size", [0, 1, 190, 191, 192, 255, 256, 8383, 8384, 70_000])
def test_lengths_at_their_limits(tmp_path, header, declared, size):
    """Truncated exactly when the body is shorter than declared (a body that is longer
    leaves bytes that are no packet header: garbage, which gpg has explained)."""
    body = b"x" * size
    assert walk(tmp_path, header + body) is (size < declared)
    assert walk(tmp_path, armor(header + body)) is (size < declared)


def test_an_indeterminate_length_runs_to_the_end(tmp_path):
    for body in (b"", b"x", b"\xff" * 300):
        assert walk(tmp_path, b"\x8f" + body) is False  # old format, tag 3, length type 3


# --- real messages -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", REAL, ids=["signed", "symmetric"])
def test_real_messages_whole_and_cut_at_every_byte(tmp_path, raw):
    assert walk(tmp_path, raw) is False and walk(tmp_path, armor(raw)) is False
    assert is_encrypted(raw[:1024]) and is_encrypted(armor(raw)[:1024])
    for cut in range(1, len(raw)):
        assert walk(tmp_path, raw[:cut]), cut


@fuzz(300)
@given(st.sampled_from(REAL), st.data())
def test_real_messages_damaged_anyhow(tmp_path_factory, raw, data):
    """Bytes flipped, inserted, removed: a verdict, never an exception."""
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and at < len(raw):
            raw = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
        elif op == "insert":
            raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=6)) + raw[at:]
        else:
            raw = raw[:at] + raw[at + data.draw(st.integers(1, 6)):]
    tmp = tmp_path_factory.mktemp("d")
    walk(tmp, raw)
    walk(tmp, armor(raw, width=data.draw(st.integers(1, 100))))
    assert isinstance(is_encrypted(raw[:1024]), bool)


# --- anything at all -----------------------------------------------------------------------

ARMOR_LINES = st.lists(st.sampled_from([b"-----BEGIN PGP MESSAGE-----", b"-----END PGP MESSAGE-----",
                                        b"", b"Version: 1", b"=", b"=abcd", b":", b"\r", b"\x00",
                                        b"hF4DXOWvyMAi", b"////", b"===="]) | st.binary(max_size=40),
                       max_size=12)


@fuzz(600)
@given(st.binary(max_size=3000) | ARMOR_LINES.map(lambda ls: b"-----BEGIN PGP MESSAGE-----\n"
                                                   + b"\n".join(ls)),
       st.sampled_from([b"", b" \n\t", b"\xef\xbb\xbf"]))
def test_any_bytes_get_a_verdict(tmp_path_factory, data, prefix):
    walk(tmp_path_factory.mktemp("r"), prefix + data)
    assert isinstance(is_encrypted(prefix + data), bool)


# --- time -------------------------------------------------------------------------------


def _walk_time(chunks: Iterable[bytes]) -> float:
    best = float("inf")
    for _ in range(3):  # the least of three: a busy CI core slows a run, never speeds one
        start = time.perf_counter()
        assert _walk(_Stream(iter(chunks))) is True  # two-byte PKESKs: keys, no data
        best = min(best, time.perf_counter() - start)
    return best


def test_a_chunk_of_tiny_packets_is_walked_in_linear_time():
    """A file of two-byte packets, 256 KiB read at a time: each read sliced the rest of the
    chunk off (a copy), so a chunk took a second and a large file minutes. The same bytes
    in two-byte chunks copy nothing: the two times must be alike, whatever the machine."""
    data = b"\xc1\x00" * (128 * 1024)  # 256 KiB: 131,072 empty PKESK packets
    whole = _walk_time([data])
    pieces = _walk_time([data[i:i + 2] for i in range(0, len(data), 2)])
    assert whole < 3 * pieces, (whole, pieces)  # here: 1x; 12x before


def test_an_endless_armor_line_is_read_in_bounded_pieces(tmp_path):
    """Armor in one line of 4 MiB: held whole, the line grew with the file and was split
    again at every 256 KiB read. It is handed on in pieces, and reads as it did."""
    raw = b"\xd2\xff" + (3 << 20).to_bytes(4, "big") + bytes(3 << 20)  # one 3 MiB packet
    one_line = base64.b64encode(raw)
    pieces = list(_lines(io.BytesIO(one_line), b""))
    assert b"".join(pieces) == one_line and max(map(len, pieces)) <= 512 * 1024
    assert walk(tmp_path, armor(raw, width=len(one_line))) is False
    assert walk(tmp_path, armor(raw[:-1], width=len(one_line))) is True
