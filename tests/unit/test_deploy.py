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


def test_console_unit_cannot_reach_the_secret_key():
    text = (UNIT.parent / "gateway-console.service").read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["User"] == "gateway-console" and lines["SupplementaryGroups"] == "gateway"
    assert lines["ExecStart"].endswith("gateway console")
    assert lines["NoNewPrivileges"] == "yes" and lines["ProtectSystem"] == "strict"
    hidden = lines["InaccessiblePaths"].split()
    assert "-/etc/gateway/keys/gateway.sec.asc" in hidden and "-/srv/gateway/zones" in hidden
    assert "/var/lib/gateway" in lines["ReadOnlyPaths"].split()
    assert all(p.lstrip("-").startswith("/var/lib/gateway/")
               for p in lines["ReadWritePaths"].split())
