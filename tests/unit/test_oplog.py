"""Operational logs: JSON lines for journald when not on a terminal."""

from __future__ import annotations

import io
import json

import structlog

from gateway.audit import configure_logging


def test_json_when_not_a_terminal():
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().info("zone.scanned", zone="bank.outgoing", files=2)
    entry = json.loads(stream.getvalue())
    assert entry["event"] == "zone.scanned" and entry["files"] == 2 and entry["level"] == "info"
    assert "timestamp" in entry
