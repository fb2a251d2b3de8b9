"""`gateway audit verify` / `audit show` on the configured log, as an auditor runs them."""

from __future__ import annotations

import json

import pytest

from gateway.audit import AuditLog
from gateway.config import load
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def logged(setup):
    log = AuditLog(load(setup.config).gateway.state_dir / "audit", actor="daemon")
    log.record("config.loaded", config_sha256="c" * 64)
    log.record("security.cross_agency", agency="AG001", file="r.csv.pgp", count=1)
    log.record("security.cross_agency", agency="AG002", file="s.csv.pgp", count=4)
    log.record("receipt.sent", file="r.csv.pgp.receipt.json.pgp", agency="AG001")
    return setup, log


def test_verify_ok_then_names_the_changed_entry(logged):
    setup, log = logged
    proc = run_cli("audit", "verify", "-c", str(setup.config))
    assert proc.returncode == 0 and "4 entries, chain intact" in proc.stdout
    data = bytearray(log.path.read_bytes())
    third = data.index(b'"count":4')
    data[third + len('"count":')] = ord("5")
    log.path.write_bytes(bytes(data))
    proc = run_cli("audit", "verify", "-c", str(setup.config))
    assert proc.returncode == 1
    assert "entry 3 is broken" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # an auditor with only the file, no config
    proc = run_cli("audit", "verify", "--file", str(log.path))
    assert proc.returncode == 1 and "entry 3" in proc.stderr


def test_show_filters_and_json(logged):
    setup, _ = logged
    proc = run_cli("audit", "show", "-c", str(setup.config), "--event", "security.cross_agency",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["agency"] for r in rows] == ["AG001", "AG002"]
    proc = run_cli("audit", "show", "-c", str(setup.config), "--agency", "AG001", "--json")
    assert {r["event"] for r in json.loads(proc.stdout)} == {"security.cross_agency", "receipt.sent"}
    proc = run_cli("audit", "show", "-c", str(setup.config), "--since", "2999-01-01", "--json")
    assert json.loads(proc.stdout) == []
    proc = run_cli("audit", "show", "-c", str(setup.config))
    assert proc.returncode == 0 and "4 entries" in proc.stdout
    proc = run_cli("audit", "show", "-c", str(setup.config), "--since", "yesterday")
    assert proc.returncode == 2 and "--since" in proc.stderr


def test_keys_show(keybox):
    proc = run_cli("keys", "show", str(keybox["bank"].pub), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fingerprint"] == keybox["bank"].fingerprint and data["policy"] == "ok"
    assert {k["algorithm"] for k in data["keys"]} == {"ed25519", "cv25519"}
    proc = run_cli("keys", "show", str(keybox["weak"].pub))
    assert proc.returncode == 0 and "too weak" in proc.stdout
    proc = run_cli("keys", "show", str(keybox["revoked"].pub))
    assert "revoked" in proc.stdout
