"""The subprocess allow-list's own tests (issue 29; the allow-list is tests/exec_audit.py,
checked over the whole session by tests/conftest.py).

The threat: gateway code that starts a program other than GnuPG, through a shell, as one
string, or with a file name where gpg reads options (Accellion FTA's OS command execution;
a file called ``--output=/etc/cron.d/x`` given to gpg before ``--``). These tests show the
hook records what gateway code starts — in this process and in a child that runs a gateway
command — and that each kind of breach is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import exec_audit

ROOT = Path(__file__).resolve().parents[2]


def record(argv: list[str], **kw) -> dict:
    return {"program": argv[0], "argv": argv, "given": "list", "shell": False,
            "pathlike": [i for i, a in enumerate(argv[1:], 1) if "/" in a],
            "caller": "gateway.crypto._gpg:129", **kw}


def test_gpg_as_an_argument_list_with_files_after_the_double_dash_is_allowed():
    assert exec_audit.problems(record(
        ["/usr/bin/gpg", "--homedir", "/tmp/h", "--batch", "--import", "--", "/k/a.asc"])) == []
    assert exec_audit.problems(record(["/usr/bin/gpgconf", "--homedir", "/tmp/h", "--kill",
                                       "gpg-agent"])) == []


@pytest.mark.parametrize(("rec", "words"), [
    (record(["/usr/bin/gpg", "--import", "/k/a.asc"]), "before '--'"),
    (record(["/usr/bin/gpg", "--import", "/k/a.asc", "--", "/k/b.asc"]), "'/k/a.asc' is a file"),
    (record(["/bin/sh", "-c", "gpg --import x"], shell=True), "through a shell"),
    (record(["gpg --import x"], given="string"), "one string"),
    (record(["/usr/bin/curl", "https://example.org"]), "not on the allow-list"),
    (record(["/usr/bin/gpg", "--version"], caller="gateway.console.app:12"), "may not start gpg"),
    (record(["/usr/sbin/useradd", "x"], caller="gateway.cli.users:3"), "may not start useradd"),
])
def test_each_breach_of_the_allow_list_is_reported(rec, words):
    assert any(words in p for p in exec_audit.problems(rec)), exec_audit.problems(rec)


def child(tmp_path: Path, code: str) -> list[dict]:
    """Run *code* in a Python child hooked as the session's children are; its records."""
    log = tmp_path / "log"
    log.mkdir()
    env = {**os.environ, exec_audit.ENV: str(log),
           "PYTHONPATH": os.pathsep.join([str(exec_audit.HOOK_DIR), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return exec_audit.read(log)


def test_a_child_records_what_gateway_code_starts_and_not_what_others_do(tmp_path):
    """The install module's runner (gateway code) starting ``true`` with a path: recorded
    and refused; the child's own ``subprocess.run`` (not gateway code): not recorded."""
    (tmp_path / "afile").write_text("")
    records = child(tmp_path, "import subprocess, gateway.install as i\n"
                              "subprocess.run(['true', 'afile'])\n"
                              "i._run(['true', 'afile'])\n")
    assert [r["argv"] for r in records] == [["true", "afile"]]
    (rec,) = records
    assert rec["caller"].startswith("gateway.install:") and rec["pathlike"] == [1]
    found = exec_audit.problems(rec)
    assert any("not on the allow-list" in p for p in found)
    assert any("'afile' is a file argument" in p for p in found)


def test_a_gateway_commands_process_records_everything_it_starts(tmp_path):
    """In a process that runs a gateway command (argv[0] ``gateway``, as tests/prodsite.py
    boots one), any program started is recorded: here a shell, given one string."""
    records = child(tmp_path, "import sys, subprocess; sys.argv[0] = 'gateway'\n"
                              "subprocess.run('true', shell=True)\n")
    (rec,) = records
    assert rec["entry"] and rec["shell"] and rec["given"] == "string"
    found = exec_audit.problems(rec)
    assert any("through a shell" in p for p in found) and any("one string" in p for p in found)


def test_this_session_is_hooked_and_records_gpg_started_by_gateway_code():
    """The pytest process records too, and its children are told where (the environment)."""
    from gateway.crypto import _gpg

    folder = Path(os.environ[exec_audit.ENV])
    assert getattr(sys, "_gateway_exec_audit", None) == str(folder)
    assert str(exec_audit.HOOK_DIR) in os.environ["PYTHONPATH"].split(os.pathsep)
    with _gpg.scratch_home() as home:
        _gpg.run(home, ["--version"])
    mine = folder / f"{os.getpid()}.jsonl"
    lines = [json.loads(x) for x in mine.read_text().splitlines()]
    assert any(r["caller"].startswith("gateway.crypto._gpg:") and "--version" in r["argv"]
               for r in lines)
