"""The operator's commands: set the gateway up, run it, see how it is doing, serve the
console, and the ledger's schema (``gateway db``). :mod:`gateway.cli` names them; each
parses, calls one service function and renders what it returns."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    audit_log,
    err,
    load,
    new_table,
    open_ledger,
    out,
    render,
    terminal_bar,
)
from gateway.errors import GatewayError
from gateway.names import display_name

db_app = typer.Typer(help="The ledger's schema: migrations.", no_args_is_help=True)


def init(
    directory: Annotated[Path | None, typer.Argument(
        help="Directory to write gateway.toml in. Omitted: /etc/gateway, in the production "
             "layout. Given alone: a self-contained trial, everything under it.",
        show_default=False)] = None,
    production: Annotated[bool, typer.Option(
        "--production", help="The production layout in DIR too (implied by any path option "
                             "below).")] = False,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Production layout: the state directory \\[default: /var/lib/gateway].",
        show_default=False)] = None,
    zones_dir: Annotated[Path | None, typer.Option(
        "--zones-dir", help="Production layout: where the local zones go \\[default: "
                            "/srv/gateway/zones].", show_default=False)] = None,
    console_dir: Annotated[Path | None, typer.Option(
        "--console-dir", help="Production layout: the console's own directory \\[default: "
                              "/var/lib/gateway-console].", show_default=False)] = None,
) -> None:
    """Write a commented gateway.toml and the default roles (no secrets); a trial also gets its
    zone folders. In production, `gateway install` makes the directories, users and groups."""
    from gateway import scaffold

    paths = (state_dir, zones_dir, console_dir)
    layout = None
    if directory is None or production or any(p is not None for p in paths):
        d = scaffold.PRODUCTION
        layout = scaffold.Layout(*(p.absolute() if p is not None else default
                                   for p, default in zip(paths, (d.state_dir, d.zones_dir,
                                                                 d.console_dir), strict=True)))
    directory = directory if directory is not None else scaffold.CONFIG_DIR
    path = scaffold.init_project(directory, layout=layout)
    out.print(f"wrote {path} with roles supervisor, collector, field_visitor, analyst")
    if layout is not None:
        out.print(f"layout: state {layout.state_dir}, zones {layout.zones_dir}, console "
                  f"{layout.console_dir} (made by `gateway install`)", markup=False)
    out.print("key files it expects (for a trial, generate them; in production the bank and "
              "agencies send you their public keys):")
    for name in scaffold.key_names(scaffold.DEFAULT_AGENCIES):
        out.print(f"  gateway keys generate {name} --email {name}@example.com --out "
                  f"{directory / 'keys'}", markup=False)
    if layout is not None:
        out.print(f"then: gateway install -c {path} --dry-run, and gateway install -c {path}",
                  markup=False)
    out.print(f"then: gateway check -c {path}", markup=False)


def check(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Validate the config, every key (algorithm, expiry, revocation, permissions) and the zones."""
    from gateway.checks import run_checks

    findings = run_checks(load(config))
    marks = {"ok": "ok   ", "warn": "warn ", "error": "error", "info": "info "}
    for f in findings:
        (err if f.level in ("warn", "error") else out).print(f"{marks[f.level]} {f.text}")
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


def demo(directory: Annotated[Path, typer.Option("--dir", help="Where to build the demo.")] = Path(
        "demo-run")) -> None:
    """Build a complete trial setup (keys, config, zones) and exercise it end to end."""
    from gateway.demo import run_demo

    run_demo(directory, out)


def run_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    once: Annotated[bool, typer.Option("--once", help="Process everything pending, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between SFTP polls.")] = 5.0,
    rescan: Annotated[float, typer.Option(
        "--rescan", help="Seconds between full rescans of watched local zones.")] = 30.0,
) -> None:
    """Run the gateway (foreground; SIGTERM stops cleanly). Exit 0 unless the gateway itself failed."""
    from gateway import heap

    heap.bound()  # before the engine's libraries load
    with heap.loading():
        from gateway import daemon
        from gateway.audit import configure_logging
        from gateway.flows import Interrupted

    cfg = load(config)
    bar = terminal_bar(once)
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
            done = daemon.run_settled(ctx)
        except Interrupted:
            err.print("stopped: the file in hand was rolled back and will be resumed")
            return
        finally:
            ctx.run.progress.close()
        summary = ", ".join(f"{n} {k}" for k, n in sorted(done.outcomes.items()))
        for zone, name, at in done.left:  # still being written: say so, never "nothing"
            err.print(f"left in {zone}: {display_name(name)!r} is still being written; it is "
                      f"taken once unchanged for its settle_seconds (about "
                      f"{dt.datetime.fromtimestamp(at, dt.UTC):%H:%M:%S} UTC)", markup=False)
        if done.failures:  # one line: what failed, and what was done all the same
            raise GatewayError("; ".join(done.failures) + (f" (done: {summary})" if summary else ""))
        idle = "nothing ready yet" if done.left else "nothing pending"
        err.print(f"done: {summary or idle}")


def status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Each zone's last successful scan, files waiting and last error, each audit log
    forwarding destination, and each agency's acknowledgements and deletion attestation
    (agencies with acknowledge_within_days); exit 1 if a zone or destination is failing or
    an attestation is missing (overdue acknowledgements are a warning line only)."""
    from gateway import queries
    from gateway.ledger import utcnow
    from gateway.state import node_name
    from gateway.unmask import register as unmask_register

    cfg = load(config)
    with open_ledger(cfg) as ledger:
        zones, in_hand = queries.zone_health(cfg, ledger)
        forwards = queries.forward_health(cfg, ledger, node_name(cfg.gateway.state_dir),
                                          audit_log(cfg))
        evidence = queries.evidence_health(queries.agency_evidence(cfg, ledger, utcnow()))
        waiting = unmask_register.pending(ledger, utcnow())

    def text() -> None:
        table = new_table("zone", "location", "state", "last scan (UTC)", "waiting", "refused",
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
        if forwards:
            table = new_table("forward", "kind", "target", "state", "delivered seq", "backlog",
                              "last error")
            for fw in forwards:
                table.add_row(fw.destination, fw.kind, fw.location, fw.state,
                              str(fw.delivered_seq), str(fw.backlog), fw.last_error or "")
            out.print(table)
        for ev in evidence:
            e = ev.evidence
            if e.expected:
                out.print(f"{e.agency} acknowledgements: {e.acknowledgements_text}", markup=False)
            out.print(f"{e.agency} deletion attestation: {e.attestation_text}", markup=False)
        if waiting:
            first = min(w.decide_by for w in waiting)
            out.print(f"unmask: {len(waiting)} request(s) wait for approvers (the first to "
                      f"decide by {first:%Y-%m-%d %H:%M} UTC; gateway unmask list)", markup=False)

    rows: list[queries.ZoneHealth | queries.ForwardHealth | queries.EvidenceHealth] = [
        *zones, *forwards, *evidence]
    render(rows, as_json, text)
    if any(r.state == "failing" for r in rows):
        raise typer.Exit(1)


def console(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Serve the security team's console on the address in console.listen, until stopped.
    It reads the ledger and the audit log; it never opens a key or a zone."""
    import uvicorn

    from gateway.console.app import create_app

    cfg = load(config)
    host, _, port = cfg.console.listen.rpartition(":")
    app = create_app(cfg)  # a ledger that cannot be opened is one line here, before serving
    scheme = "https" if cfg.console.tls_cert else "http"
    err.print(f"console: {scheme}://{cfg.console.listen}/ (ledger {app.state.console.ledger.where})",
              markup=False)
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning", access_log=False,
                server_header=False, proxy_headers=False,
                ssl_certfile=str(cfg.console.tls_cert) if cfg.console.tls_cert else None,
                ssl_keyfile=str(cfg.console.tls_key) if cfg.console.tls_key else None)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Bring the ledger's schema to this gateway's head revision (run does this at start)."""
    from gateway.ledger import migrate

    with open_ledger(load(config)) as ledger:  # opening upgrades, under the migration lock
        out.print(f"ledger {ledger.where}: at revision {migrate.head()} (head)", markup=False)


@db_app.command("current")
def db_current(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Show the ledger's schema revision; exit 1 if it is not this gateway's head."""
    from gateway.ledger import migrate

    rev, where = migrate.revision_of(load(config).gateway.db_url)
    if rev is None:
        err.print(f"ledger {where}: no schema yet; run `gateway db upgrade` (`gateway run` "
                  "does it at start)", markup=False)
        raise typer.Exit(1)
    if rev != migrate.head():
        err.print(f"ledger {where}: revision {rev}; this gateway's head is {migrate.head()}: run "
                  "`gateway db upgrade`", markup=False)
        raise typer.Exit(1)
    out.print(f"ledger {where}: revision {rev} (head)", markup=False)
