"""The console's audit index against the log read whole (:func:`audit.page`, :func:`audit.search`):
the same pages and entries for any filter, as the log grows, after it is replaced, with a
torn last line, a chain broken before indexing and an entry edited after it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import audit
from gateway.audit_index import AuditIndex

EVENTS = ["file.received", "batch.accepted", "slice.delivered", "security.cross_agency",
          "security.bad_signature", "console.login", "retention.purged"]


def fill(log: audit.AuditLog, n: int, seed: int = 0) -> None:
    for i in range(n):
        k = (i * 7 + seed) % len(EVENTS)
        fields = {"agency": ["AG001", "AG002", None][(i + seed) % 3]}
        if EVENTS[k].startswith("console."):
            fields = {"account": "alice"}
        elif EVENTS[k] == "batch.accepted":
            fields["batch_id"] = f"B{i % 4}"
        log.record(EVENTS[k], **fields)


@pytest.fixture
def log(tmp_path):
    return audit.AuditLog(tmp_path / "audit", actor="daemon")


FILTERS = st.builds(
    audit.Filter,
    event=st.sampled_from([None, *EVENTS, "security.", "console.", "file."]),
    agency=st.sampled_from([None, "AG001", "AG002"]),
    actor=st.sampled_from([None, "daemon", "someone"]),
    batch_id=st.sampled_from([None, "B1", "B3"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=FILTERS, size=st.integers(1, 7))
def test_pages_and_entries_equal_the_log_read_whole(log, tmp_path, flt, size):
    if not log.path.exists():
        fill(log, 60)
    index = AuditIndex(log.path, tmp_path / "index.sqlite")
    try:
        assert index.refresh().entries == 60
        before = None
        while True:  # every page, to the last
            want = audit.page(log, flt, before=before, size=size)
            got = index.page(flt, before=before, size=size)
            assert got == want
            if want.older is None:
                break
            before = want.older
        assert list(index.entries(flt)) == list(audit.search(log, flt))
    finally:
        index.close()


def test_times_filter_as_the_reference_does(log, tmp_path):
    fill(log, 20)
    stamps = [e["ts"] for e in log.entries()]
    index = AuditIndex(log.path, tmp_path / "index.sqlite")
    index.refresh()
    for a, b in [(3, 9), (0, 19), (10, 10)]:
        since = dt.datetime.fromisoformat(stamps[a].replace("Z", "+00:00"))
        until = dt.datetime.fromisoformat(stamps[b].replace("Z", "+00:00"))
        flt = audit.Filter(since=since, until=until)
        assert index.page(flt, size=100) == audit.page(log, flt, size=100)
    index.close()


def test_it_catches_up_and_starts_over_when_the_log_is_replaced(log, tmp_path):
    fill(log, 10)
    index = AuditIndex(log.path, tmp_path / "index.sqlite")
    assert index.refresh().entries == 10
    fill(log, 5, seed=3)
    assert index.refresh().entries == 15
    assert index.page(audit.Filter(), size=100) == audit.page(log, audit.Filter(), size=100)
    log.path.unlink()  # a new log (restored from elsewhere, another host's)
    fill(log, 4, seed=1)
    assert index.refresh().entries == 4
    assert list(index.entries(audit.Filter())) == list(log.entries())
    index.close()


def test_a_torn_last_line_waits_and_a_broken_chain_is_known(log, tmp_path):
    fill(log, 6)
    with log.path.open("ab") as fh:
        fh.write(b'{"seq": 7, "ev')  # an entry being written
    index = AuditIndex(log.path, tmp_path / "index.sqlite")
    state = index.refresh()
    assert (state.entries, state.broken_seq) == (6, None)
    lines = log.path.read_bytes().splitlines(keepends=True)[:6]
    edited = json.loads(lines[2])
    edited["agency"] = "AG009"
    lines[2] = audit.canonical(edited) + b"\n"  # the hash no longer matches
    log.path.write_bytes(b"".join(lines))
    other = AuditIndex(log.path, tmp_path / "fresh.sqlite")
    state = other.refresh()
    assert (state.entries, state.broken_seq) == (6, 3)
    assert state.problem == audit.verify(log.path).problem
    other.close()
    shown = index.page(audit.Filter(), size=10).entries  # indexed before the edit, not since
    assert [e["event"] for e in shown if e["seq"] == 3] == ["audit.changed"]
    state = index.refresh()  # the later entries moved: the index starts over, and sees the break
    assert (state.entries, state.broken_seq) == (6, 3)
    index.close()
