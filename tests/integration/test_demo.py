"""`gateway demo` builds a working setup from nothing and exercises it."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.gpgparty import live_gpg_processes

pytestmark = pytest.mark.integration


def test_demo_runs_in_a_fresh_directory(tmp_path):
    proc = run_cli("demo", "--dir", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "self-test" in out and "signed by the bank's key" in out
    assert "one flipped bit is refused: E_" in out
    assert "AG001 collector  opens" in out and ": yes" in out
    assert "AG001 supervisor opens demo.AG001.collector.txt.pgp: no" in out
    assert (tmp_path / "demo" / "gateway.toml").exists()
    assert live_gpg_processes(str(tmp_path)) == []
    again = run_cli("demo", "--dir", str(tmp_path / "demo"))
    assert again.returncode == 2 and "already holds a demo" in again.stderr
