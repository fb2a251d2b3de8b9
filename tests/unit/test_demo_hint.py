"""The demo's closing hints name a command that works where the demo was started."""

from __future__ import annotations

import sys

from gateway.demo import _gateway_command


def _script(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_gateway_when_path_finds_this_same_executable(tmp_path, monkeypatch):
    script = _script(tmp_path / "bin" / "gateway")
    monkeypatch.setenv("PATH", str(script.parent))
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    assert _gateway_command() == "gateway"
    monkeypatch.setattr(sys, "argv", ["gateway", "demo"])  # as the shell ran it, from PATH
    assert _gateway_command() == "gateway"


def test_the_path_it_was_started_by_when_path_finds_another_or_none(tmp_path, monkeypatch):
    venv = _script(tmp_path / "repo" / ".venv" / "bin" / "gateway")
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setattr(sys, "argv", [".venv/bin/gateway", "demo"])  # what make demo runs
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert _gateway_command() == ".venv/bin/gateway"
    monkeypatch.setenv("PATH", str(_script(tmp_path / "other" / "gateway").parent))
    assert _gateway_command() == ".venv/bin/gateway"
    monkeypatch.setattr(sys, "argv", [str(venv).replace("repo", "my repo"), "demo"])
    assert _gateway_command() == f"'{tmp_path}/my repo/.venv/bin/gateway'"


def test_python_dash_m_names_the_interpreter(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/gateway/__main__.py", "demo"])
    monkeypatch.setattr(sys, "executable", "/opt/py/bin/python3")
    assert _gateway_command() == "/opt/py/bin/python3 -m gateway"
