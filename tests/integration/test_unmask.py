"""Unmasking by approval through the real flow (docs/operations.md): an agency's member
asks, signed with their own role key, for named cases' fields; approvers decide with
`gateway unmask` (password and TOTP, as at the console); the daemon releases a one-off
slice sealed to that key alone and deletes it at its expiry with a certificate."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pyotp
import pytest
from sqlalchemy import update

from gateway import audit, masking, synth
from gateway.ledger import Ledger, UnmaskRequestRow
from gateway.unmask.request import UnmaskRequest
from tests.conftest import run_cli
from tests.flowsite import Site
from tests.leaks import LeakScanner

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
UNMASK = """
[unmask]
decide_within_hours = 48
release_days = 5
max_cases = 3

[unmask.purposes.field_visit]
description = "a visit to the customer's home"
approvals = 2

[unmask.purposes.legal_action]
description = "a court filing"
approvals = 1

[unmask.requestable]
collector = ["home_address", "id_number"]
"""


def unmask_site(root, keybox, *, seed: int,
                accounts=(("anna", "approver"), ("ben", "approver"), ("olga", "operator"))
                ) -> Site:
    """A site with [unmask], one batch B1 of ten cases taken, and console accounts (their
    TOTP secrets in ``site.secrets``)."""
    from gateway.console.auth import Accounts

    s = Site(root, keybox)
    s.config.write_text(s.config.read_text() + UNMASK)
    s.records = list(synth.cases(10, ["AG001", "AG002"], seed=seed))
    s.drop_cases("B1.csv.pgp", s.records)
    assert s.run() == {"accepted": 1}
    s.secrets = {}
    ledger = Ledger(s.cfg().gateway.db_url)
    try:
        made = Accounts(ledger, audit.AuditLog(s.state / "audit", actor="admin"))
        for name, role in accounts:
            s.secrets[name] = made.add(name, role, PASSWORD).secret
    finally:
        ledger.close()
    return s


@pytest.fixture
def site(tmp_path, keybox):
    return unmask_site(tmp_path / "site", keybox, seed=28)


def cases_of(site: Site, agency: str) -> list[dict[str, str]]:
    return [r for r in site.records if r["agency_code"] == agency]


def request(site: Site, cases: list[str], fields: list[str], *, purpose: str = "field_visit",
            agency: str = "AG001", role: str = "collector", note: str = "visit planned",
            request_id: str | None = None) -> UnmaskRequest:
    import secrets
    return UnmaskRequest(request_id or secrets.token_hex(16), agency, role, purpose,
                         dt.datetime.now(dt.UTC).replace(microsecond=0), tuple(cases),
                         tuple(fields), note)


def send(site: Site, name: str, body: bytes, signer: str = "ag001-collector",
         agency: str = "AG001") -> dict:
    site.zone(agency, "outbox", name).write_bytes(site.seal_as(signer, body))
    site.run()
    return site.agency_receipts(agency)[f"{name}.receipt.json.pgp"]


def decide(site: Site, verb: str, request_id: str, account: str, *extra: str, step: int = 0):
    """`gateway unmask approve|deny` as *account*; *step*: a code of the next 30 s (a code
    is used once: an account's second command in the same half minute needs the next)."""
    code = pyotp.TOTP(site.secrets[account]).at(dt.datetime.now(dt.UTC).timestamp() + 30 * step)
    return run_cli("unmask", verb, request_id[:8], "--as", account, "--password-stdin",
                   *extra, "-c", str(site.config), stdin=f"{PASSWORD}\n{code}\n".encode())


def events(site: Site, prefix: str = "unmask.") -> list[dict]:
    return [e for e in audit.AuditLog(site.state / "audit").entries()
            if e["event"].startswith(prefix)]


def set_time(site: Site, request_id: str, **values: dt.datetime) -> None:
    """Move a request's clock: what waiting hours or days would do."""
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        with ledger.session() as s:
            s.execute(update(UnmaskRequestRow).where(UnmaskRequestRow.request_id == request_id)
                      .values(**values))
    finally:
        ledger.close()


def test_two_approvals_release_exactly_those_cases_and_fields_to_the_requester(site):
    mine = cases_of(site, "AG001")[:2]
    req = request(site, [c["case_id"] for c in mine], ["home_address", "id_number"])
    receipt = send(site, "visit-1.unmask.json.pgp", req.to_json())
    assert receipt["status"] == "accepted", receipt
    assert receipt["request"]["status"] == "pending" and receipt["request"]["cases"] == 2
    assert receipt["request"]["approvals_needed"] == 2

    first = decide(site, "approve", req.id, "anna")
    assert first.returncode == 0, first.stderr
    assert "another approver must decide too" in first.stdout
    again = decide(site, "approve", req.id, "anna", step=1)  # the same account twice
    assert again.returncode != 0 and "decided request" in again.stderr
    site.run()
    assert not [n for n in site.inbox("AG001") if n.startswith("unmask-")]  # one approval: nothing
    refused = decide(site, "approve", req.id, "olga")  # an operator account
    assert refused.returncode != 0 and "only approver accounts" in refused.stderr
    second = decide(site, "approve", req.id, "ben")
    assert second.returncode == 0 and "approved (2 of 2)" in second.stdout, second.stderr
    site.run()

    released = sorted(n for n in site.inbox("AG001") if n.startswith("unmask-"))
    assert released == ["unmask-1.AG001.collector.csv.pgp", "unmask-1.AG001.manifest.json.pgp"]
    opened = site.open_as("ag001-collector", site.zone("AG001", "inbox", released[0]))
    assert opened.rc == 0 and opened.signer == site.keys["gateway"].fingerprint
    rows = list(csv.DictReader(io.StringIO(opened.body.decode())))
    assert [r["case_id"] for r in rows] == [c["case_id"] for c in mine]
    policy = masking.RolePolicy("collector", site.cfg().roles["collector"])
    columns = policy.columns(synth.CASE_COLUMNS)
    assert list(rows[0]) == columns  # the role's columns, in the role's order
    for row, case in zip(rows, mine, strict=True):
        masked = dict(zip(columns, policy.row(columns, case, None), strict=True))
        for name in columns:
            want = case[name] if name in ("home_address", "id_number") else masked[name]
            assert row[name] == want, name
        assert row["home_address"] != masked["home_address"]  # really unmasked
    # sealed to the requester alone: the agency's supervisor cannot read it
    assert site.open_as("ag001-supervisor", site.zone("AG001", "inbox", released[0])).rc != 0
    manifest = json.loads(site.open_as("ag001-supervisor",
                                       site.zone("AG001", "inbox", released[1])).body)
    assert manifest["unmask"]["request_id"] == req.id
    assert manifest["unmask"]["recipient"] == site.keys["ag001-collector"].fingerprint
    assert manifest["files"][0]["records"] == 2

    register = run_cli("unmask", "register", "--json", "-c", str(site.config))
    assert register.returncode == 0, register.stderr
    (entry,) = json.loads(register.stdout)
    assert entry["approvers"] == ["anna", "ben"] and entry["cases"] == 2
    assert entry["fields"] == ["home_address", "id_number"] and entry["purged_at"] is None
    assert entry["requester_key"] == site.keys["ag001-collector"].fingerprint
    kinds = [e["event"] for e in events(site)]
    assert kinds == ["unmask.requested", "unmask.approved", "unmask.approved", "unmask.released"]
    assert [e["account"] for e in events(site) if e["event"] == "unmask.approved"] == ["anna", "ben"]
    assert site.plaintext_leaks(site.records) == []
    assert "张" not in register.stdout and all(
        c["home_address"] not in register.stdout for c in site.records)

    # the expiry: the one-off slice leaves the inbox, and the bank gets a certificate
    set_time(site, req.id, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    site.run()
    assert not [n for n in site.inbox("AG001") if n.startswith("unmask-")]
    (cert,) = site.zone("bank", "incoming").glob("unmask-deletion-certificate.*.json.asc")
    body = cert.read_text()
    assert req.id in body and "unmask-1.AG001.collector.csv.pgp" in body and '"deleted"' in body
    verified = run_cli("audit", "verify", "-c", str(site.config))
    assert verified.returncode == 0, verified.stderr
    (entry,) = json.loads(run_cli("unmask", "register", "--json", "-c", str(site.config)).stdout)
    assert entry["purged_at"] is not None
    assert [e["event"] for e in events(site)][-1] == "unmask.purged"


def test_one_approval_suffices_where_the_purpose_says_so_and_a_denial_ends_a_request(site):
    mine = cases_of(site, "AG001")
    legal = request(site, [mine[0]["case_id"]], ["id_number"], purpose="legal_action")
    assert send(site, "legal.unmask.json.pgp", legal.to_json())["status"] == "accepted"
    visit = request(site, [mine[1]["case_id"]], ["home_address"])
    assert send(site, "visit.unmask.json.pgp", visit.to_json())["status"] == "accepted"
    listed = json.loads(run_cli("unmask", "list", "--json", "-c", str(site.config)).stdout)
    assert [(p["purpose"], p["needed"], p["note"]) for p in listed] == [
        ("legal_action", 1, "visit planned"), ("field_visit", 2, "visit planned")]
    assert decide(site, "approve", legal.id, "anna").returncode == 0
    no_reason = decide(site, "deny", visit.id, "ben")
    assert no_reason.returncode != 0  # --reason is required
    denied = decide(site, "deny", visit.id, "ben", "--reason", "not needed yet", step=1)
    assert denied.returncode == 0, denied.stderr
    assert decide(site, "approve", visit.id, "anna", step=1).returncode != 0  # denied: over
    site.run()
    names = site.inbox("AG001")
    assert "unmask-1.AG001.collector.csv.pgp" in names
    assert "unmask-2.AG001.decision.json.pgp" in names and "unmask-2.AG001.collector.csv.pgp" not in names
    notice = json.loads(site.open_as("ag001-supervisor",
                                     site.zone("AG001", "inbox", "unmask-2.AG001.decision.json.pgp")).body)
    assert notice["status"] == "denied" and notice["reason"] == "not needed yet"
    assert notice["request_id"] == visit.id


def test_a_request_not_decided_in_time_expires_and_the_agency_is_told(site):
    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["home_address"])
    assert send(site, "late.unmask.json.pgp", req.to_json())["status"] == "accepted"
    set_time(site, req.id, decide_by=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert json.loads(run_cli("unmask", "list", "--json", "-c", str(site.config)).stdout) == []
    late = decide(site, "approve", req.id, "anna")
    assert late.returncode != 0 and "expired undecided" in late.stderr
    site.run()
    notice = json.loads(site.open_as(
        "ag001-supervisor", site.zone("AG001", "inbox", "unmask-1.AG001.decision.json.pgp")).body)
    assert notice["status"] == "expired"
    assert [e["event"] for e in events(site)] == ["unmask.requested", "unmask.expired"]


def test_hostile_requests_are_refused_with_a_receipt(site):
    mine, theirs = cases_of(site, "AG001"), cases_of(site, "AG002")
    ok = request(site, [mine[0]["case_id"]], ["home_address"])
    assert send(site, "ok.unmask.json.pgp", ok.to_json())["status"] == "accepted"
    cases = [
        ("foreign", request(site, [mine[0]["case_id"], theirs[0]["case_id"]], ["home_address"]),
         "ag001-collector", "E_NOT_ASSIGNED"),
        ("made-up", request(site, ["NO-SUCH-CASE"], ["home_address"]), "ag001-collector",
         "E_NOT_ASSIGNED"),
        ("field", request(site, [mine[0]["case_id"]], ["customer_name"]), "ag001-collector",
         "E_NOT_REQUESTABLE"),
        ("other-agency-key", request(site, [mine[0]["case_id"]], ["home_address"]),
         "ag002-collector", "E_UNKNOWN_SIGNER"),
        ("agency-key", request(site, [mine[0]["case_id"]], ["home_address"]), "ag001",
         "E_UNKNOWN_SIGNER"),
        ("other-role-key", request(site, [mine[0]["case_id"]], ["home_address"]),
         "ag001-supervisor", "E_UNKNOWN_SIGNER"),
        ("replay", ok, "ag001-collector", "E_REPLAY"),
        ("purpose", request(site, [mine[0]["case_id"]], ["home_address"], purpose="curiosity"),
         "ag001-collector", "E_REQUEST"),
        ("too-many", request(site, [c["case_id"] for c in mine[:4]], ["home_address"]),
         "ag001-collector", "E_REQUEST"),
        ("phone-in-note", request(site, [mine[0]["case_id"]], ["home_address"],
                                  note=f"call {mine[0]['mobile']}"), "ag001-collector", "E_REQUEST"),
        ("speaks-for-ag002", request(site, [theirs[0]["case_id"]], ["home_address"],
                                     agency="AG002"), "ag001-collector", "E_REQUEST"),
    ]
    for stem, req, signer, code in cases:
        receipt = send(site, f"{stem}.unmask.json.pgp", req.to_json(), signer=signer)
        assert receipt["status"] == "rejected", stem
        assert receipt["errors"][0]["code"] == code, (stem, receipt["errors"])
    garbage = send(site, "junk.unmask.json.pgp", b"{not json")
    assert garbage["errors"][0]["code"] == "E_REQUEST"
    receipts = json.dumps(site.agency_receipts("AG001"), ensure_ascii=False).encode()
    assert not LeakScanner(site.records).scan(receipts)  # the receipts, decrypted
    assert [e["event"] for e in events(site)] == ["unmask.requested"]
    assert site.plaintext_leaks(site.records) == []
    scanned = "\n".join(json.dumps(e, ensure_ascii=False) for e in audit.AuditLog(
        site.state / "audit").entries())
    assert all(r["mobile"] not in scanned and r["customer_name"] not in scanned
               for r in site.records)


def test_without_an_unmask_section_requests_are_refused(tmp_path, keybox):
    s = Site(tmp_path / "site", keybox)
    records = list(synth.cases(4, ["AG001"], seed=3))
    s.drop_cases("B1.csv.pgp", records)
    s.run()
    req = request(s, [records[0]["case_id"]], ["home_address"])
    receipt = send(s, "r.unmask.json.pgp", req.to_json())
    assert receipt["errors"][0]["code"] == "E_REQUEST"
    assert "no [unmask] section" in receipt["errors"][0]["message"]


def test_a_bank_batch_cannot_take_the_name_of_a_release(site):
    site.drop_cases("unmask-7.csv.pgp", list(synth.cases(2, ["AG001"], seed=5, prefix="U")))
    assert site.run() == {"rejected": 1}
    (receipt,) = [r for n, r in site.receipts().items() if n.startswith("unmask-7")]
    assert receipt["errors"][0]["code"] == "E_NAME"


def test_the_register_matches_the_audit_log_and_is_in_the_monthly_report(site):
    from gateway.reports.figures import figures

    mine = cases_of(site, "AG001")
    released = [request(site, [mine[i]["case_id"]], ["id_number"], purpose="legal_action")
                for i in (0, 1)]
    waiting = request(site, [mine[2]["case_id"]], ["home_address"])
    for n, req in enumerate([*released, waiting]):
        assert send(site, f"r{n}.unmask.json.pgp", req.to_json())["status"] == "accepted"
    for n, req in enumerate(released):
        assert decide(site, "approve", req.id, "anna", step=n).returncode == 0
    site.run()
    status = run_cli("status", "-c", str(site.config))
    assert "unmask: 1 request(s) wait for approvers" in status.stdout, status.stdout

    register = json.loads(run_cli("unmask", "register", "--json", "-c", str(site.config)).stdout)
    audited = [e for e in events(site) if e["event"] == "unmask.released"]
    assert len(register) == len(audited) == 2
    for row, entry in zip(register, audited, strict=True):  # one to one, in order
        assert row["request_id"] == entry["request_id"] and row["cases"] == entry["cases"]
        assert row["fields"] == entry["fields"] and row["requester_key"] == entry["signer"]
        assert row["expires_at"] == entry["expires_at"] and row["approvers"] == ["anna"]

    cfg = site.cfg()
    now = dt.datetime.now(dt.UTC)
    month = f"{now.astimezone(cfg.gateway.tz):%Y-%m}"
    ledger = Ledger(cfg.gateway.db_url)
    try:
        report = figures(cfg, ledger, audit.AuditLog(site.state / "audit").entries(), "AG001",
                         month, now=now)
    finally:
        ledger.close()
    um = report["unmask"]
    assert um["requests"] == 3 and um["by_status"] == {"pending": 1, "released": 2}
    assert um["releases"] == 2 and um["cases_released"] == 2
    assert [e["request_id"] for e in um["register"]] == [r["request_id"] for r in register]
    from gateway.reports.render import as_html
    page = as_html(report)
    assert "Unmasking by approval" in page and released[0].id[:8] in page
    assert not [c for c in site.records if c["id_number"] in page or c["customer_name"] in page]


def test_a_contract_purged_first_closes_its_requests_and_deletes_them(site):
    from tests.integration.test_retention import end_contract

    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["home_address"])
    assert send(site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    archived = [p for p in (site.state / "archive").iterdir()]
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    end_contract(site, "AG001", days_ago=1)
    site.run()  # the purge
    site.run()  # the next pass finds the request's agency purged
    (expired,) = [e for e in events(site) if e["event"] == "unmask.expired"]
    assert expired["reason"] == "purged" and expired["request_id"] == req.id
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        row = ledger.unmask_request(req.id)
        file = ledger.file(row.file_id)
    finally:
        ledger.close()
    assert row.status == "expired" and file.purged_at is not None
    assert not (site.state / "archive" / f"{file.sha256}.pgp").exists()
    assert len(archived) > 1  # the request's ciphertext was there before the purge


def test_a_request_past_the_monthly_limit_is_refused_and_a_denied_one_does_not_count(site):
    site.edit("max_cases = 3", "max_cases = 3\nmonthly_cases = 2")
    mine = [c["case_id"] for c in cases_of(site, "AG001")]
    first = request(site, mine[:2], ["home_address"])
    assert send(site, "a.unmask.json.pgp", first.to_json())["status"] == "accepted"
    over = send(site, "b.unmask.json.pgp", request(site, mine[2:3], ["home_address"]).to_json())
    assert over["errors"][0]["code"] == "E_UNMASK_LIMIT", over
    assert "monthly_cases" in over["errors"][0]["message"]
    assert decide(site, "deny", first.id, "anna", "--reason", "one at a time").returncode == 0
    again = send(site, "c.unmask.json.pgp", request(site, mine[2:3], ["home_address"]).to_json())
    assert again["status"] == "accepted"


@pytest.mark.parametrize("fault", ["after_unmask_release", "after_unmask_audit",
                                   "mid_unmask_purge", "after_unmask_purge"])
def test_a_pass_killed_after_a_release_or_its_deletion_loses_no_audit_entry(site, fault):
    """Killed between the ledger's commit and the audit entry: the next pass writes the
    entry, once — the register and the log stay one to one — and delivers what was
    committed; no plaintext anywhere after the crash."""
    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["id_number"],
                  purpose="legal_action")
    assert send(site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    assert decide(site, "approve", req.id, "anna").returncode == 0
    env = {"GATEWAY_FAULT": fault}
    purging = fault in ("mid_unmask_purge", "after_unmask_purge")
    if purging:
        site.run()  # released
        set_time(site, req.id, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    crashed = run_cli("run", "--once", "-c", str(site.config), env=env)
    assert crashed.returncode == 137, crashed.stderr
    assert site.plaintext_leaks(site.records) == []
    site.run()
    site.run()
    kinds = [e["event"] for e in events(site)]
    assert kinds.count("unmask.released") == 1
    assert kinds.count("unmask.purged") == (1 if purging else 0)
    register = json.loads(run_cli("unmask", "register", "--json", "-c", str(site.config)).stdout)
    assert [r["request_id"] for r in register] == [req.id]
    names = site.inbox("AG001")
    released = "unmask-1.AG001.collector.csv.pgp"
    assert (released in names) == (not purging)
    assert run_cli("audit", "verify", "-c", str(site.config)).returncode == 0
    if purging:  # the deletion was never taken for the agency's fetch, and says what it was
        assert not [e for e in audit.AuditLog(site.state / "audit").entries()
                    if e["event"] == "slice.collected" and e["file"].startswith("unmask-")]
        (cert,) = site.zone("bank", "incoming").glob("unmask-deletion-certificate.*.json.asc")
        assert cert.read_text().count('"state": "deleted"') == 2


def _status(site: Site, request_id: str) -> str:
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        row = ledger.unmask_request(request_id)
        assert row is not None
        return row.status
    finally:
        ledger.close()


def _notice(site: Site, n: int) -> dict:
    return json.loads(site.open_as("ag001-supervisor", site.zone(
        "AG001", "inbox", f"unmask-{n}.AG001.decision.json.pgp")).body)


def test_nothing_is_unmasked_outside_the_contract(site):
    from tests.integration.test_retention import end_contract

    mine = cases_of(site, "AG001")
    approved = request(site, [mine[0]["case_id"]], ["id_number"], purpose="legal_action")
    assert send(site, "a.unmask.json.pgp", approved.to_json())["status"] == "accepted"
    assert decide(site, "approve", approved.id, "anna").returncode == 0
    end_contract(site, "AG001", days_ago=1)  # ends before the daemon's next pass
    late = send(site, "b.unmask.json.pgp", request(site, [mine[1]["case_id"]],
                                                   ["home_address"]).to_json())
    assert late["errors"][0]["code"] == "E_CONTRACT_ENDED"
    assert not [n for n in site.inbox("AG001") if n.endswith(".csv.pgp") and "unmask" in n]
    assert _status(site, approved.id) == "failed"
    notice = _notice(site, 1)
    assert notice["status"] == "failed" and "is not running" in notice["reason"]
    (failed,) = [e for e in events(site) if e["event"] == "unmask.failed"]
    assert failed["reason"] == "contract_ended"
    site.run()  # not tried again
    assert [e["event"] for e in events(site)].count("unmask.failed") == 1


def test_an_approval_is_for_the_rules_as_they_are_at_the_release(site):
    """The purpose now needs two approvals, and the first approver is disabled: the
    request is pending again until two active approvers have approved. The requester's key
    then leaves the role: the release fails, once, with a notice."""
    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["id_number"],
                  purpose="legal_action")
    assert send(site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    assert decide(site, "approve", req.id, "anna").returncode == 0  # 1 of 1: approved
    site.edit('description = "a court filing"\napprovals = 1',
              'description = "a court filing"\napprovals = 2')
    site.run()
    assert _status(site, req.id) == "pending"
    assert [e["event"] for e in events(site)][-1] == "unmask.reopened"
    assert run_cli("users", "disable", "anna", "-c", str(site.config)).returncode == 0
    second = decide(site, "approve", req.id, "ben")
    assert second.returncode == 0 and "1 of 2" in second.stdout, second.stdout  # anna no longer counts
    site.edit('encrypt_to = ["keys/ag001-collector.pub.asc"]',
              'encrypt_to = ["keys/ag001-supervisor.pub.asc"]')
    site.run()
    assert _status(site, req.id) == "pending"  # still one approval short
    assert not [n for n in site.inbox("AG001") if n.startswith("unmask-1.AG001.col")]


def test_a_release_whose_key_left_the_role_fails_once_with_a_notice(site):
    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["id_number"],
                  purpose="legal_action")
    assert send(site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    assert decide(site, "approve", req.id, "anna").returncode == 0
    site.edit('encrypt_to = ["keys/ag001-collector.pub.asc"]',  # the member has left
              'encrypt_to = ["keys/ag001-supervisor.pub.asc"]')
    site.run()
    site.run()
    assert _status(site, req.id) == "failed"
    assert _notice(site, 1)["status"] == "failed"
    assert [e["reason"] for e in events(site) if e["event"] == "unmask.failed"] == ["key_removed"]
    assert not list((site.state / "staging" / "unmask").glob("*.csv.pgp"))


def test_the_list_shows_a_note_as_written(site):
    req = request(site, [cases_of(site, "AG001")[0]["case_id"]], ["home_address"],
                  note="visit [/] planned [bold]now[/bold]")
    assert send(site, "r.unmask.json.pgp", req.to_json())["status"] == "accepted"
    shown = run_cli("unmask", "list", "-c", str(site.config), env={"COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    assert "[/]" in shown.stdout and "[bold]now[/bold]" in shown.stdout
