"""`gateway demo` builds a working site from nothing and shows the flow as people see it."""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.conftest import run_cli
from tests.gpgparty import live_gpg_processes

pytestmark = pytest.mark.integration


def test_demo_runs_in_a_fresh_directory(tmp_path):
    proc = run_cli("demo", "--dir", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"status": "accepted"' in out and '"accepted": 1000' in out
    assert "the same case, as each role receives it" in out
    assert "310115******" in out or "********" in out  # the collector's masked ID is visible
    assert "status: rejected; nothing was delivered" in out and "E_ID_CHECKSUM" in out
    assert "what the bank receives: results.AG001." in out and "HOURS" in out
    assert "E_NOT_ASSIGNED" in out
    assert "gpg --verify` with only the gateway's public key: good signature" in out
    assert '"late": false' in out
    assert "chain intact" in out
    config = shlex.quote(str(tmp_path / "demo" / "gateway.toml"))  # run_cli runs python -m gateway
    assert f"Next: {shlex.quote(sys.executable)} -m gateway batches -c {config}" in out
    assert live_gpg_processes(str(tmp_path)) == []
    again = run_cli("demo", "--dir", str(tmp_path / "demo"))
    assert again.returncode == 2 and "already holds a demo" in again.stderr
