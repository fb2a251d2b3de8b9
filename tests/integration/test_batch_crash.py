"""kill -9 at every step of the batch flow, then run again: nothing lost, nothing doubled."""

from __future__ import annotations

import pytest

from gateway import audit, synth
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.gpgparty import live_gpg_processes

pytestmark = pytest.mark.integration

POINTS = ["after_copy", "after_claim", "mid_batch", "after_commit", "after_first_delivery",
          "after_receipt_written"]


@pytest.fixture(scope="module")
def records():
    return list(synth.cases(2500, ["AG001", "AG002"], seed=5))  # > 2 chunks: mid_batch is reachable


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_rerun_delivers_exactly_once(tmp_path, keybox, records, point):
    site = Site(tmp_path / "site", keybox)
    site.drop_cases("B-crash.csv.pgp", records)
    crashed = run_cli("run", "--once", "-c", str(site.config), env={"GATEWAY_FAULT": point})
    assert crashed.returncode == 137, crashed.stderr
    assert site.plaintext_leaks(records[:200]) == []  # after the crash, before any cleanup
    again = run_cli("run", "--once", "-c", str(site.config))
    assert again.returncode == 0, again.stderr
    assert site.inbox("AG001") == ["B-crash.AG001.collector.csv.pgp", "B-crash.AG001.manifest.json.pgp",
                                   "B-crash.AG001.supervisor.csv.pgp"]
    assert len(site.inbox("AG002")) == 4
    receipts = site.receipts()
    assert list(receipts) == ["B-crash.csv.pgp.receipt.json.pgp"]
    assert receipts["B-crash.csv.pgp.receipt.json.pgp"]["counts"]["accepted"] == 2500
    rows = site.open_as("ag001-supervisor",
                        site.zone("AG001", "inbox", "B-crash.AG001.supervisor.csv.pgp")).rows
    assert len(rows) - 1 == 1250 and len({r[0] for r in rows[1:]}) == 1250
    assert list(site.zone("bank", "outgoing").iterdir()) == []
    assert not [p for p in (site.state / "staging").rglob("*") if p.is_file()]
    assert not list((site.state / "archive").glob(".*"))  # no half-written copy left
    assert site.plaintext_leaks(records[:200]) == []
    assert audit.verify(site.state / "audit" / "audit.jsonl").ok
    assert live_gpg_processes(str(site.root)) == []
    # and a third run has nothing left to do
    assert run_cli("run", "--once", "-c", str(site.config)).stderr.strip().endswith("nothing pending")


@pytest.mark.parametrize("which", ["--decrypt", "--encrypt"])
def test_a_gpg_child_killed_mid_batch_loses_nothing(tmp_path, keybox, which):
    """SIGKILL to the decrypting gpg, or to one of the sealing ones: that is the gateway's
    failure, not the bank's — no rejection, no receipt; the next run delivers it once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    site = Site(tmp_path / "site", keybox)
    records = list(synth.cases(30000, ["AG001", "AG002"], seed=83))
    site.drop_cases("B1.csv.pgp", records)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--once", "-c",
                             str(site.config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    killed = None
    while proc.poll() is None and killed is None:
        for pid in os.listdir("/proc"):
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
                stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
            except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            if (argv and argv[0].endswith(b"gpg") and which.encode() in argv
                    and ppid == proc.pid):  # this run's gpg, never another test's
                os.kill(int(pid), signal.SIGKILL)
                killed = int(pid)
                break
        time.sleep(0.01)
    _out, err = proc.communicate(timeout=120)
    assert killed is not None, "no gpg child was seen"
    assert proc.returncode == 1, err
    (line,) = err.strip().splitlines()[-1:]
    assert ("gpg" in line and "killed" in line) or "stopped while sealing" in line, err
    assert site.receipts() == {} and site.inbox("AG001") == []
    assert site.plaintext_leaks(records) == []
    assert site.run() == {"accepted": 1}
    assert [r["status"] for r in site.receipts().values()] == ["accepted"]
    assert len(site.inbox("AG001")) == 3 and len(site.inbox("AG002")) == 4
