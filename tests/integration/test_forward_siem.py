"""Forwarding the audit log to a SIEM, with real receivers: rsyslogd over TLS
(rsyslog-gnutls) and an HTTPS webhook checking the HMAC. A batch and a results file go
through a running `gateway run`; the syslog receiver is stopped for 30 s meanwhile and
started again. Each receiver ends up with every entry, exactly as in the log, the sequence
contiguous once de-duplicated and the chain verifying on its side — and nothing personal."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from gateway import audit, synth
from gateway.forward import reader
from gateway.samples import results_csv
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.integration.test_daemon import start_daemon, stop_daemon, wait_for
from tests.leaks import LeakScanner
from tests.siem import Rsyslog, Webhook, check_complete
from tests.tlsca import TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
DOWN_S = 30  # how long the syslog receiver is away
KEY = "a-test-hmac-key-0123456789abcdef"
FORWARD = """
[[forward]]
name = "siem"
kind = "syslog"
transport = "tls"
host = "localhost"
port = {port}
ca_file = "{ca}"
timeout = 3

[[forward]]
name = "hook"
kind = "webhook"
url = "https://localhost:{hook_port}/siem/audit"
ca_file = "{ca}"
secret_env = "GATEWAY_SIEM_KEY"
batch = 7
"""


def events(log: audit.AuditLog, name: str, **fields: str) -> list[dict]:
    return [e for e in log.entries()
            if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]


def test_every_entry_reaches_both_receivers_through_an_outage(tmp_path, keybox, monkeypatch):
    ca = TestCA(tmp_path / "ca")
    server = ca.issue("siem")
    rsyslog = Rsyslog(tmp_path / "rsyslog", ca, server)
    rsyslog.start()
    hook = Webhook(tmp_path / "hook", server, KEY)
    site = Site(tmp_path / "site", keybox)
    site.config.write_text(site.config.read_text() + FORWARD.format(
        port=rsyslog.port, ca=ca.path, hook_port=hook.port))
    monkeypatch.setenv("GATEWAY_SIEM_KEY", KEY)  # the daemon's environment
    log = audit.AuditLog(site.state / "audit")
    first = list(synth.cases(20, ["AG001", "AG002"], seed=61))
    second = list(synth.cases(10, ["AG001", "AG002"], seed=63, prefix="D"))

    def syslog_has_all() -> bool:
        got = {int(h["seq"]) for h, _ in rsyslog.received()}
        return len(got) >= reader.last_seq(log.path)

    proc = start_daemon(site)
    try:
        site.drop_cases("B20260101-01.csv.pgp", first)
        wait_for(lambda: events(log, "batch.accepted"), 30)
        wait_for(syslog_has_all, 20)
        # The receiver goes away; a results file and a second batch go through meanwhile.
        rsyslog.stop()
        down_at = dt.datetime.now(dt.UTC)
        ag1 = [r["case_id"] for r in first if r["agency_code"] == "AG001"]
        site.upload("AG001", "R1.csv.pgp", results_csv(list(synth.results(ag1, 6, seed=62))))
        site.drop_cases("B20260101-02.csv.pgp", second)
        wait_for(lambda: events(log, "results.accepted") and len(events(log, "batch.accepted")) == 2
                 and events(log, "forward.failing", destination="siem"), 40)
        # down for 30 s in all, as a receiver's restart or a short network cut can be
        time.sleep(max(0.0, DOWN_S - (dt.datetime.now(dt.UTC) - down_at).total_seconds()))
        up_at = dt.datetime.now(dt.UTC)
        rsyslog.start()
        # back-off doubles to a minute: the retry after the restart may be ~30 s away
        wait_for(lambda: events(log, "forward.recovered", destination="siem"), 70)
        wait_for(syslog_has_all, 20)
        wait_for(lambda: sum(len(b["entries"]) for b in hook.bodies()) >= reader.last_seq(log.path)
                 or False, 20)
        status = run_cli("status", "--json", "-c", str(site.config))
    finally:
        assert stop_daemon(proc) == 0
        rsyslog.stop()
        hook.stop()

    log_lines = log.path.read_bytes().splitlines(keepends=True)
    node = events(log, "audit.checkpoint")[-1]["node"]
    # syslog: every entry, each message's header telling the same as its entry
    received = rsyslog.received()
    for header, raw in received:
        entry = json.loads(raw)
        assert (header["msgid"], header["host"], header["app"]) == (entry["event"], node, "gateway")
        assert (int(header["seq"]), header["hash"]) == (entry["seq"], entry["hash"])
    n = check_complete([raw for _, raw in received], log_lines)
    recovered = events(log, "forward.recovered", destination="siem")[0]["seq"]
    assert n >= recovered
    during = [e for e in map(json.loads, log_lines[:n])
              if down_at.isoformat() < e["ts"].replace("Z", "+00:00") < up_at.isoformat()]
    assert {"results.accepted", "batch.accepted", "slice.delivered"} <= {e["event"] for e in during}
    # the webhook: never down, so never failing; every entry there too, signed by this node
    bodies = hook.bodies()
    assert {b["node"] for b in bodies} == {node}
    assert max(len(b["entries"]) for b in bodies) <= 7
    check_complete([audit.canonical(e) for b in bodies for e in b["entries"]], log_lines)
    assert not events(log, "forward.failing", destination="hook")
    # nothing a receiver got holds a personal value
    scanner = LeakScanner(first + second)
    assert not scanner.scan(rsyslog.out.read_bytes()) and not scanner.scan(hook.out.read_bytes())
    assert not scanner.scan(log.path.read_bytes())
    # `gateway status`: both destinations working, nothing behind but what the stop wrote
    assert status.returncode == 0, status.stderr
    rows = {r["destination"]: r for r in json.loads(status.stdout) if "destination" in r}
    assert rows["siem"]["state"] == rows["hook"]["state"] == "ok"
    assert rows["siem"]["kind"] == "syslog" and rows["hook"]["kind"] == "webhook"
    assert rows["siem"]["last_error"] is None and rows["siem"]["delivered_seq"] >= recovered
