"""``python -m gateway.cli``, as before the CLI became a package: the same as ``gateway``."""

from gateway.cli import run

run()
