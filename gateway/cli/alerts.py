"""``gateway alerts``: what the daemon's alert engine has open and has cleared, and a test
notice through every channel, so an operator proves the path to the people works."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

import typer

from gateway.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    audit_log,
    load,
    new_table,
    open_ledger,
    out,
    render,
)
from gateway.errors import GatewayError, UsageError

alerts_app = typer.Typer(help="Alerts: list them (the default), or send a test through every "
                              "channel.", invoke_without_command=True)
OpenOpt = Annotated[bool, typer.Option("--open", help="Only the open alerts.")]


@alerts_app.callback()
def alerts_list(ctx: typer.Context, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
                open_only: OpenOpt = False) -> None:
    """Open alerts, then the latest cleared ones: rule, severity, subject, when, and what was
    sent for each by channel (counts, never addresses)."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.alerts.views import alert_views

    cfg = load(config)
    with open_ledger(cfg) as ledger:
        views = alert_views(ledger, open_only=open_only)
    items = [dataclasses.asdict(v) for v in views]

    def when(t: dt.datetime | None) -> str:
        return t.astimezone(cfg.gateway.tz).isoformat(timespec="minutes") if t else "-"

    def text() -> None:
        if not views:
            out.print("no alerts" + ("" if cfg.alerts else " ([alerts] is not configured)"))
            return
        table = new_table("state", "severity", "rule", "subject", "opened", "cleared", "sent")
        for v in views:
            sent = ", ".join(f"{ch} {c.notices}" + (f" ({c.pending} pending: {c.last_error})"
                                                    if c.pending else "")
                             for ch, c in sorted(v.channels.items())) or "-"
            table.add_row(v.state, v.severity, v.rule, v.subject, when(v.opened_at),
                          when(v.cleared_at), sent)
        out.print(table)

    render(items, as_json, text)


@alerts_app.command("test")
def alerts_test(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Send a test alert through every channel now — e-mail to every address listed under
    [alerts.recipients], and each webhook — and say how each went; exit 1 if one failed."""
    from gateway.alerts.delivery import Channels, Notice, reason, send_mail
    from gateway.alerts.rules import key_hash
    from gateway.config.alerts import SEVERITIES, file_problems
    from gateway.state import node_name

    cfg = load(config)
    section = cfg.alerts
    if section is None:
        raise UsageError("[alerts] is not configured in the config file: nothing to test")
    if problems := file_problems(section):
        raise GatewayError("; ".join(problems))
    node = node_name(cfg.gateway.state_dir)
    now = dt.datetime.now(dt.UTC)
    notice = Notice("test", "info", "test", f"test:{node}", node,
                    "a test notice from `gateway alerts test`", now)
    channels = Channels(section, node)
    log = audit_log(cfg)
    results: list[dict[str, Any]] = []
    names = (["email"] if section.smtp else []) + [f"webhook{i}" for i in range(len(channels.hooks))]
    for name in names:
        try:
            if name == "email":
                assert section.smtp is not None  # noqa: S101 — invariant, not an input check
                to = sorted({a for s in SEVERITIES for a in section.recipients.of(s)})
                send_mail(section.smtp, to, notice.title, notice.text(node))
                count = len(to)
            else:
                count = channels.send(name, notice)
        except Exception as exc:  # the relay, a receiver, the network, TLS: said, per channel
            results.append({"channel": name, "ok": False, "error": f"{reason(exc)}: {exc}"[:300]})
            continue
        log.record("alert.sent", rule="test", severity="info", kind="test", channel=name,
                   recipients=count, alert_sha256=key_hash(notice.key))
        results.append({"channel": name, "ok": True, "recipients": count})

    def text() -> None:
        if not results:
            out.print("no channel is configured ([alerts.smtp] or [[alerts.webhooks]])")
        for r in results:
            out.print(f"{r['channel']}: " + (f"sent ({r['recipients']} recipient(s))" if r["ok"]
                                             else f"FAILED: {r['error']}"))

    render(results, as_json, text)
    if not results or not all(r["ok"] for r in results):
        raise typer.Exit(1)
