"""Two gateway nodes, one PostgreSQL ledger, the same zones and one shared directory
(docs/operations.md): every input processed exactly once, both nodes working, and a node killed
mid-batch taken over by the other once its lease runs out.

``HA_FILES`` sets how many batches and result files the first test drops (8 each in
`make test`; `make two-nodes` runs it with 100 each and prints the figures).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway import audit, synth
from gateway.state import node_name
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.integration.test_daemon import wait_for
from tests.integration.test_results_flow import results_csv, row

pytestmark = pytest.mark.integration

LEASE = 5  # seconds: the smallest lease the config allows, so a takeover is quick to test


class Node:
    """One `gateway run` daemon with its own state directory and config file."""

    def __init__(self, site: Site, name: str, env: dict[str, str] | None = None) -> None:
        self.site, self.name = site, name
        self.config = site.root / f"gateway-{name}.toml"
        text = site.config.read_text().replace('state_dir = "var"', f'state_dir = "{name}"', 1)
        self.config.write_text(text)
        self.log = site.root / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def state(self) -> Path:
        return self.site.root / self.name

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=self.env)
        return self

    def wait_first_pass(self, timeout: float = 60) -> None:
        wait_for(lambda: "pass.done" in self.text() or self.proc.poll() is not None, timeout)
        assert self.proc.poll() is None, self.text()[-2000:]

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self) -> Counter[str]:
        return Counter(e["event"] for e in audit.AuditLog(self.state / "audit").entries())


def two_node_site(tmp_path: Path, keybox, postgres) -> Site:
    site = Site(tmp_path / "site", keybox, database_url=postgres.create_database())
    site.edit("metrics_listen =", f'shared_dir = "shared"\nlease_seconds = {LEASE}\nmetrics_listen =')
    return site


def put(site: Site, zone: Path, name: str, data: bytes) -> None:
    """Drop a file the way an SFTP client of the gateway's deployment would: whole, by rename."""
    tmp = site.root / "drafts" / name
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(data)
    os.rename(tmp, zone / name)


def listing(path: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(suffix))


def test_two_nodes_process_every_input_exactly_once(tmp_path, keybox, postgres):
    n = int(os.environ.get("HA_FILES", "8"))
    site = two_node_site(tmp_path, keybox, postgres)
    batches = {f"B{i:03d}": list(synth.cases(6, ["AG001", "AG002"], seed=1000 + i,
                                             prefix=f"K{i:03d}"))
               for i in range(n)}
    sealed = {b: site.seal_as("bank", synth.to_csv(rs)) for b, rs in batches.items()}
    nodes = [Node(site, "node1").start(), Node(site, "node2").start()]
    try:
        for node in nodes:
            node.wait_first_pass()
        started = time.monotonic()
        for b, data in sealed.items():
            put(site, site.zone("bank", "outgoing"), f"{b}.csv.pgp", data)
        bank_in = site.zone("bank", "incoming")
        wait_for(lambda: len(listing(bank_in, ".receipt.json.pgp")) >= n, 60 + n)
        batch_seconds = time.monotonic() - started

        uploads = {}  # one results file per batch, from the agency that holds its first case
        for i, rs in enumerate(batches.values()):
            agency = rs[0]["agency_code"]
            mine = [r["case_id"] for r in rs if r["agency_code"] == agency]
            uploads[f"R{i:03d}.csv.pgp"] = (agency, results_csv([row(c) for c in mine[:2]]))
        sealed_results = {name: (agency, site.seal_as(agency.lower(), body))
                          for name, (agency, body) in uploads.items()}
        started = time.monotonic()
        for name, (agency, data) in sealed_results.items():
            put(site, site.zone(agency, "outbox"), name, data)
        wait_for(lambda: len([f for f in listing(bank_in, ".csv.pgp")
                              if f.startswith("results.")]) >= n, 60 + n)
        wait_for(lambda: sum(len(listing(site.zone(a, "inbox"), ".receipt.json.pgp"))
                             for a in ("AG001", "AG002")) >= n, 30)
        results_seconds = time.monotonic() - started
    finally:
        codes = [node.stop() for node in nodes]
    assert codes == [0, 0], [node.text()[-2000:] for node in nodes]

    # Counted from the zones: every input gone, one receipt each, nothing doubled.
    assert listing(site.zone("bank", "outgoing"), "") == []
    assert all(listing(site.zone(a, "outbox"), "") == [] for a in ("AG001", "AG002"))
    receipts = site.receipts()
    assert sorted(receipts) == sorted(f"{b}.csv.pgp.receipt.json.pgp" for b in batches)
    assert {r["status"] for r in receipts.values()} == {"accepted"}
    forwarded = listing(site.zone("bank", "incoming"), ".csv.pgp")
    forwarded = [f for f in forwarded if f.startswith("results.")]
    assert len(forwarded) == n
    agency_receipts = {**site.agency_receipts("AG001"), **site.agency_receipts("AG002")}
    assert sorted(agency_receipts) == sorted(f"{u}.receipt.json.pgp" for u in uploads)
    for b, rs in batches.items():  # each agency's slices: 1 per role + a manifest, once
        for agency, roles in (("AG001", 2), ("AG002", 3)):
            if any(r["agency_code"] == agency for r in rs):
                assert len([f for f in site.inbox(agency) if f.startswith(f"{b}.{agency}.")]) \
                    == roles + 1
    assert len(site.bank_results()) == sum(
        min(2, len([r for r in rs if r["agency_code"] == rs[0]["agency_code"]]))
        for rs in batches.values())

    # Counted from the two audit logs: each effect audited by exactly one node.
    events = [node.events() for node in nodes]
    total = events[0] + events[1]
    assert total["batch.accepted"] == n and total["results.accepted"] == n
    assert total["receipt.sent"] == 2 * n
    slices = sum(len([f for f in site.inbox(a) if not f.endswith(".receipt.json.pgp")])
                 for a in ("AG001", "AG002"))
    assert total["slice.delivered"] == slices
    assert total["results.forwarded"] == n
    work = [e["batch.accepted"] + e["results.accepted"] for e in events]
    assert all(w > 0 for w in work), f"one node did all the work: {work}"
    assert "Traceback" not in nodes[0].text() + nodes[1].text()
    for node in nodes:  # each node's own log, against the bank's copies of every checkpoint
        proc = run_cli("audit", "verify", "--file", str(node.state / "audit" / "audit.jsonl"),
                       "--checkpoints", str(site.zone("bank", "incoming")),
                       "--key", str(site.keys["gateway"].pub))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    print(json.dumps({"files": n, "batch_seconds": round(batch_seconds, 1),
                      "results_seconds": round(results_seconds, 1),
                      "work_per_node": work, "slices": slices}))


def test_a_node_killed_mid_batch_is_taken_over_after_its_lease(tmp_path, keybox, postgres):
    site = two_node_site(tmp_path, keybox, postgres)
    records = list(synth.cases(2500, ["AG001", "AG002"], seed=77))  # > one 1000-row chunk
    put(site, site.zone("bank", "outgoing"), "BIG.csv.pgp",
        site.seal_as("bank", synth.to_csv(records)))
    doomed = Node(site, "node1", env={"GATEWAY_FAULT": "mid_batch"}).start()
    assert doomed.proc.wait(timeout=120) == 137  # killed, as by kill -9, holding the lease
    died = time.monotonic()
    staging = site.root / "shared" / "staging"
    assert [p for p in staging.iterdir() if p.name.isdigit()], "nothing was half-done"
    shown = run_cli("status", "-c", str(doomed.config))
    assert f"in hand: file:1 (BIG.csv.pgp) by {node_name(doomed.state)}" in shown.stdout, shown
    survivor = Node(site, "node2").start()
    try:
        bank_in = site.zone("bank", "incoming")
        wait_for(lambda: listing(bank_in, ".receipt.json.pgp") != [], 60)
        took = time.monotonic() - died
        wait_for(lambda: "lease.taken_over" in survivor.text(), 10)
    finally:
        assert survivor.stop() == 0, survivor.text()[-2000:]
        subprocess.run(["gpgconf", "--homedir", str(doomed.state / "gnupg"), "--kill",
                        "gpg-agent"], check=False, capture_output=True)  # kill -9 leaves it
    assert took >= LEASE - 1, f"taken over after {took:.1f} s, before the lease ran out"
    assert took < 25, f"taken over after {took:.1f} s: at the next rescan, not at the lease's end"
    assert listing(bank_in, ".receipt.json.pgp") == ["BIG.csv.pgp.receipt.json.pgp"]
    receipt = site.receipts()["BIG.csv.pgp.receipt.json.pgp"]
    assert (receipt["status"], receipt["counts"]["accepted"]) == ("accepted", 2500)
    ag1 = [f for f in site.inbox("AG001")]
    assert sorted(ag1) == ["BIG.AG001.collector.csv.pgp", "BIG.AG001.manifest.json.pgp",
                           "BIG.AG001.supervisor.csv.pgp"]
    delivered = sum(len(site.open_as("ag001-supervisor", site.zone("AG001", "inbox", f)).rows) - 1
                    for f in ag1 if "supervisor" in f)
    assert delivered == sum(1 for r in records if r["agency_code"] == "AG001")
    assert Node(site, "node1").events()["batch.accepted"] == 0
    assert survivor.events()["batch.accepted"] == 1
    assert not [p for p in staging.iterdir() if p.name.isdigit()]  # cleaned after delivery
