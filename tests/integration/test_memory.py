"""A small memory bound on the whole process tree (RSS only — timings belong to
`make bench`): 20,000 cases and 20,000 result rows through `gateway run --once`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LIMIT_MB = 256  # issue 11's bound for a million cases; far below it here, or something leaks
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


def test_the_process_tree_stays_small(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--cases", "20000"], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [x["flow"] for x in lines] == ["batch", "results"]
    for x in lines:
        assert (x["status"], x["rejected"]) == ("accepted", 0), x
        assert 0 < x["peak_rss_mb"] < LIMIT_MB, x
