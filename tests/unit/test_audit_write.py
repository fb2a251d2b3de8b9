"""An audit append is whole or absent: a short write is an error, not ignored."""

from __future__ import annotations

import os

import pytest

from gateway import audit
from gateway.errors import AuditError


def test_a_short_write_is_undone_and_raised(tmp_path, monkeypatch):
    log = audit.AuditLog(tmp_path, actor="daemon")
    log.record("gateway.started", version="1")
    before = log.path.read_bytes()
    real_write = os.write
    calls = []

    def torn(fd, data):
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit.os, "write", torn)
    with pytest.raises(AuditError, match="No space left on device"):
        log.record("gateway.stopped")
    monkeypatch.undo()
    assert log.path.read_bytes() == before
    assert audit.verify(log.path).ok


def test_repair_cuts_only_a_torn_line(tmp_path):
    log = audit.AuditLog(tmp_path, actor="daemon")
    log.record("gateway.started", version="1")
    assert log.repair() == 0
    with log.path.open("ab") as fh:
        fh.write(b'{"seq":2,"ev')
    assert log.repair() == 12
    events = [e["event"] for e in log.entries()]
    assert events == ["gateway.started", "audit.repaired"] and audit.verify(log.path).ok
