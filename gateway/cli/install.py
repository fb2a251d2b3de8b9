"""``gateway install``: parse, plan, do (or show) each step, one line each. The steps and
why each is so: :mod:`gateway.install` and docs/install.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import err, load, out

MARKS = {"ok": "ok   ", "todo": "todo ", "done": "done ", "info": "info ", "warn": "warn "}


def install_cmd(
    config: Annotated[Path, typer.Option(
        "--config", "-c", envvar="GATEWAY_CONFIG", help="Path of gateway.toml.",
        show_default=True)] = Path("/etc/gateway/gateway.toml"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print every step and whether it is done; change nothing.")] = False,
    root: Annotated[Path | None, typer.Option(
        "--root", help="Make every file and directory under this directory, as if it were / "
                       "(users and groups are still the host's); runs no systemctl.",
        show_default=False)] = None,
    user: Annotated[str, typer.Option("--user", help="The daemon's system user.")] = "gateway",
    console_user: Annotated[str, typer.Option(
        "--console-user", help="The console's system user.")] = "gateway-console",
    agency_group: Annotated[str, typer.Option(
        "--agency-group", help="Each party's group; {code} is its code, lowercased (the "
                               "bank's is \"bank\").")] = "gw-{code}",
) -> None:
    """Set this host up for the config: users, groups, directories with their owners and
    modes, the sshd chroots, the systemd units. Idempotent: a rerun changes nothing."""
    from gateway import install
    from gateway.errors import UsageError
    from gateway.units import Names

    if "{code}" not in agency_group:
        raise UsageError(f"--agency-group: {agency_group!r} must contain {{code}}, or every "
                         "party would share one group")
    plan = install.plan(load(config), names=Names(user, console_user, agency_group), root=root)
    changed: list[str] = []
    todo = 0
    for mark, text in install.execute(plan, dry_run=dry_run):
        (err if mark == "warn" else out).print(f"{MARKS[mark]} {text}", markup=False)
        todo += mark == "todo"
        if mark == "done":
            changed.append(text)
    if dry_run:
        out.print(f"{todo} step(s) to do; run without --dry-run to do them" if todo
                  else "nothing to do: the host is set up for this config", markup=False)
        return
    out.print(f"{len(changed)} change(s) made" if changed
              else "nothing to do: the host is set up for this config", markup=False)
    if root is None:
        for ran in install.reload_services(changed):
            out.print(f"ran: {ran}", markup=False)
    out.print("next:", markup=False)
    for line in plan.next_steps:
        out.print(f"  {line}", markup=False)
