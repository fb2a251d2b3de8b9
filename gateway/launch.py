"""The ``gateway`` command's entry point: the command line imported with the garbage
collector off (:func:`gateway.heap.loading`), run, and left without tearing the
interpreter down.

Its own module because a console script imports the module it names before it calls
anything in it: naming ``gateway.cli`` would import the command line first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

from gateway import heap


def main() -> None:
    with heap.loading():
        from gateway.cli import main as cli_main
    leave(cli_main())


def leave(code: int) -> None:
    """Exit with *code* the way the interpreter would, less its teardown.

    After the command, the interpreter would free every module and object one by one
    (~700 modules, ~30 ms of a `run --once` that is ~0.7 s in all), work whose only
    effect is gone with the process. What an exit owes the world is done first: the
    exit handlers (logging's flush among them), and the standard streams flushed. Every
    file, database connection and gpg process a command opens it also closes before it
    returns; a thread still running is waited for as usual, and a profiler (``python -m
    cProfile``) or a coverage tracer writes what it found — there, the normal exit.
    """
    if threading.active_count() > 1 or sys.getprofile() or sys.gettrace():
        sys.exit(code)  # a profiler or coverage writes its figures at the normal exit
    atexit._run_exitfuncs()  # what Py_FinalizeEx runs before its teardown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: what it lost is lost
            stream.flush()
    os._exit(code)
