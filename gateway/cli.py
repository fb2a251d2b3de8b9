"""The ``gateway`` command line: parse, call one service function, render.

Every user-facing failure is a GatewayError; :func:`main` prints its message
(one line per problem) and exits with its status — 0 success, 1 failure,
2 usage or configuration error (SPEC §11). A traceback appears only for a bug,
and only with ``GATEWAY_DEBUG=1``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway import __version__
from gateway import audit as audit_mod
from gateway import config as config_mod
from gateway.crypto import keys as keys_mod
from gateway.crypto.service import passphrase_from_env
from gateway.errors import CryptoError, GatewayError, UsageError

if TYPE_CHECKING:
    from gateway import queries
    from gateway.console.auth import Accounts
    from gateway.ledger import Ledger

app = typer.Typer(
    name="gateway",
    help="Secure case-file exchange between a bank and its collection agencies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Create and inspect OpenPGP key files.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and read the tamper-evident audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Contract ends, purges and deletion certificates.",
                            no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(help="The ledger's schema: migrations (SPEC §12).", no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(help="The security team's console accounts (SPEC §13).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = Annotated[Path, typer.Option(
    "--config", "-c", envvar="GATEWAY_CONFIG", help="Path of gateway.toml.",
    show_default=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
PassEnvOpt = Annotated[str | None, typer.Option(
    "--passphrase-env", metavar="VAR",
    help="Name of the environment variable holding the secret key's passphrase.")]


def _load(path: Path) -> config_mod.Config:
    return config_mod.load(path)


def _audit_log(cfg: config_mod.Config) -> audit_mod.AuditLog:
    return audit_mod.AuditLog(cfg.gateway.state_dir / "audit")


def _render(data: Any, as_json: bool, text: Callable[[], None]) -> None:
    """Print *data* as JSON for a script, or call *text* to print it for a person. One place
    decides, so every ``--json`` is written alike: dataclasses as objects, times in ISO 8601."""
    if as_json:
        out.print_json(json.dumps(data, default=_plain))
    else:
        text()


def _plain(value: object) -> object:
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _table(*columns: str) -> Table:
    return Table(*columns, box=None)


@contextmanager
def _ledger(cfg: config_mod.Config) -> Iterator[Ledger]:
    """The ledger for one command, closed however the command ends: its engine keeps a pool
    of connections (a PostgreSQL server counts them) until it is disposed of. Opening it
    brings the schema to head under the migration lock, as every opening does."""
    from gateway.ledger import Ledger

    ledger = Ledger(cfg.gateway.db_url)
    try:
        yield ledger
    finally:
        ledger.close()


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Directory to create the setup in.")]) -> None:
    """Write a commented gateway.toml, zone folders and the default roles (no secrets)."""
    from gateway import scaffold

    path = scaffold.init_project(directory)
    out.print(f"wrote {path} with roles supervisor, collector, field_visitor, analyst")
    out.print("key files it expects (for a trial, generate them; in production the bank and "
              "agencies send you their public keys):")
    for name in scaffold.key_names(scaffold.DEFAULT_AGENCIES):
        out.print(f"  gateway keys generate {name} --email {name}@example.com --out "
                  f"{directory / 'keys'}")
    out.print(f"then: gateway check -c {path}")


@app.command()
def check(config: ConfigOpt = Path("gateway.toml")) -> None:
    """Validate the config, every key (algorithm, expiry, revocation, permissions) and the zones."""
    from gateway.checks import run_checks

    cfg = _load(config)
    findings = run_checks(cfg)
    marks = {"ok": "ok   ", "warn": "warn ", "error": "error", "info": "info "}
    for f in findings:
        (err if f.level in ("warn", "error") else out).print(f"{marks[f.level]} {f.text}")
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
def demo(directory: Annotated[Path, typer.Option("--dir", help="Where to build the demo.")] = Path(
        "demo-run")) -> None:
    """Build a complete trial setup (keys, config, zones) and exercise it end to end."""
    from gateway.demo import run_demo

    run_demo(directory, out)


@app.command("run")
def run_cmd(
    config: ConfigOpt = Path("gateway.toml"),
    once: Annotated[bool, typer.Option("--once", help="Process everything pending, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between SFTP polls.")] = 5.0,
    rescan: Annotated[float, typer.Option(
        "--rescan", help="Seconds between full rescans of watched local zones.")] = 30.0,
) -> None:
    """Run the gateway (foreground; SIGTERM stops cleanly). Exit 0 unless the gateway itself failed."""
    from gateway import heap

    heap.bound()  # before the engine's libraries load
    from gateway import daemon
    from gateway.audit import configure_logging
    from gateway.flows import Interrupted
    from gateway.progress import TerminalProgress

    cfg = _load(config)
    bar = TerminalProgress(err) if once and sys.stderr.isatty() and sys.stdout.isatty() else None
    # journald collects the service's stdout; with a bar, log lines print above it
    configure_logging(stream=bar.log_stream() if bar else sys.stdout)
    with daemon.open_context(cfg) as ctx:
        if not once:
            daemon.run_forever(ctx, interval=interval, rescan=rescan)
            return
        daemon.install_signal_handlers(ctx)
        if bar is not None:
            ctx.run.progress = bar
        try:
            outcomes = daemon.run_once(ctx)
        except Interrupted:
            err.print("stopped: the file in hand was rolled back and will be resumed")
            return
        finally:
            ctx.run.progress.close()
        summary = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        failed = [str(e) for e in ctx.run.zone_errors.values()] + [
            f"{part} failed ({type(e).__name__}: {e}); the rest of the pass went on"
            for part, e in ctx.run.part_errors.items()]
        if failed:  # one line: what failed, and what was done all the same
            raise GatewayError("; ".join(failed) + (f" (done: {summary})" if summary else ""))
        err.print(f"done: {summary or 'nothing pending'}")


@app.command()
def status(config: ConfigOpt = Path("gateway.toml"), as_json: JsonOpt = False) -> None:
    """Each zone's last successful scan, files waiting and last error; exit 1 if one is failing."""
    from gateway import queries

    cfg = _load(config)
    with _ledger(cfg) as ledger:
        zones, in_hand = queries.zone_health(cfg, ledger)

    def text() -> None:
        table = _table("zone", "location", "state", "last scan (UTC)", "waiting", "refused",
                       "last error")
        for z in zones:
            table.add_row(z.zone, z.location, z.state,
                          z.last_scan.isoformat()[:19] if z.last_scan else "never", str(z.waiting),
                          str(len(z.refused)), z.last_error or "")
        out.print(table)
        for z in zones:
            for f in z.refused:
                out.print(f"refused in {z.zone}: {f['name']!r} ({f['reason']}: never read; "
                          "remove it or replace it with a regular file)", markup=False)
        for w in in_hand:  # several nodes: who does what
            state = "lease ran out: the next node to look takes it over" if w.ran_out else \
                f"leased until {w.until:%H:%M:%S} UTC"
            out.print(f"in hand: {w.item} by {w.node} ({state})", markup=False)

    _render(zones, as_json, text)
    if any(z.state == "failing" for z in zones):
        raise typer.Exit(1)


@app.command()
def batches(
    batch: Annotated[str | None, typer.Argument(help="A batch id for its details.")] = None,
    config: ConfigOpt = Path("gateway.toml"),
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", help="How many files to list.")] = 50,
) -> None:
    """Processing history of bank case files, or one batch in detail."""
    from gateway import queries

    with _ledger(_load(config)) as ledger:
        if batch is None:
            files = queries.case_files(ledger, limit)
        elif (detail := queries.batch_detail(ledger, batch)) is None:
            raise GatewayError(f"no accepted batch {batch!r} (see 'gateway batches')")
    if batch is None:
        _render(files, as_json, lambda: _print_case_files(files))
    else:
        _render(detail, as_json, lambda: _print_batch(detail))


def _print_case_files(files: list[queries.CaseFile]) -> None:
    table = _table("received", "file", "batch", "status", "records", "accepted", "rejected", "error")
    for f in files:
        table.add_row(f.received_at.isoformat()[:19], f.file, f.batch_id or "", f.status,
                      str(f.records), str(f.accepted), str(f.rejected), f.error_code or "")
    out.print(table)


def _print_batch(b: queries.BatchDetail) -> None:
    out.print(f"batch {b.batch_id}: {b.status}, {b.accepted}/{b.records} records accepted "
              f"({b.rejected} rejected)")
    out.print(f"  file {b.file} sha256 {b.sha256}, signed by {b.signer}")
    table = _table("delivered", "file", "agency", "role", "records")
    for d in b.deliveries:
        table.add_row(d.delivered_at.isoformat()[:19] if d.delivered_at else "pending", d.name,
                      d.agency, d.role or "(manifest)", str(d.records))
    out.print(table)
    for r in b.receipts:
        out.print(f"  receipt {r.name or '(pending)'}: {r.status}")


@retention_app.command("status")
def retention_status(config: ConfigOpt = Path("gateway.toml"), as_json: JsonOpt = False) -> None:
    """Each contract: state, effective end, deadline, days left, what is still held, certificate."""
    from gateway import daemon
    from gateway.retention import purge

    cfg = _load(config)
    with daemon.read_context(cfg) as ctx:
        holdings = purge.status(ctx)
    rows = [{"contract_id": h.decision.contract_id, "agency": h.decision.agency,
             "state": h.decision.state.value, "effective_end": h.decision.effective_end.isoformat(),
             "deadline": h.decision.deadline.isoformat(), "days_left": h.decision.days_left,
             "files": h.files, "bytes": h.bytes, "cases": h.cases, "certificate": h.certificate,
             "late": h.decision.late} for h in holdings]

    def text() -> None:
        table = _table("contract", "agency", "state", "effective end", "deadline", "days left",
                       "files", "bytes", "cases", "certificate")
        for r in rows:
            table.add_row(r["contract_id"], r["agency"], r["state"] + (" (late)" if r["late"] else ""),
                          r["effective_end"], r["deadline"], str(r["days_left"]), str(r["files"]),
                          f"{r['bytes']:,}", str(r["cases"]), r["certificate"] or "")
        out.print(table)

    _render(rows, as_json, text)


@retention_app.command("run")
def retention_run(
    config: ConfigOpt = Path("gateway.toml"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; "
                                          "delete nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Purge every contract whose deadline has come, with a signed deletion certificate."""
    from gateway import daemon
    from gateway.retention import purge

    cfg = _load(config)
    handed_to = None
    if dry_run:
        with daemon.read_context(cfg) as ctx:
            reports = purge.preview(ctx)
    else:
        from gateway.progress import TerminalProgress

        bar = TerminalProgress(err) if sys.stderr.isatty() and sys.stdout.isatty() and not as_json \
            else None
        if bar is not None:
            from gateway.audit import configure_logging

            configure_logging(stream=bar.log_stream())  # log lines above the bar, not through it
        try:
            reports, handed_to = daemon.purge_due(cfg, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    if handed_to and not as_json:
        out.print(f"the running gateway (pid {handed_to}) was asked to purge now; it did:")
    data = [{"contract_id": r.decision.contract_id, "agency": r.decision.agency,
             "deadline": r.decision.deadline.isoformat(), "late": r.decision.late,
             "dry_run": r.dry_run, "cases": r.cases, "certificate": r.certificate,
             "objects": [{"zone": o.location, "name": o.name, "size": o.size, "sha256": o.sha256}
                         for o in r.objects]} for r in reports]

    def text() -> None:
        if not reports:
            out.print("no contract is due for purging")
        for r in data:
            verb = "would delete" if r["dry_run"] else "deleted"
            out.print(f"{r['agency']} (contract {r['contract_id']}, deadline {r['deadline']}"
                      f"{', LATE' if r['late'] else ''}): {verb} {len(r['objects'])} objects and "
                      f"{r['cases']} case assignments")
            for o in r["objects"]:
                out.print(f"  {o['zone']}  {o['name']}  {o['size']} bytes  {o['sha256'][:16]}")
            if r["certificate"]:
                out.print(f"  certificate: {r['certificate']} (state_dir/certificates/, sent to "
                          "the bank)")

    _render(data, as_json, text)


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Argument(help="Key name; files NAME.pub.asc and NAME.sec.asc.")],
    email: Annotated[str, typer.Option("--email", help="Email address in the user ID.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the key files.")],
    algorithm: Annotated[str, typer.Option("--algo", help="ed25519, rsa3072 or rsa4096.")] = "ed25519",
    expire: Annotated[str, typer.Option("--expire", help="Validity, e.g. 2y, 18m, or 'never'.")] = "2y",
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Create a key pair (secret file mode 0600) without AEAD preferences, for interoperability."""
    passphrase = None
    if passphrase_env:
        secret = passphrase_from_env(passphrase_env)
        if secret is None:
            raise UsageError(f"--passphrase-env: environment variable {passphrase_env} is not set")
        passphrase = secret.reveal()
    key = keys_mod.generate(name, email, out_dir, algorithm=algorithm, expire=expire,
                            passphrase=passphrase)
    out.print(f"{key.fingerprint}  {key.public_path}  {key.secret_path} (mode 0600)")


@keys_app.command("show")
def keys_show(file: Annotated[Path, typer.Argument(help="An ASCII-armored key file.")],
              as_json: JsonOpt = False) -> None:
    """Show a key file's fingerprint, algorithm, capabilities, expiry and policy verdict."""
    from gateway import queries

    judged = queries.key_file_verdict(file)
    info = judged.info
    data: dict[str, Any] = {
        "file": str(file), "fingerprint": info.fingerprint, "secret": info.secret,
        "user_ids": list(info.user_ids), "revoked": info.revoked, "expired": info.expired,
        "expires": info.expires.isoformat() if info.expires else None,
        "policy": judged.verdict if judged.problems else "ok",
        "keys": [{"fingerprint": k.fingerprint, "algorithm": k.description,
                  "capabilities": k.capabilities, "created": k.created.isoformat(),
                  "expires": k.expires.isoformat() if k.expires else None,
                  "revoked": k.revoked, "expired": k.expired} for k in info.keys],
    }

    def text() -> None:
        out.print(f"{'secret' if info.secret else 'public'} key {info.fingerprint}")
        for uid in info.user_ids:
            out.print(f"  user id   {uid}")
        for k in info.keys:
            exp = k.expires.date().isoformat() if k.expires else "never"
            out.print(f"  {k.fingerprint[-16:]}  {k.description:<10} caps={k.capabilities:<4} "
                      f"expires={exp}  {queries.subkey_state(k)}")
        out.print(f"  policy    {judged.verdict}")

    _render(data, as_json, text)


@audit_app.command("verify")
def audit_verify(
    config: ConfigOpt = Path("gateway.toml"),
    file: Annotated[Path | None, typer.Option(
        "--file", help="Verify this audit file instead of the configured one.")] = None,
    checkpoints: Annotated[Path | None, typer.Option(
        "--checkpoints", help="Verify against the checkpoint copies in this directory (the "
        "bank's), instead of state_dir/audit/checkpoints.")] = None,
    key: Annotated[list[Path] | None, typer.Option(
        "--key", help="The gateway's public key file(s) to check checkpoint signatures with "
        "(default: the configured gateway keys).")] = None,
) -> None:
    """Check the hash chain and the signed checkpoints; name the first broken entry, or the
    last good checkpoint, and exit 1 if anything does not hold."""
    from gateway import checkpoint
    from gateway.crypto.signed import signature_checker
    from gateway.state import runner_active

    cfg = _load(config) if file is None or (checkpoints is not None and not key) else None
    path = file or _audit_log(cfg).path  # type: ignore[arg-type]
    folder = checkpoints or (checkpoint.directory(cfg.gateway.state_dir) if cfg else None)
    if folder is None or not folder.is_dir():
        if checkpoints is not None:
            raise UsageError(f"--checkpoints: {checkpoints} is not a directory")
        result = audit_mod.verify(path)
        if not result.ok:
            err.print(f"audit log {path}: entry {result.broken_seq} is broken: {result.problem} "
                      f"({result.entries} entries before it verify)", markup=False)
            raise typer.Exit(1)
        out.print(f"audit log {path}: {result.entries} entries, chain intact, last hash "
                  f"{result.last_hash} (no checkpoints to compare with)", markup=False)
        return
    key_files = list(key) if key else [cfg.gateway.secret_key, *cfg.gateway.previous_secret_keys]  # type: ignore[union-attr]
    running = runner_active(cfg.gateway.state_dir) if cfg else False
    with signature_checker(key_files, secret=not key) as opener:
        report = checkpoint.check(path, folder, opener, writer_running=running)
    last = report.last_good
    good = (f"last good checkpoint: entry {last.seq} ({last.file}, {last.ts})" if last
            else "no checkpoint holds")
    if not report.chain.ok:
        err.print(f"audit log {path}: entry {report.chain.broken_seq} is broken: "
                  f"{report.chain.problem} ({report.chain.entries} entries before it verify); "
                  f"{good}", markup=False)
        raise typer.Exit(1)
    if report.problem:
        err.print(f"audit log {path}: {report.problem}; {good}", markup=False)
        raise typer.Exit(1)
    tail = (f"; {report.unsealed} entries since, to be sealed by the running gateway"
            if report.unsealed else "")
    out.print(f"audit log {path}: {report.chain.entries} entries, chain intact, "
              f"{len(report.checkpoints)} signed checkpoints hold ({good}){tail}", markup=False)


@audit_app.command("show")
def audit_show(
    config: ConfigOpt = Path("gateway.toml"),
    event: Annotated[str | None, typer.Option("--event", help="Only this event, e.g. "
                                              "security.cross_agency.")] = None,
    agency: Annotated[str | None, typer.Option(
        "--agency", help="Only entries about this agency code.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="ISO date or date-time (UTC if no offset).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List audit entries, optionally filtered."""
    log = _audit_log(_load(config))
    flt = audit_mod.Filter(event=event, agency=agency, since=_parse_since(since) if since else None)
    rows = list(audit_mod.search(log, flt))

    def text() -> None:
        table = _table("seq", "time (UTC)", "event", "actor", "details")
        for e in rows:
            details = " ".join(f"{k}={v}" for k, v in e.items()
                               if k not in {"seq", "ts", "event", "actor", "prev", "hash"})
            table.add_row(str(e["seq"]), e["ts"][:19], e["event"], e["actor"], details)
        out.print(table)
        out.print(f"{len(rows)} entries")

    _render(rows, as_json, text)


def _parse_since(value: str) -> dt.datetime:
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since: {value!r} is not an ISO date or date-time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = Path("gateway.toml")) -> None:
    """Bring the ledger's schema to this gateway's head revision (run does this at start)."""
    from gateway.ledger import migrate

    with _ledger(_load(config)) as ledger:  # opening upgrades, under the migration lock
        out.print(f"ledger {ledger.where}: at revision {migrate.head()} (head)", markup=False)


@db_app.command("current")
def db_current(config: ConfigOpt = Path("gateway.toml")) -> None:
    """Show the ledger's schema revision; exit 1 if it is not this gateway's head."""
    from gateway.ledger import migrate

    cfg = _load(config)
    rev, where = migrate.revision_of(cfg.gateway.db_url)
    if rev is None:
        err.print(f"ledger {where}: no schema yet; run `gateway db upgrade` (`gateway run` "
                  "does it at start)", markup=False)
        raise typer.Exit(1)
    if rev != migrate.head():
        err.print(f"ledger {where}: revision {rev}; this gateway's head is {migrate.head()}: run "
                  "`gateway db upgrade`", markup=False)
        raise typer.Exit(1)
    out.print(f"ledger {where}: revision {rev} (head)", markup=False)


PasswordStdinOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from one line of standard input instead of "
    "asking twice at the terminal.")]


@contextmanager
def _accounts(cfg: config_mod.Config) -> Iterator[Accounts]:
    from gateway.console.auth import Accounts

    with _ledger(cfg) as ledger:
        yield Accounts(ledger, _audit_log(cfg))


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: use --password-stdin")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _show_enrolment(enrolment: Any) -> None:
    """The otpauth:// URI, and at a terminal the same as a QR code to scan."""
    out.print(f"account {enrolment.account}: add it to an authenticator app (TOTP, 6 digits, "
              f"30 s):", markup=False)
    out.print(enrolment.uri, markup=False)
    if sys.stdout.isatty():
        import io

        import qrcode

        qr = qrcode.QRCode(border=2)
        qr.add_data(enrolment.uri)
        text = io.StringIO()
        qr.print_ascii(out=text, invert=True)
        out.print(text.getvalue(), markup=False)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Account name: 1-32 of a-z 0-9 . _ -.")],
    role: Annotated[str, typer.Option("--role", help="auditor or operator.")],
    password_stdin: PasswordStdinOpt = False,
    config: ConfigOpt = Path("gateway.toml"),
) -> None:
    """Add a console account; prints its TOTP enrolment (URI, and a QR code at a terminal)."""
    from gateway.console.auth import check_name, check_role

    check_name(name)  # before asking for a password
    check_role(role)
    with _accounts(_load(config)) as accounts:
        _show_enrolment(accounts.add(name, role, _new_password(password_stdin)))


@users_app.command("reset")
def users_reset(
    name: Annotated[str, typer.Argument(help="The account.")],
    password_stdin: PasswordStdinOpt = False,
    config: ConfigOpt = Path("gateway.toml"),
) -> None:
    """A new password and a new TOTP secret; unlocks and re-enables the account."""
    with _accounts(_load(config)) as accounts:
        _show_enrolment(accounts.reset(name, _new_password(password_stdin)))


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="The account.")],
                  config: ConfigOpt = Path("gateway.toml")) -> None:
    """Refuse every login to the account from now on (reset enables it again)."""
    with _accounts(_load(config)) as accounts:
        accounts.disable(name)
    out.print(f"account {name}: disabled", markup=False)


@users_app.command("list")
def users_list(config: ConfigOpt = Path("gateway.toml"), as_json: JsonOpt = False) -> None:
    """Every console account: role, state, failures, last login."""
    from gateway import queries

    cfg = _load(config)
    with _ledger(cfg) as ledger:
        found = queries.accounts(ledger, dt.datetime.now(dt.UTC))

    def when(t: dt.datetime | None) -> str | None:
        return t.astimezone(cfg.gateway.tz).isoformat(timespec="seconds") if t else None

    items = [{"name": a.name, "role": a.role, "state": a.state, "failures": a.failures,
              "locked_until": when(a.locked_until), "last_login": when(a.last_login),
              "created": when(a.created)} for a in found]

    def text() -> None:
        if not items:
            out.print("no console accounts yet (gateway users add NAME --role auditor)")
            return
        table = _table("name", "role", "state", "failures", "last login", "created")
        for i in items:
            table.add_row(i["name"], i["role"], i["state"] + (f" until {i['locked_until']}"
                                                              if i["locked_until"] else ""),
                          str(i["failures"]), i["last_login"] or "never", i["created"])
        out.print(table)

    _render(items, as_json, text)


@app.command()
def report(
    agency: Annotated[str, typer.Option("--agency", help="The agency's code, e.g. AG001.")],
    month: Annotated[str, typer.Option("--month", help="YYYY-MM, in gateway.timezone.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the two files to.")] = Path(),
    config: ConfigOpt = Path("gateway.toml"),
) -> None:
    """A monthly supervision report for one agency (SPEC §14): report.<agency>.<month>.html
    (self-contained, printable) and .json, clear-signed by the gateway. No personal data."""
    from gateway.crypto.service import Crypto
    from gateway.ledger import utcnow
    from gateway.reports.deliver import build
    from gateway.reports.figures import check_month
    from gateway.state import write_private

    cfg = _load(config)
    if agency not in {a.code for a in cfg.agencies}:
        raise UsageError(f"--agency: no agency {agency!r} in the config "
                         f"({', '.join(a.code for a in cfg.agencies)})")
    try:
        check_month(month, today=utcnow().astimezone(cfg.gateway.tz).date())
    except ValueError as exc:
        raise UsageError(f"--month: {exc}") from None
    if not out_dir.is_dir():
        raise UsageError(f"--out: {out_dir} is not a directory")
    # signs as the gateway: run as the gateway's user
    with _ledger(cfg) as ledger, Crypto.start(cfg) as crypto:
        page, signed = build(cfg, ledger, _audit_log(cfg), crypto, agency, month, utcnow())
    for data, ext in ((page, "html"), (signed, "json")):
        path = out_dir / f"report.{agency}.{month}.{ext}"
        write_private(path, data)  # a fresh temporary name, never a planted link's target
        out.print(f"wrote {path}", markup=False)


@app.command()
def access(
    config: ConfigOpt = Path("gateway.toml"),
    agency: Annotated[str | None, typer.Option("--agency", help="Only this agency's files.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="ISO date or date-time (UTC if no offset).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who read which delivered file, from where, whole or not (SPEC §14: internal-sftp's
    log, read by the daemon into the audit log)."""
    from gateway import queries

    cfg = _load(config)
    flt = audit_mod.Filter(agency=agency, since=_parse_since(since) if since else None)
    found = queries.logged_reads(_audit_log(cfg), flt)

    def text() -> None:
        if not found:
            where = "" if cfg.access.sshd_log else " ([access] sshd_log is not set: nothing is read)"
            out.print(f"no read of a delivered file recorded{where}", markup=False)
            return
        table = _table("time", "agency", "role", "file", "login", "address", "bytes", "whole",
                       "alarm")
        for r in found:
            table.add_row(r.at.astimezone(cfg.gateway.tz).strftime("%Y-%m-%d %H:%M:%S"), r.agency,
                          r.role or "", r.file, r.login, r.address or "", f"{r.bytes:,}",
                          "yes" if r.complete else "NO", r.alarm or "")
        out.print(table)

    _render(found, as_json, text)  # each read as an object, in Read's field order


@app.command()
def console(config: ConfigOpt = Path("gateway.toml")) -> None:
    """Serve the security team's console (SPEC §13) on [console] listen, until stopped.
    It reads the ledger and the audit log; it never opens a key or a zone."""
    import uvicorn

    from gateway.console.app import create_app

    cfg = _load(config)
    host, _, port = cfg.console.listen.rpartition(":")
    app = create_app(cfg)  # a ledger that cannot be opened is one line here, before serving
    scheme = "https" if cfg.console.tls_cert else "http"
    err.print(f"console: {scheme}://{cfg.console.listen}/ (ledger {app.state.console.ledger.where})",
              markup=False)
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning", access_log=False,
                server_header=False, proxy_headers=False,
                ssl_certfile=str(cfg.console.tls_cert) if cfg.console.tls_cert else None,
                ssl_keyfile=str(cfg.console.tls_key) if cfg.console.tls_key else None)


@app.command("open")
def open_cmd(
    file: Annotated[Path, typer.Argument(help="The .pgp file received from the gateway.")],
    key: Annotated[Path, typer.Option("--key", help="Your secret key file (mode 0600).")],
    sender: Annotated[Path, typer.Option("--from", help="The gateway's public key file.")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Decrypt a file from the gateway and verify the gateway's signature (for agency staff)."""
    from gateway.crypto.standalone import open_file

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    verified, signer = open_file(file, key=key, sender=sender, out=out_path,
                                 stdout=sys.stdout.buffer, passphrase=passphrase_from_env(passphrase_env))
    uid = signer.user_ids[0] if signer.user_ids else ""
    err.print(f"good signature from {verified.fingerprint} {uid}".rstrip()
              + (f"; wrote {out_path}" if out_path else ""))


@app.command("seal")
def seal_cmd(
    file: Annotated[Path, typer.Argument(help="The plaintext file to upload (e.g. results CSV).")],
    key: Annotated[Path, typer.Option("--key", help="Your secret signing key file (mode 0600).")],
    recipient: Annotated[Path, typer.Option("--to", help="The gateway's public key file.")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Output file (default FILE.pgp).")] = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Sign and encrypt a file for upload to the gateway (for agency staff)."""
    from gateway.crypto.standalone import seal_file

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    target = out_path or file.with_name(file.name + ".pgp")
    me, them = seal_file(file, key=key, recipient=recipient, out=target,
                         passphrase=passphrase_from_env(passphrase_env))
    err.print(f"wrote {target}: signed by {me.fingerprint}, encrypted to {them.fingerprint}")


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    """Secure case-file exchange between a bank and its collection agencies."""
    from gateway.audit import configure_logging

    configure_logging(stream=sys.stderr)  # stdout stays clean for --json; `run` logs to stdout
    if version:
        out.print(f"gateway {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every failure to one readable message and an exit status."""
    os.umask(0o077)  # SPEC §15: nothing the gateway writes is readable by group or others
    try:
        app(args=argv, prog_name="gateway", standalone_mode=True)
    except SystemExit as exc:  # typer/click end every run this way, usage errors included
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CryptoError as exc:  # peers and scripts key on the stable code
        err.print(f"error: {exc.code}: {exc}", markup=False)
        return exc.exit_code
    except GatewayError as exc:
        for line in str(exc).splitlines() or [exc.code]:
            err.print(f"error: {line}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:  # the machine, not the gateway: a full disk, a permission
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"error: {exc.strerror or exc}{where}", markup=False)
        return 1
    except Exception as exc:  # a bug: say so in one line, traceback only on request
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (this is a bug; rerun with "
                  "GATEWAY_DEBUG=1 for the traceback)", markup=False)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
