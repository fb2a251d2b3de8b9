"""`gateway run --once` at a terminal shows a progress bar per file; elsewhere nothing but
the log lines (docs/cli.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway import synth
from tests.conftest import run_cli
from tests.flowsite import Site

pytestmark = pytest.mark.integration


def test_run_once_on_a_terminal_shows_each_files_progress(tmp_path, keybox):
    site = Site(tmp_path / "site", keybox)
    records = list(synth.cases(5000, ["AG001", "AG002"], seed=5))
    site.drop_cases("BIG.csv.pgp", records)
    command = f"{sys.executable} -m gateway run --once -c {site.config}"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          timeout=120, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    screen = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, screen
    assert "BIG" in screen and "5,000 rows" in screen and "rows/s" in screen, screen
    assert "done: 1 accepted" in screen
    assert "batch.accepted" not in screen or '{"' not in screen  # readable lines, not JSON
    assert site.receipts()["BIG.csv.pgp.receipt.json.pgp"]["status"] == "accepted"
    assert site.plaintext_leaks(records) == []

    site.drop_cases("NEXT.csv.pgp", list(synth.cases(3000, ["AG001"], seed=6, prefix="N")))
    piped = run_cli("run", "--once", "-c", str(site.config))  # journald, a pipe: no bar
    assert piped.returncode == 0, piped.stderr
    assert "rows/s" not in piped.stdout + piped.stderr
    assert '"event": "pass.done"' in piped.stdout  # JSON lines for the journal


def test_retention_run_on_a_terminal_shows_the_purge(tmp_path, keybox):
    from tests.integration.test_retention import end_contract

    site = Site(tmp_path / "site", keybox)
    records = list(synth.cases(8, ["AG001", "AG002"], seed=31))
    site.drop_cases("B1.csv.pgp", records)
    assert site.run() == {"accepted": 1}
    end_contract(site, "AG002")
    site.edit("purge_after_days = 30", "purge_after_days = 0")  # due today
    command = f"{sys.executable} -m gateway retention run -c {site.config}"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          timeout=120, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    screen = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, screen
    assert "purge AG002" in screen and "objects/s" in screen, screen
    assert "deleted" in screen and "certificate:" in screen  # the summary after the bar
    assert site.inbox("AG002") == []
