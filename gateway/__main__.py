"""``python -m gateway`` is the same as the ``gateway`` command."""

from gateway.cli import run

run()
