"""The commands that answer for what the gateway did and still holds — batches, reads of
delivered files, the monthly report, retention — for the bank's questions and an audit.
What they show comes from :mod:`gateway.queries` and :mod:`gateway.retention`; here it is
only asked for and printed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway import audit as audit_mod
from gateway.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    SinceOpt,
    audit_log,
    load,
    new_table,
    open_ledger,
    out,
    parse_since,
    render,
    terminal_bar,
)
from gateway.errors import GatewayError, UsageError

if TYPE_CHECKING:
    from gateway import queries

retention_app = typer.Typer(help="Contract ends, purges and deletion certificates.",
                            no_args_is_help=True)


def batches(
    batch: Annotated[str | None, typer.Argument(help="A batch id for its details.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", help="How many files to list.")] = 50,
) -> None:
    """Processing history of bank case files, or one batch in detail."""
    from gateway import queries

    with open_ledger(load(config)) as ledger:
        files = queries.case_files(ledger, limit) if batch is None else []
        detail = None if batch is None else queries.batch_detail(ledger, batch)
    if batch is None:
        render(files, as_json, lambda: _print_case_files(files))
    elif detail is None:
        raise GatewayError(f"no accepted batch {batch!r} (see 'gateway batches')")
    else:
        shown = detail
        render(shown, as_json, lambda: _print_batch(shown))


def _print_case_files(files: list[queries.CaseFile]) -> None:
    table = new_table("received", "file", "batch", "status", "records", "accepted", "rejected",
                      "error")
    for f in files:
        table.add_row(f.received_at.isoformat()[:19], f.file, f.batch_id or "", f.status,
                      str(f.records), str(f.accepted), str(f.rejected), f.error_code or "")
    out.print(table)


def _print_batch(b: queries.BatchDetail) -> None:
    out.print(f"batch {b.batch_id}: {b.status}, {b.accepted}/{b.records} records accepted "
              f"({b.rejected} rejected)")
    out.print(f"  file {b.file} sha256 {b.sha256}, signed by {b.signer}")
    table = new_table("delivered", "file", "agency", "role", "records")
    for d in b.deliveries:
        table.add_row(d.delivered_at.isoformat()[:19] if d.delivered_at else "pending", d.name,
                      d.agency, d.role or "(manifest)", str(d.records))
    out.print(table)
    for r in b.receipts:
        out.print(f"  receipt {r.name or '(pending)'}: {r.status}")


def report(
    agency: Annotated[str, typer.Option("--agency", help="The agency's code, e.g. AG001.")],
    month: Annotated[str, typer.Option("--month", help="YYYY-MM, in gateway.timezone.")],
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Directory to write the two files to; made (mode 0700) if missing.")] = Path(),
    force: Annotated[bool, typer.Option(
        "--force", help="Replace report files already in --out.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """A monthly supervision report for one agency: report.<agency>.<month>.html
    (self-contained, printable) and .json, clear-signed by the gateway. No personal data.
    Only a month that has ended: the console shows the current one as it stands."""
    from gateway.crypto.service import Crypto
    from gateway.ledger import utcnow
    from gateway.reports.deliver import Sources, build
    from gateway.reports.figures import check_month
    from gateway.state import write_private

    cfg = load(config)
    if agency not in {a.code for a in cfg.agencies}:
        raise UsageError(f"--agency: no agency {agency!r} in the config "
                         f"({', '.join(a.code for a in cfg.agencies)})")
    try:
        check_month(month, today=utcnow().astimezone(cfg.gateway.tz).date(), ended=True)
    except ValueError as exc:
        raise UsageError(f"--month: {exc}") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out: {out_dir} is not a directory")
    paths = [out_dir / f"report.{agency}.{month}.{ext}" for ext in ("html", "json")]
    # A report already made may be the one filed with the bank: replaced only when asked.
    # lexists: a link planted under the name counts too.
    if not force and (there := next((p for p in paths if os.path.lexists(p)), None)):
        raise UsageError(f"--out: {there} already exists; --force replaces it")
    # signs as the gateway: run as the gateway's user
    with open_ledger(cfg) as ledger, Crypto.start(cfg) as crypto:
        page, signed = build(Sources(cfg, ledger, audit_log(cfg), crypto), agency, month, utcnow())
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # reports are the bank's business
    for data, path in zip((page, signed), paths, strict=True):
        write_private(path, data)  # a fresh temporary name, never a planted link's target
        out.print(f"wrote {path}", markup=False)


def access(
    config: ConfigOpt = DEFAULT_CONFIG,
    agency: Annotated[str | None, typer.Option("--agency", help="Only this agency's files.")] = None,
    since: SinceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who read which delivered file, from where, whole or not (internal-sftp's
    log, read by the daemon into the audit log)."""
    from gateway import queries

    cfg = load(config)
    found = queries.logged_reads(audit_log(cfg),
                                 audit_mod.Filter(agency=agency, since=parse_since(since)))

    def text() -> None:
        if not found:
            where = "" if cfg.access.sshd_log else " ([access] sshd_log is not set: nothing is read)"
            out.print(f"no read of a delivered file recorded{where}", markup=False)
            return
        table = new_table("time", "agency", "role", "file", "login", "address", "bytes", "whole",
                          "alarm")
        for r in found:
            table.add_row(r.at.astimezone(cfg.gateway.tz).strftime("%Y-%m-%d %H:%M:%S"), r.agency,
                          r.role or "", r.file, r.login, r.address or "", f"{r.bytes:,}",
                          "yes" if r.complete else "NO", r.alarm or "")
        out.print(table)

    render(found, as_json, text)  # each read as an object, in Read's field order


@retention_app.command("status")
def retention_status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Each contract: state, effective end, deadline, days left, what is still held, certificate."""
    from gateway import daemon
    from gateway.retention import purge

    with daemon.read_context(load(config)) as ctx:
        holdings = purge.status(ctx)
    rows: list[dict[str, Any]] = [{"contract_id": h.decision.contract_id, "agency": h.decision.agency,
             "state": h.decision.state.value, "effective_end": h.decision.effective_end.isoformat(),
             "deadline": h.decision.deadline.isoformat(), "days_left": h.decision.days_left,
             "files": h.files, "bytes": h.bytes, "cases": h.cases, "certificate": h.certificate,
             "late": h.decision.late} for h in holdings]

    def text() -> None:
        table = new_table("contract", "agency", "state", "effective end", "deadline", "days left",
                          "files", "bytes", "cases", "certificate")
        for r in rows:
            table.add_row(r["contract_id"], r["agency"], r["state"] + (" (late)" if r["late"] else ""),
                          r["effective_end"], r["deadline"], str(r["days_left"]), str(r["files"]),
                          f"{r['bytes']:,}", str(r["cases"]), r["certificate"] or "")
        out.print(table)

    render(rows, as_json, text)


@retention_app.command("run")
def retention_run(
    config: ConfigOpt = DEFAULT_CONFIG,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; "
                                          "delete nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Purge every contract whose deadline has come, with a signed deletion certificate."""
    from gateway import daemon
    from gateway.retention import purge

    cfg = load(config)
    handed_to = None
    if dry_run:
        with daemon.read_context(cfg) as ctx:
            reports = purge.preview(ctx)
    else:
        bar = terminal_bar(not as_json)
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
    data: list[dict[str, Any]] = [{"contract_id": r.decision.contract_id, "agency": r.decision.agency,
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

    render(data, as_json, text)
