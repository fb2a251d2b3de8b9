"""docs/agency-cli.md and docs/agency-configuration.md: the agency kit's reference pages.

The same generators as the gateway's pages (:mod:`.cli`, :mod:`.config`), pointed at the
kit: the command tree Typer builds for ``gateway-agency`` and the pydantic model of
``agency.toml`` (:class:`gateway.kit.config.AgencyConfig`). The zones are the gateway's own
models, whose descriptions speak from the gateway's side; on the agency's page the few
that would mislead an agency are said in its terms (:data:`ZONE_WORDS`).
"""

from __future__ import annotations

import typer
from pydantic import BaseModel

from gateway import config
from gateway.kit import config as kit_config
from gateway.reference.cli import command_page
from gateway.reference.config import _COLUMNS, GENERATED, _ConfigWalk, _zones
from gateway.reference.text import _code, _escape, _page, _table

# What a key of a table the agency names stands for (the walk refuses a table it cannot name).
FREE_KEYS: dict[str, tuple[str, str]] = {
    "roles": ("role", "A role of your agency whose secret key this installation holds "
                      "(supervisor, collector, …, as the bank's IT named them)."),
}

# The zone keys whose gateway-side description would mislead an agency.
ZONE_WORDS: dict[tuple[type[BaseModel], str], str] = {
    (config.LocalZone, "path"): "The directory, on this host or mounted here: the gateway's "
                                "zone directory for your agency. It must lie outside "
                                "state_dir and store.",
    (config.SftpZone, "username"): "Your login on the gateway's SFTP server, as the bank's IT "
                                   "gives it.",
    (config.SftpZone, "private_key"): "The SSH private key file the kit logs in with (file "
                                      "mode 0600); its public half is the one the bank's IT "
                                      "set up for your login.",
    (config.SftpZone, "path"): 'The directory on the server, as an absolute path: "/inbox" '
                               'or "/outbox", as the bank\'s IT set them up.',
    (config.LocalZone, "file_mode"): "Permissions of the files the kit places in the outbox, "
                                     "in octal. The owner must have read and write; no "
                                     "execute bits, and no write for others.",
    (config.SftpZone, "file_mode"): "Permissions of the files the kit places in the outbox, "
                                    "in octal. The owner must have read and write; no "
                                    "execute bits, and no write for others.",
}


def agency_cli_markdown() -> str:
    """docs/agency-cli.md: ``gateway-agency``'s commands, as ``--help`` shows them."""
    return command_page(
        _kit_app(), "gateway-agency", title="Command-line reference: gateway-agency",
        source="the command definitions in gateway/kit/cli.py",
        intro=["The agency kit, for a collection agency's staff; how to use it is the "
               "[agency guide](partners/agency.md), its configuration "
               "[agency-configuration.md](agency-configuration.md). It comes with the gateway "
               "package (`python -m gateway.kit` runs the same command). Every command also "
               "takes `--help`. Exit status: 0 success, 1 failure (a file not taken, a "
               "results file with errors, a refusal), 2 usage or configuration error; a "
               "failure is reported as one line per problem on standard error, never as a "
               "traceback."])


def agency_config_markdown() -> str:
    """docs/agency-configuration.md: every key of ``agency.toml``, in the model's order."""
    walk = _ConfigWalk(free_keys=FREE_KEYS, words=ZONE_WORDS)
    walk.model(kit_config.AgencyConfig, "", "", 2, "")
    top, *tables = walk.sections
    lines = [
        "# Configuration reference: agency.toml", "",
        GENERATED.format(source="the model in gateway/kit/config.py"), "",
        "The agency kit (`gateway-agency`, [its commands](agency-cli.md)) reads one TOML file, "
        "`agency.toml`: `--config`/`-c`, else the environment variable "
        f"`{kit_config.ENV}`, else `./agency.toml`. `gateway-agency init DIR` writes the "
        "commented one below; the values marked (bank) are the bank's IT's to give. How to "
        "fill it in, step by step: [the agency guide](partners/agency.md). Every problem is "
        "reported on one line that names its key, e.g. `agency.toml: timezone: "
        '"Asia/Shangai" is not a known time zone (e.g. "Asia/Shanghai")`, with exit status 2.',
        "",
        "How to read the tables below:", "",
        "- **Key** is the dotted path as the error messages name it: `roles.<role>.key` is "
        "`key` in the `[roles.<role>]` table, where `<role>` is a role name.",
        "- **Required** says whether the key must be present when its table is.",
        "- Relative paths are relative to the directory of `agency.toml`; `~` is expanded.",
        "- A key the kit does not know is an error (no typo goes unnoticed).",
        "- Key files are checked when a command needs the keys (`fetch`, `open`, `export`, "
        "`results`, `destroy`), not when the file is read: a secret key file must have mode "
        "0600, and every key must meet the gateway's key policy.", "",
        "## What `gateway-agency init` writes", "",
        "```toml", kit_config.SAMPLE.rstrip("\n"), "```", "",
        "## Keys", "",
        *_table(_COLUMNS, top.rows), "",
        f"The deletion deadline is `contract_end` + {kit_config.DELETION_DAYS} days: "
        "`gateway-agency status` shows it, and `gateway-agency destroy` works from the day "
        "after `contract_end` (in `timezone`).", "",
    ]
    for section in tables:
        lines += ["#" * section.level + " " + _code(section.header), ""]
        if section.intro:
            lines += [_escape(section.intro), ""]
        if section.rows:
            lines += [*_table(_COLUMNS, section.rows), ""]
    lines += _zones(walk.zone_keys, intro=(
        "Write them as the bank's IT gives them, inline or as a table of their own "
        '(`[inbox]` then `kind = "sftp"`, `host = …` on the lines below). Usually both are '
        "directories on the gateway's SFTP server, with the same login: `/inbox`, where the "
        "gateway places slices, manifests and receipts, and `/outbox`, where the kit uploads "
        "results, acknowledgements and attestations. `state_dir` and `store` must lie "
        "outside a local zone's directory."), words=ZONE_WORDS)
    return _page(lines)


def _kit_app() -> typer.Typer:
    from gateway.kit.cli import app

    return app
