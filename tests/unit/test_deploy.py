"""The shipped systemd unit keeps its promises."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "gateway.service"


def test_unit_is_hardened_and_simple():
    text = UNIT.read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["Type"] == "simple"
    assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"
    assert lines["User"] == "gateway"
    assert "/var/lib/gateway" in lines["ReadWritePaths"]
    assert lines["ExecStart"].endswith("gateway run")
    assert lines["ExecStartPre"].endswith("gateway check")
