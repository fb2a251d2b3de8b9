"""``python -m gateway.kit``: the same as the ``gateway-agency`` command."""

from gateway.kit.cli import run

run()
