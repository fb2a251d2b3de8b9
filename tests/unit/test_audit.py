"""The audit chain: whitelisted fields only, and any changed byte is found and named."""

from __future__ import annotations

import itertools
import json
import multiprocessing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import audit
from gateway.audit import AuditLog, verify


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit", actor="daemon")


def fill(log: AuditLog) -> None:
    log.record("config.loaded", config_sha256="a" * 64)
    log.record("file.received", file="b-2026-11.csv.pgp", zone="bank.outgoing", sha256="b" * 64,
               bytes=1234)
    log.record("security.cross_agency", agency="AG001", file="r1.csv.pgp", count=2)
    log.record("file.rejected", file="x.csv.pgp", code="E_UNKNOWN_SIGNER", codes=["E_NAME"])


def test_chain_verifies(log):
    fill(log)
    result = verify(log.path)
    assert result.ok and result.entries == 4
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == audit.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert entries[2]["actor"] == "daemon" and entries[2]["agency"] == "AG001"


def test_every_single_byte_change_is_detected_and_named(log):
    fill(log)
    original = log.path.read_bytes()
    line_starts = [0, *[i + 1 for i, b in enumerate(original) if b == 10][:-1]]
    for pos in range(len(original)):
        for delta in (1, 0x20):
            changed = bytearray(original)
            changed[pos] = (changed[pos] + delta) % 256
            log.path.write_bytes(bytes(changed))
            result = verify(log.path)
            assert not result.ok, f"byte {pos} changed by {delta} went unnoticed"
            entry = sum(1 for s in line_starts if s <= pos)
            # a changed line end merges/splits lines: the entry named is this one or the next
            assert result.broken_seq in (entry, entry + 1), (pos, result)
    log.path.write_bytes(original)
    assert verify(log.path).ok


def test_removed_entry_is_detected(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:1] + lines[2:]))
    result = verify(log.path)
    assert not result.ok and result.broken_seq == 2


@pytest.mark.parametrize(("field", "value"), [
    ("customer_name", "张三"),  # not a whitelisted field
    ("file", "张三-110105199003071234.csv"),  # a name that could carry personal data
    ("agency", "AG001; drop"),
    ("fingerprint", "abc"),
    ("count", -1),
    ("count", "3"),
    ("code", "not a code"),
    ("seq", 7),  # reserved
])
def test_unsafe_fields_are_refused(log, field, value):
    with pytest.raises(ValueError):
        log.record("file.received", **{field: value})
    assert not log.path.exists()


def test_unknown_event_is_refused(log):
    with pytest.raises(ValueError):
        log.record("customer.viewed", count=1)


@given(st.text(min_size=1, max_size=40))
def test_file_field_accepts_only_safe_names(name):
    safe = audit.FIELDS["file"]
    ok = all(c.isascii() and (c.isalnum() or c in "._-") for c in name) and name[0].isalnum()
    if ok:
        assert safe(name) == name
    else:
        with pytest.raises(ValueError):
            safe(name)


def _append_many(path, n):
    log = AuditLog(path, actor="daemon")
    for i in range(n):
        log.record("receipt.sent", file=f"f{i}.receipt.json.pgp")


def test_concurrent_writers_keep_one_chain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(tmp_path / "audit", 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    result = verify(tmp_path / "audit" / "audit.jsonl")
    assert result.ok and result.entries == 160


def test_entries_are_canonical_json(log):
    fill(log)
    for line in log.path.read_bytes().splitlines():
        assert audit.canonical(json.loads(line)) == line


@pytest.mark.parametrize("version", ["0.2.0", "0.2.1.dev103+gd63dc73b9.d20261207", "0+unknown"])
def test_the_gateways_version_is_recorded_from_a_changed_checkout_too(log, version):
    """A checkout past its tag and changed has a 33-character version: it once stopped
    every run at its first audit entry (the field took 32)."""
    assert log.record("gateway.started", version=version)["version"] == version
