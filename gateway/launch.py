"""The ``gateway`` command's entry point: the command line imported with the garbage
collector off (:func:`gateway.heap.loading`), then run.

Its own module because a console script imports the module it names before it calls
anything in it: naming ``gateway.cli`` would import the command line first.
"""

from __future__ import annotations

import sys

from gateway import heap


def main() -> None:
    with heap.loading():
        from gateway.cli import main as cli_main
    sys.exit(cli_main())
