"""docs/configuration.md and docs/cli.md (and the agency kit's docs/agency-configuration.md
and docs/agency-cli.md), written from the code they describe.

A hand-kept reference drifts the day a key or an option is added; these pages are
generated instead, so what bank IT reads is what the gateway accepts. The configuration
page walks the pydantic models of :mod:`gateway.config` (whose field descriptions are
the meanings); the CLI page walks the command tree Typer builds for ``gateway``, the
same tree ``--help`` prints from; :mod:`.kit` does the same for ``gateway-agency`` and its
``agency.toml``. ``make docs`` rewrites the pages, and
tests/unit/test_reference_docs.py fails while a committed page differs from this output.

The output depends on nothing but the code: no date, no terminal width, no rich
rendering.

Run ``python -m gateway.reference config`` (``cli``, ``agency-config``, ``agency-cli``) to
print a page.
"""

from __future__ import annotations

import sys

from gateway.reference.cli import cli_markdown
from gateway.reference.config import MINIMAL_EXAMPLE, config_markdown
from gateway.reference.kit import agency_cli_markdown, agency_config_markdown
from gateway.reference.text import _strip_markup

__all__ = ["MINIMAL_EXAMPLE", "PAGES", "_strip_markup", "agency_cli_markdown",
           "agency_config_markdown", "cli_markdown", "config_markdown", "main"]

PAGES = {"config": config_markdown, "cli": cli_markdown,
         "agency-config": agency_config_markdown, "agency-cli": agency_cli_markdown}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PAGES:
        sys.stderr.write(f"usage: python -m gateway.reference {'|'.join(PAGES)}\n")
        return 2
    sys.stdout.buffer.write(PAGES[args[0]]().encode("utf-8"))  # UTF-8 whatever the locale
    sys.stdout.flush()
    return 0
