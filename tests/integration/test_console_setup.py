"""`gateway check` and `gateway console` on a console set up wrongly (issue 22): reachable
over plain HTTP from other machines (finding 9), a TLS key others may read (finding 10),
started before the ledger or the audit log exists. Each is one line naming what to do,
with the exit status of its kind (errors.py: 2 a config error, 1 a failure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import audit, config, scaffold
from gateway.console.auth import Accounts
from gateway.ledger import Ledger
from tests.conftest import run_cli
from tests.integration.test_console import free_port, wait_for_console

pytestmark = pytest.mark.integration

LISTEN = 'listen = "127.0.0.1:8080"'


def lines_of(proc: subprocess.CompletedProcess[str], mark: str) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith(mark)]


def test_check_warns_of_a_console_reachable_over_plain_http(setup):
    setup.edit(LISTEN, 'listen = "0.0.0.0:8080"')
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in lines_of(proc, "warn") if "console" in ln]
    assert "console.listen: 0.0.0.0:8080" in line and "in clear" in line
    assert "console.tls_cert" in line and "console.trusted_proxy" in line


@pytest.mark.parametrize("fix", ['listen = "0.0.0.0:8080"\ntrusted_proxy = "10.0.0.5"',
                                 'listen = "[::1]:8080"', LISTEN])
def test_check_is_quiet_behind_a_proxy_or_on_loopback(setup, fix):
    setup.edit(LISTEN, fix)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr
    assert "console" not in proc.stderr


def tls_files(directory: Path, key_mode: int) -> tuple[Path, Path]:
    """A certificate and key for the config to name (check reads the key's mode only)."""
    cert, key = directory / "console.crt", directory / "console.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(key_mode)
    return cert, key


def with_tls(setup, key_mode: int) -> Path:
    cert, key = tls_files(setup.dir, key_mode)
    setup.edit(LISTEN, f'listen = "0.0.0.0:8443"\ntls_cert = "{cert}"\ntls_key = "{key}"')
    return key


def test_check_refuses_a_tls_key_others_may_read(setup):
    """As the gateway's own secret key at 0644: a configuration error naming the key path
    and the mode (and, with it, any key-policy problem: all at once)."""
    key = with_tls(setup, 0o644)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2, proc.stderr
    (line,) = lines_of(proc, "error")
    assert "console.tls_key" in line and "mode 0644" in line and f"chmod 600 {key}" in line
    (setup.dir / "keys" / "gateway.sec.asc").chmod(0o644)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 2
    assert [("gateway.secret_key" in ln, "console.tls_key" in ln)
            for ln in lines_of(proc, "error")] == [(True, False), (False, True)]


def test_check_accepts_a_private_tls_key(setup):
    with_tls(setup, 0o600)
    proc = run_cli("check", "-c", str(setup.config))
    assert proc.returncode == 0, proc.stderr
    assert "console" not in proc.stderr  # TLS: nothing crosses in clear


def test_console_refuses_to_start_with_a_tls_key_others_may_read(tmp_path):
    path = scaffold.init_project(tmp_path / "gw")
    cert, key = tls_files(tmp_path, 0o640)
    path.write_text(path.read_text().replace(
        LISTEN, f'listen = "127.0.0.1:0"\ntls_cert = "{cert}"\ntls_key = "{key}"', 1))
    proc = run_cli("console", "-c", str(path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {path}: console.tls_key: {key}: TLS key file is readable by group or others "
        f"(mode 0640); run chmod 600 {key}"]


def test_console_started_before_the_ledger_exists_says_what_to_do(tmp_path):
    """One line, exit 1 (a ledger that cannot be opened, as for every command), and no
    empty ledger file left behind; then, the ledger made, the same for the audit log."""
    path = scaffold.init_project(tmp_path / "gw")
    cfg = config.load(path)
    proc = run_cli("console", "-c", str(path))
    db = cfg.gateway.state_dir / "gateway.db"
    assert (proc.returncode, proc.stderr.splitlines()) == (1, [
        f"error: the ledger {db} does not exist yet: run `gateway db upgrade` as the gateway's "
        "user first (or check gateway.state_dir and gateway.database_url)"])
    assert not db.exists()
    assert run_cli("db", "upgrade", "-c", str(path)).returncode == 0
    proc = run_cli("console", "-c", str(path))
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: the audit log's directory {cfg.gateway.state_dir / 'audit'} "
                           "does not exist yet") and "gateway users add" in line


def test_console_logs_the_plain_http_warning_when_it_starts(setup):
    """In the same words as `gateway check`."""
    port = free_port()
    setup.edit(LISTEN, f'listen = "0.0.0.0:{port}"')
    proc = run_cli("check", "-c", str(setup.config))
    (checked,) = [ln for ln in lines_of(proc, "warn") if "console" in ln]
    cfg = config.load(setup.config)
    ledger = Ledger(cfg.gateway.db_url)
    Accounts(ledger, audit.AuditLog(cfg.gateway.state_dir / "audit")).add(
        "alice", "auditor", "correct horse battery")
    ledger.close()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "console", "-c", str(setup.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_console(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    (warning,) = [json.loads(ln) for ln in err.splitlines() if "console.cleartext" in ln]
    assert warning["level"] == "warning" and warning["key"] == "console.listen"
    assert checked == f"warn  {warning['problem']}"
