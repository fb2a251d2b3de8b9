"""``gateway demo``: the whole batch flow on the embedded default, shown as people see it.

Builds a fresh directory: generated keys for the gateway, the bank and three
agencies with their roles, a config from ``gateway init``'s template, local
zones and SQLite. The bank (GnuPG, its own key) seals a synthetic batch of
1,000 realistic cases and drops it; the gateway processes it; then the demo
shows the bank's receipt and, side by side, what each role of one agency can
read from its own slice — decrypted with that role's key — so the masking is
visible. A second, faulty batch shows a rejection receipt.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway import audit, daemon, scaffold, synth
from gateway import config as config_mod
from gateway.checks import run_checks
from gateway.crypto import _gpg, keys
from gateway.crypto.standalone import seal_file
from gateway.errors import GatewayError, UsageError
from gateway.retention import purge

AGENCIES = [
    scaffold.AgencyTemplate("AG001", "华信资产管理有限公司", ("supervisor", "collector", "field_visitor",
                                                        "analyst")),
    scaffold.AgencyTemplate("AG002", "Second Recovery Ltd.", ("supervisor", "collector")),
    scaffold.AgencyTemplate("AG003", "Third Collections Co.", ("supervisor", "collector")),
]
N_CASES = 1000


def run_demo(directory: Path, console: Console) -> None:
    import logging

    from gateway.audit import configure_logging

    configure_logging(level=logging.WARNING)  # the demo narrates; operational logs would clutter it
    directory = Path(directory)
    if (directory / "gateway.toml").exists():
        raise UsageError(f"{directory} already holds a demo; remove it or pass --dir NEW_DIR")
    keydir = directory / "keys"

    console.rule("[bold]1. Setup")
    # settle_seconds = 0: the demo writes each file in one go before it runs the gateway.
    config_path = scaffold.init_project(directory, agencies=AGENCIES, settle_seconds=0)
    for name in scaffold.key_names(AGENCIES):
        keys.generate(name, f"{name}@demo.example", keydir)
    console.print(f"{config_path}: 3 agencies, roles supervisor/collector/field_visitor/analyst; "
                  f"{len(scaffold.key_names(AGENCIES))} key pairs generated in {keydir}")
    cfg = config_mod.load(config_path)
    problems = [f for f in run_checks(cfg) if f.level == "error"]
    if problems:
        raise GatewayError("demo: gateway check failed: " + problems[0].text)
    console.print("gateway check: ok (keys, self-test, zones, ledger)")

    console.rule("[bold]2. The bank drops a batch")
    records = list(synth.cases(N_CASES, [a.code for a in AGENCIES], seed=2026))
    sealed = _bank_seals(keydir, synth.to_csv(records))
    (directory / "zones" / "bank" / "outgoing" / "B-DEMO-001.csv.pgp").write_bytes(sealed)
    console.print(f"B-DEMO-001.csv.pgp: {N_CASES} cases, signed by the bank and encrypted to the "
                  f"gateway with GnuPG ({len(sealed):,} bytes)")

    console.rule("[bold]3. gateway run --once")
    with daemon.open_context(cfg) as ctx:
        outcomes = daemon.run_once(ctx)
    console.print("outcome: " + ", ".join(f"{n} {k}" for k, n in outcomes.items()))
    for agency in AGENCIES:
        inbox = directory / "zones" / agency.code / "inbox"
        console.print(f"{agency.code} inbox: " + ", ".join(sorted(p.name for p in inbox.iterdir())))

    console.rule("[bold]4. What the bank's receipt says")
    receipt_path = directory / "zones" / "bank" / "incoming" / "B-DEMO-001.csv.pgp.receipt.json.pgp"
    receipt = json.loads(_open(keydir / "bank.sec.asc", keydir / "gateway.pub.asc", receipt_path))
    console.print_json(json.dumps(receipt, ensure_ascii=False))

    console.rule("[bold]5. What each AG001 role can read (first case, decrypted with that role's key)")
    roles = AGENCIES[0].roles
    views: dict[str, dict[str, str]] = {}
    for role in roles:
        path = directory / "zones" / "AG001" / "inbox" / f"B-DEMO-001.AG001.{role}.csv.pgp"
        rows = list(csv.reader(io.StringIO(
            _open(keydir / f"ag001-{role}.sec.asc", keydir / "gateway.pub.asc", path).decode())))
        views[role] = dict(zip(rows[0], rows[1], strict=True))
        others = [r for r in roles if r != role]
        can_others = _try_open(keydir / f"ag001-{others[0]}.sec.asc", keydir / "gateway.pub.asc",
                               path)
        if can_others is not None:
            raise GatewayError(f"demo: {others[0]} could read the {role} slice")
    table = Table("field", *roles, title="the same case, as each role receives it")
    for column in table.columns:
        column.overflow = "fold"
    for field in synth.CASE_COLUMNS:
        table.add_row(field, *[views[r].get(field, "[dim]—[/dim]") for r in roles])
    console.print(table)
    console.print("Each slice opens only with its own role's key; the other roles' keys and "
                  "other agencies' keys cannot decrypt it.")

    console.rule("[bold]6. A faulty batch is refused, and the receipt says why without echoing data")
    bad = [dict(r) for r in synth.cases(5, ["AG002"], seed=7, prefix="X")]
    bad[2]["id_number"] = bad[2]["id_number"][:17] + ("1" if bad[2]["id_number"][17] != "1" else "2")
    bad[4]["mobile"] = "0101234567"
    (directory / "zones" / "bank" / "outgoing" / "B-DEMO-002.csv.pgp").write_bytes(
        _bank_seals(keydir, synth.to_csv(bad)))
    with daemon.open_context(cfg) as ctx:
        daemon.run_once(ctx)
    receipt_path = directory / "zones" / "bank" / "incoming" / "B-DEMO-002.csv.pgp.receipt.json.pgp"
    rejected = json.loads(_open(keydir / "bank.sec.asc", keydir / "gateway.pub.asc", receipt_path))
    console.print(f"status: {rejected['status']}; nothing was delivered; errors:")
    for e in rejected["errors"]:
        console.print(f"  row {e['row']} case {e['case_id']} {e['field']}: {e['code']} — {e['message']}")

    console.rule("[bold]7. AG001 reports results (gateway seal), the gateway checks and forwards them")
    tz = cfg.gateway.tz
    yesterday = (dt.datetime.now(tz) - dt.timedelta(days=1)).date().isoformat()
    ag1 = [r["case_id"] for r in records if r["agency_code"] == "AG001"]
    ag2 = next(r["case_id"] for r in records if r["agency_code"] == "AG002")
    results = [
        ["case_id", "action_at", "action_code", "contact_target", "outcome", "amount",
         "promise_date", "note", "collector_id"],
        [ag1[0], f"{yesterday}T10:15:00", "CALL", "debtor", "接通", "", "", "", "c-017"],
        [ag1[1], f"{yesterday}T14:30:00", "PROMISE_TO_PAY", "debtor", "承诺还款", "3000.00",
         (dt.date.today() + dt.timedelta(days=14)).isoformat(), "", "c-017"],
        [ag1[2], f"{yesterday}T22:40:00", "CALL", "debtor", "未接通", "", "", "", "c-021"],
        [ag2, f"{yesterday}T11:00:00", "CALL", "debtor", "", "", "", "", "c-021"],
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(results)
    uploaded = directory / "zones" / "AG001" / "outbox" / "R-AG001-001.csv.pgp"
    with tempfile.TemporaryDirectory() as agency_side:  # the agency's own machine, not the gateway's
        plain = Path(agency_side) / "results.csv"
        plain.write_text(buf.getvalue(), encoding="utf-8")
        seal_file(plain, key=keydir / "ag001.sec.asc", recipient=keydir / "gateway.pub.asc",
                  out=uploaded)
    console.print("AG001 uploads R-AG001-001.csv.pgp: 4 rows — one call at 22:40 (outside "
                  "08:00-21:00), one about a case that belongs to AG002")
    with daemon.open_context(cfg) as ctx:
        daemon.run_once(ctx)
    incoming = directory / "zones" / "bank" / "incoming"
    forwarded = next(incoming.glob("results.AG001.*.csv.pgp"))
    rows = list(csv.reader(io.StringIO(
        (_open(keydir / "bank.sec.asc", keydir / "gateway.pub.asc", forwarded) or b"").decode())))
    shown = ["case_id", "action_at", "action_code", "amount", "agency_code", "flags"]
    table = Table(*shown, title=f"what the bank receives: {forwarded.name} (some columns)")
    for column in table.columns:
        column.overflow = "fold"
    for r in rows[1:]:
        table.add_row(*[r[rows[0].index(c)] for c in shown])
    console.print(table)
    receipt_file = next((directory / "zones" / "AG001" / "inbox").glob("R-AG001-001*.receipt.json.pgp"))
    agency_receipt = json.loads(_open(keydir / "ag001-supervisor.sec.asc", keydir / "gateway.pub.asc",
                                      receipt_file) or b"{}")
    console.print(f"AG001's receipt ({receipt_file.name}, for its supervisor's key): "
                  f"status {agency_receipt['status']}, {agency_receipt['counts']['accepted']} "
                  f"forwarded, errors:")
    for e in agency_receipt["errors"]:
        console.print(f"  row {e['row']} case {e['case_id']}: {e['code']} — {e['message']}")
    gateway = _gateway_command()
    config_arg = shlex.quote(str(config_path))
    console.print(f"The bank's security team sees the attempt: {gateway} audit show -c {config_arg} "
                  "--event security.cross_agency")

    console.rule("[bold]8. AG003's contract ends; on the deadline its data is purged")
    today = dt.datetime.now(cfg.gateway.tz).date()
    text = config_path.read_text(encoding="utf-8")
    i = text.index('code = "AG003"')
    config_path.write_text(text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                                        f"terminated_on = {today}", 1),
                           encoding="utf-8")
    cfg = config_mod.load(config_path)
    deadline = today + dt.timedelta(days=cfg.gateway.purge_after_days)
    later = dt.datetime.combine(deadline, dt.time(9, 0), tzinfo=cfg.gateway.tz)
    console.print(f"gateway.toml: AG003 terminated_on = {today}; purge_after_days = "
                  f"{cfg.gateway.purge_after_days}. The demo now runs with the clock set to "
                  f"{later:%Y-%m-%d %H:%M} local time, the purge deadline (simulated).")
    with daemon.open_context(cfg, now=lambda: later) as ctx:
        console.print(_retention_table(purge.status(ctx), "before"))
        (report,) = purge.run(ctx)
        console.print(_retention_table(purge.status(ctx), "after"))
    cert_path = directory / "zones" / "bank" / "incoming" / (report.certificate or "")
    verify = _gpg_verify(keydir / "gateway.pub.asc", cert_path)
    console.print(f"deletion certificate {cert_path.name}: {len(report.objects)} objects, "
                  f"{report.cases} case assignments; `gpg --verify` with only the gateway's public "
                  f"key: {verify}")
    for line in cert_path.read_text(encoding="utf-8").splitlines()[3:14]:
        console.print(f"  {line}", markup=False)
    console.print("  …")

    console.rule("[bold]9. Audit")
    result = audit.verify(cfg.gateway.state_dir / "audit" / "audit.jsonl")
    console.print(f"audit log: {result.entries} entries, chain {'intact' if result.ok else 'BROKEN'}; "
                  f"try: {gateway} audit show -c {config_arg}")
    console.print(f"Everything is in {directory}. Next: {gateway} batches -c {config_arg}")


def _gateway_command() -> str:
    """The command that runs this gateway again from where the demo was started.

    ``gateway`` when that is what PATH finds; otherwise the path it was started by, as typed
    (``.venv/bin/gateway`` from ``make demo``, which puts nothing on PATH; relative like the
    ``--dir`` the hints name); and for ``python -m gateway``, that interpreter with ``-m``."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "gateway":
        on_path = shutil.which("gateway")
        if on_path is not None and Path(on_path).resolve() == Path(argv0).resolve():
            return "gateway"
        return shlex.quote(argv0)
    return f"{shlex.quote(sys.executable)} -m gateway"


def _retention_table(holdings: list[purge.Holding], title: str) -> Table:
    table = Table("agency", "state", "effective end", "deadline", "days left", "files", "cases",
                  title=f"gateway retention status ({title})")
    for h in holdings:
        d = h.decision
        table.add_row(d.agency, d.state.value, str(d.effective_end), str(d.deadline),
                      str(d.days_left), str(h.files), str(h.cases))
    return table


def _gpg_verify(public: Path, signed: Path) -> str:
    with _gpg.scratch_home() as home:
        _gpg.run(home, ["--import", "--", str(public)])
        proc = _gpg.run(home, ["--verify", "--", str(signed)])
    ok = proc.returncode == 0 and b"VALIDSIG" in proc.stderr
    return "good signature" if ok else "BAD SIGNATURE"


def _bank_seals(keydir: Path, plaintext: bytes) -> bytes:
    """What the bank does on its side: plain GnuPG, its own secret key, the gateway's public key."""
    with _gpg.scratch_home() as home:
        for f in ("bank.sec.asc", "gateway.pub.asc"):
            _gpg.run(home, ["--import", "--", str(keydir / f)], passphrase="")
        gw = keys.inspect(keydir / "gateway.pub.asc").fingerprint
        bank = keys.inspect(keydir / "bank.pub.asc").fingerprint
        proc = _gpg.run(home, ["-u", bank, "-r", gw, "--sign", "--encrypt"], stdin=plaintext,
                        passphrase="")
    if proc.returncode != 0:
        raise GatewayError("demo: GnuPG could not seal the bank's file")
    return proc.stdout


def _open(secret: Path, gateway_pub: Path, path: Path) -> bytes:
    """What a receiving party does: plain GnuPG with its own key; the gateway must have signed."""
    opened = _try_open(secret, gateway_pub, path)
    if opened is None:
        raise GatewayError(f"demo: could not open {path.name}")
    return opened


def _try_open(secret: Path, gateway_pub: Path, path: Path) -> bytes | None:
    """The plaintext, or None if *secret* cannot open *path* (or the gateway did not sign it)."""
    with _gpg.scratch_home() as home:
        for f in (secret, gateway_pub):
            _gpg.run(home, ["--import", "--", str(f)], passphrase="")
        proc = _gpg.run(home, ["--decrypt"], stdin=path.read_bytes(), passphrase="")
    gw = keys.inspect(gateway_pub).fingerprint
    ok = proc.returncode == 0 and f"VALIDSIG {gw}".encode() in proc.stderr
    return proc.stdout if ok else None
