"""The console's Requests and Register pages (issue 28) over a real socket, without a
browser or gpg: a site made by `gateway init` with an [unmask] section, requests written
into its ledger as the request flow would leave them, and accounts of each role.

What is held here: every account sees the requests, only an approver's page carries the
forms and only an approver's POST decides; a decision needs the session's CSRF token and
a fresh TOTP code (a code used once — at the login or in another decision — is refused);
the two-person rule answers the same approver's second try with a readable refusal; the
register's CSV neutralises formula-leading cells. The whole path with the daemon and a
browser is tests/integration/test_console_unmask.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
import urllib.parse
from pathlib import Path

import pyotp
import pytest

from gateway import audit, clock, config
from gateway.config import Config
from gateway.console.auth import Accounts
from gateway.ledger import FileRow, Ledger, UnmaskRequestRow
from tests.integration.test_console import Clock, Server
from tests.integration.test_unmask import UNMASK
from tests.unit.test_console_app import PASSWORD, Http, make_site

SIGNER = "A1" * 20  # the requester's key fingerprint
ROLES = {"anna": "approver", "ben": "approver", "olga": "operator"}  # alice: auditor


def make_unmask_site(root: Path) -> tuple[Config, dict[str, str]]:
    """`gateway init`, the [unmask] section of the flow test, and the accounts: alice
    (auditor, from make_site), anna and ben (approvers), olga (operator)."""
    from tests.unit.test_console_app import ALICE

    cfg = make_site(root)
    cfg.source.write_text(cfg.source.read_text() + UNMASK)
    cfg = config.load(cfg.source)
    ledger = Ledger(cfg.gateway.db_url)
    try:
        accounts = Accounts(ledger, audit.AuditLog(cfg.gateway.state_dir / "audit", actor="admin"))
        found = {name: accounts.add(name, role, PASSWORD).secret for name, role in ROLES.items()}
    finally:
        ledger.close()
    return cfg, {"alice": ALICE[str(root)], **found}


def add_request(cfg: Config, *, purpose: str = "field_visit", needed: int = 2,
                note: str = "visit planned", received: dt.datetime | None = None,
                **released: dt.datetime | str) -> UnmaskRequestRow:
    """A request as the request flow accepts it (its file, its row); *released*: the
    columns a release (or a hostile row) would set."""
    now = received or dt.datetime.now(dt.UTC)
    ledger = Ledger(cfg.gateway.db_url)
    try:
        with ledger.session() as s:
            f = FileRow(sha256=secrets.token_hex(32), kind="unmask",
                        zone=cfg.zone_name("AG001", "outbox"), name="r.unmask.json.pgp", size=10,
                        agency_code="AG001", status="accepted")
            s.add(f)
            s.flush()
            row = UnmaskRequestRow(
                request_id=secrets.token_hex(16), file_id=f.id, agency_code="AG001",
                contract_id=cfg.agencies[0].contract.id, role="collector", signer=SIGNER,
                purpose=purpose, fields="home_address,id_number", cases=2, note=note,
                created_at=now, received_at=now, decide_by=now + dt.timedelta(hours=48),
                approvals_needed=needed, **released)
            s.add(row)
            s.flush()
            s.expunge(row)
            return row
    finally:
        ledger.close()


class Person(Http):
    """One person's client: logs in as *name*, and knows their TOTP secret."""

    def __init__(self, port: int, name: str, secret: str, clock: Clock) -> None:
        super().__init__(port)
        self.name, self.secret, self.clock = name, secret, clock

    def log_in_as(self) -> None:
        self.clock.tick(seconds=31)  # a code works once
        status, _, page = self.get("/login")
        assert status == 200, page
        token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        status, _, page = self.request("POST", "/login", body=urllib.parse.urlencode(
            {"csrf": token, "name": self.name, "password": PASSWORD, "code": self.code()}))
        assert status == 303, page

    def code(self) -> str:
        return pyotp.TOTP(self.secret).at(self.clock.now)

    def csrf(self) -> str:
        status, _, page = self.get("/unmask")
        assert status == 200, page
        found = re.search(rb'name="csrf" value="([^"]+)"', page)  # the log-out form's, at least
        assert found is not None
        return found.group(1).decode()

    def decide(self, row: UnmaskRequestRow, decision: str, *, code: str | None = None,
               reason: str = "", csrf: str | None = None) -> tuple[int, str]:
        """POST a decision; the next time step's code unless *code* is given."""
        token = self.csrf() if csrf is None else csrf
        if code is None:
            self.clock.tick(seconds=31)
            code = self.code()
        status, _, page = self.request("POST", "/unmask/decide", body=urllib.parse.urlencode(
            {"csrf": token, "request": str(row.id), "decision": decision, "code": code,
             "reason": reason}))
        return status, page.decode()


@pytest.fixture
def site(tmp_path):
    cfg, found = make_unmask_site(tmp_path / "gw")
    clock = Clock()
    server = Server(cfg, clock)
    people = {}
    for name, secret in found.items():
        people[name] = Person(server.port, name, secret, clock)
        people[name].log_in_as()
    yield cfg, clock, people
    server.stop()


def decisions(cfg: Config, row: UnmaskRequestRow) -> list[tuple[str, str]]:
    ledger = Ledger(cfg.gateway.db_url)
    try:
        return [(d.account, d.decision) for d in ledger.unmask_decisions([row.id])[row.id]]
    finally:
        ledger.close()


def entries(cfg: Config, event: str) -> list[dict]:
    return [e for e in audit.AuditLog(cfg.gateway.state_dir / "audit").entries()
            if e["event"] == event]


def main(page: str) -> str:
    return page[page.index("<main>"):page.index("</main>")]


def test_every_account_sees_the_requests_but_only_an_approver_the_forms(site):
    cfg, _clock, people = site
    row = add_request(cfg)
    for name in ("alice", "olga", "anna"):
        status, _, body = people[name].get("/unmask")
        page = main(body.decode())
        assert status == 200, page
        article = page[page.index(f'id="request-{row.id}"'):]
        assert "field_visit: a visit to the customer&#39;s home" in article  # the description
        assert SIGNER in article and "visit planned" in article
        assert "home_address, id_number" in article and "0 of 2" in article
        # decide by: 48 hours after it was received, in the gateway's zone (from the row:
        # the console's clock and the row's may straddle a local midnight)
        assert clock.aware(row.decide_by).astimezone(cfg.gateway.tz).strftime(
            "%Y-%m-%d %H:%M") in article
        has_form = 'action="/unmask/decide"' in page
        assert has_form == (name == "anna"), name
        assert ('name="decision" value="approve"' in page) == (name == "anna")
    views = [e for e in entries(cfg, "console.view") if e["page"] == "unmask"]
    assert [(e["account"], e["count"]) for e in views] == [("alice", 1), ("olga", 1), ("anna", 1)]
    _, _, body = people["alice"].get("/")
    assert "1 unmask request waiting" in body.decode()
    assert 'href="/unmask"' in body.decode() and 'href="/unmask/register"' in body.decode()


def test_a_decision_from_an_operator_or_auditor_is_refused(site):
    cfg, _clock, people = site
    row = add_request(cfg, needed=1)
    for name in ("olga", "alice"):
        status, page = people[name].decide(row, "approve")
        assert status == 403, page
        assert "only approver accounts decide unmask requests" in page
    assert decisions(cfg, row) == []
    assert entries(cfg, "unmask.approved") == []
    # the role was refused before the code was looked at: it was not spent, nor counted
    assert not [e for e in entries(cfg, "console.login_failed") if e.get("account") == "olga"]


def test_a_decision_needs_the_sessions_csrf_token(site):
    cfg, _clock, people = site
    row = add_request(cfg, needed=1)
    for token in ("", "forged"):
        status, page = people["anna"].decide(row, "approve", csrf=token)
        assert status == 403 and "CSRF" in page
    stranger = Http(people["anna"].port)  # no session at all: to the login page
    status, headers, _ = stranger.request("POST", "/unmask/decide", body="request=1")
    assert status == 303 and headers["Location"].startswith("/login")
    assert decisions(cfg, row) == []


def test_a_reused_or_wrong_code_is_refused_and_counted(site):
    cfg, clock, people = site
    row = add_request(cfg)
    anna = people["anna"]
    anna.log_in_as()
    login_code = anna.code()  # the code she just logged in with, still in its time step
    status, page = anna.decide(row, "approve", code=login_code)
    assert status == 403 and "the code is wrong or was used already" in page
    clock.tick(seconds=31)
    code = anna.code()
    assert anna.decide(row, "approve", code=code)[0] == 200
    other = add_request(cfg)
    status, page = anna.decide(other, "approve", code=code)  # the same code again
    assert status == 403 and "used already" in page
    wrong = f"{(int(anna.code()) + 1) % 10**6:06d}"
    status, _ = anna.decide(other, "approve", code=wrong)
    assert status == 403
    assert decisions(cfg, other) == []
    reasons = [e["reason"] for e in entries(cfg, "console.login_failed") if e["account"] == "anna"]
    assert reasons == ["step_up_code_reused", "step_up_code_reused", "step_up_code"]


def test_two_approvers_approve_and_the_same_one_twice_is_refused_readably(site):
    cfg, _clock, people = site
    row = add_request(cfg)
    status, page = people["anna"].decide(row, "approve")
    assert status == 200, page
    assert "Your approval is recorded (1 of 2); another approver must decide too." in page
    assert 'action="/unmask/decide"' not in main(page)  # anna's own page: no form for it now
    assert "approved by anna" in page
    status, page = people["anna"].decide(row, "approve")
    assert status == 409
    assert f"account anna has decided request {row.request_id[:8]} already; another approver " \
           "must" in page
    status, page = people["ben"].decide(row, "approve", reason="visit agreed")
    assert status == 200 and "Approved (2 of 2)" in page
    assert decisions(cfg, row) == [("anna", "approve"), ("ben", "approve")]
    approved = entries(cfg, "unmask.approved")
    assert [(e["account"], e["approvals"], e["status"]) for e in approved] == [
        ("anna", 1, "pending"), ("ben", 2, "approved")]
    assert f'id="request-{row.id}"' not in page  # no longer waiting
    status, page = people["olga"].decide(row, "approve")  # decided: still refused by role first
    assert status == 403


def test_a_denial_needs_a_reason_and_ends_the_request(site):
    cfg, _clock, people = site
    row = add_request(cfg)
    status, page = people["ben"].decide(row, "deny")
    assert status == 400 and "a denial needs a reason" in page
    status, page = people["ben"].decide(row, "deny", reason="call 13912345678")
    assert status == 400 and "seven or more digits" in page
    assert decisions(cfg, row) == []
    status, page = people["ben"].decide(row, "deny", reason="not needed yet")
    assert status == 200 and "Denied" in page
    status, page = people["anna"].decide(row, "approve")
    assert status == 409 and "is denied, not pending" in page
    assert [e["account"] for e in entries(cfg, "unmask.denied")] == ["ben"]
    for bad in ({"request": "x", "decision": "approve"}, {"request": "1", "decision": "maybe"}):
        status, _, body = people["anna"].request("POST", "/unmask/decide", body=urllib.parse.urlencode(
            {"csrf": people["anna"].csrf(), "code": "000000", **bad}))
        assert status == 400, body


def test_the_register_by_month_and_agency_and_its_csv(site):
    cfg, clock, people = site
    tz = cfg.gateway.tz
    now = clock.now
    this = now.astimezone(tz).strftime("%Y-%m")
    released = add_request(cfg, status="released", released_at=now, purpose="legal_action",
                           expires_at=now + dt.timedelta(days=5))
    ledger = Ledger(cfg.gateway.db_url)
    try:
        for account in ("anna", "ben"):
            from gateway.ledger import UnmaskDecisionRow

            with ledger.session() as s:
                s.add(UnmaskDecisionRow(request=released.id, account=account, decision="approve",
                                        reason="", decided_at=now))
    finally:
        ledger.close()
    # a row a spreadsheet would run, as a tampered database might hold it
    hostile = add_request(cfg, status="released", released_at=now, purpose="=HYPERLINK(1)",
                          expires_at=now + dt.timedelta(days=5))
    alice = people["alice"]
    status, _, body = alice.get("/unmask/register")
    page = main(body.decode())
    assert status == 200, page
    assert f'<strong id="releases">2</strong> releases in {this}' in page
    (row,) = [r for r in re.findall(r"<tr>(.*?)</tr>", page, re.S) if released.request_id[:8] in r]
    assert "anna, ben" in row and SIGNER in row and "legal_action" in row and "not yet" in row
    status, headers, body = alice.get(f"/unmask/register.csv?month={this}&agency=AG001")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert f'filename="unmask-register-{this}-AG001.csv"' in headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert list(rows[0]) == ["request_id", "agency", "role", "requester_key", "purpose", "cases",
                             "fields", "approvers", "released_at", "expires_at", "deleted_at"]
    by_id = {r["request_id"]: r for r in rows}
    assert by_id[released.request_id]["approvers"] == "anna;ben"
    assert by_id[released.request_id]["fields"] == "home_address;id_number"
    assert by_id[released.request_id]["requester_key"] == SIGNER
    assert by_id[hostile.request_id]["purpose"] == "'=HYPERLINK(1)"
    exported = entries(cfg, "console.export")[-1]
    assert (exported["account"], exported["page"], exported["format"], exported["count"]) == (
        "alice", "unmask_register", "csv", 2)
    # another month, another agency: nothing; a month not begun or malformed: refused
    january = alice.get("/unmask/register?month=2026-01")[2].decode()
    assert '<strong id="releases">0</strong> releases in 2026-01' in january
    assert [a.code for a in cfg.agencies] == ["AG001"]
    assert alice.get("/unmask/register?agency=AG002")[0] == 400  # not an agency of this site
    for query in ("month=9999-12", "month=2026-13", "month=x", "agency=%3Cb%3E"):
        assert alice.get(f"/unmask/register?{query}")[0] == 400, query
        assert alice.get(f"/unmask/register.csv?{query}")[0] == 400, query
    assert "&lt;b&gt;" in alice.get("/unmask/register?agency=%3Cb%3E")[2].decode()
    views = [e for e in entries(cfg, "console.view") if e["page"] == "unmask_register"]
    assert views and views[0]["account"] == "alice" and views[0]["count"] == 2


def test_without_an_unmask_section_the_pages_say_so(tmp_path):
    from tests.unit.test_console_app import ALICE

    cfg = make_site(tmp_path / "gw")
    clock = Clock()
    server = Server(cfg, clock)
    try:
        alice = Person(server.port, "alice", ALICE[str(tmp_path / "gw")], clock)
        alice.log_in_as()
        status, _, body = alice.get("/unmask")
        assert status == 200 and "Unmasking is not configured" in body.decode()
        status, _, body = alice.get("/unmask/register")
        assert status == 200 and "No release in" in body.decode()
    finally:
        server.stop()
