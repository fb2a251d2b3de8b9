"""The subprocess allow-list (issue 29): what gateway code may start, checked over every
program the test session saw it start (tests/_audithook/sitecustomize.py records them, in
this process and in every Python child of the tests).

The threat: a code path that turns a file's name, a partner's input or a configuration
value into a command (Accellion FTA's OS command execution, Cleo's folder of executed
files, SFTPGo's event-manager commands). The gateway starts GnuPG only, as an argument
list — never through a shell, never as one string — with ``--`` before any file argument,
so a file named ``--output=…`` or ``-e`` is a file, not an option; ``gateway install``
(root, on the host) also runs the system's account tools, and only from its own module.

The session fails (tests/conftest.py, at its end) on any record :func:`problems` objects to.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent / "_audithook"
sys.path.insert(0, str(HOOK_DIR))
try:
    import sitecustomize as hook  # the hook's own module (also what children import)
finally:
    sys.path.remove(str(HOOK_DIR))

ENV = hook.ENV

# program (basename) -> gateway modules that may start it
ALLOWED: dict[str, tuple[str, ...]] = {
    "gpg": ("gateway.crypto._gpg", "gateway.crypto.engine"),
    "gpgconf": ("gateway.crypto._gpg",),
    "gpg-agent": ("gateway.crypto._gpg",),  # gpg starts it itself today; named for the list
    # `gateway install` makes the service's users and groups (tests/prodsite.py runs it)
    "useradd": ("gateway.install",),
    "groupadd": ("gateway.install",),
    "usermod": ("gateway.install",),
}
# The keyed token rule's worker (gateway/token_worker.py, issue: the batch flow's Python
# work off the one interpreter lock): this same Python, isolated (-I -S), its program a
# constant given by -c, case data and keys by pipe only; it exits at the end of its stdin.
# Allowed from that module only, and only so started — not from a gateway process at large.
PYTHON_WORKER = {"python", "python3", f"python3.{sys.version_info.minor}",
                 os.path.basename(sys.executable)}
for _name in PYTHON_WORKER:
    ALLOWED[_name] = ("gateway.token_worker",)
# options whose next argument is a path the program takes as the option's value (so it may
# come before "--"): gpg's home directory; useradd's home and shell
PATH_OPTIONS: dict[str, frozenset[str]] = {
    "gpg": frozenset({"--homedir"}),
    "gpgconf": frozenset({"--homedir"}),
    "useradd": frozenset({"--home-dir", "--shell"}),
}


def problems(record: dict) -> list[str]:
    """What is wrong with one recorded program start (empty: it is allowed)."""
    found: list[str] = []
    program = os.path.basename(record["program"])
    argv = record["argv"]
    where = record.get("caller") or f"process {record.get('main', '?')}"
    said = f"{where}: {' '.join(argv)!r}"
    if record.get("shell"):
        found.append(f"{said}: through a shell (shell=True / os.system)")
    if record.get("given") == "string":
        found.append(f"{said}: the command as one string, not an argument list")
    module = (record.get("caller") or "").partition(":")[0]
    if program not in ALLOWED:
        found.append(f"{said}: {program} is not on the allow-list ({', '.join(sorted(ALLOWED))})")
    elif module and module not in ALLOWED[program]:
        found.append(f"{said}: {module} may not start {program} ({', '.join(ALLOWED[program])} may)")
    if program in PYTHON_WORKER and (module != "gateway.token_worker" or argv[1:4] != ["-I", "-S", "-c"]):
        found.append(f"{said}: Python may be started only as gateway.token_worker's isolated child")
    end = argv.index("--") if "--" in argv else len(argv)
    for i in record.get("pathlike", []):
        if i < end and argv[i - 1] not in PATH_OPTIONS.get(program, frozenset()):
            found.append(f"{said}: {argv[i]!r} is a file argument before '--' (or without one)")
    return found


def read(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]


def start() -> Path | None:
    """Make the log directory, hook this process, and make every child hook itself. None in
    a session run by another's child: its records go to the parent's directory, which the
    parent checks."""
    if getattr(sys, "_gateway_exec_audit", None):
        return None
    folder = Path(tempfile.mkdtemp(prefix="gwexec", dir="/tmp"))
    folder.chmod(0o1777)  # children that run as another user (prodsite's setpriv) write here
    os.environ[ENV] = str(folder)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HOOK_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    hook.install(str(folder))
    return folder


def finish(folder: Path) -> tuple[list[dict], list[str]]:
    """Every record and every problem; the directory is removed."""
    records = read(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return records, [p for r in records for p in problems(r)]
