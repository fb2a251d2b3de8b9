"""Alerts through real channels: a mail relay on loopback (aiosmtpd, STARTTLS required,
its certificate from a test CA) and the HTTPS webhook receiver the forwarding tests use.
Every rule fires and clears; time moves by the engine's ``now`` (the flows' clock), not by
sleeping. Hostile relays hold back no pass and lose no alert; nothing received is personal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import pytest
from sqlalchemy import update

from gateway import audit, synth
from gateway.alerts import delivery
from gateway.alerts.engine import Engine, KeyList, Sources
from gateway.alerts.rules import key_hash
from gateway.ledger import (
    AccountRow,
    AgencyDocumentRow,
    AlertRow,
    DeliveryRow,
    FileRow,
    Ledger,
    UnmaskRequestRow,
    ZoneSeen,
)
from gateway.metrics import Metrics
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.leaks import LeakScanner
from tests.siem import Webhook
from tests.smtp import Relay
from tests.tlsca import TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "an-alerts-hmac-key-0123456789abcdef"
ALERTS = """
[alerts]
reminder_hours = 24
[alerts.smtp]
host = "localhost"
port = {port}
ca_file = "{ca}"
from = "gateway@bank.example"
timeout = {timeout}
[alerts.recipients]
critical = ["soc@bank.example", "oncall@bank.example"]
warning = ["ops@bank.example"]
info = ["ops@bank.example"]
[[alerts.webhooks]]
url = "https://localhost:{hook_port}/alerts"
ca_file = "{ca}"
secret_env = "GATEWAY_SIEM_KEY"
"""
FP = "3C1F0B6E9A2D4F5B8C7E6A1D2B3C4D5E6F708192"


class Harness:
    """A site with [alerts], its engine and delivery (driven by hand), the relay and the
    webhook receiver."""

    def __init__(self, tmp_path, keybox, timeout: float = 5) -> None:
        self.ca = TestCA(tmp_path / "ca")
        self.cert = self.ca.issue("relay")
        self.relay = Relay(tmp_path / "relay", self.cert)
        self.hook = Webhook(tmp_path / "hook", self.cert, KEY)
        self.site = Site(tmp_path / "site", keybox)
        self.site.config.write_text(self.site.config.read_text() + ALERTS.format(
            port=self.relay.port, ca=self.ca.path, hook_port=self.hook.port, timeout=timeout))
        self.cfg = self.site.cfg()
        self.ledger = Ledger(self.cfg.gateway.db_url)
        self.log = audit.AuditLog(self.site.state / "audit", actor="daemon")
        self.log.record("gateway.started", version="0")
        self.metrics = Metrics()
        self.keys: KeyList = []
        src = Sources(cfg=self.cfg, ledger=self.ledger, audit=self.log, node="gw1",
                      metrics=self.metrics)
        self.engine = Engine(src, lambda: list(self.keys))
        self.engine.check_chain()
        assert self.cfg.alerts is not None
        self.deliverer = delivery.Deliverer(self.ledger, self.log,
                                            delivery.Channels(self.cfg.alerts, "gw1"),
                                            self.metrics, backoff=(0.0, 0.0))
        self.now = dt.datetime.now(dt.UTC)
        self.engine.evaluate(self.now)  # the cursor starts at the log's end

    def step(self, hours: float = 0, **kw: object) -> None:
        """Move time on, evaluate and send what is due."""
        self.now += dt.timedelta(hours=hours)
        self.engine._keys_at = None  # the key files as they are now
        self.engine.evaluate(self.now, **kw)  # type: ignore[arg-type]
        self.deliverer.drain()

    def titles(self) -> list[str]:
        return [str(m["message"]["Subject"]).strip() for m in self.relay.mails()]

    def hooked(self) -> list[dict]:
        return [b["alert"] for b in self.hook.bodies()]

    def open(self) -> list[AlertRow]:
        return self.ledger.alerts(open_only=True)

    def sent(self) -> list[dict]:
        return [e for e in self.log.entries() if e["event"] == "alert.sent"]

    def close(self) -> None:
        self.deliverer.close()
        self.ledger.close()
        self.relay.stop()
        self.hook.stop()


@pytest.fixture
def h(tmp_path, keybox, monkeypatch):
    monkeypatch.setenv("GATEWAY_SIEM_KEY", KEY)
    harness = Harness(tmp_path, keybox)
    yield harness
    harness.close()


def check_told(h: Harness, title: str, *, to: set[str], kind: str = "opened") -> None:
    """The last mail and webhook body are this notice, over TLS, to *to*."""
    mail = h.relay.mails()[-1]
    assert str(mail["message"]["Subject"]).strip() == title and mail["tls"] and set(mail["to"]) == to
    assert h.hooked()[-1]["title"] == title and h.hooked()[-1]["kind"] == kind


def test_a_security_event_is_one_critical_alert_that_clears_once_sent(h):
    e = h.log.record("security.bad_signature", file="B20260101-01.csv.pgp", agency="AG001")
    h.step()
    title = "[gateway critical] security_event: security.bad_signature"
    check_told(h, title, to={"soc@bank.example", "oncall@bank.example"})
    body = h.relay.mails()[-1]["message"].get_content()
    assert f"audit entry {e['seq']} on gw1" in body and "gateway audit show" in body
    assert not h.open()  # one-shot: cleared once sent
    sent = h.sent()
    assert {(s["channel"], s["recipients"], s["rule"], s["severity"]) for s in sent} == {
        ("email", 2, "security_event", "critical"), ("webhook0", 1, "security_event", "critical")}
    assert sent[0]["alert_sha256"] == key_hash(f"security_event:gw1:{e['seq']}")
    h.step()
    assert len(h.relay.mails()) == 1  # read once


def test_a_rejected_file_and_an_account_change_are_warnings(h):
    h.log.record("file.rejected", file="B20260101-02.csv.pgp", zone="bank.outgoing",
                 code="E_DECRYPT", codes=["E_DECRYPT"])
    h.log.record("console.account_added", account="eve", role="auditor")
    h.step()
    assert sorted(h.titles()) == [
        "[gateway warning] account_change: eve",
        "[gateway warning] file_rejected: B20260101-02.csv.pgp"]
    assert {m["to"][0] for m in h.relay.mails()} == {"ops@bank.example"}
    assert not h.open() and len(h.hooked()) == 2


def test_a_key_expiring_warns_then_escalates_reminds_and_clears(h):
    h.keys = [(FP, "AG001 key agencies[0].signing_keys[0]", h.now + dt.timedelta(days=40))]
    h.step()
    assert not h.relay.mails()  # 40 days: not yet
    h.step(hours=24 * 11)  # 29 days left
    check_told(h, f"[gateway warning] key_expiry: {FP}", to={"ops@bank.example"})
    h.step(hours=1)
    assert len(h.relay.mails()) == 1  # dedup: one open alert, told once
    h.step(hours=24)  # reminder_hours later
    check_told(h, f"[gateway warning] key_expiry: {FP} (still open)", to={"ops@bank.example"},
               kind="reminder")
    h.step(hours=24 * 30)  # expired
    check_told(h, f"[gateway critical] key_expiry: {FP} (escalated)",
               to={"soc@bank.example", "oncall@bank.example"}, kind="escalated")
    (row,) = h.open()
    assert row.severity == "critical" and "expired" in row.detail
    h.keys = []  # replaced
    h.step()
    check_told(h, f"[gateway critical] key_expiry: {FP} (cleared)",
               to={"soc@bank.example", "oncall@bank.example"}, kind="cleared")
    assert not h.open()
    (cleared,) = [e for e in h.log.entries() if e["event"] == "alert.cleared"]
    assert cleared["alert_sha256"] == key_hash(f"key_expiry:{FP}")
    assert [s["kind"] for s in h.sent() if s["channel"] == "email"] == [
        "opened", "reminder", "escalated", "cleared"]


def test_a_purge_due_warns_then_is_critical_when_overdue(h):
    agency = h.cfg.agencies[1]
    deadline = agency.contract.effective_end + dt.timedelta(days=h.cfg.gateway.purge_after_days)
    h.now = dt.datetime.combine(deadline - dt.timedelta(days=2), dt.time(12),
                                tzinfo=h.cfg.gateway.tz).astimezone(dt.UTC)
    h.step()
    key = f"purge_due:{agency.contract.id}"
    assert any(r.key == key and r.severity == "warning" for r in h.open())
    assert f"[gateway warning] purge_due: {agency.contract.id}" in h.titles()
    h.step(hours=24 * 3)
    assert f"[gateway critical] purge_due: {agency.contract.id} (escalated)" in h.titles()
    h.now = dt.datetime.now(dt.UTC)  # as if purged: the condition no longer holds
    h.step()
    assert f"[gateway critical] purge_due: {agency.contract.id} (cleared)" in h.titles()
    assert not [r for r in h.open() if r.key == key]


def test_slices_not_collected_warn_until_collected(h):
    code = h.cfg.agencies[0].code
    d = DeliveryRow(kind="slice", batch_id="B20260101-01", agency_code=code, role="collector",
                    zone=h.cfg.zone_name(code, "inbox"), name="B20260101-01.AG001.collector.csv.pgp",
                    sha256="0" * 64, size=10, records=1, delivered_at=h.now)
    h.ledger.add_delivery(d)
    h.step(hours=24 * 6)
    assert not h.relay.mails()
    h.step(hours=24 * 2)  # console.stale_days = 7
    check_told(h, f"[gateway warning] uncollected: {code}", to={"ops@bank.example"})
    assert h.ledger.mark_collected(d.id)
    h.step()
    check_told(h, f"[gateway warning] uncollected: {code} (cleared)", to={"ops@bank.example"},
               kind="cleared")


def with_kit(h: Harness, code: str) -> None:
    """*code* runs the agency kit (acknowledge_within_days = 7) from now on."""
    text = h.site.config.read_text()
    i = text.index(f'code = "{code}"')
    h.site.config.write_text(text[:i] + text[i:].replace(
        'receipts_role = "supervisor"', 'acknowledge_within_days = 7\nreceipts_role = "supervisor"', 1))
    h.cfg = h.site.cfg()
    h.engine.src = dataclasses.replace(h.engine.src, cfg=h.cfg)


def test_files_not_acknowledged_warn_until_acknowledged(h):
    code = h.cfg.agencies[0].code
    d = DeliveryRow(kind="slice", batch_id="B20260101-01", agency_code=code, role="collector",
                    zone=h.cfg.zone_name(code, "inbox"), name="B20260101-01.AG001.collector.csv.pgp",
                    sha256="0" * 64, size=10, records=1, delivered_at=h.now)
    h.ledger.add_delivery(d)
    assert h.ledger.mark_collected(d.id)  # collected: only the acknowledgement is missing
    h.step(hours=24 * 8)
    assert not h.relay.mails()  # an agency without the kit owes no acknowledgement
    with_kit(h, code)
    h.step()
    check_told(h, f"[gateway warning] unacknowledged: {code}", to={"ops@bank.example"})
    (row,) = h.open()
    assert row.key == f"unacknowledged:{code}" and "1 file overdue" in row.detail
    assert "batch B20260101-01" in row.detail
    with h.ledger.session() as s:
        s.execute(update(DeliveryRow).where(DeliveryRow.id == d.id).values(acknowledged_at=h.now))
    h.step()
    check_told(h, f"[gateway warning] unacknowledged: {code} (cleared)", to={"ops@bank.example"},
               kind="cleared")
    assert not h.open()


def test_a_missing_attestation_is_critical_until_one_is_accepted(h):
    agency = h.cfg.agencies[0]
    due = agency.contract.effective_end + dt.timedelta(days=30)
    h.now = dt.datetime.combine(due, dt.time(12), tzinfo=h.cfg.gateway.tz).astimezone(dt.UTC)
    with_kit(h, agency.code)
    h.step()
    key = f"attestation_missing:{agency.contract.id}"
    assert not [r for r in h.open() if r.key == key]  # due today: still pending
    h.step(hours=24)
    (row,) = [r for r in h.open() if r.key == key]
    assert row.severity == "critical" and "missing since" in row.detail
    assert f"[gateway critical] attestation_missing: {agency.contract.id}" in h.titles()
    with h.ledger.session() as s:
        f = FileRow(sha256="1" * 64, kind="document", zone=h.cfg.zone_name(agency.code, "outbox"),
                    name="end.attestation.json.pgp", size=10, agency_code=agency.code,
                    status="accepted")
        s.add(f)
        s.flush()
        s.add(AgencyDocumentRow(doc_id="d" * 32, kind="attestation", agency_code=agency.code,
                                file_id=f.id, contract_id=agency.contract.id, created_at=h.now,
                                accepted_at=h.now, listed=3, not_listed=0))
    h.step()
    assert f"[gateway critical] attestation_missing: {agency.contract.id} (cleared)" in h.titles()
    assert not [r for r in h.open() if r.key == key]


def test_a_zone_down_for_15_minutes_is_critical_until_it_answers(h):
    zone = "AG002.inbox"
    h.ledger.save_zone_statuses([ZoneSeen(zone, "local", h.now, 0, "connection refused",
                                          h.now + dt.timedelta(minutes=1))])
    h.step(hours=10 / 60)
    assert not h.relay.mails()
    h.step(hours=6 / 60)
    check_told(h, f"[gateway critical] zone_down: {zone}",
               to={"soc@bank.example", "oncall@bank.example"})
    h.ledger.save_zone_statuses([ZoneSeen(zone, "local", h.now, 0, None, None)])
    h.step()
    assert h.titles()[-1] == f"[gateway critical] zone_down: {zone} (cleared)"


def test_a_piece_failing_three_passes_in_a_row_is_critical(h):
    for _ in range(2):
        h.step(failed_parts=["results.AG001"])
    assert not h.relay.mails()
    h.step(failed_parts=["results.AG001"])
    check_told(h, "[gateway critical] pass_failing: results.AG001",
               to={"soc@bank.example", "oncall@bank.example"})
    h.step()
    assert h.titles()[-1] == "[gateway critical] pass_failing: results.AG001 (cleared)"


def test_a_chain_that_does_not_verify_is_critical_until_it_does(h):
    h.log.record("config.loaded", config_sha256="a" * 64, version="0")
    lines = h.log.path.read_bytes().splitlines(keepends=True)
    bad = lines[1].replace(b'"a', b'"b', 1)
    h.log.path.write_bytes(lines[0] + bad + b"".join(lines[2:]))
    h.step(verify=True)
    check_told(h, "[gateway critical] audit_verify: gw1",
               to={"soc@bank.example", "oncall@bank.example"})
    data = h.log.path.read_bytes()
    h.log.path.write_bytes(data.replace(bad, lines[1], 1))  # the original put back
    h.step(verify=True)
    assert h.titles()[-1] == "[gateway critical] audit_verify: gw1 (cleared)"


def test_a_locked_console_account_warns_until_the_lock_runs_out(h):
    h.ledger.add_account(AccountRow(name="anna", role="auditor", password_hash="x",
                                    totp_secret="y"))
    assert h.ledger.login_failed("anna", h.now, lock_after=1, lock_for=dt.timedelta(minutes=30))
    h.step()
    check_told(h, "[gateway warning] console_locked: anna", to={"ops@bank.example"})
    h.step(hours=1)
    assert h.titles()[-1] == "[gateway warning] console_locked: anna (cleared)"


@pytest.mark.parametrize("mode", ["silent", "reject", "bad_certificate"])
def test_a_hostile_relay_holds_no_pass_and_loses_no_alert(tmp_path, keybox, monkeypatch, mode):
    monkeypatch.setenv("GATEWAY_SIEM_KEY", KEY)
    h = Harness(tmp_path, keybox, timeout=1)
    try:
        other = TestCA(tmp_path / "other", "Other CA").issue("relay")
        h.relay.restart("silent" if mode == "silent" else "reject" if mode == "reject" else "good",
                        other if mode == "bad_certificate" else None)
        h.deliverer.start()  # the thread, as in the daemon
        h.log.record("security.bad_signature", file="B20260101-01.csv.pgp", agency="AG001")
        started = time.monotonic()
        h.engine.evaluate(h.now)  # the pass: queues and returns
        assert time.monotonic() - started < 1.0
        failed = h.metrics.alerts_failed.labels(channel="email")
        deadline = time.monotonic() + 15
        while failed._value.get() < 1 or not h.hooked():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        h.engine.evaluate(h.now + dt.timedelta(minutes=1))  # a pass meanwhile: not held back
        assert time.monotonic() - started < 1.0
        assert not h.relay.mails() and len(h.hooked()) == 1  # the webhook got it all the same
        (row,) = h.ledger.alerts()
        assert row.cleared_at is None  # not sent to every channel yet: not done
        msgs = h.ledger.alert_messages([row.id])
        (mail,) = [m for m in msgs if m.channel == "email"]
        assert mail.sent_at is None and mail.attempts >= 1 and mail.last_error
        h.relay.restart("good")  # the relay mends: the alert goes out
        wait = time.monotonic() + 20
        while not h.relay.mails():
            assert time.monotonic() < wait
            time.sleep(0.05)
        assert h.titles() == ["[gateway critical] security_event: security.bad_signature"]
    finally:
        h.close()


def test_nothing_personal_reaches_a_mail_or_a_webhook(h):
    cases = list(synth.cases(20, ["AG001", "AG002"], seed=71))
    h.site.drop_cases("B20260101-01.csv.pgp", cases)
    h.site.drop("B20260101-02.csv.pgp", b"not a csv at all", signer=None)  # rejected
    h.site.run()
    h.log.record("security.bad_signature", file="B20260101-03.csv.pgp", agency="AG001")
    h.step()
    h.step(hours=24 * 8)  # the slices are now uncollected
    titles = h.titles()
    assert any("uncollected" in t for t in titles) and any("file_rejected" in t for t in titles)
    scanner = LeakScanner(cases)
    assert not scanner.scan(h.relay.raw()) and not scanner.scan(h.hook.out.read_bytes())
    for b in h.hook.bodies():
        assert set(b) == {"alert", "node", "sent_at"} and json.dumps(b)


def test_the_cli_lists_alerts_and_tests_every_channel(h):
    h.keys = [(FP, "bank key bank.signing_keys[0]", h.now + dt.timedelta(days=3))]
    h.step()
    listed = json.loads(run_cli("alerts", "--json", "-c", str(h.site.config)).stdout)
    (item,) = listed
    assert (item["rule"], item["severity"], item["state"]) == ("key_expiry", "warning", "open")
    assert item["channels"]["email"]["recipients"] == 1 and item["channels"]["webhook0"]["notices"] == 1
    assert "ops@bank.example" not in json.dumps(listed)  # counts, never addresses
    proc = run_cli("alerts", "test", "-c", str(h.site.config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "email: sent (3 recipient(s))" in proc.stdout and "webhook0: sent" in proc.stdout
    mail = h.relay.mails()[-1]
    assert set(mail["to"]) == {"soc@bank.example", "oncall@bank.example", "ops@bank.example"}
    assert h.hooked()[-1]["rule"] == "test"
    assert [s["channel"] for s in h.sent() if s["rule"] == "test"] == ["email", "webhook0"]
    h.relay.restart("reject")
    failed = run_cli("alerts", "test", "-c", str(h.site.config))
    assert failed.returncode == 1 and "email: FAILED: smtp_554" in failed.stdout


def test_the_running_daemon_alerts_a_security_event_by_mail_and_webhook(tmp_path, keybox,
                                                                          monkeypatch):
    """The wiring, end to end: `gateway run` with [alerts], a results file naming another
    agency's case (security.cross_agency) — the relay and the webhook each get the critical
    alert, audited as sent, while the flows go on; the daemon stops cleanly."""
    from gateway.samples import results_csv
    from tests.integration.test_daemon import start_daemon, stop_daemon, wait_for
    from tests.integration.test_forward_siem import events

    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("relay")
    relay = Relay(tmp_path / "relay", cert)
    hook = Webhook(tmp_path / "hook", cert, KEY)
    site = Site(tmp_path / "site", keybox)
    site.config.write_text(site.config.read_text() + ALERTS.format(
        port=relay.port, ca=ca.path, hook_port=hook.port, timeout=5))
    monkeypatch.setenv("GATEWAY_SIEM_KEY", KEY)
    log = audit.AuditLog(site.state / "audit")
    records = list(synth.cases(10, ["AG001", "AG002"], seed=81))
    proc = start_daemon(site)
    try:
        site.drop_cases("B20260301-01.csv.pgp", records)
        wait_for(lambda: events(log, "batch.accepted"), 30)
        ag2 = [r["case_id"] for r in records if r["agency_code"] == "AG002"]
        site.upload("AG001", "R1.csv.pgp", results_csv(list(synth.results(ag2[:1], 1, seed=82))))
        wait_for(lambda: events(log, "security.cross_agency"), 30)
        wait_for(lambda: any("cross_agency" in m["message"]["Subject"] for m in relay.mails())
                 and hook.bodies(), 30)
        wait_for(lambda: len(events(log, "alert.sent")) >= 2, 10)  # mail and webhook
    finally:
        assert stop_daemon(proc) == 0
        relay.stop()
        hook.stop()
    mail = next(m for m in relay.mails() if "cross_agency" in m["message"]["Subject"])
    assert mail["message"]["Subject"].startswith("[gateway critical]")
    assert {"soc@bank.example", "oncall@bank.example"} <= set(mail["to"])
    assert {e["channel"] for e in events(log, "alert.sent")} >= {"email", "webhook0"}


def test_unmask_requests_waiting_and_a_monthly_limit_approached_are_told(h):
    """Approvers are told a request waits (one alert for all that wait, cleared when none
    does), and the bank that an agency nears its monthly limit."""
    from tests.integration.test_unmask import UNMASK, request, send

    h.site.config.write_text(h.site.config.read_text() + UNMASK.replace(
        "max_cases = 3", "max_cases = 3\nmonthly_releases = 1"))
    h.cfg = h.site.cfg()
    h.engine.src = dataclasses.replace(h.engine.src, cfg=h.cfg)
    cases = list(synth.cases(4, ["AG001"], seed=72))
    h.site.drop_cases("B20260101-01.csv.pgp", cases)
    h.site.run()
    req = request(h.site, [cases[0]["case_id"]], ["home_address"])
    assert send(h.site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    h.step()
    titles = set(h.titles())
    assert "[gateway warning] unmask_waiting: AG001" in titles
    assert "[gateway warning] unmask_limit: AG001" in titles
    waiting = next(r for r in h.open() if r.rule == "unmask_waiting")
    assert "1 unmask request(s) from AG001" in waiting.detail
    limit = next(r for r in h.open() if r.rule == "unmask_limit")
    assert "1 of 1 requests" in limit.detail
    with h.ledger.session() as s:  # the time to decide runs out
        s.execute(update(UnmaskRequestRow).values(decide_by=h.now - dt.timedelta(hours=1)))
    h.step()
    assert "[gateway warning] unmask_waiting: AG001 (cleared)" in h.titles()
    assert not LeakScanner(cases).scan(h.relay.raw())
