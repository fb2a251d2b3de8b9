"""Fault injection for crash-safety tests: ``GATEWAY_FAULT=<point>`` kills the process there.

The kill is ``os._exit`` — no cleanup, no finally blocks, as close to ``kill -9``
as a process can do to itself — so tests can prove every step is resumable.
Unset in production, a call costs one dictionary lookup.
"""

from __future__ import annotations

import os


def point(name: str) -> None:
    if os.environ.get("GATEWAY_FAULT") == name:
        os._exit(137)
