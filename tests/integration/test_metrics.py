"""/metrics and /healthz of a running daemon (docs/operations.md), scraped after real work."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from gateway import synth
from tests.flowsite import Site
from tests.integration.test_daemon import start_daemon, stop_daemon, wait_for
from tests.integration.test_results_flow import results_csv, row

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_health_after_a_batch_and_results(tmp_path, keybox):
    site = Site(tmp_path / "site", keybox)
    port = free_port()
    site.edit('metrics_listen = "127.0.0.1:0"', f'metrics_listen = "127.0.0.1:{port}"')
    records = list(synth.cases(30, ["AG001", "AG002"], seed=97))
    proc = start_daemon(site, "--rescan", "600")
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=10)  # after the first pass
        site.drop_cases("B1.csv.pgp", records)
        receipt = site.zone("bank", "incoming", "B1.csv.pgp.receipt.json.pgp")
        wait_for(receipt.exists, timeout=30)
        ag1 = [r["case_id"] for r in records if r["agency_code"] == "AG001"]
        site.upload("AG001", "R1.csv.pgp", results_csv([
            row(ag1[0]), row(ag1[1], "CALL", target="third_party"), row("NOT-OURS")]))
        wait_for(site.zone("AG001", "inbox", "R1.csv.pgp.receipt.json.pgp").exists, timeout=30)
        wait_for(lambda: 'outcome="partial"' in get(port, "/metrics")[1], timeout=10)
        code, text = get(port, "/metrics")
        health_code, health = get(port, "/healthz")
    finally:
        assert stop_daemon(proc) == 0
    assert code == 200
    lines = set(text.splitlines())
    assert 'gateway_files_total{channel="case_file",outcome="accepted"} 1.0' in lines
    assert 'gateway_files_total{channel="results",outcome="partial"} 1.0' in lines
    assert 'gateway_cases_delivered_total{agency="AG001"} 15.0' in lines
    assert 'gateway_cases_delivered_total{agency="AG002"} 15.0' in lines
    assert 'gateway_result_rows_total{agency="AG001",flag="THIRD_PARTY"} 1.0' in lines
    assert 'gateway_result_rows_total{agency="AG001",flag="none"} 1.0' in lines
    assert 'gateway_security_events_total{event="security.cross_agency"} 1.0' in lines
    assert 'gateway_zone_up{zone="bank.outgoing"} 1.0' in lines
    assert "gateway_pending_deliveries 0.0" in lines
    assert any(x.startswith('gateway_purge_deadline_timestamp_seconds{agency="AG002"}') for x in lines)
    assert any(x.startswith("gateway_key_expiry_timestamp_seconds{fingerprint=") for x in lines)
    assert any(x.startswith("gateway_pass_duration_seconds_count ") for x in lines)
    assert any(x.startswith('gateway_bytes_total{direction="in"}') for x in lines)
    for r in records:  # no label carries a personal value or a case id
        for field in ("case_id", "customer_name", "mobile", "id_number"):
            assert r[field] not in text
    assert health_code == 200 and json.loads(health)["status"] == "ok"


def test_health_is_503_with_a_reason_when_a_zone_fails(tmp_path, keybox):
    site = Site(tmp_path / "site", keybox)
    port = free_port()
    site.edit('metrics_listen = "127.0.0.1:0"', f'metrics_listen = "127.0.0.1:{port}"')
    inbox = site.zone("AG002", "inbox")
    proc = start_daemon(site, "--rescan", "0.5")
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=10)
        inbox.rename(inbox.with_name("inbox.gone"))  # the directory disappears
        wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=20)
        code, body = get(port, "/healthz")
        reason = json.loads(body)
        assert code == 503
        assert reason["status"] == "zone_failing" and reason["zones"] == ["AG002.inbox"]
        assert 'gateway_zone_up{zone="AG002.inbox"} 0.0' in get(port, "/metrics")[1]
        inbox.with_name("inbox.gone").rename(inbox)
        wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=20)
    finally:
        assert stop_daemon(proc) == 0
