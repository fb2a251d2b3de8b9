"""Monthly supervision reports (docs/security-team.md): `gateway report` against counts made here from
the zones and the audit log, its signature checked by gpg with the gateway's public key
alone, its page opened in Chromium; and the daemon's delivery of last month's reports,
once, across a restart and two crashes, on a simulated 1st of the month."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import audit, daemon
from gateway.reports.deliver import names
from tests.conftest import run_cli, run_cli_at
from tests.faults import TZ
from tests.integration.test_console import CHROMIUM, DRIVER, busy_site
from tests.leaks import LeakScanner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def busy(tmp_path_factory, keybox):
    site, records = busy_site(tmp_path_factory.mktemp("reports") / "site", keybox)
    inbox = site.zone("AG001", "inbox")
    collected = next(p for p in inbox.iterdir() if ".collector." in p.name)
    collected.unlink()  # the agency fetched its collector slice
    site.run()  # slice.collected
    return site, records, collected.name


def signed_text(data: bytes) -> bytes:
    """The text of a clear-signed message (dash-escaping undone)."""
    body = data.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    return b"\n".join(line[2:] if line.startswith(b"- ") else line for line in body.split(b"\n"))


def next_month() -> dt.datetime:
    """An hour into next month (the gateway's zone): when this month's report can be made."""
    today = dt.datetime.now(TZ)
    return (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=1, minute=0)


def test_the_report_counts_what_happened_and_is_signed(busy, tmp_path, keybox):
    site, records, collected = busy
    month = dt.datetime.now(TZ).strftime("%Y-%m")
    made = run_cli_at(next_month(), "report", "--agency", "AG001", "--month", month,
                      "--out", str(tmp_path), "-c", str(site.config))
    assert made.returncode == 0, made.stderr
    signed = (tmp_path / f"report.AG001.{month}.json").read_bytes()
    home = tmp_path / "gpg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run([*gpg, "--import", str(keybox["gateway"].pub)], check=True, capture_output=True)
    assert subprocess.run([*gpg, "--verify", str(tmp_path / f"report.AG001.{month}.json")],
                          capture_output=True, check=False).returncode == 0
    report = json.loads(signed_text(signed))

    log = list(audit.AuditLog(site.state / "audit").entries())
    mine = [e for e in log if e.get("agency") == "AG001"]
    slices = [e for e in mine if e["event"] == "slice.delivered" and e.get("role")]
    waiting = {p.name for p in site.zone("AG001", "inbox").iterdir()}
    assert report["deliveries"]["slices"] == len(slices) == 2
    assert report["deliveries"]["batches"] == len({e["batch_id"] for e in slices})
    assert report["deliveries"]["cases"] == sum(r["agency_code"] == "AG001" for r in records)
    assert report["deliveries"]["by_role"] == dict(collections.Counter(e["role"] for e in slices))
    assert report["collection"]["collected"] == 1
    assert report["collection"]["never_collected_files"] == sorted(
        e["file"] for e in slices if e["file"] in waiting)
    assert collected not in report["collection"]["never_collected_files"]
    (accepted,) = [e for e in mine if e["event"] == "results.accepted"]
    assert report["results"] == {"files": 1, "accepted_files": 1, "rejected_files": 0,
                                 "rows_received": accepted["records"],
                                 "rows_forwarded": accepted["accepted"],
                                 "rows_rejected": accepted["rejected"]}
    (receipt,) = [r for r in site.agency_receipts("AG001").values() if r["file"] == "R1.csv.pgp"]
    assert report["flags_total"] == receipt["flags"] == {"DISPUTE": 1, "HOURS": 2}
    assert report["security"]["cross_agency_rows"] == sum(
        e["count"] for e in mine if e["event"] == "security.cross_agency") == 1
    for name in ("bad_signature", "role_mismatch", "foreign_access", "unknown_login"):
        assert report["security"][name] == sum(e["event"] == f"security.{name}" for e in mine)
    reads = [e for e in mine if e["event"] == "slice.accessed"]
    assert report["collection"]["reads"] == len(reads) and report["collection"]["by_login"] == []
    (delivered_at,) = [dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in slices
                       if e["file"] == collected]
    (collected_at,) = [dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in mine
                       if e["event"] == "slice.collected"]
    hours = round((collected_at - delivered_at).total_seconds() / 3600, 2)
    assert report["collection"]["median_hours"] == report["collection"]["max_hours"] == hours
    assert report["keys"]["refused"] == [e["key"] for e in log if e["event"] == "key.refused"]
    assert report["contract"]["state"] == "active" and report["contract"]["certificate"] is None
    assert report["gateway_key"] == keybox["gateway"].fingerprint

    page = (tmp_path / f"report.AG001.{month}.html").read_bytes()
    assert b"Supervision report" in page and b"<svg" in page
    scanner = LeakScanner(records)
    assert not scanner.scan(page) and not scanner.scan(signed)
    if CHROMIUM and DRIVER:  # the page as a person opens it (and the picture in docs/security-team.md)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
        try:
            driver.get((tmp_path / f"report.AG001.{month}.html").as_uri())
            assert driver.title == f"Supervision report AG001 {month}"
            shots = Path(os.environ.get("GATEWAY_SCREENSHOTS") or tmp_path)
            shots.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shots / "report.png"))
        finally:
            driver.quit()


def test_a_purged_agency_s_report_names_its_certificate(busy, tmp_path):
    site, _, _ = busy
    month = dt.datetime.now(TZ).strftime("%Y-%m")
    made = run_cli_at(next_month(), "report", "--agency", "AG002", "--month", month,
                      "--out", str(tmp_path), "-c", str(site.config))
    assert made.returncode == 0, made.stderr
    report = json.loads(signed_text((tmp_path / f"report.AG002.{month}.json").read_bytes()))
    (purged,) = [e for e in audit.AuditLog(site.state / "audit").entries()
                 if e["event"] == "retention.purged"]
    assert report["contract"]["state"] == "purged"
    assert report["contract"]["certificate"] == purged["file"]
    bad = subprocess.run([sys.executable, "-m", "gateway", "report", "--agency", "AG009", "--month",
                          month, "-c", str(site.config)], capture_output=True, text=True, check=False)
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "error: --agency: no agency 'AG009' in the config (AG001, AG002)")


def test_a_month_that_has_not_ended_is_refused(busy, tmp_path):
    """A report of this month (or a later one) once came out half-counted, under the name
    the whole month's report takes; now one line, exit 2, and nothing written."""
    site, _, _ = busy
    today = dt.datetime.now(TZ)
    this = today.strftime("%Y-%m")
    for month, why in ((this, f"{this} has not ended yet"),
                       (next_month().strftime("%Y-%m"), "has not begun yet")):
        proc = run_cli("report", "--agency", "AG001", "--month", month, "--out", str(tmp_path),
                       "-c", str(site.config))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("error: --month: ") and why in line, line
    assert list(tmp_path.iterdir()) == []


def test_report_makes_its_folder_and_overwrites_only_with_force(busy, tmp_path):
    """`--out` had to exist, and a second run replaced the reports in it without a word."""
    site, _, _ = busy
    month = dt.datetime.now(TZ).strftime("%Y-%m")
    folder = tmp_path / "reports" / month
    argv = ("report", "--agency", "AG001", "--month", month, "--out", str(folder),
            "-c", str(site.config))
    made = run_cli_at(next_month(), *argv)
    assert made.returncode == 0, made.stderr
    assert folder.stat().st_mode & 0o777 == 0o700
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(files) == [f"report.AG001.{month}.html", f"report.AG001.{month}.json"]

    again = run_cli_at(next_month() + dt.timedelta(hours=1), *argv)
    assert again.returncode == 2, again.stderr
    (line,) = again.stderr.strip().splitlines()
    assert line == (f"error: --out: {folder / f'report.AG001.{month}.html'} already exists; "
                    "--force replaces it")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files

    forced = run_cli_at(next_month() + dt.timedelta(hours=1), *argv, "--force")
    assert forced.returncode == 0, forced.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()}.keys() == files.keys()
    assert (folder / f"report.AG001.{month}.json").read_bytes() != files[
        f"report.AG001.{month}.json"]  # made an hour later: generated_at differs


class Died(BaseException):
    """The process dying at a fault point (no except clause of the gateway catches it)."""


def test_last_month_s_reports_are_delivered_once_on_the_first(busy, monkeypatch):
    site, _, _ = busy
    today = dt.datetime.now(TZ)
    month = today.strftime("%Y-%m")
    first = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=0, minute=30)
    expected = {n for code in ("AG001", "AG002") for n in names(code, month)}

    def run(at: dt.datetime, crash_at: str | None = None) -> list[str]:
        from gateway import faults

        died = []

        def point(name: str) -> None:
            if name == crash_at and not died:  # a process dies once
                died.append(name)
                raise Died(name)

        monkeypatch.setattr(faults, "point", point)
        with daemon.open_context(site.cfg(), now=lambda: at.astimezone(dt.UTC)) as ctx, \
                contextlib.suppress(Died):
            daemon.run_once(ctx)
        return died

    def delivered() -> list[str]:
        return sorted(p.name for p in site.zone("bank", "incoming").iterdir()
                      if p.name.startswith("report."))

    run(today)  # this month: nothing to report yet
    assert delivered() == []
    assert run(first, crash_at="after_report_staged")  # dies after staging the first file
    assert delivered() == []
    assert run(first, crash_at="after_first_delivery")  # dies after placing one in the zone
    assert len(delivered()) == 1
    run(first)  # the rest
    run(first + dt.timedelta(hours=1))  # a restart later that day: nothing again
    assert delivered() == sorted(expected)
    events = [e for e in audit.AuditLog(site.state / "audit").entries()
              if e["event"] == "report.delivered"]
    assert sorted(e["file"] for e in events) == sorted(expected)  # each once
    opened = site.open_as("bank", site.zone("bank", "incoming", f"report.AG001.{month}.json.pgp"))
    assert opened.rc == 0 and b"BEGIN PGP SIGNED MESSAGE" in opened.body
    assert json.loads(signed_text(opened.body))["agency"] == "AG001"


def test_the_report_counts_acknowledgements_and_states_the_attestation(tmp_path, keybox):
    """AG001 runs the kit (7 days): B1 acknowledged at once, B2 never; ten days after the
    month its report counts B1's files in time and B2's not, and states the attestation
    the agency sent after its contract ended. AG002 (no kit) has no acknowledgements and
    no attestation expected."""
    from gateway import synth
    from gateway.ledger import Ledger
    from gateway.reports.figures import figures
    from gateway.reports.render import as_html
    from tests.flowsite import Site
    from tests.integration.test_agency_documents import ack, attestation, held, send
    from tests.integration.test_retention import end_contract

    site = Site(tmp_path / "site", keybox)
    site.edit('receipts_role = "supervisor"', 'acknowledge_within_days = 7\nreceipts_role = "supervisor"')
    site.drop_cases("B1.csv.pgp", list(synth.cases(6, ["AG001", "AG002"], seed=61)))
    assert site.run() == {"accepted": 1}
    b1 = held(site, "AG001")
    assert send(site, "B1.ack.json.pgp", ack(b1).to_json())["status"] == "accepted"
    site.drop_cases("B2.csv.pgp", list(synth.cases(4, ["AG001"], seed=62, prefix="E")))
    assert site.run() == {"accepted": 1}
    b2 = [p for p in site.zone("AG001", "inbox").glob("B2.*.pgp")]
    end_contract(site, "AG001")
    cfg = site.cfg()
    assert send(site, "end.attestation.json.pgp", attestation(
        b1, cfg.agency("AG001").contract.id).to_json())["status"] == "accepted"
    month = dt.datetime.now(TZ).strftime("%Y-%m")
    now = next_month() + dt.timedelta(days=10)
    ledger = Ledger(cfg.gateway.db_url)
    try:
        log = list(audit.AuditLog(site.state / "audit").entries())
        ag1 = figures(cfg, ledger, log, "AG001", month, now=now)
        ag2 = figures(cfg, ledger, log, "AG002", month, now=now)
    finally:
        ledger.close()
    assert ag1["acknowledgements"] == {"within_days": 7, "delivered": len(b1) + len(b2),
                                       "in_time": len(b1), "not_in_time": len(b2), "open": 0}
    at = ag1["contract"]["attestation"]
    assert at["state"] == "attested" and at["name"] == "end.attestation.json.pgp"
    assert (at["files"], at["not_listed"]) == (len(b1), len(b2))
    assert len(at["sha256"]) == 64 and at["accepted_at"].endswith("Z")
    assert ag2["acknowledgements"] is None
    assert ag2["contract"]["attestation"]["state"] == "not_expected"
    page = as_html(ag1)
    assert "<h2>Acknowledgements</h2>" in page
    assert f'<td class="n bad">{len(b2)}</td>' in page
    assert f"{len(b1)} files listed, {len(b2)} not listed" in page and at["sha256"] in page
    assert "<h2>Acknowledgements</h2>" not in as_html(ag2)
