"""Every command explains itself; errors never show a traceback."""

from __future__ import annotations

import typer.main

from gateway.cli import app, main


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
