"""What the agency's own documents show, read once (gateway.queries.agency_evidence) and
shown by `gateway status`: slices and manifests not acknowledged in time, and the deletion
attestation expected after the contract's end (docs/formats.md §7)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway import audit, queries, synth
from gateway.ledger import Ledger
from tests.conftest import run_cli_at
from tests.flowsite import Site
from tests.integration.test_agency_documents import ack, attestation, held, send
from tests.integration.test_retention import end_contract

pytestmark = pytest.mark.integration
KIT = 'acknowledge_within_days = 7\nreceipts_role = "supervisor"'


@pytest.fixture
def site(tmp_path, keybox):
    """B1 delivered to AG001 (which runs the kit: 7 days) and AG002 (which does not)."""
    s = Site(tmp_path / "site", keybox)
    s.edit('receipts_role = "supervisor"', KIT)  # the first agency's: AG001
    s.drop_cases("B1.csv.pgp", list(synth.cases(8, ["AG001", "AG002"], seed=43)))
    assert s.run() == {"accepted": 1}
    return s


def evidence(site: Site, at: dt.datetime) -> dict[str, queries.AgencyEvidence]:
    ledger = Ledger(site.cfg().gateway.db_url)
    try:
        return {e.agency: e for e in queries.agency_evidence(site.cfg(), ledger, at)}
    finally:
        ledger.close()


def later(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def test_unacknowledged_files_are_overdue_after_the_window_only_for_the_kit(site):
    files = held(site, "AG001")
    now = evidence(site, later(0))
    assert (now["AG001"].expected, now["AG001"].overdue, now["AG001"].state) == (True, 0, "pending")
    assert (now["AG002"].expected, now["AG002"].state) == (False, "not_expected")
    week = evidence(site, later(7.1))
    ag1 = week["AG001"]
    assert ag1.overdue == len(files) and ag1.overdue_batches == ["B1"]
    assert ag1.oldest_overdue is not None and ag1.acknowledged == 0
    assert f"{len(files)} files overdue" in ag1.acknowledgements_text
    assert week["AG002"].overdue == 0  # nothing is expected of an agency without the kit
    assert send(site, "B1.ack.json.pgp", ack(files).to_json())["status"] == "accepted"
    week = evidence(site, later(7.1))
    assert (week["AG001"].overdue, week["AG001"].acknowledged) == (0, len(files))


def test_the_attestation_is_pending_then_missing_then_attested(site):
    files = held(site, "AG001")
    end_contract(site, "AG001")  # yesterday, local time
    cfg = site.cfg()
    end = cfg.agency("AG001").contract.effective_end
    ag1 = evidence(site, later(0))["AG001"]
    assert (ag1.state, ag1.effective_end, ag1.attestation_due) == (
        "pending", end, end + dt.timedelta(days=30))
    assert evidence(site, later(35))["AG001"].state == "missing"
    contract = cfg.agency("AG001").contract.id
    assert send(site, "end.attestation.json.pgp",
                attestation(files[:-1], contract).to_json())["status"] == "accepted"
    ag1 = evidence(site, later(35))["AG001"]
    assert ag1.state == "attested" and ag1.attestation is not None
    assert (ag1.attestation.files, ag1.attestation.not_listed) == (len(files) - 1, 1)
    assert ag1.attestation.file == "end.attestation.json.pgp" and len(ag1.attestation.sha256) == 64
    assert ag1.overdue == len(files)  # an attestation acknowledges nothing


def test_status_warns_of_overdue_acknowledgements_and_fails_on_a_missing_attestation(site):
    week = run_cli_at(later(8), "status", "-c", str(site.config))
    assert week.returncode == 0, week.stderr  # overdue acknowledgements: a warning line
    assert "AG001 acknowledgements: " in week.stdout and "files overdue" in week.stdout
    assert "AG001 deletion attestation: pending: due by " in week.stdout
    assert "AG002 acknowledgements" not in week.stdout  # no kit: no line
    rows = {r["zone"]: r for r in json.loads(run_cli_at(
        later(8), "status", "--json", "-c", str(site.config)).stdout)}
    assert rows["evidence.AG001"]["state"] == "warning" and rows["evidence.AG001"]["waiting"] > 0
    assert rows["evidence.AG001"]["evidence"]["overdue_batches"] == ["B1"]
    assert "evidence.AG002" not in rows
    end_contract(site, "AG001")
    gone = run_cli_at(later(35), "status", "-c", str(site.config))
    assert gone.returncode == 1
    due = site.cfg().agency("AG001").contract.effective_end + dt.timedelta(days=31)
    assert f"AG001 deletion attestation: missing since {due}" in gone.stdout
    files = held(site, "AG001")
    assert send(site, "end.attestation.json.pgp", attestation(
        files, site.cfg().agency("AG001").contract.id).to_json())["status"] == "accepted"
    done = run_cli_at(later(35), "status", "-c", str(site.config))
    assert done.returncode == 0, done.stdout
    assert f"({len(files)} files, 0 not listed)" in done.stdout


def test_the_retention_page_shows_the_agencys_half(site):
    """Per contract, beside the gateway's purge: the attestation (state, when, files listed
    and not, the file's SHA-256) and the acknowledgements overdue."""
    import hashlib
    import re

    from gateway.console.auth import Accounts
    from tests.integration.test_console import Clock, Server
    from tests.unit.test_console_app import PASSWORD, Http

    files = held(site, "AG001")
    end_contract(site, "AG001")
    cfg = site.cfg()
    name = "end.attestation.json.pgp"
    sealed = site.seal_as("ag001", attestation(files[:-1], cfg.agency("AG001").contract.id).to_json())
    site.zone("AG001", "outbox", name).write_bytes(sealed)
    site.run()
    clock = Clock()
    clock.tick(days=8)
    ledger = Ledger(cfg.gateway.db_url)
    secret = Accounts(ledger, audit.AuditLog(site.state / "audit", actor="admin"), now=clock).add(
        "alice", "auditor", PASSWORD).secret
    ledger.close()
    server = Server(cfg, clock)
    try:
        client = Http(server.port)
        client.log_in(secret, clock)
        status, _, body = client.get("/retention")
    finally:
        server.stop()
    assert status == 200
    page = body.decode()
    rows = {m.group(1): m.group(0) for m in re.finditer(
        r"<tr[^>]*>\s*<td>[^<]*</td><td>(AG\d+)</td>.*?</tr>", page, re.S)}
    assert set(rows) == {"AG001", "AG002"}
    ag1 = rows["AG001"]
    assert ">attested</span>" in ag1
    assert f"{len(files) - 1} files listed, 1 not listed; {name}" in ag1
    assert f"<code>{hashlib.sha256(sealed).hexdigest()}</code>" in ag1
    assert f'<span class="warn-text">{len(files)}</span>' in ag1  # 8 days: all overdue
    ag2 = rows["AG002"]
    assert ">not expected</span>" in ag2 and "—</td>" in ag2
    assert 'class="warn"' in ag1.split(">")[0] + ">"
