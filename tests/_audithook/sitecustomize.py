"""The test suite's record of every program gateway code starts (issue 29).

Python imports ``sitecustomize`` at start-up from the path, and the test session puts this
directory first on ``PYTHONPATH`` (tests/exec_audit.py), so every Python child of the
tests — ``python -m gateway …``, the daemon, the console, the agency kit, ``setpriv … python
-c`` as another user — runs :func:`install` before anything else; the pytest process runs
it itself. With ``GATEWAY_TEST_EXEC_LOG`` naming a directory, an audit hook
(:func:`sys.addaudithook`) appends one JSON line per program started to
``<dir>/<pid>.jsonl``; without it, nothing is installed.

Recorded: what a gateway entry point's process starts (its ``__main__`` is a ``gateway``
module or script), and in any other process what is started with gateway code on the call
stack (so the tests' own sshd, PostgreSQL, chromium and GnuPG parties are not gateway's).
Stdlib only, and the hook returns at once for every other audit event (one set lookup):
its cost is nil beside the gpg it watches.
"""

from __future__ import annotations

import json
import os
import sys

ENV = "GATEWAY_TEST_EXEC_LOG"
EVENTS = frozenset({"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"})


def _gateway_dir() -> str | None:
    module = sys.modules.get("gateway")
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.realpath(path)) if path else None


_UNDER: dict[tuple[str, str], bool] = {}  # (code file, gateway dir) -> inside


def _under(path: str, folder: str) -> bool:
    """Whether the file *path* lies in *folder*, by path components (not a string prefix)."""
    key = (path, folder)
    if key not in _UNDER:
        try:
            _UNDER[key] = os.path.commonpath([os.path.realpath(path), folder]) == folder
        except ValueError:
            _UNDER[key] = False
    return _UNDER[key]


def _gateway_entry() -> bool:
    """Whether this process runs a gateway command (``python -m gateway…``, the
    ``gateway``/``gateway-agency`` scripts, or as_user's ``-c`` boot with argv[0] 'gateway')."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and (spec.name == "gateway" or spec.name.startswith("gateway.")):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("gateway", "gateway-agency")


def _caller(frame, folder: str | None) -> str | None:
    """The innermost gateway frame on the stack as ``module:line``, or None."""
    while frame is not None:
        if folder is not None and _under(frame.f_code.co_filename, folder):
            return f"{frame.f_globals.get('__name__', '?')}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _as_given(frame) -> str:
    """How the program was named to subprocess: "list", or "string" (``Popen("gpg …")``)
    — Popen turns a string into a one-item list before its audit event, so the original
    argument is read from Popen.__init__'s frame."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__init__" and os.path.basename(code.co_filename) == "subprocess.py":
            args = frame.f_locals.get("args")
            return "string" if isinstance(args, str | bytes | os.PathLike) else "list"
        frame = frame.f_back
    return "list"


def _record(event: str, args: tuple) -> dict | None:
    frame = sys._getframe(2)
    shell = False
    given = "list"
    cwd = None
    if event == "subprocess.Popen":
        executable, argv, cwd, _env = args
        given = _as_given(frame)
    elif event == "os.system":
        executable, argv, shell, given = "/bin/sh", ["/bin/sh", "-c", args[0]], True, "string"
    elif event == "os.spawn":
        _mode, executable, argv, _env = args
    else:  # os.exec, os.posix_spawn: (path, argv, env)
        executable, argv = args[0], args[1]
    argv = [os.fsdecode(a) for a in argv] if isinstance(argv, list | tuple) else [os.fsdecode(argv)]
    if event == "subprocess.Popen" and len(argv) >= 2 and argv[1] == "-c" and \
            os.path.basename(argv[0]) in ("sh", "bash", "dash"):
        shell = True  # shell=True: Popen ran [/bin/sh, -c, command]
    entry = _gateway_entry()
    caller = _caller(frame, _gateway_dir())
    if not entry and caller is None:
        return None
    cwd = os.fsdecode(cwd) if cwd is not None else os.getcwd()
    # arguments that name something on disk or look like a path, with their index, to
    # check they follow "--" (an option a program takes a path for is allowed by the check)
    pathlike = [i for i, a in enumerate(argv[1:], 1)
                if a and ("/" in a or os.path.lexists(os.path.join(cwd, a)))]
    return {"pid": os.getpid(), "event": event,
            "program": os.fsdecode(executable) if executable is not None else argv[0],
            "argv": argv, "given": given, "shell": shell, "pathlike": pathlike,
            "caller": caller, "entry": entry, "main": " ".join(sys.argv[:2])}


def install(folder: str | None = None) -> bool:
    """Install the hook writing to *folder* (default: ``$GATEWAY_TEST_EXEC_LOG``); once."""
    folder = folder or os.environ.get(ENV)
    if not folder or getattr(sys, "_gateway_exec_audit", None):
        return False
    sys._gateway_exec_audit = folder  # type: ignore[attr-defined]

    def hook(event: str, args: tuple) -> None:
        # nothing below raises one of EVENTS again (os.open raises "open"): no recursion
        if event not in EVENTS:
            return
        try:
            line = _record(event, args)
            if line is not None:
                path = os.path.join(folder, f"{os.getpid()}.jsonl")
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    os.write(fd, (json.dumps(line) + "\n").encode())
                finally:
                    os.close(fd)
        except OSError as exc:  # the program runs; the session says a record was lost
            print(f"exec audit: cannot record {event}: {exc}", file=sys.stderr)

    sys.addaudithook(hook)
    return True


install()
