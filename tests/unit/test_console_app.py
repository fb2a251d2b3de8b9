"""The console's routes against hostile input (issue 22): the app on a real loopback
socket (uvicorn, as `gateway console` serves it) with a signed-in session, asked over
plain HTTP — no browser, no gpg: a site made by `gateway init` and an empty ledger.

Findings covered here: CSV exports neutralise formula-leading cells (6); no query
parameter or path segment makes a 5xx (7, with hypothesis); a foreign Host is refused
and forwarded headers are believed only from the trusted proxy (8).
"""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import json
import re
import urllib.parse
from pathlib import Path

import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import audit, config, scaffold
from gateway.config import Config
from gateway.console.auth import Accounts
from gateway.ledger import (
    AgencyDocumentRow,
    AlertMessageRow,
    AlertRow,
    DeliveryRow,
    FileRow,
    Ledger,
)
from tests.integration.test_console import Clock, Server

PASSWORD = "correct horse battery"


def make_site(root: Path, console: str = "") -> Config:
    """`gateway init` with *console* appended to its [console] table, a ledger at head
    and one account, alice (her TOTP secret in ``ALICE``)."""
    path = scaffold.init_project(root)
    if console:
        text = path.read_text()
        path.write_text(text.replace("[console]", "[console]\n" + console, 1))
    cfg = config.load(path)
    ledger = Ledger(cfg.gateway.db_url)
    ALICE[str(root)] = Accounts(ledger, audit.AuditLog(cfg.gateway.state_dir / "audit",
                                                       actor="admin")).add(
        "alice", "auditor", PASSWORD).secret
    ledger.close()
    return cfg


ALICE: dict[str, str] = {}


class Http:
    """Requests to one console with any header, the session cookie carried along."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, target: str, *, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, target, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return resp.status, resp.headers, data

    def get(self, target: str, **headers: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        return self.request("GET", target, headers=headers)

    def log_in(self, secret: str, clock: Clock, **headers: str) -> http.client.HTTPMessage:
        clock.tick(seconds=31)  # a code works once
        status, _, page = self.get("/login", **headers)
        assert status == 200, page
        token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        status, sent, page = self.request("POST", "/login", headers=headers, body=urllib.parse.urlencode(
            {"csrf": token, "name": "alice", "password": PASSWORD,
             "code": pyotp.TOTP(secret).at(clock.now)}))
        assert status == 303, page
        return sent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("console") / "gw"
    return root, make_site(root)


@pytest.fixture(scope="module")
def console(site):
    root, cfg = site
    clock = Clock()
    server = Server(cfg, clock)
    client = Http(server.port)
    client.log_in(ALICE[str(root)], clock)
    yield server, client, cfg
    server.stop()


# --- finding 6: the CSV export ------------------------------------------------------------

def test_the_csv_export_neutralises_formula_leading_cells(console):
    """An actor and a zone a spreadsheet would run (``-2-3`` was seen in a review):
    written with a leading ``'`` like every other CSV of the gateway; JSON Lines keeps
    the log's values as they are."""
    _server, client, cfg = console
    audit.AuditLog(cfg.gateway.state_dir / "audit", actor="-2-3").record(
        "console.view", account="alice", page="audit", zone="-1-1")
    audit.AuditLog(cfg.gateway.state_dir / "audit", actor="@admin").record(
        "console.view", account="alice", page="audit")
    status, headers, body = client.get("/audit/export.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    actors = {r["actor"] for r in rows}
    assert {"'-2-3", "'@admin"} <= actors and not {"-2-3", "@admin"} & actors
    assert "'-1-1" in {r["zone"] for r in rows}
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row
    status, _, body = client.get("/audit/export.jsonl")
    assert {"-2-3", "@admin"} <= {json.loads(line)["actor"] for line in body.splitlines()}


# --- finding 7: no 500 ----------------------------------------------------------------------

@pytest.mark.parametrize(("target", "status"), [
    ("/audit?before=99999999999999999999999", 400),  # OverflowError into SQLite
    ("/audit?before=-1", 400),
    ("/audit?before=x", 400),
    ("/audit?before=1", 200),
    ("/compliance/reports/report.AG001.0001-01.html", 404),  # date out of range
    ("/compliance/reports/report.AG001.9999-12.html", 404),  # year 10000
    ("/compliance/reports/report.AG001.1970-01.html", 200),
])
def test_numbers_and_months_out_of_range_are_refused_not_a_500(console, target, status):
    _server, client, _cfg = console
    assert client.get(target)[0] == status


def test_a_report_of_this_month_but_not_of_the_next(console):
    server, client, cfg = console
    today = server.app.state.console.now().astimezone(cfg.gateway.tz).date()
    this = today.strftime("%Y-%m")
    following = (today.replace(day=1) + dt.timedelta(days=31)).strftime("%Y-%m")
    assert client.get(f"/compliance/reports/report.AG001.{this}.html")[0] == 200
    assert client.get(f"/compliance/reports/report.AG001.{following}.html")[0] == 404


PARAMS = ("event", "agency", "actor", "file", "batch_id", "since", "until", "before", "days",
          "ended", "fmt", "month")
DATES = st.builds(lambda y, m, d, rest: f"{y:04d}-{m:02d}-{d:02d}{rest}",
                  st.integers(0, 10000), st.integers(0, 13), st.integers(0, 32),
                  st.sampled_from(["", "T00:00", "T23:59:59", "T12:00+14:00", "T12:00-12:00",
                                   "Z", " ", "T25:00"]))
VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(
        lambda t: urllib.parse.quote(t, safe="")),
    st.binary(max_size=24).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
    st.integers().map(str),
    st.integers(min_value=2**62).map(lambda n: str(n)),  # around SQLite's INTEGER limits
    st.integers(min_value=2**62).map(lambda n: str(-n)),
    DATES.map(lambda t: urllib.parse.quote(t, safe="")),
    st.sampled_from(["security.", "console.", "AG001", "1", "0", "", "%00", "%FF", "-2-3"]),
)
MONTHS = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(0, 9999), st.integers(0, 13))
SEGMENTS = st.one_of(VALUES, MONTHS, st.sampled_from(["AG001", "csv", "jsonl", "..", "."]))
TARGETS = st.one_of(
    st.builds(lambda path, pairs: path + "?" + "&".join(f"{k}={v}" for k, v in pairs),
              st.sampled_from(["/audit", "/audit/export.csv", "/audit/export.jsonl",
                               "/compliance", "/login", "/", "/unmask", "/unmask/register",
                               "/unmask/register.csv"]),
              st.lists(st.tuples(st.sampled_from(PARAMS), VALUES), max_size=5)),
    st.builds(lambda fmt: f"/audit/export.{fmt}", SEGMENTS),
    st.builds(lambda agency, month: f"/compliance/reports/report.{agency}.{month}.html",
              st.one_of(st.just("AG001"), SEGMENTS), SEGMENTS),
    st.builds(lambda name: f"/retention/certificates/{name}", SEGMENTS),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=TARGETS)
def test_no_parameter_value_makes_a_server_error(console, target):
    _server, client, _cfg = console
    status, _, body = client.get(target)
    assert status < 500, (target, body[:300])


# --- finding 8: Host and the forwarded headers ---------------------------------------------

def test_a_foreign_host_is_refused_and_never_redirected_to(console):
    """DNS rebinding and forged redirects: `Host: evil.example` used to get
    ``307 Location: http://evil.example/audit``; now 400, on every path."""
    server, client, _cfg = console
    for path in ("/audit/", "/login", "/static/console.css", "/"):
        status, headers, body = client.get(path, Host="evil.example")
        assert status == 400 and "Location" not in headers, (path, body)
        assert headers["X-Frame-Options"] == "DENY"
    for host in (f"127.0.0.1:{server.port}", "localhost", "[::1]:8080"):
        assert client.get("/login", Host=host)[0] == 200, host
    status, headers, _ = client.get("/audit/", Host=f"localhost:{server.port}")
    assert status == 307 and headers["Location"] == f"http://localhost:{server.port}/audit"


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(console):
    server, client, _cfg = console
    spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
               "X-Forwarded-For": "203.0.113.7"}
    status, headers, _ = client.get("/audit/", Host=f"127.0.0.1:{server.port}", **spoofed)
    assert status == 307 and headers["Location"] == f"http://127.0.0.1:{server.port}/audit"
    status, headers, _ = client.get("/login", **spoofed)
    assert status == 200 and "secure" not in headers["Set-Cookie"].lower()


def served(tmp_path: Path, console_toml: str) -> tuple[Server, Clock, Http, Config, str]:
    cfg = make_site(tmp_path / "gw", console_toml)
    clock = Clock()
    server = Server(cfg, clock)
    return server, clock, Http(server.port), cfg, ALICE[str(tmp_path / "gw")]


def test_behind_the_trusted_proxy_its_headers_are_believed(tmp_path):
    """The name, scheme and client the proxy passes on: redirects to the name the person
    typed, Secure cookies over its HTTPS, and the person's address in the audit log."""
    server, clock, client, cfg, secret = served(
        tmp_path, 'trusted_proxy = "127.0.0.1"\nallowed_hosts = ["console.test"]')
    try:
        proxied = {"Host": "127.0.0.1:8080", "X-Forwarded-Host": "console.test:8443",
                   "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        sent = client.log_in(secret, clock, **proxied)
        cookies = {c.split("=")[0]: c.lower() for c in sent.get_all("Set-Cookie")}
        assert "; secure" in cookies["gw_session"] and "httponly" in cookies["gw_session"]
        login = [e for e in audit.AuditLog(cfg.gateway.state_dir / "audit").entries()
                 if e["event"] == "console.login"][-1]
        assert login["address"] == "203.0.113.7"
        status, headers, _ = client.get("/audit/", **proxied)
        assert status == 307 and headers["Location"] == "https://console.test:8443/audit"
        assert client.get("/audit", **proxied)[0] == 200
        # a name the proxy passes on that is not allowed; the proxy's own Host is not used
        assert client.get("/audit", **{**proxied, "X-Forwarded-Host": "evil.example"})[0] == 400
        assert client.get("/audit", Host="127.0.0.1")[0] == 400  # only console.test is allowed
        # plain HTTP through the proxy: no Secure
        status, headers, _ = client.get("/login", **{**proxied, "X-Forwarded-Proto": "http"})
        assert status == 200 and "secure" not in headers["Set-Cookie"].lower()
        # a forwarded address that is no address is not written down (nor a 500)
        assert client.get("/audit", **{**proxied, "X-Forwarded-For": "<script>"})[0] == 200
    finally:
        server.stop()


def test_forwarded_headers_from_another_address_are_ignored(tmp_path):
    server, clock, client, cfg, secret = served(tmp_path, 'trusted_proxy = ["192.0.2.1"]')
    try:
        spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": "203.0.113.7"}
        sent = client.log_in(secret, clock, **spoofed)
        assert all("secure" not in c.lower() for c in sent.get_all("Set-Cookie"))
        login = [e for e in audit.AuditLog(cfg.gateway.state_dir / "audit").entries()
                 if e["event"] == "console.login"][-1]
        assert login["address"] == "127.0.0.1"
        status, headers, _ = client.get("/audit/", Host=f"localhost:{server.port}", **spoofed)
        assert status == 307 and headers["Location"] == f"http://localhost:{server.port}/audit"
    finally:
        server.stop()


# --- the Compliance page's monthly reports -------------------------------------------------

def test_compliance_lists_the_last_three_calendar_months_in_its_body(tmp_path):
    """The reports table once sat in ``{% block title %}`` — invisible, and the browser's
    title read ``Compliance<h2>Monthly supervision reports</h2>…`` — and its months were
    stepped by 31 days, so December listed 2026-12, 2026-11, 2026-09 and March skipped
    January and February. Each day below is a month whose step went wrong or a year's turn."""
    server, clock, client, cfg, secret = served(tmp_path, "")
    tz = cfg.gateway.tz
    try:
        for day, expected in [
            (dt.date(2027, 1, 15), ["2027-01", "2026-12", "2026-11"]),
            (dt.date(2027, 2, 28), ["2027-02", "2027-01", "2026-12"]),
            (dt.date(2027, 3, 1), ["2027-03", "2027-02", "2027-01"]),
            (dt.date(2027, 12, 31), ["2027-12", "2027-11", "2027-10"]),
        ]:
            clock.now = dt.datetime(day.year, day.month, day.day, 12, tzinfo=tz).astimezone(dt.UTC)
            client.log_in(secret, clock)
            status, _, body = client.get("/compliance")
            page = body.decode()
            assert status == 200, page
            title = re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1)
            assert title == "Compliance · gateway console"
            main = page[page.index("<main>"):page.index("</main>")]
            assert '<table id="reports">' in main and "Monthly supervision reports" in main
            header = re.search(r'<table id="reports">\s*<thead>(.*?)</thead>', main, re.DOTALL)
            assert re.findall(r"<th>(\d{4}-\d{2})</th>", header.group(1)) == expected, day
            for m in expected:  # every listed report opens
                assert client.get(f"/compliance/reports/report.AG001.{m}.html")[0] == 200
    finally:
        server.stop()


# --- the Alerts page (issue 25) --------------------------------------------------------------

ALERTS_TOML = """
[alerts]
[alerts.smtp]
host = "127.0.0.1"
tls = "none"
from = "gateway@bank.example"
[alerts.recipients]
critical = ["soc@bank.example", "oncall@bank.example"]
"""


def test_the_alerts_page_lists_open_alerts_before_cleared_ones_with_their_counts(tmp_path):
    """Open first (though the cleared one is older in the table), each with what each
    channel was sent — counts and the last error's word, never an address; audited."""
    root = tmp_path / "gw"
    cfg = make_site(root)
    cfg.source.write_text(cfg.source.read_text() + ALERTS_TOML)
    cfg = config.load(cfg.source)
    assert cfg.alerts is not None
    opened = dt.datetime(2027, 3, 1, 8, 30, tzinfo=dt.UTC)
    ledger = Ledger(cfg.gateway.db_url)
    with ledger.session() as s:
        gone = AlertRow(key="key_expiring:AB12", rule="key_expiring", severity="warning",
                        subject="key AB12", detail="expired", node="node-b",
                        opened_at=opened - dt.timedelta(days=2), cleared_at=opened)
        s.add(gone)
        s.flush()
        s.add(AlertMessageRow(alert_id=gone.id, kind="opened", channel="email",
                              sent_at=opened, recipients=1))
        now = AlertRow(key="zone_down:Z1", rule="zone_down", severity="critical",
                       subject="zone Z1", detail="<script>alert(1)</script> no heartbeat",
                       node="node-a", opened_at=opened, remind_at=None, cleared_at=None)
        s.add(now)
        s.flush()
        s.add_all([
            AlertMessageRow(alert_id=now.id, kind="opened", channel="email", sent_at=opened,
                            recipients=2),
            AlertMessageRow(alert_id=now.id, kind="reminder", channel="email", sent_at=None,
                            attempts=3, last_error="timeout"),
            AlertMessageRow(alert_id=now.id, kind="opened", channel="webhook0", sent_at=opened,
                            recipients=1),
        ])
    ledger.close()
    clock = Clock()
    server = Server(cfg, clock)
    try:
        client = Http(server.port)
        client.log_in(ALICE[str(root)], clock)
        status, _, body = client.get("/alerts")
        page = body.decode()
        assert status == 200, page
        assert re.search(r"<title>(.*?)</title>", page).group(1) == "Alerts · gateway console"
        main = page[page.index("<main>"):page.index("</main>")]
        assert "not configured" not in main and "gateway alerts test" in main
        assert main.index("zone Z1") < main.index("key AB12")
        assert main.index('id="open-alerts"') < main.index("zone Z1") < main.index(
            'id="cleared-alerts"') < main.index("key AB12")
        assert "<b>email</b>: 1 sent · 2 recipients · 1 pending · last error <code>timeout</code>" in main
        assert "<b>webhook0</b>: 1 sent · 1 recipients · 0 pending" in main
        assert "<b>email</b>: 1 sent · 1 recipients · 0 pending" in main  # the cleared one's
        assert "&lt;script&gt;alert(1)&lt;/script&gt; no heartbeat" in main
        assert "<script>alert" not in page
        assert "bank.example" not in page and "@" not in main
        assert server.app.state.console.local(opened) in main  # since, in the gateway's zone
        views = [e for e in audit.AuditLog(cfg.gateway.state_dir / "audit").entries()
                 if e["event"] == "console.view"]
        assert views[-1]["page"] == "alerts" and views[-1]["account"] == "alice"
        assert views[-1]["count"] == 2
    finally:
        server.stop()


def test_the_alerts_page_says_when_alerts_are_not_configured(console):
    _server, client, cfg = console
    assert cfg.alerts is None
    status, _, body = client.get("/alerts")
    main = body.decode()
    main = main[main.index("<main>"):main.index("</main>")]
    assert status == 200
    assert "Alerts are not configured: see docs/operations.md, Alerts" in main
    assert "<table" not in main
    last = list(audit.AuditLog(cfg.gateway.state_dir / "audit").entries())[-1]
    assert (last["event"], last["page"], last["account"]) == ("console.view", "alerts", "alice")


def test_the_alerts_page_requires_signing_in(console):
    server, _client, _cfg = console
    status, headers, _ = Http(server.port).get("/alerts")
    assert status == 303 and headers["Location"] == "/login"


# --- the Retention page: the agency's half (issue 26) -----------------------------------------

def test_the_retention_page_shows_the_agencys_attestation_and_overdue_acknowledgements(tmp_path):
    """AG001 runs the kit; 40 days after its contract's end, with a slice never
    acknowledged: the attestation is missing and the row marked. Once one is accepted, it
    is shown — state, time, files, the file's name and SHA-256 — every value escaped."""
    root = tmp_path / "gw"
    cfg = make_site(root)
    text = cfg.source.read_text()
    cfg.source.write_text(text.replace('receipts_role = "supervisor"',
                                       'acknowledge_within_days = 5\nreceipts_role = "supervisor"', 1))
    cfg = config.load(cfg.source)
    (ag1,) = cfg.agencies
    assert ag1.acknowledge_within_days == 5
    accepted = dt.datetime.combine(ag1.contract.effective_end + dt.timedelta(days=35), dt.time(3),
                                   dt.UTC)
    ledger = Ledger(cfg.gateway.db_url)
    with ledger.session() as s:
        s.add(DeliveryRow(kind="slice", batch_id="B1", agency_code=ag1.code, role="collector",
                          zone=cfg.zone_name(ag1.code, "inbox"), name="B1.AG001.collector.csv.pgp",
                          sha256="0" * 64, size=10, records=1,
                          delivered_at=dt.datetime.combine(ag1.contract.effective_end,
                                                           dt.time(), dt.UTC)))
    clock = Clock()
    clock.now = dt.datetime.combine(ag1.contract.effective_end + dt.timedelta(days=40), dt.time(12),
                                    cfg.gateway.tz).astimezone(dt.UTC)
    server = Server(cfg, clock)

    def row() -> tuple[str, str]:
        status, _, body = client.get("/retention")
        page = body.decode()
        assert status == 200, page
        main = page[page.index("<main>"):page.index("</main>")]
        assert "<th>agency attestation</th>" in main and '<th class="n">acks overdue</th>' in main
        assert "<b>x</b>" not in page
        ((cls, cells),) = [(c, cells) for c, code, cells in re.findall(
            r"<tr( class=\"[^\"]*\")?>\s*<td>[^<]*</td><td>(\w+)</td>(.*?)</tr>", main, re.S)
            if code == ag1.code]
        return cls, cells

    try:
        client = Http(server.port)
        client.log_in(ALICE[str(root)], clock)
        cls, cells = row()
        due = ag1.contract.effective_end + dt.timedelta(days=30)
        assert cls == ' class="bad"' and '<span class="bad-text">missing</span>' in cells
        assert f"due {due}" in cells and '<span class="warn-text">1</span>' in cells
        _, _, body = client.get("/")  # the Overview says so too, among what needs attention
        overview = body.decode()
        assert (f"{ag1.code}'s deletion attestation for contract {ag1.contract.id} is "
                f"missing</a> (due by {due})") in overview
        assert f"{ag1.code} has not acknowledged 1 file</a> within 5 days" in overview
        assert "Nothing needs attention" not in overview
        with ledger.session() as s:
            f = FileRow(sha256="ab" * 32, kind="document", zone=cfg.zone_name(ag1.code, "outbox"),
                        name="<b>x</b>.attestation.json.pgp", size=10, agency_code=ag1.code,
                        status="accepted")
            s.add(f)
            s.flush()
            s.add(AgencyDocumentRow(doc_id="d" * 32, kind="attestation", agency_code=ag1.code,
                                    file_id=f.id, contract_id=ag1.contract.id, created_at=accepted,
                                    accepted_at=accepted, listed=3, not_listed=1))
        _, cells = row()  # (the row stays marked: the gateway's own purge is overdue too)
        assert '<span class="ok-text">attested</span>' in cells
        assert "3 files listed, 1 not listed; &lt;b&gt;x&lt;/b&gt;.attestation.json.pgp" in cells
        assert f"<code>{'ab' * 32}</code>" in cells
        assert server.app.state.console.local(accepted, "%Y-%m-%d %H:%M") in cells
    finally:
        server.stop()
        ledger.close()
