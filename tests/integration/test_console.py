"""The security team's console (docs/security-team.md) in a real browser: Debian's Chromium driven by
Selenium through Debian's chromedriver (nothing downloaded at test time), against a
console serving a site on which a batch, a results file with a cross-agency attempt
and a purge have run.

The console runs in this process on a real socket (uvicorn), with a clock the tests
can move: a session's 15-minute idle timeout and a 15-minute lockout are tested
without waiting. `gateway console` itself, as a process, is tested at the end: it
never opens the gateway's secret key and never starts gpg.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyotp
import pytest

from gateway import audit, queries, synth
from gateway.config import Config
from gateway.console.app import create_app
from gateway.console.auth import LOCKOUT, MAX_FAILURES, Accounts
from gateway.ledger import Ledger
from tests.faults import TZ, results_csv
from tests.flowsite import Site
from tests.leaks import LeakScanner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PASSWORD = "correct horse battery"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def exchange(tmp_path_factory, keybox):
    return busy_site(tmp_path_factory.mktemp("console") / "site", keybox)


def busy_site(root: Path, keybox) -> tuple[Site, list[dict[str, str]]]:
    """A site after a batch, AG001's results (two out of hours, a dispute, one row about
    AG002's case) and a purge of AG002's ended contract; and every case record, for the
    leak scans."""
    site = Site(root, keybox)
    records = list(synth.cases(30, ["AG001", "AG002"], seed=41))
    site.drop_cases("B1.csv.pgp", records)
    assert site.run() == {"accepted": 1}
    mine = [r["case_id"] for r in records if r["agency_code"] == "AG001"]
    theirs = [r["case_id"] for r in records if r["agency_code"] == "AG002"]
    day = (dt.datetime.now(TZ) - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    actions = [("VISIT", "10:00"), ("CALL", "22:00"), ("DISPUTE", "11:00"), ("SMS", "07:00"),
               ("CALL", "12:00")]  # two out of hours (HOURS), one DISPUTE
    lines = [results_csv([]).decode().rstrip("\r\n")]
    lines += [f"{c},{day}T{t}:00,{a},debtor,c1" for c, (a, t) in zip(mine, actions, strict=False)]
    lines.append(f"{theirs[0]},{day}T10:00:00,VISIT,debtor,c1")  # not AG001's case
    site.upload("AG001", "R1.csv.pgp", ("\r\n".join(lines) + "\r\n").encode())
    assert site.run() == {"partial": 1}
    ended = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()  # the gateway's day
    text = site.config.read_text()
    i = text.index('code = "AG002"')
    site.config.write_text(text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                                        f"terminated_on = {ended}", 1))
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    site.run()
    return site, records


class Server:
    """The console app on a real port, in a thread of this process (also the unit tests'
    and the reverse-proxy test's console)."""

    def __init__(self, cfg: Config, clock: Clock, *, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.app = create_app(cfg, now=clock)
        # as `gateway console` runs it: the app, not uvicorn, decides whose X-Forwarded-*
        # headers to believe ([console] trusted_proxy)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False,
                                                    proxy_headers=False, server_header=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def console(exchange):
    site, _ = exchange
    clock = Clock()
    ledger = Ledger(site.cfg().gateway.db_url)
    accounts = Accounts(ledger, audit.AuditLog(site.state / "audit", actor="admin"), now=clock)
    secrets = {name: accounts.add(name, role, PASSWORD).secret
               for name, role in (("alice", "auditor"), ("bob", "operator"), ("carol", "auditor"))}
    ledger.close()
    server = Server(site.cfg(), clock)
    yield server, clock, secrets
    server.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def chromium(*extra: str):
    """Debian's headless Chromium under Selenium; *extra*: more command-line switches."""
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromium-driver (Debian packages) are needed: make system-deps")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--lang=en-US", *extra):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    return driver


def by(css: str):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def log_in(browser, server: Server, clock: Clock, name: str, secret: str, *,
           password: str = PASSWORD, code: str | None = None) -> None:
    clock.tick(seconds=31)  # a code works once: each login in the next time step
    browser.delete_all_cookies()
    browser.get(server.url + "/login")
    browser.find_element(*by("input[name=name]")).send_keys(name)
    browser.find_element(*by("input[name=password]")).send_keys(password)
    browser.find_element(*by("input[name=code]")).send_keys(
        code or pyotp.TOTP(secret).at(clock.now))
    submit(browser, "button[type=submit]")


def submit(browser, css: str) -> None:
    """Click *css* and wait for the next page to replace this one. Asked about the old
    button mid-navigation, chromedriver may answer "Node with given id does not belong to
    the document" (a WebDriverException, not the StaleElementReferenceException the
    condition expects; seen in CI): that is the page going, so the wait asks again."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = browser.find_element(*by(css))
    button.click()
    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.staleness_of(button))


def csp_problems(browser) -> list[str]:
    """What the browser's console said about the page's policy (reading the log empties it)."""
    return [m["message"] for m in browser.get_log("browser")
            if "Content Security Policy" in m["message"] or "Refused to" in m["message"]]


def entries(site: Site, event: str) -> list[dict]:
    return [e for e in audit.AuditLog(site.state / "audit").entries() if e["event"] == event]


def fetch(server: Server, path: str, browser=None, *, data: dict | None = None
          ) -> tuple[int, Any, bytes]:
    """A request with the browser's session cookie (or none), outside the browser."""
    req = urllib.request.Request(server.url + path, data=urllib.parse.urlencode(data).encode()
                                 if data is not None else None)
    if browser is not None:
        req.add_header("Cookie", "; ".join(f"{c['name']}={c['value']}"
                                           for c in browser.get_cookies()))
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()  # case-insensitive
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def test_log_in_with_password_and_code_and_see_the_overview(console, browser, exchange):
    server, clock, secrets = console
    site, _ = exchange
    log_in(browser, server, clock, "alice", secrets["alice"])
    assert browser.current_url == server.url + "/"
    assert browser.title.startswith("Overview")
    alerts = browser.find_element(*by(".alerts")).text
    assert "1 security event in the last 7 days" in alerts
    assert "Zones" not in [h.text for h in browser.find_elements(*by("h2"))]  # operators only
    assert not csp_problems(browser)
    login = entries(site, "console.login")[-1]
    assert (login["account"], login["role"], login["address"]) == ("alice", "auditor", "127.0.0.1")
    assert entries(site, "console.view")[-1]["account"] == "alice"


def test_a_wrong_code_is_refused(console, browser, exchange):
    server, clock, secrets = console
    site, _ = exchange
    right = pyotp.TOTP(secrets["carol"]).at(clock.now + dt.timedelta(seconds=31))
    log_in(browser, server, clock, "carol", secrets["carol"], code=f"{(int(right) + 1) % 10**6:06d}")
    assert browser.current_url.startswith(server.url + "/login")
    assert "wrong" in browser.find_element(*by("[role=alert]")).text
    assert entries(site, "console.login_failed")[-1]["reason"] == "code"


def test_five_failures_lock_the_account_for_fifteen_minutes(console, browser, exchange):
    server, clock, secrets = console
    site, _ = exchange
    for _ in range(MAX_FAILURES):
        log_in(browser, server, clock, "bob", secrets["bob"], password="not the password")
    assert entries(site, "console.locked")[-1]["account"] == "bob"
    log_in(browser, server, clock, "bob", secrets["bob"])
    assert browser.current_url.startswith(server.url + "/login")
    assert entries(site, "console.login_failed")[-1]["reason"] == "locked"
    clock.tick(seconds=LOCKOUT.total_seconds())
    log_in(browser, server, clock, "bob", secrets["bob"])
    assert browser.current_url == server.url + "/"
    zones = table(browser, "main section:nth-of-type(2) table")  # an operator sees zone health
    assert [r[0] for r in zones] == [key for key, _ in site.cfg().zones()]


def test_filter_the_audit_log_and_export_what_it_shows(console, browser, exchange):
    server, clock, secrets = console
    site, _ = exchange
    log_in(browser, server, clock, "alice", secrets["alice"])
    assert browser.current_url == server.url + "/", browser.page_source[-1500:]
    browser.get(server.url + "/audit")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(*by("select[name=event]"))).select_by_value("slice.delivered")
    Select(browser.find_element(*by("select[name=agency]"))).select_by_value("AG001")
    submit(browser, ".filters button")
    expected = [e for e in audit.AuditLog(site.state / "audit").entries()
                if e["event"] == "slice.delivered" and e.get("agency") == "AG001"]
    assert expected, "the batch delivered AG001's slices"
    assert int(browser.find_element(*by("#matching")).text) == len(expected)
    shown = [int(r.find_element(*by("td")).text) for r in
             browser.find_elements(*by("#entries tbody tr"))]
    assert shown == sorted((e["seq"] for e in expected), reverse=True)
    query = urllib.parse.urlparse(browser.current_url).query
    status, headers, body = fetch(server, f"/audit/export.csv?{query}", browser)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in expected]
    assert {(r["event"], r["agency"]) for r in rows} == {("slice.delivered", "AG001")}
    status, _, body = fetch(server, f"/audit/export.jsonl?{query}", browser)
    assert [json.loads(line) for line in body.splitlines()] == expected
    exported = entries(site, "console.export")
    assert [(e["account"], e["format"]) for e in exported[-2:]] == [("alice", "csv"),
                                                                     ("alice", "jsonl")]
    browser.get(server.url + "/audit/verify")
    assert browser.find_element(*by("#verdict")).text.startswith("Intact:")
    sealed = len(entries(site, "audit.checkpoint"))  # one per run of the flows above
    assert sealed >= 3
    assert browser.find_element(*by("#checkpoints")).text.startswith(
        f"{sealed} signed checkpoints checked with the gateway's public key")
    assert not csp_problems(browser)


def test_csrf_csp_and_an_ended_session(console, browser, exchange):
    server, clock, secrets = console
    log_in(browser, server, clock, "alice", secrets["alice"])
    status, headers, _ = fetch(server, "/", browser)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Frame-Options"] == "DENY"
    cookie = next(c for c in browser.get_cookies() if c["name"] == "gw_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert fetch(server, "/logout", browser, data={})[0] == 403  # no CSRF token
    assert fetch(server, "/logout", browser, data={"csrf": "forged"})[0] == 403
    assert fetch(server, "/login", None, data={"name": "alice", "password": PASSWORD,
                                               "code": "123456"})[0] == 403  # no form token
    assert fetch(server, "/", browser)[0] == 200  # the session survived the forgeries
    clock.tick(minutes=16)  # idle for longer than 15 minutes
    browser.get(server.url + "/audit")
    assert browser.current_url == server.url + "/login?ended=1"
    assert "Your session has ended" in browser.find_element(*by(".note")).text


def test_log_out_ends_the_session_everywhere(console, browser, exchange):
    server, clock, secrets = console
    site, _ = exchange
    log_in(browser, server, clock, "alice", secrets["alice"])
    stolen = browser.get_cookies()
    submit(browser, "header .who button")
    assert browser.current_url == server.url + "/login"
    assert entries(site, "console.logout")[-1]["account"] == "alice"
    for c in stolen:  # a copy of the cookie taken before the log-out no longer works
        browser.add_cookie({"name": c["name"], "value": c["value"], "path": c.get("path", "/")})
    browser.get(server.url + "/")
    assert browser.current_url.startswith(server.url + "/login")


PAGES = {"overview": "/", "audit": "/audit", "access": "/access", "retention": "/retention",
         "compliance": "/compliance", "keys": "/keys", "alerts": "/alerts"}


def test_every_page_renders_with_the_expected_counts(console, browser, exchange, tmp_path):
    """Each page against counts made here from the audit log and the config; a screenshot
    of each (into $GATEWAY_SCREENSHOTS when set: the pictures in docs/security-team.md)."""
    server, clock, secrets = console
    site, _ = exchange
    log_in(browser, server, clock, "alice", secrets["alice"])
    shots = Path(os.environ.get("GATEWAY_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        browser.get(server.url + path)
        assert browser.title.startswith(browser.find_element(*by("h1")).text), name
        browser.save_screenshot(str(shots / f"console-{name}.png"))
        assert not csp_problems(browser), name
    log = list(audit.AuditLog(site.state / "audit").entries())
    delivered = collections.Counter((e["agency"], e["role"]) for e in log
                                    if e["event"] == "slice.delivered" and e.get("role"))
    browser.get(server.url + "/access")
    rows = {(r[0], r[1]): int(r[2]) for r in table(browser, "#roles")}
    assert {k: v for k, v in rows.items() if v} == dict(delivered)
    browser.get(server.url + "/retention")
    contracts = {r[1]: r for r in table(browser, "#contracts")}
    cfg = site.cfg()
    assert set(contracts) == {a.code for a in cfg.agencies}
    purged = [e for e in log if e["event"] == "retention.purged"]
    assert [e["agency"] for e in purged] == ["AG002"]
    assert contracts["AG002"][2] == "purged"
    assert purged[0]["file"] in contracts["AG002"][9]
    assert "valid signature of the gateway" in contracts["AG002"][9]
    status, _, body = fetch(server, f"/retention/certificates/{purged[0]['file']}", browser)
    assert status == 200 and body.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    assert fetch(server, "/retention/certificates/..%2Fgateway.db", browser)[0] == 404
    browser.get(server.url + "/keys")
    keys = table(browser, "#keys")
    configured = (len(cfg.console.gateway_public_keys) + len(cfg.bank.signing_keys)
                  + len(cfg.bank.encrypt_to) + sum(len(a.signing_keys) + sum(
                      len(r.encrypt_to) for r in a.roles.values()) for a in cfg.agencies))
    assert len(keys) == configured and all(r[6] == "in use" for r in keys)
    browser.get(server.url + "/compliance")
    (receipt,) = [r for r in site.agency_receipts("AG001").values() if r["file"] == "R1.csv.pgp"]
    (row,) = [r for r in table(browser, "#compliance") if r[1] == "AG001"]
    header = [th.text for th in browser.find_elements(*by("#compliance thead th"))]
    shown = dict(zip(header, row, strict=True))
    assert (int(shown["files"]), int(shown["rows accepted"])) == (1, receipt["counts"]["accepted"])
    assert receipt["flags"] == {"DISPUTE": 1, "HOURS": 2}
    assert {f: int(shown[f]) for f in queries.FLAG_NAMES} == {
        f: receipt["flags"].get(f, 0) for f in queries.FLAG_NAMES}
    assert int(shown["E_NOT_ASSIGNED"]) == 1 == sum(
        e["code"] == "E_NOT_ASSIGNED" for e in receipt["errors"])
    assert browser.find_element(*by("figure svg title")).get_attribute("textContent").startswith(
        "Flags and E_NOT_ASSIGNED")
    viewed = {e["page"] for e in entries(site, "console.view") if e["account"] == "alice"}
    assert set(PAGES) <= viewed


def test_tables_sort_by_a_clicked_column(console, browser):
    server, clock, secrets = console
    log_in(browser, server, clock, "alice", secrets["alice"])
    browser.get(server.url + "/keys")
    heading = browser.find_elements(*by("#keys thead th"))[0]  # owner
    heading.click()
    owners = [r[0] for r in table(browser, "#keys")]
    assert owners == sorted(owners) and heading.get_attribute("aria-sort") == "ascending"
    heading.click()
    assert [r[0] for r in table(browser, "#keys")] == sorted(owners, reverse=True)
    assert not csp_problems(browser)  # the script is the console's own file


def table(browser, css: str) -> list[list[str]]:
    return [[td.text for td in tr.find_elements(*by("td"))]
            for tr in browser.find_elements(*by(f"{css} tbody tr"))]


def test_no_page_or_export_holds_a_personal_value(console, browser, exchange):
    server, clock, secrets = console
    _site, records = exchange
    log_in(browser, server, clock, "alice", secrets["alice"])
    scanner = LeakScanner(records)
    seen = []
    for path in (*PAGES.values(), "/audit?event=security.", "/audit/verify"):
        browser.get(server.url + path)
        seen.append((path, browser.page_source.encode()))
    month = dt.datetime.now(TZ).strftime("%Y-%m")
    report = f"/compliance/reports/report.AG001.{month}.html"
    status, _, page = fetch(server, report, browser)
    assert status == 200 and b"Supervision report" in page
    assert fetch(server, "/compliance/reports/report.AG009.2026-13.html", browser)[0] == 404
    seen.append((report, page))
    for path in ("/audit/export.csv", "/audit/export.jsonl"):
        seen.append((path, fetch(server, path, browser)[2]))
    leaks = {path: scanner.scan(data) for path, data in seen}
    assert not any(leaks.values()), leaks
    assert len(seen[-1][1]) > 1000  # the export had the whole log to leak from


def test_gateway_console_never_opens_the_secret_key(exchange):
    """`gateway console` as a process, under a Python audit hook that refuses to open the
    gateway's secret key file (its mode is also 000) or to hand it to a program (gpg is
    run for public keys only: the Keys and Retention pages)."""
    site, _ = exchange
    cfg = site.cfg()
    port = free_port()
    config = site.config.with_name("console-test.toml")  # relative paths resolve alike
    text = site.config.read_text()
    assert 'listen = "127.0.0.1:8080"' in text
    config.write_text(text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"', 1))
    key = cfg.gateway.secret_key
    hook = site.root / "console-hook.py"
    hook.write_text(f"""
import os, sys
KEY = os.path.realpath({str(key)!r})
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.realpath(path) == KEY:
            raise PermissionError("the console opened the secret key: " + path)
    if event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"):
        if KEY in repr(args) or os.path.basename(KEY) in repr(args):
            raise PermissionError("the console handed the secret key to a program: " + repr(args)[:300])
sys.addaudithook(hook)
sys.argv = ["gateway", "console", "-c", {str(config)!r}]
from gateway.cli import run
run()
""")
    ledger = Ledger(cfg.gateway.db_url)
    secret = Accounts(ledger, audit.AuditLog(site.state / "audit")).add(
        "dave", "auditor", PASSWORD).secret
    ledger.close()
    mode = key.stat().st_mode
    key.chmod(0)
    proc = subprocess.Popen([sys.executable, str(hook)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=site.root)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_console(url, proc)
        req = urllib.request.Request(url + "/login", data=b"name=x&password=y&code=1")
        with pytest.raises(urllib.error.HTTPError) as refused:  # no form token: 403, no crash
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403
        session = http_login(url, "dave", secret)  # then the pages that run gpg (public keys)
        for page in ("/keys", "/retention"):
            with urllib.request.urlopen(urllib.request.Request(
                    url + page, headers={"Cookie": session}), timeout=30) as resp:
                assert resp.status == 200 and b"<h1>" in resp.read()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
        key.chmod(mode)
    assert "secret key" not in err, err
    assert "Traceback" not in err, err
    assert f"console: http://127.0.0.1:{port}/" in err



def http_login(url: str, name: str, secret: str) -> str:
    """Log in without a browser (the form's token and cookie, then the POST); returns the
    session cookie to send."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    with opener.open(url + "/login", timeout=10) as resp:
        token = re.search(rb'name="csrf" value="([^"]+)"', resp.read()).group(1).decode()
    form = urllib.parse.urlencode({"csrf": token, "name": name, "password": PASSWORD,
                                   "code": pyotp.TOTP(secret).now()}).encode()
    try:
        opener.open(url + "/login", data=form, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 303, exc.read()
    cookies = {c.name: c.value for c in jar}
    assert "gw_session" in cookies, cookies
    return f"gw_session={cookies['gw_session']}"


def wait_for_console(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until `gateway console` (*proc*) answers its login page at *url*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/login", timeout=5) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "gateway console did not answer"
            time.sleep(0.2)
