"""Every command explains itself; errors never show a traceback."""

from __future__ import annotations

import typer.main

from gateway.cli import build, main

app = build()  # the whole command line


def all_commands(group, prefix=()):
    cli = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, cmd in cli.commands.items():
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_command_has_help(capsys):
    names = []
    for path, cmd in all_commands(app):
        names.append(" ".join(path))
        assert (cmd.help or "").strip(), f"{path} has no help text"
        assert main([*path, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "Usage" in shown
        # A flag takes no value and shows none; a list shows its element, as a person reads it
        assert "<bool>" not in shown and "list[" not in shown, (path, shown)
    assert {"init", "check", "keys generate", "keys show", "audit verify", "audit show", "open",
            "seal", "demo"} <= set(names)


def test_usage_error_exit_2_without_traceback(capsys):
    assert main(["keys", "generate"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_command(capsys):
    assert main(["fly"]) == 2


def test_version_prints_the_installed_distributions_version(capsys):
    from importlib.metadata import version

    import gateway

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gateway {gateway.__version__}\n"
    assert gateway.__version__ == version("gateway")  # setuptools-scm's, from the git tag


def test_a_command_line_builds_only_the_command_it_names():
    """`gateway run --once` is the fixed cost of every cron'd pass (issue 27): it does not
    import the other commands' modules nor build their options. A word that names no
    command builds them all, so that click can name the near ones."""
    import typer

    from gateway.cli import GROUPS, command

    everything = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert len(everything) == 20
    for name in ("run", "keys", "sample"):
        assert set(command(name).commands) == {name}  # type: ignore[attr-defined]
    assert set(command("rnu").commands) == everything  # type: ignore[attr-defined]
    assert set(command(None).commands) == everything  # type: ignore[attr-defined]
    assert {name for name, _, _ in GROUPS} < everything


def test_help_before_a_command_lists_every_command(capsys):
    assert main(["--help", "run"]) == 0
    listed = capsys.readouterr().out
    assert "run" in listed and "retention" in listed and "sample" in listed
