"""Inbound file names against hostile text (issue 22, deliverable 2).

A sender chooses the names of the files it drops in a zone. They reach the zone
boundary (:mod:`gateway.transfer.base`: ``check_component``, ``validate_name``,
``is_plain``, ``is_temporary``, ``display_name``/``raw_name``), the flows' name
patterns (a batch id in ``batches.NAME_RE``, a results file in ``results.NAME_RE``),
the receipt's name (``receipts.receipt_name``) and the audit's (``intake.name_fields``,
``file_fields``). Whatever the text — separators, ``..``, NUL, control and invisible
characters, lone surrogates, look-alike dots and slashes, names of every length around
255 bytes, temporary suffixes — each accepts it or refuses it with ``InvalidName`` (or a
non-match, or a safe replacement), and nothing it accepts leaves the zone's directory.
"""

from __future__ import annotations

import os
import posixpath
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.flows import batches, intake, results
from gateway.flows.receipts import SUFFIX, receipt_name
from gateway.transfer.base import (
    MAX_NAME,
    TEMP_SUFFIXES,
    InvalidName,
    check_component,
    display_name,
    is_plain,
    is_temporary,
    name_bytes,
    raw_name,
    validate_name,
)
from gateway.transfer.local import LocalZone
from tests.unit.test_fuzz_settings import fuzz

ROOT = Path("/srv/zone")
# Pieces a hostile name is made of: separators and look-alikes (fullwidth, division and
# fraction slashes, one-dot leaders), dots, NUL and controls, bidi and zero-width marks,
# a BOM, composed and decomposed letters, percent-encodings, names a zone treats apart.
PIECES = ["", ".", "..", "/", "\\", "\x00", "\n", "\r", "\t", "\x7f", "\x85", "\u202e", "\u200b",
          "\u2028", "\ufeff", "\ufffe", "\uffff", "．", "．．", "／", "＼", "\u2215", "\u2044",
          "\u2024", "\u2024\u2024", "e\u0301", "é", "ﬁ", "Å", "Å", "%2e%2e", "%2f", "~", "CON",
          "nul", " ", "-", "a", "Z9", "张", "🙂", "batch", "results", ".part", ".tmp",
          ".filepart", ".PART", ".csv.pgp", ".csv.gpg", ".csv.asc", ".csv.PGP", ".receipt.json.pgp",
          "\udc80", "\udcff", "\ud800", "\udc41"]
pieced = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join)
# Around the 255-byte limit, in one-, two-, three- and four-byte characters.
long_names = st.builds(lambda c, n, tail: c * n + tail, st.sampled_from(["a", "é", "张", "🙂"]),
                       st.sampled_from([63, 64, 65, 85, 86, 127, 128, 200, 254, 255, 256])
                       | st.integers(1, 300), st.sampled_from(["", ".csv.pgp", ".part"]))
# Names a zone can list: a file system's bytes (no '/', no NUL), decoded as os.fsdecode does.
listed = st.binary(min_size=1, max_size=MAX_NAME).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")).map(os.fsdecode)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates too
names = st.one_of(pieced, long_names, listed, any_text, st.text(max_size=300))


def leaves_zone(name: str) -> bool:
    resolved = Path(os.path.normpath(ROOT / name))
    return resolved.parent != ROOT or resolved.name != name


@fuzz(2000)
@example(name="\ud800")  # os.fsencode raised UnicodeEncodeError out of check_component
@given(names)
def test_the_boundary_refuses_with_invalid_name(name):
    """``check_component`` (acting on a name) and ``validate_name`` (writing one) return
    the name unchanged or raise ``InvalidName``; what they pass stays in the zone."""
    try:
        acted_on = check_component(name) == name
    except InvalidName:
        acted_on = False
    try:
        written = validate_name(name) == name
    except InvalidName:
        written = False
    assert written == is_plain(name)
    assert acted_on or not written  # what may be written may be acted on
    if acted_on:
        assert not leaves_zone(name) and posixpath.basename(name) == name
        assert len(name_bytes(name)) <= MAX_NAME and "\x00" not in name
    if written:
        raw = name.encode("utf-8")
        assert len(raw) <= MAX_NAME and name not in (".", "..")
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)
        assert "\\" not in name  # a separator on the other side of an SFTP server


@fuzz(1000)
@given(names, st.sampled_from(["", *TEMP_SUFFIXES]))
def test_temporary_names_are_told_apart(name, suffix):
    """A name ending in a temporary suffix or starting with a dot is never ready."""
    if suffix:
        assert is_temporary(name + suffix)
    assert is_temporary("." + name)
    assert is_temporary(name) == (name.startswith(".") or name.endswith(TEMP_SUFFIXES))


@fuzz(1000)
@given(names)
def test_display_name_is_printable_and_reversible(name):
    """What receipts, the ledger and messages show of any name: printable UTF-8, and the
    ledger's copy reads back as the very name (lone surrogates included)."""
    shown = display_name(name)
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
                   for c in shown)  # escaped, as its docstring says
    shown.encode("utf-8")  # storable: no lone surrogate left
    assert raw_name(shown) == name


@pytest.mark.parametrize("raw", [b"\xc2\xa0", b"\xe3\x80\x80", b"a\xe2\x80\x80b"])
def test_display_name_of_a_no_break_space_is_printable(raw):
    """test_zone_names.test_display_name_round_trips_any_file_name asserts isprintable()
    of any file system name's display; these names (NBSP, ideographic space, en quad)
    failed it (found by this suite): a name that looks spaced is shown escaped."""
    shown = display_name(os.fsdecode(raw))
    assert shown.isprintable() and raw_name(shown) == os.fsdecode(raw)


@fuzz(1000)
@given(names.filter(bool), st.integers(0, 3))
def test_a_receipt_name_is_always_writable(name, taken):
    """For any input name: plain, at most 255 bytes, never temporary or hidden, never the
    input's own name, and a fresh one when earlier ones are taken. (Not for "", which no
    zone lists: its receipt would be the hidden ".receipt.json.pgp".)"""
    used: set[str] = set()

    def is_taken(candidate: str) -> bool:
        if len(used) < taken:
            used.add(candidate)
            return True
        return candidate in used

    out = receipt_name(name, is_taken)
    assert out.endswith(SUFFIX) and out not in used and out != name
    assert validate_name(out) == out and check_component(out) == out
    assert not is_temporary(out) and len(out.encode("utf-8")) <= MAX_NAME


@fuzz(2000)
@given(names | st.builds(lambda stem, ext, tail: stem + ext + tail,
                         pieced | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}", fullmatch=True),
                         st.sampled_from([".csv.pgp", ".csv.gpg", ".csv.asc", ".csv", ".pgp"]),
                         st.sampled_from(["", "\n", ".part", " ", "\x00"])))
def test_inbound_name_patterns_match_only_plain_names(name):
    """The batch id a case file's name gives, and a results file's name: plain ASCII, at
    most 64 characters of stem, usable as a file name and as a ledger key."""
    m = batches.NAME_RE.fullmatch(name)
    if m:
        batch = m.group("batch")
        assert 1 <= len(batch) <= 64 and batch.isascii() and validate_name(batch) == batch
        assert validate_name(name) == name and not is_temporary(name)
    if results.NAME_RE.fullmatch(name):
        assert name.isascii() and validate_name(name) == name and not is_temporary(name)


@fuzz(1000)
@given(listed | pieced.filter(lambda n: not any(0xD800 <= ord(c) < 0xDC80 for c in n)))
def test_the_audit_names_a_file_or_its_hash(name):
    """Names a zone can list (``os.fsdecode`` of a file system's bytes): the audit log holds
    a plainly safe name or a hash, never free text."""
    for fields in (intake.name_fields(name), intake.file_fields(name, "0" * 64)):
        shown = fields.get("file")
        assert shown is None or (shown == name and name.isascii() and is_plain(name))


@fuzz(60)
@given(st.lists(st.binary(min_size=1, max_size=MAX_NAME).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")), min_size=1,
    max_size=6, unique=True))
def test_every_name_a_zone_lists_can_be_acted_on(tmp_path_factory, raw_names):
    """Files a sender left under any names: the zone lists the ready ones (no temporary
    name among them), and each can be stat'ed and read by the name it was listed under —
    a name the zone could list but not act on would be a file stuck in the zone forever."""
    root = tmp_path_factory.mktemp("z")
    for raw in raw_names:
        path = os.path.join(os.fsencode(root), raw)
        with open(path, "wb") as fh:
            fh.write(raw)
        os.utime(path, (0, 0))
    zone = LocalZone("bank.outgoing", root)
    ready = zone.list_ready()
    assert sorted(e.name for e in ready) == sorted(
        n for n in map(os.fsdecode, raw_names) if not is_temporary(n))
    for entry in ready:
        assert zone.stat(entry.name) is not None
        with zone.open_read(entry.name) as fh:
            assert fh.read() == name_bytes(entry.name)
        receipt_name(entry.name, lambda n: False)


@pytest.mark.parametrize("name", ["\ud800", "\udc41", "a\udfff", "\udc00"])
def test_a_name_no_file_system_could_list_is_refused(name):
    """A lone surrogate that ``os.fsdecode`` never makes (it only makes U+DC80-U+DCFF)
    cannot be encoded for the file system: not a name in this zone."""
    with pytest.raises(InvalidName):
        check_component(name)
