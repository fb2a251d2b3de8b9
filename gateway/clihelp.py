"""Typer's help made readable, for both command lines (``gateway``, ``gateway-agency``).

Typer 0.29 prints a type after every option, flags included (``--json <bool>``) and lists
as Python spells them (``--key <list[Path]>``). A flag takes no value, so it gets none; a
repeatable option shows its element (``--key <path>...``); ``--help`` shows no value
either. Kept apart from :mod:`gateway.cli` so the agency kit, which imports nothing of the
gateway's side, uses the same words.
"""

from __future__ import annotations

import re

from typer import _click as click  # Typer's own click: its commands are these types
from typer.core import TyperGroup, TyperOption


def tidy(cmd: click.Command, ctx: click.Context) -> None:
    for param in cmd.params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.multiple:
            label = param.display_type(ctx)
            inner = re.fullmatch(r"<list\[(\w+)\]>", label)
            param.metavar = f"<{inner.group(1).lower()}>..." if inner else f"{label}..."
    plain_help = cmd.get_help_option

    def help_option(ctx: click.Context) -> click.Parameter | None:
        option = plain_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    setattr(cmd, "get_help_option", help_option)  # noqa: B010 — an instance's own, not the class's
    if isinstance(cmd, TyperGroup):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                tidy(sub, ctx)
