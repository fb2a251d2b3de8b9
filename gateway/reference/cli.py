"""docs/cli.md (and docs/agency-cli.md): the command tree Typer builds for ``gateway``
(``gateway-agency``), as ``--help`` prints it."""

from __future__ import annotations

import datetime as dt
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import typer.main
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from gateway.reference.config import GENERATED, _bare
from gateway.reference.text import _code, _escape, _page, _strip_markup, _table

_Command = TyperGroup | TyperCommand


def _help(text: str | None) -> list[str]:
    """A help text as Markdown paragraphs, as the author wrote it: click's form feed ends
    what is shown, its ``\\b`` markers and rich's style tags are no part of the text."""
    text = inspect.cleandoc(text or "").split("\f")[0]
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for p in paragraphs:
        lines = [ln.strip() for ln in p.splitlines() if ln.strip() != "\b"]
        out.append(_escape(_strip_markup(" ".join(lines))))
    return out


def _summary(cmd: _Command) -> str:
    paragraphs = _help(cmd.help)
    return paragraphs[0] if paragraphs else ""


def _children(group: TyperGroup, ctx: typer.Context) -> Iterator[tuple[str, _Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, TyperGroup | TyperCommand) and not cmd.hidden:
            yield name, cmd


def _param_type(param: TyperOption | TyperArgument, ctx: typer.Context) -> str:
    if isinstance(param, TyperOption) and param.is_flag:
        return "flag"
    desc = param.type_descriptor
    if desc.is_choice:
        return "one of " + ", ".join(_code(str(getattr(c, "value", c))) for c in desc.choices or ())
    annotation = _bare(desc.annotation)
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    names: dict[Any, str] = {str: "text", int: "integer", float: "number", Path: "path",
                             bool: "boolean", dt.datetime: "date-time"}
    name = names.get(annotation) or param.display_type(ctx).strip("<>")
    return name + (", repeatable" if param.multiple else "")


def _param_default(param: TyperOption | TyperArgument) -> str:
    if param.required:
        return "—"
    value = param.default
    if value is None or (isinstance(param, TyperOption) and param.is_flag and value is False):
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_code(str(v)) for v in value) if value else "—"
    return _code(str(getattr(value, "value", value)))


def _param_help(param: TyperOption | TyperArgument) -> str:
    text = " ".join(_help(param.help))
    envvar = param.envvar
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        text += " Environment variable: " + ", ".join(_code(n) for n in names) + "."
    return text.strip()


def _params(cmd: _Command, ctx: typer.Context) -> list[str]:
    arguments: list[list[str]] = []
    options: list[list[str]] = []
    for param in cmd.params:
        if isinstance(param, TyperArgument):
            arguments.append([_code(param.name or ""), _param_type(param, ctx),
                              "yes" if param.required else "no", _param_default(param),
                              _param_help(param)])
        elif isinstance(param, TyperOption) and not param.hidden:
            opts = [*param.opts, *param.secondary_opts]
            if param.metavar:  # the value's name as --help shows it: on the first spelling
                opts[0] += f" {param.metavar}"
            names = ", ".join(_code(o) for o in opts)
            options.append([names, _param_type(param, ctx), "yes" if param.required else "no",
                            _param_default(param), _param_help(param)])
    lines: list[str] = []
    if arguments:
        lines += ["Arguments:", "",
                  *_table(("Argument", "Type", "Required", "Default", "Meaning"), arguments), ""]
    if options:
        lines += ["Options:", "",
                  *_table(("Option", "Type", "Required", "Default", "Meaning"), options), ""]
    return lines


def _command(cmd: _Command, ctx: typer.Context, level: int) -> list[str]:
    usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
    lines = ["#" * level + " " + _code(ctx.command_path), ""]
    for paragraph in _help(cmd.help):
        lines += [paragraph, ""]
    lines += ["```", usage, "```", "", *_params(cmd, ctx)]
    if isinstance(cmd, TyperGroup):
        rows = []
        for name, sub in _children(cmd, ctx):
            path = f"{ctx.command_path} {name}"
            rows.append([f"[{_code(path)}](#{_anchor(path)})", _summary(sub)])
        lines += ["Commands:", "", *_table(("Command", "What it does"), rows), ""]
        for name, sub in _children(cmd, ctx):
            lines += _command(sub, typer.Context(sub, info_name=name, parent=ctx), level + 1)
    return lines


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading that is one code span."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def cli_markdown() -> str:
    """docs/cli.md: the commands in the order ``gateway --help`` lists them, read from the
    same command objects ``--help`` renders, so the page cannot promise an option the
    command does not take."""
    return command_page(
        _app(), "gateway", title="Command-line reference: gateway",
        source="the command definitions in gateway/cli/",
        intro=["Every command and group also takes `--help`. Exit status: 0 success, 1 failure, "
               "2 usage or configuration error; a failure is reported as one line per problem on "
               "standard error, never as a traceback."])


def command_page(app: typer.Typer, prog: str, *, title: str, source: str,
                 intro: list[str]) -> str:
    """A command-line reference page for the Typer application *app*, run as *prog*."""
    root = typer.main.get_command(app)
    if not isinstance(root, TyperGroup):
        raise TypeError(f"{prog}'s command line is expected to be a group of commands")
    ctx = typer.Context(root, info_name=prog)
    overview: list[list[str]] = []

    def index(group: TyperGroup, gctx: typer.Context) -> None:
        for name, sub in _children(group, gctx):
            sctx = typer.Context(sub, info_name=name, parent=gctx)
            overview.append([f"[{_code(sctx.command_path)}](#{_anchor(sctx.command_path)})",
                             _summary(sub)])
            if isinstance(sub, TyperGroup):
                index(sub, sctx)

    index(root, ctx)
    usage = " ".join([ctx.command_path, *root.collect_usage_pieces(ctx)])
    lines = [f"# {title}", "", GENERATED.format(source=source), ""]
    for paragraph in intro:
        lines += [paragraph, ""]
    lines += ["## Commands", "", *_table(("Command", "What it does"), overview), "",
              f"## {_code(prog)}", ""]
    for paragraph in _help(root.help):
        lines += [paragraph, ""]
    lines += ["```", usage, "```", "", *_params(root, ctx)]
    for name, sub in _children(root, ctx):
        lines += _command(sub, typer.Context(sub, info_name=name, parent=ctx), 2)
    return _page(lines)


def _app() -> typer.Typer:
    from gateway.cli import build

    return build()
