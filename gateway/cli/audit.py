"""``gateway audit``: verify the tamper-evident log — on the gateway, or on the bank's side
with only the log, the checkpoint copies and the gateway's public key — and read it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway import audit as audit_mod
from gateway.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    SinceOpt,
    audit_log,
    err,
    load,
    new_table,
    out,
    parse_since,
    render,
)
from gateway.errors import UsageError

audit_app = typer.Typer(help="Verify and read the tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    config: ConfigOpt = DEFAULT_CONFIG,
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

    # the bank verifies with no config: a file, its checkpoint copies and the public key
    cfg = load(config) if file is None or (checkpoints is not None and not key) else None
    if file is not None:
        path = file
    else:
        assert cfg is not None  # noqa: S101 — loaded whenever no file is given
        path = audit_log(cfg).path
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
    if key:
        key_files = list(key)
    else:
        assert cfg is not None  # noqa: S101 — loaded whenever checkpoints are checked without --key
        key_files = [cfg.gateway.secret_key, *cfg.gateway.previous_secret_keys]
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
    if report.notice:
        tail = f"; {report.notice}"
    elif report.unsealed:
        tail = f"; {report.unsealed} entries since, to be sealed by the running gateway"
    else:
        tail = ""
    out.print(f"audit log {path}: {report.chain.entries} entries, chain intact, "
              f"{len(report.checkpoints)} signed checkpoints hold ({good}){tail}", markup=False)


@audit_app.command("show")
def audit_show(
    config: ConfigOpt = DEFAULT_CONFIG,
    event: Annotated[str | None, typer.Option("--event", help="Only this event, e.g. "
                                              "security.cross_agency.")] = None,
    agency: Annotated[str | None, typer.Option(
        "--agency", help="Only entries about this agency code.")] = None,
    since: SinceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List audit entries, optionally filtered."""
    log = audit_log(load(config))
    flt = audit_mod.Filter(event=event, agency=agency, since=parse_since(since))
    rows = list(audit_mod.search(log, flt))

    def text() -> None:
        table = new_table("seq", "time (UTC)", "event", "actor", "details")
        for e in rows:
            details = " ".join(f"{k}={v}" for k, v in e.items()
                               if k not in {"seq", "ts", "event", "actor", "prev", "hash"})
            table.add_row(str(e["seq"]), e["ts"][:19], e["event"], e["actor"], details)
        out.print(table)
        out.print(f"{len(rows)} entries")

    render(rows, as_json, text)
