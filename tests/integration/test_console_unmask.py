"""Unmasking by approval through the console (docs/security-team.md, "Unmask requests"): an
agency's member sends a signed request through the real flow; two approvers, each in a
browser of their own (Debian's Chromium under Selenium, as tests/integration/test_console.py
drives it, against the console on a real socket), approve it with a fresh code from their
authenticator; the daemon's next pass releases the one-off slice to the agency's inbox; the
Register page and its CSV then show the release with both approvers. No page or export
holds a personal value of the site's records.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pyotp
import pytest

from gateway import audit, synth
from gateway.console.auth import Accounts
from gateway.ledger import Ledger
from tests.flowsite import Site
from tests.integration.test_console import (
    Clock,
    Server,
    by,
    chromium,
    csp_problems,
    fetch,
    log_in,
    submit,
    table,
)
from tests.integration.test_unmask import PASSWORD, UNMASK, cases_of, request, send
from tests.leaks import LeakScanner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def site(tmp_path, keybox):
    """A site with [unmask] (field_visit needs two approvals), a batch accepted, and the
    accounts: anna and ben (approvers), olga (operator)."""
    s = Site(tmp_path / "site", keybox)
    s.config.write_text(s.config.read_text() + UNMASK)
    s.records = list(synth.cases(10, ["AG001", "AG002"], seed=28))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    ledger = Ledger(s.cfg().gateway.db_url)
    try:
        accounts = Accounts(ledger, audit.AuditLog(s.state / "audit", actor="admin"))
        s.secrets = {name: accounts.add(name, role, PASSWORD).secret
                     for name, role in (("anna", "approver"), ("ben", "approver"),
                                        ("olga", "operator"))}
    finally:
        ledger.close()
    return s


@pytest.fixture
def browsers():
    """Two browsers: two people's sessions, side by side."""
    opened = [chromium(), chromium()]
    yield opened
    for b in opened:
        b.quit()


def approve_in(browser, clock: Clock, secret: str, number: int) -> str:
    """Type the next time step's code into request *number*'s form and press Approve;
    the outcome the page shows."""
    clock.tick(seconds=31)  # a fresh code: the login's is spent
    form = f"#request-{number} form.decide"
    browser.find_element(*by(f"{form} input[name=code]")).send_keys(
        pyotp.TOTP(secret).at(clock.now))
    submit(browser, f"{form} button[value=approve]")
    return browser.find_element(*by("#outcome")).text


def test_two_approvers_in_their_browsers_release_a_request_and_the_register_shows_it(
        site, browsers, tmp_path):
    mine = cases_of(site, "AG001")[:2]
    req = request(site, [c["case_id"] for c in mine], ["home_address", "id_number"])
    assert send(site, "visit-1.unmask.json.pgp", req.to_json())["status"] == "accepted"
    clock = Clock()
    server = Server(site.cfg(), clock)
    first, second = browsers
    seen: list[tuple[str, bytes]] = []
    try:
        # an operator sees the request, and no form to decide it
        log_in(second, server, clock, "olga", site.secrets["olga"])
        second.get(server.url + "/unmask")
        (article,) = second.find_elements(*by("article.request"))
        assert "visit planned" in article.text and "0 of 2" in article.text
        assert not second.find_elements(*by("form.decide"))
        assert "only approver accounts decide" in second.find_element(*by("main .note")).text
        seen.append(("/unmask (olga)", second.page_source.encode()))

        log_in(first, server, clock, "anna", site.secrets["anna"])
        assert "1 unmask request waiting" in first.find_element(*by(".alerts")).text
        seen.append(("/ (anna)", first.page_source.encode()))
        first.get(server.url + "/unmask")
        (article,) = first.find_elements(*by("article.request"))
        number = int(article.get_attribute("id").removeprefix("request-"))
        text = article.text
        assert "field_visit: a visit to the customer's home" in text
        assert site.keys["ag001-collector"].fingerprint in text  # the requester's key
        assert "home_address, id_number" in text and "visit planned" in text
        shots = Path(os.environ.get("GATEWAY_SCREENSHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        first.save_screenshot(str(shots / "console-unmask.png"))
        seen.append(("/unmask (anna)", first.page_source.encode()))
        assert approve_in(first, clock, site.secrets["anna"], number) == (
            "Your approval is recorded (1 of 2); another approver must decide too.")
        assert "approved by anna" in first.find_element(*by(f"#request-{number}")).text
        seen.append(("/unmask/decide (anna)", first.page_source.encode()))
        site.run()
        assert not [n for n in site.inbox("AG001") if n.startswith("unmask-")]  # one of two

        log_in(second, server, clock, "ben", site.secrets["ben"])
        second.get(server.url + "/unmask")
        assert approve_in(second, clock, site.secrets["ben"], number).startswith(
            "Approved (2 of 2)")
        assert not second.find_elements(*by("article.request"))  # decided: no longer waiting
        seen.append(("/unmask/decide (ben)", second.page_source.encode()))
        assert not csp_problems(first) and not csp_problems(second)

        site.run()  # the daemon's pass releases it
        released = sorted(n for n in site.inbox("AG001") if n.startswith("unmask-"))
        assert released == ["unmask-1.AG001.collector.csv.pgp", "unmask-1.AG001.manifest.json.pgp"]

        first.get(server.url + "/unmask/register")
        assert first.find_element(*by("#releases")).text == "1"
        (row,) = table(first, "#register")
        header = [th.text for th in first.find_elements(*by("#register thead th"))]
        shown = dict(zip(header, row, strict=True))
        assert shown["request"] == req.id[:8] and shown["agency"] == "AG001"
        assert shown["approvers"] == "anna, ben" and shown["cases"] == "2"
        assert shown["requester key"] == site.keys["ag001-collector"].fingerprint
        assert shown["fields"] == "home_address, id_number" and shown["deleted"] == "not yet"
        seen.append(("/unmask/register", first.page_source.encode()))
        first.get(server.url + "/unmask")
        seen.append(("/unmask (after)", first.page_source.encode()))
        status, headers, body = fetch(server, "/unmask/register.csv?agency=AG001", first)
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        (exported,) = csv.DictReader(io.StringIO(body.decode()))
        assert exported["request_id"] == req.id and exported["approvers"] == "anna;ben"
        seen.append(("/unmask/register.csv", body))
        assert not csp_problems(first)
    finally:
        server.stop()

    log = list(audit.AuditLog(site.state / "audit").entries())
    assert [(e["event"], e.get("account")) for e in log if e["event"].startswith("unmask.")] == [
        ("unmask.requested", None), ("unmask.approved", "anna"), ("unmask.approved", "ben"),
        ("unmask.released", None)]
    views = {(e["account"], e["page"]) for e in log if e["event"] == "console.view"}
    assert {("olga", "unmask"), ("anna", "unmask"), ("ben", "unmask"),
            ("anna", "unmask_register")} <= views
    assert [(e["account"], e["page"]) for e in log if e["event"] == "console.export"] == [
        ("anna", "unmask_register")]
    scanner = LeakScanner(site.records)
    leaks = {path: scanner.scan(data) for path, data in seen}
    assert not any(leaks.values()), leaks
    assert site.plaintext_leaks(site.records) == []
