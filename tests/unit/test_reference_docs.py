"""docs/configuration.md and docs/cli.md, and the agency kit's docs/agency-configuration.md
and docs/agency-cli.md, are generated from the code (gateway/reference/);
these tests fail while a committed page differs from what the code generates now, and
keep the generator honest: every key and every command on the page, every key explained,
the example a configuration the gateway accepts, nothing pointing outside the repository.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import typer.main
from pydantic import BaseModel

from gateway import config, reference
from gateway.cli import build
from gateway.kit import cli as kit_cli
from gateway.kit import config as kit_config

app = build()  # the whole command line

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"docs/configuration.md": reference.config_markdown, "docs/cli.md": reference.cli_markdown,
         "docs/agency-configuration.md": reference.agency_config_markdown,
         "docs/agency-cli.md": reference.agency_cli_markdown}
# Each configuration page, the model it documents and the models it must reach.
CONFIGS = {"gateway.toml": (reference.config_markdown, config.Config,
                            {"GatewaySection", "LocalZone", "SftpZone", "Contract", "AgencyRole"}),
           "agency.toml": (reference.agency_config_markdown, kit_config.AgencyConfig,
                           {"AgencyConfig", "RoleKey", "LocalZone", "SftpZone"})}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_committed_page_is_what_the_code_generates(page):
    committed = (ROOT / page).read_text(encoding="utf-8")
    assert committed == PAGES[page](), f"{page} is out of date: run `make docs` and commit it"


def models(model: type[BaseModel] = config.Config) -> dict[str, type[BaseModel]]:
    """Every model the configuration is made of, found through the fields' types."""
    found = {model.__name__: model}
    todo = [info.annotation for info in model.model_fields.values()]
    while todo:
        annotation = todo.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in found:
                found.update(models(annotation))
        else:
            todo += typing.get_args(annotation)
    return found


@pytest.mark.parametrize("file", sorted(CONFIGS))
def test_every_configuration_key_says_what_it_means(file):
    _, root, expected = CONFIGS[file]
    seen = models(root)
    assert expected <= set(seen)
    missing = [f"{name}.{field}" for name, model in seen.items()
               for field, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"fields without Field(description=...): {missing}"


@pytest.mark.parametrize("file", sorted(CONFIGS))
def test_every_configuration_key_is_on_the_page(file):
    markdown, root, _ = CONFIGS[file]
    page = markdown()
    for model in models(root).values():
        for field, info in model.model_fields.items():
            if not info.exclude:
                key = re.escape(info.alias or field)  # a.key`, or a table: `[key]`, `[[key]]`
                # agency.toml's top-level keys have no table before them: `key`
                assert re.search(rf"((\.|`){key}`|`\[\[?{key}\]\]?`)", page), \
                    f"{model.__name__}.{field} is not documented"


def commands(cmd=None, path=("gateway",)):
    cmd = cmd or typer.main.get_command(app)
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from commands(sub, (*path, name))


CLIS = {"gateway": (reference.cli_markdown, app), "gateway-agency": (reference.agency_cli_markdown,
                                                                      kit_cli.app)}


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_every_command_and_option_is_on_the_page(prog):
    markdown, typer_app = CLIS[prog]
    page = markdown()
    for path, cmd in commands(typer.main.get_command(typer_app), (prog,)):
        assert f"#{'#' if len(path) > 2 else ''} `{' '.join(path)}`\n" in page, path
        for param in cmd.params:
            if param.name != "help":
                assert f"`{(param.opts or [param.name])[0]}" in page, (path, param.name)


def test_the_example_is_a_configuration_the_gateway_accepts(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(reference.MINIMAL_EXAMPLE, encoding="utf-8")
    cfg = config.load(path)
    assert cfg.agencies[0].outbox.kind == "sftp"
    assert reference.MINIMAL_EXAMPLE in reference.config_markdown()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_pages_stand_on_their_own(page):
    text = PAGES[page]()
    for outside in ("SPEC", "§", "../shared"):
        assert outside not in text, f"{page} refers to {outside!r}, which is not in the repository"


def test_the_agency_page_shows_what_init_writes_and_it_loads(tmp_path):
    path = kit_config.write_sample(tmp_path)
    assert kit_config.load(path).code == "AG001"
    assert kit_config.SAMPLE in reference.agency_config_markdown()


def test_pages_do_not_depend_on_the_terminal(monkeypatch):
    first = [page() for page in PAGES.values()]
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("TERM", "dumb")
    assert [page() for page in PAGES.values()] == first


def test_rich_style_tags_go_but_brackets_of_the_text_stay():
    help_text = "Serve [bold]the console[/bold] on [console] listen, [dim]quietly[/]."
    assert reference._strip_markup(help_text) == "Serve the console on [console] listen, quietly."


def test_the_command_line_prints_a_page(capsysbinary):
    assert reference.main(["cli"]) == 0
    assert capsysbinary.readouterr().out.decode("utf-8") == reference.cli_markdown()
    assert reference.main(["agency-config"]) == 0
    assert capsysbinary.readouterr().out.decode("utf-8") == reference.agency_config_markdown()
    assert reference.main(["nonsense"]) == 2
